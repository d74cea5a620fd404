use std::time::Duration;

use super::*;
use crate::authz::{Action, UpstreamAuthorization};
use crate::session::StoreKind;

const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes

fn minimal() -> String {
    "provider: {issuer: 'https://tenant.auth0.com/', client_id: abc}\n".into()
}

fn load(yaml: &str) -> Result<Config, Vec<String>> {
    load_env(yaml, &[])
}

fn load_env(yaml: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let env: Env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_yaml(yaml, &env, None).map_err(|e| match e {
        ConfigError::Invalid(p) => p,
        other => vec![other.to_string()],
    })
}

fn problems(yaml: &str) -> Vec<String> {
    load(yaml).expect_err("config should be refused")
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = load(&minimal()).unwrap();
    assert_eq!(c.listen.grpc.to_string(), "0.0.0.0:9001");
    assert_eq!(c.listen.admin.to_string(), "0.0.0.0:9090");
    assert_eq!(c.listen.limits.handshake, Duration::from_secs(10));
    assert_eq!(c.listen.limits.idle, Duration::from_secs(300));
    assert_eq!(c.listen.limits.max_connections, 10_000);
    assert_eq!(c.provider().user_id_claim, "email");
    assert_eq!(c.provider().leeway, Duration::from_secs(30));
    assert_eq!(
        c.provider().max_token_lifetime,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        c.provider().jwks_min_refetch_interval,
        Duration::from_secs(30)
    );
    assert_eq!(
        c.provider().scopes,
        ["openid", "profile", "email", "offline_access"]
    );
    assert!(c.session.secure);
    assert_eq!(c.session.store, StoreKind::Cookie);
    assert_eq!(c.login.callback_path, "/authorization-code/callback");
    // No audience: no bearer tokens accepted. Login everything.
    assert!(c.bearer.is_empty());
    assert_eq!(c.policy.routes().len(), 1);
    assert_eq!(c.policy.routes()[0].action, Action::Login);
    assert_eq!(&*c.identity_headers.email, "x-auth-request-email");
    assert_eq!(c.log.envoy_metadata, EnvoyMetadata::Identity);
}

#[test]
fn envoy_metadata_can_be_turned_off_and_nothing_else_is_taken() {
    let c = load(&format!("{}log: {{envoy_metadata: none}}", minimal())).unwrap();
    assert_eq!(c.log.envoy_metadata, EnvoyMetadata::None);
    let c = load_env(&minimal(), &[("PORTCULLIS_LOG__ENVOY_METADATA", "none")]).unwrap();
    assert_eq!(c.log.envoy_metadata, EnvoyMetadata::None);
    let p = problems(&format!("{}log: {{envoy_metadata: off}}", minimal()));
    assert!(
        p[0].contains("envoy_metadata") && p[0].contains("identity"),
        "{p:?}"
    );
}

#[test]
fn provider_audience_becomes_the_default_bearer_issuer() {
    let c = load("provider: {issuer: 'https://t.auth0.com/', client_id: a, audience: 'https://amundsen/api'}").unwrap();
    assert_eq!(c.bearer.len(), 1);
    assert_eq!(c.bearer[0].issuer, "https://t.auth0.com/");
    assert_eq!(c.bearer[0].audiences, ["https://amundsen/api"]);
}

