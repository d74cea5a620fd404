//! Writes the hand-made seeds of every corpus (`corpus/<target>/seed-*`). Run from fuzz/:
//! `cargo +nightly run --example seed`. The seeds hold placeholders, never a credential that
//! expires: `@TOKEN@` and `@SESSION@` become fresh ones in the targets that read them.

use std::path::Path;

use portcullis::proto::CheckRequest;
use portcullis::testing::{AUD, ISS, check_request, claims, rs};
use portcullis_fuzz::{SESSION_COOKIE, SESSION_PLACEHOLDER, STATE, TOKEN_PLACEHOLDER};
use prost::Message as _;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("the corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed");
}

fn main() {
    for (name, p) in [
        ("root", "/"),
        ("api", "/api/metadata/v0/table/gold.core.users?index=0"),
        ("dots", "/api/../admin"),
        ("escapes", "/files/100%25/caf%C3%A9/%2e%2E/%2F"),
        ("backslash", "/\\evil.example.com"),
        ("scheme-relative", "//evil.example.com/x"),
        ("empty-segment", "/a//b;c#d"),
        ("query", "/table_detail/gold/hive/core/users?x=/../y//z"),
    ] {
        write("path", name, p.as_bytes());
    }

    let session = format!("{SESSION_COOKIE}={SESSION_PLACEHOLDER}");
    for (name, header) in [
        ("plain", "_ga=GA1.2.3; theme=dark".to_owned()),
        ("session", format!("_ga=GA1.2.3; {session}; theme=dark")),
        (
            "joined",
            format!("a=1, {session}, prefs={{\"a\":1,\"b\":2}}"),
        ),
        (
            "chunks",
            format!(
                "{SESSION_COOKIE}=chunks:3; {SESSION_COOKIE}-1=abc; {SESSION_COOKIE}-2=def; {SESSION_COOKIE}-3=ghi"
            ),
        ),
        ("twice", format!("{session}; {session}")),
        (
            "login",
            format!("{SESSION_COOKIE}-login-0123456789abcdef=xyz; portcullis=plain"),
        ),
        ("garbage", format!("{SESSION_COOKIE}=garbage")),
    ] {
        write("cookie_jar", name, header.as_bytes());
    }
    // A plaintext that gets sealed as it is: a session as portcullis writes one.
    let claims_map = serde_json::json!({"email": "a@example.com", "groups": ["ops"]});
    let session = portcullis::session::Session {
        sid: "s".into(),
        principal: portcullis::identity::Principal::from_claims(
            "auth0|1".into(),
            claims_map.as_object().unwrap().clone(),
            "email",
            "groups",
        ),
        id_token: "a.b.c".into(),
        access_token: Some(TOKEN_PLACEHOLDER.into()),
        access_expires_at: 4_000_000_000,
        access_issued_at: 1,
        refresh_token: None,
        created_at: 1,
        seen_at: 1,
    };
    write(
        "cookie_jar",
        "session-json",
        &serde_json::to_vec(&session).unwrap(),
    );

    let token = rs(&claims());
    let mut mode0 = vec![0u8];
    mode0.extend_from_slice(token.as_bytes());
    write("bearer", "signed", &mode0);
    let mut tampered = mode0.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 1;
    write("bearer", "signed-tampered", &tampered);
    write(
        "bearer",
        "alg-none",
        b"\0eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
    );
    write("bearer", "fresh-edit", &[1, 10, 0, b'A', 200, 0, b'.']);
    let good = serde_json::json!({"iss": ISS, "aud": [AUD], "sub": "auth0|1", "iat": 1_700_000_000u64,
        "exp": 4_000_000_000u64, "email": "a@example.com", "groups": ["ops"]});
    let mut mode2 = vec![2u8];
    mode2.extend_from_slice(good.to_string().as_bytes());
    write("bearer", "claims", &mode2);
    let mut mode2 = vec![2u8];
    mode2.extend_from_slice(
        br#"{"iss":"https://tenant.example.com","aud":"x","exp":1e99,"nbf":"1"}"#,
    );
    write("bearer", "claims-odd", &mode2);

    for (name, input) in [
        ("empty", String::new()),
        ("no-state", "code=abc".to_owned()),
        ("state", format!("code=abc&state={STATE}")),
        (
            "state-cookie",
            format!("code=abc&state={STATE}\n/table_detail/x?y=1"),
        ),
        (
            "error",
            format!("error=access_denied&state={STATE}&iss=https%3A%2F%2Fx\n/"),
        ),
        ("duplicate", format!("state={STATE}&state={STATE}")),
        (
            "bad-return",
            format!("state={STATE}&code=c\n//evil.example.com"),
        ),
    ] {
        write("callback", name, input.as_bytes());
    }

    for (name, input) in [
        (
            "minimal",
            "provider:\n  issuer: https://tenant.example.com/\n  client_id: amundsen\n  client_secret: s3cret\nsession: {secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}\n".to_owned(),
        ),
        (
            "routes",
            "provider: {issuer: 'https://op/', client_id: a, client_secret: b, audience: x}\n\
             bearer: [{issuer: 'https://other/', audiences: [y], jwks_uri: 'https://other/jwks'}]\n\
             routes:\n- {name: api, path_prefix: /api/, action: api, require: {groups: [ops], claims: {email_verified: 'true'}}}\n\
             - {name: pub, path_prefix: /static/, action: public, methods: [GET]}\n\
             - {name: app, path_prefix: /, action: login}\n\
             login: {redirect_uri: 'https://amundsen.example.com/authorization-code/callback', allowed_redirect_hosts: [amundsen.example.com]}\n\
             session: {secret: [AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=, b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQh], idle_timeout: 30m, store: memory}\n\
             pass: {enabled: true}\n".to_owned(),
        ),
        (
            "env",
            "provider: {issuer: 'https://op/'}\0PORTCULLIS_PROVIDER__CLIENT_ID=amundsen\0PORTCULLIS_SESSION__SECRET=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\0PORTCULLIS_ROUTES=[{name: a, path_prefix: /, action: login}]".to_owned(),
        ),
        (
            "flaskoidc",
            "\0FLASK_OIDC_CONFIG_URL=https://op/.well-known/openid-configuration\0FLASK_OIDC_CLIENT_ID=amundsen\0FLASK_OIDC_CLIENT_SECRET=s\0FLASK_OIDC_SECRET_KEY=k\0FLASK_OIDC_WHITELISTED_ENDPOINTS=status,healthcheck,health\0FLASK_OIDC_SCOPES=openid email\0OIDC_CALLBACK_ROUTE=/authorization-code/callback".to_owned(),
        ),
        ("not-a-mapping", "- a\n- b\n".to_owned()),
    ] {
        write("config", name, input.as_bytes());
    }

    let host = "amundsen.example.com";
    let bearer = format!("Bearer {TOKEN_PLACEHOLDER}");
    let cookie = format!("_ga=GA1.2.3; {SESSION_COOKIE}={SESSION_PLACEHOLDER}; theme=dark");
    let requests = [
        (
            "bearer",
            check_request(
                host,
                "/api/metadata/v0/table/x?index=0",
                &[
                    ("authorization", bearer.as_str()),
                    ("accept", "application/json"),
                ],
            ),
        ),
        (
            "session",
            check_request(
                host,
                "/table_detail/gold/hive/core/users",
                &[("cookie", cookie.as_str()), ("accept", "text/html")],
            ),
        ),
        (
            "anonymous",
            check_request(host, "/", &[("accept", "text/html")]),
        ),
        (
            "callback",
            check_request(
                host,
                &format!("/authorization-code/callback?code=c&state={STATE}"),
                &[],
            ),
        ),
        (
            "logout",
            check_request(host, "/logout", &[("cookie", cookie.as_str())]),
        ),
        (
            "bad-path",
            check_request(host, "/api/../admin", &[("authorization", bearer.as_str())]),
        ),
        ("empty", CheckRequest::default()),
    ];
    for (name, req) in requests {
        write("check", name, &req.encode_to_vec());
    }
}