#[test]
fn full_design_example_parses() {
    let yaml = format!(
        r#"
listen: {{grpc: 127.0.0.1:9001, admin: 127.0.0.1:9090}}
provider:
  issuer: https://your-tenant.auth0.com/
  client_id: cid
  client_secret: shh
  scopes: [openid, profile, email, offline_access]
  audience: https://amundsen/api
  extra_auth_params: {{connection: google-oauth2}}
  user_id_claim: email
  groups_claim: https://amundsen/groups
  jwks_refresh_interval: 10m
  jwks_min_refetch_interval: 30s
  leeway: 30s
bearer:
  - issuer: https://your-tenant.auth0.com/
    audiences: [https://amundsen/api]
login:
  callback_path: /authorization-code/callback
  redirect_uri: https://amundsen.example.com/authorization-code/callback
  logout_path: /logout
  post_logout_redirect: /
  allowed_redirect_hosts: [Docs.Example.com]
session:
  store: cookie
  cookie_name: portcullis
  secure: true
  secret: [{SECRET}, {SECRET}]
  refresh_before: 60s
  absolute_timeout: 12h
  idle_timeout: 1h
  redis: {{url: redis://127.0.0.1:6379/0}}
routes:
  - {{name: health, path_prefix: /healthcheck, action: public}}
  - {{name: api, path_prefix: /api/, action: api}}
  - name: admin
    path_prefix: /admin
    host: '*.example.com'
    methods: [get, post]
    action: login
    require: {{claims: {{role: admin}}, groups: [ops], email_domains: [Example.com]}}
  - {{name: app, path_prefix: /, action: login}}
upstream:
  headers: {{user: X-User, email: x-email, groups: x-groups}}
  authorization: id_token
"#
    );
    let c = load(&yaml).unwrap();
    assert_eq!(c.session.keys.len(), 2);
    assert_eq!(c.policy.routes().len(), 4);
    let admin = &c.policy.routes()[2];
    assert_eq!(
        admin.methods.as_deref(),
        Some(&["GET".to_owned(), "POST".to_owned()][..])
    );
    assert_eq!(admin.require.email_domains, ["example.com"]);
    assert_eq!(&*c.identity_headers.user, "x-user");
    assert_eq!(c.upstream_authorization, UpstreamAuthorization::IdToken);
    assert_eq!(c.login.allowed_redirect_hosts, ["docs.example.com"]);
    assert!(format!("{c:?}").contains("Secret(***)"));
    assert!(
        !format!("{c:?}").contains("shh"),
        "Debug must not show the client secret"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let p = problems(&format!(
        "{}routes: [{{name: a, pathprefix: /, action: api}}]",
        minimal()
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("routes[0]"), "{p:?}");
    assert!(p[0].contains("pathprefix"), "{p:?}");
    let p = problems(&format!("{}sesion: {{}}", minimal()));
    assert!(p[0].contains("sesion"), "{p:?}");
}

#[test]
fn every_unknown_key_and_wrong_type_is_reported_at_once() {
    let p = problems(&format!(
        "{}session: {{cookie_nmae: x, secure: maybe}}\nlisten: {{drain_delay: 3}}\nlog: {{format: xml}}\n",
        minimal().replace("client_id: abc", "client_id: abc, leeway: 30")
    ));
    for expected in [
        "provider.leeway: ",
        "session.cookie_nmae",
        "session.secure: ",
        "listen.drain_delay: ",
        "log.format: ",
    ] {
        assert!(
            p.iter()
                .any(|l| l.starts_with(expected) || l.contains(expected)),
            "missing {expected:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), 5, "{p:#?}");
    let leeway = p.iter().find(|l| l.starts_with("provider.leeway")).unwrap();
    assert!(leeway.contains("30s"), "says the accepted form: {leeway}");
}

#[test]
fn missing_provider_is_one_clear_line() {
    assert_eq!(
        problems("listen: {grpc: 127.0.0.1:1}"),
        ["provider: missing (issuer and client_id are required)"]
    );
    let p = problems("provider: {client_id: a}");
    assert!(p[0].contains("issuer"), "{p:?}");
}

#[test]
fn every_semantic_problem_is_listed() {
    let yaml = r#"
listen: {grpc: 127.0.0.1:9000, admin: 127.0.0.1:9000, handshake_timeout: 0s, max_connections: 0}
provider: {issuer: 'http://idp.example.com', client_id: '', leeway: 5m, scopes: [email], max_token_lifetime: 10s}
session: {secret: tooshort}
routes:
  - {name: a, path_prefix: /x/../y, action: api}
  - {name: a, path: /z, path_prefix: /z, action: public}
  - {name: 'bad name', path_prefix: /, action: public, require: {groups: [x]}}
"#;
    let p = problems(yaml);
    let expect = [
        "provider.issuer",
        "provider.client_id",
        "provider.leeway",
        "provider.max_token_lifetime",
        "provider.scopes",
        "session.secret[0]",
        "routes[0]: \"/x/../y\"",
        "routes[1].name",
        "routes[1]: set exactly one",
        "routes[2].name",
        "routes[2].require",
        "listen: grpc and admin",
        "listen.handshake_timeout",
        "listen.max_connections",
    ];
    for e in expect {
        assert!(
            p.iter().any(|l| l.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
}

#[test]
fn bad_secrets_are_never_echoed() {
    let p = problems(&format!("{}session: {{secret: 'c2hvcnQ='}}", minimal()));
    assert!(p[0].contains("too short"), "{p:?}");
    assert!(!p[0].contains("c2hvcnQ="), "{p:?}");
}

#[test]
fn http_issuer_only_on_loopback() {
    assert!(load("provider: {issuer: 'http://127.0.0.1:9000', client_id: a}").is_ok());
    assert!(load("provider: {issuer: 'http://localhost:9000/', client_id: a}").is_ok());
    assert!(load("provider: {issuer: 'http://idp.example.com', client_id: a}").is_err());
}

#[test]
fn environment_overrides_the_file() {
    let c = load_env(
        &minimal(),
        &[
            ("PORTCULLIS_PROVIDER__CLIENT_ID", "12345"),
            ("PORTCULLIS_PROVIDER__AUDIENCE", "https://api"),
            ("PORTCULLIS_LISTEN__GRPC", "127.0.0.1:7000"),
            ("PORTCULLIS_SESSION__SECURE", "false"),
            (
                "PORTCULLIS_ROUTES",
                "[{name: all, path_prefix: /, action: api}]",
            ),
            ("PORTCULLIS_CONFIG", "/ignored.yaml"),
            ("OTHER__THING", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.provider().client_id, "12345", "digits stay a string");
    assert_eq!(c.provider().audience.as_deref(), Some("https://api"));
    assert_eq!(c.listen.grpc.to_string(), "127.0.0.1:7000");
    assert!(!c.session.secure);
    assert_eq!(c.policy.routes()[0].name.as_str(), "all");
}

#[test]
fn environment_typos_are_errors_too() {
    let p = load_env(&minimal(), &[("PORTCULLIS_PROVIDER__CLIENTID", "x")]).unwrap_err();
    assert!(p[0].contains("clientid"), "{p:?}");
}

#[test]
fn flaskoidc_env_names_are_understood() {
    let env = [
        (
            "FLASK_OIDC_CONFIG_URL",
            "https://tenant.auth0.com/.well-known/openid-configuration",
        ),
        ("FLASK_OIDC_CLIENT_ID", "flask-client"),
        ("FLASK_OIDC_CLIENT_SECRET", "flask-secret"),
        ("FLASK_OIDC_USER_ID_FIELD", "preferred_username"),
        ("FLASK_OIDC_SCOPES", "openid email profile"),
        (
            "FLASK_OIDC_WHITELISTED_ENDPOINTS",
            "status,healthcheck,health",
        ),
        ("OIDC_CALLBACK_ROUTE", "/oidc/callback"),
        (
            "OVERWRITE_REDIRECT_URI",
            "https://amundsen.example.com/oidc/callback",
        ),
    ];
    let c = load_env("", &env).unwrap();
    assert_eq!(c.provider().issuer, "https://tenant.auth0.com/");
    assert_eq!(c.provider().client_id, "flask-client");
    assert_eq!(
        c.provider().client_secret.as_ref().unwrap().expose(),
        "flask-secret"
    );
    assert_eq!(c.provider().user_id_claim, "preferred_username");
    assert_eq!(c.provider().scopes, ["openid", "email", "profile"]);
    assert_eq!(c.login.callback_path, "/oidc/callback");
    assert_eq!(
        c.login.redirect_uri.unwrap().as_str(),
        "https://amundsen.example.com/oidc/callback"
    );
    let names: Vec<_> = c
        .policy
        .routes()
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "flaskoidc-status",
            "flaskoidc-healthcheck",
            "flaskoidc-health",
            "app"
        ]
    );
    assert_eq!(c.policy.routes()[1].action, Action::Public);
    // PORTCULLIS_* wins over the flaskoidc names.
    let mut env = env.to_vec();
    env.push(("PORTCULLIS_PROVIDER__CLIENT_ID", "winner"));
    assert_eq!(load_env("", &env).unwrap().provider().client_id, "winner");
}

#[test]
fn flaskoidc_config_url_must_be_a_discovery_url() {
    let p = load_env(
        "",
        &[
            ("FLASK_OIDC_CONFIG_URL", "https://tenant.auth0.com/"),
            ("FLASK_OIDC_CLIENT_ID", "a"),
        ],
    )
    .unwrap_err();
    assert!(p[0].starts_with("FLASK_OIDC_CONFIG_URL"), "{p:?}");
}

#[test]
fn client_secrets_json_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client_secrets.json");
    std::fs::write(
        &path,
        r#"{"web": {"client_id": "cs-id", "client_secret": "cs-secret", "issuer": "https://t.auth0.com/",
            "auth_uri": "https://t.auth0.com/authorize", "redirect_uris": ["https://a.example/cb"]}}"#,
    )
    .unwrap();
    let c = load_env("", &[("OIDC_CLIENT_SECRETS", path.to_str().unwrap())]).unwrap();
    assert_eq!(c.provider().client_id, "cs-id");
    assert_eq!(
        c.provider().client_secret.as_ref().unwrap().expose(),
        "cs-secret"
    );
    assert_eq!(
        c.login.redirect_uri.unwrap().as_str(),
        "https://a.example/cb"
    );
}

#[test]
fn secret_files_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client-secret"), "from-file\n").unwrap();
    std::fs::write(
        dir.path().join("cookie-keys"),
        format!("{SECRET}\n{SECRET}\n"),
    )
    .unwrap();
    let yaml = "provider: {issuer: 'https://t.auth0.com/', client_id: a, client_secret_file: client-secret}\n\
                session: {secret_file: cookie-keys}\n";
    let c = Config::from_yaml(yaml, &Env::new(), Some(dir.path())).unwrap();
    assert_eq!(
        c.provider().client_secret.as_ref().unwrap().expose(),
        "from-file"
    );
    assert_eq!(c.session.keys.len(), 2);
    let p = Config::from_yaml(
        "provider: {issuer: 'https://t.auth0.com/', client_id: a, client_secret_file: nope}",
        &Env::new(),
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        p.starts_with("provider.client_secret_file: cannot read"),
        "{p}"
    );
}

#[test]
fn the_forward_auth_port_and_its_trusted_proxies_are_checked() {
    let c = load(&format!(
        "{}listen: {{http_authz: '127.0.0.1:9002', trusted_proxies: [10.0.0.0/8, '::1']}}",
        minimal()
    ))
    .unwrap();
    assert_eq!(c.listen.http_authz.unwrap().to_string(), "127.0.0.1:9002");
    assert!(
        c.listen
            .trusted_proxies
            .contains("10.9.8.7".parse().unwrap())
    );
    assert!(
        !c.listen
            .trusted_proxies
            .contains("127.0.0.1".parse().unwrap())
    );
    assert_eq!(
        load(&minimal()).unwrap().listen.http_authz,
        None,
        "off by default"
    );
    let p = problems(&format!(
        "{}listen: {{admin: '0.0.0.0:9090', http_authz: '0.0.0.0:9090', trusted_proxies: [10.0.0.0/99, nginx]}}",
        minimal()
    ));
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].starts_with("listen.http_authz: must use a port of its own"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("listen.trusted_proxies: \"10.0.0.0/99\""),
        "{p:?}"
    );
    assert!(
        p[2].starts_with("listen.trusted_proxies: \"nginx\""),
        "{p:?}"
    );
    let env = load_env(
        &minimal(),
        &[(
            "PORTCULLIS_LISTEN__TRUSTED_PROXIES",
            "[10.0.0.0/8, 192.168.0.1]",
        )],
    )
    .unwrap();
    assert!(
        env.listen
            .trusted_proxies
            .contains("192.168.0.1".parse().unwrap())
    );
}

#[test]
fn durations_and_addresses_are_checked() {
    let p = problems(&format!("{}listen: {{grpc: 'not-an-addr'}}", minimal()));
    assert!(p[0].starts_with("listen.grpc"), "{p:?}");
    let p = problems("provider: {issuer: 'https://t/', client_id: a, leeway: soon}");
    assert!(p[0].starts_with("provider.leeway"), "{p:?}");
}

#[test]
fn redis_needs_a_redis_url() {
    let p = problems(&format!("{}session: {{store: redis}}", minimal()));
    assert_eq!(p, ["session.redis.url: required with store: redis"]);
    let p = problems(&format!(
        "{}session: {{store: redis, redis: {{url: 'http://x'}}}}",
        minimal()
    ));
    assert!(p[0].starts_with("session.redis.url"), "{p:?}");
    let c = load(&format!(
        "{}session: {{store: redis, redis: {{url: 'rediss://:pw@r:6380/0'}}}}",
        minimal()
    ))
    .unwrap();
    assert!(
        !format!("{c:?}").contains(":pw@"),
        "the URL may hold a password: never in Debug"
    );
}

#[test]
fn a_route_enforces_unless_it_says_shadow() {
    use crate::authz::RouteMode;
    let c = load(&format!(
        "{}routes: [{{name: a, path_prefix: /api/, action: api, mode: shadow}}, {{name: b, path_prefix: /, action: login}}]",
        minimal()
    ))
    .unwrap();
    let modes: Vec<RouteMode> = c.policy.routes().iter().map(|r| r.mode).collect();
    assert_eq!(modes, [RouteMode::Shadow, RouteMode::Enforce]);
    let p = problems(&format!(
        "{}routes: [{{name: a, path_prefix: /, action: api, mode: audit}}]",
        minimal()
    ));
    assert!(p[0].starts_with("routes[0].mode"), "{p:?}");
    assert!(p[0].contains("enforce") && p[0].contains("shadow"), "{p:?}");
}

/// Amundsen's OIDC guide's `.env`, as a migrating user has it.
const AMUNDSEN_ENV: [(&str, &str); 9] = [
    ("FLASK_OIDC_PROVIDER_NAME", "okta"),
    (
        "FLASK_OIDC_CONFIG_URL",
        "https://tenant.okta.com/.well-known/openid-configuration",
    ),
    ("FLASK_OIDC_CLIENT_ID", "amundsen"),
    ("FLASK_OIDC_CLIENT_SECRET", "client-secret"),
    ("FLASK_OIDC_REDIRECT_URI", "/auth"),
    ("FLASK_OIDC_OVERWRITE_REDIRECT_URI", "/search"),
    (
        "FLASK_OIDC_SECRET_KEY",
        "a flask secret key that is long enough",
    ),
    ("FLASK_OIDC_LOG_LEVEL", "WARNING"),
    ("FLASK_OIDC_FORCE_SCHEMA", "https"),
];

#[test]
fn every_name_of_a_flaskoidc_env_has_its_flaskoidc_meaning() {
    use crate::authz::login::Scheme;
    let c = load_env("", &AMUNDSEN_ENV).unwrap();
    assert_eq!(c.provider().name.as_deref(), Some("okta"));
    assert_eq!(c.login.callback_path, "/auth");
    assert_eq!(c.login.after_login.as_deref(), Some("/search"));
    assert_eq!(c.login.scheme, Scheme::Https);
    assert_eq!(c.log.level, "warn");
    assert_eq!(
        c.session.keys.len(),
        1,
        "a Flask secret key made a session key"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A whole URL names the site too.
    let mut env = AMUNDSEN_ENV.to_vec();
    env.push((
        "FLASK_OIDC_REDIRECT_URI",
        "https://amundsen.example/oidc/auth",
    ));
    let c = load_env("", &env).unwrap();
    assert_eq!(c.login.callback_path, "/oidc/auth");
    assert_eq!(
        c.login.redirect_uri.unwrap().as_str(),
        "https://amundsen.example/oidc/auth"
    );
}

#[test]
fn a_flask_secret_key_is_stretched_the_same_way_every_time_and_a_short_one_warned_of() {
    let key = |secret: &str| {
        let mut env = AMUNDSEN_ENV.to_vec();
        env.push(("FLASK_OIDC_SECRET_KEY", secret));
        load_env("", &env)
    };
    let (a, b) = (key("short one").unwrap(), key("short one").unwrap());
    assert_eq!(
        a.session.keys[0].expose(),
        b.session.keys[0].expose(),
        "replicas agree"
    );
    assert_ne!(a.session.keys[0].expose(), "short one");
    assert_eq!(a.warnings.len(), 1);
    assert!(
        a.warnings[0].starts_with("FLASK_OIDC_SECRET_KEY is 9 characters"),
        "{:?}",
        a.warnings
    );
    assert!(
        !a.warnings[0].contains("short one"),
        "the secret is never echoed"
    );
    // Base64 of 32 bytes is a session secret already.
    assert_eq!(key(SECRET).unwrap().session.keys[0].expose(), SECRET);
    // flaskoidc's own defaults are public.
    let p = key("base-flask-oidc-secret-key").unwrap_err();
    assert!(
        p[0].starts_with("FLASK_OIDC_SECRET_KEY: this is flaskoidc's published default"),
        "{p:?}"
    );
}

#[test]
fn flaskoidc_names_portcullis_cannot_honour_are_refused_by_name() {
    let mut env = AMUNDSEN_ENV.to_vec();
    env.extend([
        ("FLASK_OIDC_LOG_DATE_FORMAT", "%Y"),
        ("FLASK_OIDC_FORCE_SCHEMA", "ftp"),
        ("FLASK_OIDC_LOG_LEVEL", "LOUD"),
        ("FLASK_OIDC_OVERWRITE_REDIRECT_URI", "https://evil.example/"),
    ]);
    let p = load_env("", &env).unwrap_err();
    for name in [
        "FLASK_OIDC_FORCE_SCHEMA",
        "FLASK_OIDC_LOG_LEVEL",
        "FLASK_OIDC_LOG_DATE_FORMAT",
    ] {
        assert!(p.iter().any(|l| l.starts_with(name)), "{name}: {p:?}");
    }
}

#[test]
fn additional_parameters_become_authorization_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("params.json");
    std::fs::write(
        &file,
        r#"{"connection": "google-oauth2", "prompt": "login"}"#,
    )
    .unwrap();
    let mut env = AMUNDSEN_ENV.to_vec();
    let path = file.to_str().unwrap().to_owned();
    env.push(("FLASK_OIDC_PROVIDER_ADDITIONAL_PARAMETERS_FILE_PATH", &path));
    let c = load_env("", &env).unwrap();
    assert_eq!(
        c.provider().extra_auth_params["connection"],
        "google-oauth2"
    );
    std::fs::write(&file, r#"{"max_age": 5}"#).unwrap();
    let p = load_env("", &env).unwrap_err();
    assert!(p[0].contains("\"max_age\" is not a string"), "{p:?}");
}

#[test]
fn the_effective_config_shows_what_each_variable_became_without_secrets() {
    let env: Env = AMUNDSEN_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([(
            "PORTCULLIS_SESSION__REDIS__URL".to_owned(),
            "redis://:hunter2@redis:6379/0".to_owned(),
        )])
        .collect();
    let yaml = Config::effective("", &env, None).unwrap();
    assert!(yaml.contains("callback_path: /auth"), "{yaml}");
    assert!(yaml.contains("issuer: https://tenant.okta.com/"), "{yaml}");
    for secret in ["client-secret", "hunter2", "flask secret key"] {
        assert!(!yaml.contains(secret), "{secret} in {yaml}");
    }
    assert_eq!(yaml.matches("<redacted>").count(), 3, "{yaml}");
}

#[test]
fn opaque_tokens_take_the_providers_client_or_one_of_their_own() {
    let provider =
        "provider: {issuer: 'https://t.auth0.com/', client_id: abc, client_secret: s3}\n";
    let c = load(&format!(
        "{provider}bearer:\n\
         - {{issuer: 'https://t.auth0.com', audiences: [api], opaque: introspect}}\n\
         - {{issuer: 'https://kc.example/realms/x', audiences: [api], opaque: introspect, \
            client_id: rs, client_secret: rs-secret, opaque_cache: 10s, opaque_rate: 3}}\n\
         - {{issuer: 'https://other.example/', audiences: [api], opaque: userinfo}}\n\
         - {{issuer: 'https://jwt.example/', audiences: [api]}}\n"
    ))
    .unwrap();
    let opaque: Vec<_> = c.bearer.iter().map(|b| b.opaque.as_ref()).collect();
    let client = |i: usize| match opaque[i].map(|(ask, _)| ask) {
        Some(crate::idp::Ask::Introspect(c)) => (
            c.client_id.clone(),
            c.client_secret.clone().map(|s| s.expose().to_owned()),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        client(0),
        ("abc".into(), Some("s3".into())),
        "the provider's own"
    );
    assert_eq!(client(1), ("rs".into(), Some("rs-secret".into())));
    let (_, limits) = opaque[1].unwrap();
    assert_eq!((limits.cache, limits.rate), (Duration::from_secs(10), 3));
    let (_, limits) = opaque[0].unwrap();
    assert_eq!((limits.cache, limits.rate), (Duration::from_secs(60), 20));
    assert!(matches!(opaque[2], Some((crate::idp::Ask::Userinfo, _))));
    assert!(opaque[3].is_none());
}

#[test]
fn opaque_settings_that_cannot_work_are_refused() {
    let with = |provider: &str, entry: &str| {
        problems(&format!(
            "provider: {{issuer: 'https://t.auth0.com/', client_id: abc{provider}}}\n\
             bearer: [{{issuer: 'https://t.auth0.com/', audiences: [api]{entry}}}]\n"
        ))
        .join("\n")
    };
    let cases = [
        (
            "",
            ", opaque: introspect",
            "introspection needs a client secret",
        ),
        (
            ", client_secret: s",
            ", opaque: introspect, jwks_uri: 'https://t.auth0.com/jwks'",
            "bearer[0].opaque: needs the issuer's discovery document",
        ),
        (
            ", client_secret: s",
            ", client_id: rs",
            "for opaque: introspect only",
        ),
        (
            ", client_secret: s",
            ", opaque: userinfo, client_id: rs",
            "introspect only",
        ),
        (
            ", client_secret: s",
            ", opaque: introspect, client_id: rs",
            "needs a client_id and its client_secret",
        ),
        (
            ", client_secret: s",
            ", opaque: userinfo, opaque_rate: 0",
            "opaque_rate",
        ),
        (
            ", client_secret: s",
            ", opaque: userinfo, opaque_cache: 2h",
            "opaque_cache",
        ),
        (", client_secret: s", ", opaque: jwt", "bearer[0].opaque"),
    ];
    for (provider, entry, expected) in cases {
        let said = with(provider, entry);
        assert!(said.contains(expected), "{entry}: {said}");
    }
    let other = problems(
        "provider: {issuer: 'https://t.auth0.com/', client_id: abc, client_secret: s}\n\
         bearer: [{issuer: 'https://kc.example/', audiences: [api], opaque: introspect}]\n",
    )
    .join("\n");
    assert!(
        other.contains("needs a client of \"https://kc.example/\""),
        "{other}"
    );
}

#[test]
fn an_introspection_secret_is_redacted_and_its_file_watched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rs-secret"), "from-file\n").unwrap();
    let yaml = "provider: {issuer: 'https://t.auth0.com/', client_id: abc}\n\
                bearer:\n- {issuer: 'https://kc.example/', audiences: [api], opaque: introspect, \
                client_id: rs, client_secret_file: rs-secret}\n\
                - {issuer: 'https://t.auth0.com/', audiences: [api], opaque: introspect, \
                client_id: rs, client_secret: inline-secret}\n";
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).unwrap();
    let c = Config::load(&path, &Env::new()).unwrap();
    assert!(c.files().contains(&dir.path().join("rs-secret")));
    let Some((crate::idp::Ask::Introspect(client), _)) = &c.bearer[0].opaque else {
        panic!()
    };
    assert_eq!(client.client_secret.as_ref().unwrap().expose(), "from-file");
    let printed = Config::effective(yaml, &Env::new(), None).unwrap();
    assert!(!printed.contains("inline-secret"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!format!("{c:?}").contains("from-file"));
}

#[test]
fn an_upstream_assertion_is_checked_and_defaulted() {
    let with = |extra: &str| {
        format!(
            "provider: {{issuer: 'https://t.auth0.com/', client_id: abc}}\n\
             session: {{secret: '{SECRET}'}}\n{extra}"
        )
    };
    let c = load(&with("upstream: {assertion: {audience: amundsen}}\n")).unwrap();
    let a = c.assertion.unwrap();
    assert_eq!(&*a.header, "x-portcullis-assertion");
    assert_eq!(a.issuer, "https://portcullis.invalid/");
    assert_eq!(a.lifetime, Duration::from_secs(60));
    assert!(load(&with("")).unwrap().assertion.is_none());

    for (extra, expected) in [
        ("upstream: {assertion: {}}\n", "missing field `audience`"),
        (
            "upstream: {assertion: {audience: portcullis}}\npass: {enabled: true}\n",
            "must differ from pass.audience",
        ),
        (
            "upstream: {assertion: {audience: a, header: X-Auth-Request-User}}\n",
            "upstream.assertion.header",
        ),
        (
            "upstream: {assertion: {audience: a, header: authorization}}\n",
            "upstream.assertion.header",
        ),
        (
            "upstream: {assertion: {audience: a, lifetime: 1h}}\n",
            "upstream.assertion.lifetime",
        ),
    ] {
        let said = problems(&with(extra)).join("\n");
        assert!(said.contains(expected), "{extra}: {said}");
    }
    let no_secret = problems(
        "provider: {issuer: 'https://t.auth0.com/', client_id: abc}\n\
         upstream: {assertion: {audience: a}}\n",
    )
    .join("\n");
    assert!(no_secret.contains("needs session.secret"), "{no_secret}");
}

#[test]
fn several_providers_are_named_and_picked_by_host_or_route() {
    let c = load(&format!(
        "providers:\n\
         - {{name: corp, issuer: 'https://corp.auth0.com/', client_id: a, audience: api}}\n\
         - {{name: partners, issuer: 'https://partners.example/', client_id: b, audience: api2, \
            hosts: [partners.example.com, '*.partners.example.com']}}\n\
         session: {{secret: '{SECRET}'}}\n\
         routes:\n\
         - {{name: reports, path_prefix: /reports, action: login, provider: partners}}\n\
         - {{name: app, path_prefix: /, action: login}}\n"
    ))
    .unwrap();
    assert_eq!(c.providers.len(), 2);
    assert_eq!(c.provider().client_id, "a", "the first is the default");
    assert_eq!(c.providers[1].hosts.len(), 2);
    assert!(c.providers[1].hosts[1].matches("eu.partners.example.com"));
    assert_eq!(c.policy.routes()[0].provider.as_deref(), Some("partners"));
    assert_eq!(c.policy.routes()[1].provider, None);
    // Without a bearer list, each provider's audience is accepted from it.
    let bearer: Vec<_> = c
        .bearer
        .iter()
        .map(|b| (b.issuer.as_str(), b.audiences.clone()))
        .collect();
    assert_eq!(
        bearer,
        [
            ("https://corp.auth0.com/", vec!["api".to_owned()]),
            ("https://partners.example/", vec!["api2".to_owned()])
        ]
    );
}

#[test]
fn provider_lists_that_cannot_work_are_refused() {
    let p = |name: &str, extra: &str| {
        format!("- {{name: {name}, issuer: 'https://{name}.example/', client_id: c{extra}}}\n")
    };
    for (yaml, expected) in [
        (
            format!(
                "provider: {{issuer: 'https://a.example/', client_id: c}}\nproviders:\n{}",
                p("b", "")
            ),
            "set provider (one) or providers (several), not both",
        ),
        ("providers: []\n".to_owned(), "providers: at least one"),
        (
            format!(
                "providers:\n{}- {{issuer: 'https://x.example/', client_id: c}}\n",
                p("a", "")
            ),
            "providers[1].name: required with several providers",
        ),
        (
            format!("providers:\n{}{}", p("a", ""), p("a", "")),
            "providers[1].name: \"a\" is taken",
        ),
        (
            format!("providers:\n{}{}", p("a", ""), p("B", "")),
            "must be lowercase letters",
        ),
        (
            format!("providers:\n{}", p("a", ", hosts: [a.example]")),
            "providers[0].hosts: only with several providers",
        ),
        (
            format!(
                "providers:\n{}{}",
                p("a", ""),
                p("b", ", hosts: ['a.example:443']")
            ),
            "providers[1].hosts: \"a.example:443\" must be a host name",
        ),
        (
            format!("providers:\n{}{}", p("a", ""), p("b", ", leeway: 5m")),
            "providers[1].leeway: at most 60s",
        ),
        (
            format!(
                "providers:\n{}{}routes: [{{name: r, path_prefix: /, action: login, provider: c}}]\n",
                p("a", ""),
                p("b", "")
            ),
            "routes[0].provider: \"c\" names no provider",
        ),
        (
            format!(
                "providers:\n{}{}session: {{secret: '{SECRET}'}}\npass: {{enabled: true}}\n",
                p("a", ""),
                p("b", "")
            ),
            "pass.enabled: with one provider only",
        ),
    ] {
        let said = problems(&yaml).join("\n");
        assert!(said.contains(expected), "{yaml}\n=> {said}");
    }
}

#[test]
fn every_providers_secret_is_redacted_in_the_effective_config() {
    let yaml = "providers:\n\
                - {name: a, issuer: 'https://a.example/', client_id: c, client_secret: first-secret}\n\
                - {name: b, issuer: 'https://b.example/', client_id: c, client_secret: second-secret}\n";
    let printed = Config::effective(yaml, &Env::new(), None).unwrap();
    assert!(
        !printed.contains("first-secret") && !printed.contains("second-secret"),
        "{printed}"
    );
    assert_eq!(printed.matches("<redacted>").count(), 2, "{printed}");
}
