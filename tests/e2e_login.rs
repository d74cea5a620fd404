//! Browser login end to end: real Chromium (playwright-core, tests/browser/driver.mjs), the shipped
//! Envoy config, the Auth0-shaped OpenID provider and the portcullis binary. Needs `scripts/setup`;
//! run by `scripts/test`. The browser is driven with blocking I/O, so the tests run on a
//! multi-threaded runtime and the in-process upstream keeps answering meanwhile.

mod support;

use serde_json::{Value, json};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Cookie,
    Memory,
    Redis,
    /// The cookie store, with Redis for what replicas share (`session.redis` beside `store: cookie`).
    CookieSharedInRedis,
}

struct Stack {
    op: Op,
    op_options: OpOptions,
    redis: Option<Redis>,
    portcullis: Portcullis,
    /// More replicas beside `portcullis`, behind the same Envoy.
    replicas: Vec<Portcullis>,
    envoy: Envoy,
    upstream: EchoUpstream,
    config: String,
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(None, Store::Cookie).await
    }

    /// With the provider's access token lifetime set to `ttl` seconds, and sessions in `store`.
    async fn start_with(ttl: Option<u64>, store: Store) -> Self {
        Self::start_full(ttl, store, None).await
    }

    /// `client_auth`: the client's token endpoint authentication at the provider and in portcullis.
    async fn start_full(ttl: Option<u64>, store: Store, client_auth: Option<&str>) -> Self {
        let op = OpOptions {
            access_token_ttl: ttl,
            client_auth_method: client_auth.map(str::to_owned),
            ..OpOptions::auth0()
        };
        Self::start_op(op, store).await
    }

    /// With the provider started as `op` says (its callback and logout URLs are set here).
    async fn start_op(op: OpOptions, store: Store) -> Self {
        Self::start_replicated(op, store, 1, "").await
    }

    /// `replicas` portcullis processes with one config behind one Envoy, which deals checks to them
    /// in turn.
    /// `extra`: more top-level config keys.
    async fn start_replicated(op: OpOptions, store: Store, replicas: usize, extra: &str) -> Self {
        let client_auth = op.client_auth_method.clone();
        let redis = match store {
            Store::Redis | Store::CookieSharedInRedis => Some(Redis::start().await),
            Store::Cookie | Store::Memory => None,
        };
        let secret = session_secret();
        let session = match (store, &redis) {
            (Store::Cookie, _) => format!("{{secret: '{secret}'}}"),
            (Store::Memory, _) => format!("{{secret: '{secret}', store: memory}}"),
            (Store::Redis, Some(r)) => format!(
                "{{secret: '{secret}', store: redis, redis: {{url: '{}'}}}}",
                r.url
            ),
            (Store::CookieSharedInRedis, Some(r)) => {
                format!("{{secret: '{secret}', redis: {{url: '{}'}}}}", r.url)
            }
            (Store::Redis | Store::CookieSharedInRedis, None) => unreachable!(),
        };
        let upstream = EchoUpstream::start().await;
        let grpc = free_port();
        let ports = EnvoyPorts::free(grpc, upstream.port);
        let site = format!("http://127.0.0.1:{}", ports.listener);
        let op_options = OpOptions {
            redirect_uris: vec![format!("{site}/authorization-code/callback")],
            post_logout_uris: vec![format!("{site}/")],
            ..op
        };
        let op = Op::start(op_options.clone()).await;
        // session.secure stays true (the default): Chromium keeps __Host- cookies on http://127.0.0.1.
        let config_on = |grpc: u16| {
            format!(
                "listen: {{grpc: '127.0.0.1:{grpc}', admin: '127.0.0.1:{admin}'}}\n\
             provider:\n  issuer: '{issuer}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n\
             \x20 audience: '{AUDIENCE}'\n  extra_auth_params: {{prompt: consent}}\n{auth}\
             session: {session}\n\
             routes:\n\
             - {{name: health, path_prefix: /healthcheck, action: public}}\n\
             - {{name: api, path_prefix: /api/, action: api}}\n\
             - {{name: app, path_prefix: /, action: login}}\n{extra}",
                admin = free_port(),
                issuer = op.issuer,
                auth = client_auth.as_deref().map_or(String::new(), |m| format!(
                    "  token_endpoint_auth_method: {m}\n"
                )),
            )
        };
        // The suite runs twice: with the shipped envoy.yaml, and with the fast path's bootstrap.
        let config_on = |grpc: u16| {
            let config = config_on(grpc);
            if fast_path() {
                with_fast_path(config)
            } else {
                config
            }
        };
        let config = config_on(grpc);
        let portcullis = Portcullis::start(&config).await;
        let mut more = Vec::new();
        for _ in 1..replicas {
            more.push(Portcullis::start(&config_on(free_port())).await);
        }
        let bootstrap = if fast_path() {
            fast_path_config(&portcullis, ports)
        } else {
            shipped_config("envoy/envoy.yaml", ports)
        };
        let envoy_config = with_replicas(
            &bootstrap,
            &more.iter().map(Portcullis::authz_port).collect::<Vec<_>>(),
        );
        let envoy = Envoy::start(&envoy_config).await;
        Self {
            op_options: OpOptions {
                port: Some(op.port),
                ..op_options
            },
            op,
            redis,
            portcullis,
            replicas: more,
            envoy,
            upstream,
            config,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoy.url)
    }

    /// Logs `user` in from `path` and checks the browser came back to exactly `path`.
    fn login(&self, browser: &mut Browser, path: &str, user: &str) {
        let at_idp = browser.goto(&self.url(path));
        assert!(
            at_idp["url"].as_str().unwrap().starts_with(&self.op.issuer),
            "a navigation without a session goes to the provider: {at_idp}"
        );
        let back = browser.login(user, &self.envoy.url);
        assert_eq!(
            back["url"],
            self.url(path),
            "back on the deep link, path and query"
        );
        assert!(
            back["text"].as_str().unwrap().contains("upstream ok"),
            "{back}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_deep_link_logs_in_and_comes_back_with_the_users_identity() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    s.login(
        &mut b,
        "/table_detail/gold/hive/core/users?tab=columns&x=%2Fy",
        "alice",
    );
    let seen = deep_link_request(&s, "/table_detail/");
    assert_eq!(
        seen.uri,
        "/table_detail/gold/hive/core/users?tab=columns&x=%2Fy"
    );
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-user"), ["alice@example.com"]);
    // upstream.authorization: access_token (the default): the access token for the API audience;
    // the fast path's config sets none (Envoy cannot put the session's token upstream).
    let auth = seen.all("authorization");
    if fast_path() {
        assert!(auth.is_empty(), "{auth:?}");
    } else {
        assert!(
            auth.len() == 1 && auth[0].starts_with("Bearer ey"),
            "{auth:?}"
        );
    }
    // The session cookie never reaches the upstream; the provider's own cookies are not ours to strip.
    for cookie in seen.all("cookie") {
        assert!(!cookie.contains("__Host-portcullis"), "{cookie}");
    }
    let names = b.cookie_names();
    assert!(names.iter().any(|n| n == "__Host-portcullis"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("__Host-portcullis-login-")),
        "the login cookie is spent: {names:?}"
    );
    // A second page needs no second login.
    let again = b.goto(&s.url("/search?q=users"));
    assert_eq!(again["url"], s.url("/search?q=users"));
    assert_eq!(
        deep_link_request(&s, "/search").all("x-auth-request-email"),
        ["alice@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn two_tabs_logging_in_at_once_both_land_where_they_started() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    b.navigations();
    b.goto(&s.url("/tab/one"));
    let authorize_one = b
        .navigations()
        .into_iter()
        .find(|u| u.contains("/authorize?"))
        .expect("tab one went to the provider");
    // Tab two starts its own login before tab one finishes, and finishes first.
    b.goto(&s.url("/tab/two"));
    let two = b.login("kim", &s.envoy.url);
    assert_eq!(two["url"], s.url("/tab/two"));
    // Tab one's login completes afterwards: its own login cookie is still there.
    let mut one = b.goto(&authorize_one);
    if one["url"].as_str().unwrap().starts_with(&s.op.issuer) {
        one =
            b.run(json!({"op": "click", "selector": "button[type=submit]", "until": s.envoy.url}));
    }
    assert_eq!(one["url"], s.url("/tab/one"), "{one}");
    assert_eq!(
        deep_link_request(&s, "/tab/one").all("x-auth-request-email"),
        ["kim@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_client_registered_for_client_secret_post_logs_in() {
    let s = Stack::start_full(None, Store::Cookie, Some("client_secret_post")).await;
    let mut b = Browser::start();
    s.login(&mut b, "/post", "leo");
    assert_eq!(
        deep_link_request(&s, "/post").all("x-auth-request-email"),
        ["leo@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn scripts_get_401_not_a_redirect() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    b.goto(&s.url("/healthcheck"));
    for path in ["/api/tables", "/"] {
        let r = b.fetch(&s.url(path));
        assert_eq!(r["status"], 401, "{path}: {r}");
        let body: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    let r = b.fetch(&s.url("/"));
    let body: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["login_url"], "/",
        "a login route names where a browser would log in: {r}"
    );
    // With a session, the same fetch works.
    s.login(&mut b, "/", "bob");
    let r = b.fetch(&s.url("/api/tables"));
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        s.upstream.last().all("x-auth-request-email"),
        ["bob@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn logout_ends_at_the_provider_and_the_next_visit_logs_in_again() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    s.login(&mut b, "/", "carol");
    b.navigations();
    let at_idp = b.goto(&s.url("/logout?returnTo=https://evil.example/"));
    let end_session = format!("{}v2/logout", s.op.issuer);
    let urls = b.navigations();
    assert!(urls.iter().any(|u| u.starts_with(&end_session)), "{urls:?}");
    assert!(
        urls.iter().all(|u| !u.contains("evil.example")
            || u.starts_with(&s.op.issuer)
            || u.starts_with(&s.envoy.url)),
        "{urls:?}"
    );
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "{at_idp}"
    );
    assert!(
        !b.cookie_names()
            .iter()
            .any(|n| n.starts_with("__Host-portcullis")),
        "cookies cleared"
    );
    // Confirm at the provider: it sends the browser back, and the next visit asks for a login.
    let after = b.run(json!({"op": "click", "selector": "button[autofocus], button[type=submit]", "until": s.op.issuer}));
    let page = b.goto(&s.url("/"));
    assert!(
        page["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "login again: {page} (after {after})"
    );
    assert!(
        page["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("sign-in"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn bad_callbacks_get_a_400_page_and_no_session() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    let callback = s.url("/authorization-code/callback");

    let page = b.goto(&format!("{callback}?code=abc"));
    assert_eq!(page["status"], 400, "no state: {page}");
    assert!(
        page["text"].as_str().unwrap().contains("Try again"),
        "{page}"
    );

    // Another browser's state.
    let at_idp = b.goto(&s.url("/private"));
    let state = url::Url::parse(at_idp["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned());
    let state = match state {
        Some(s) => s,
        // oidc-provider moved on to its interaction page: the state is in the first navigation.
        None => {
            let urls = b.navigations();
            let authorize = urls
                .iter()
                .find(|u| u.contains("state="))
                .expect("an authorization request");
            url::Url::parse(authorize)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "state")
                .unwrap()
                .1
                .into_owned()
        }
    };
    b.run(json!({"op": "new_context"}));
    let page = b.goto(&format!("{callback}?code=abc&state={state}"));
    assert_eq!(page["status"], 400, "foreign state: {page}");
    assert!(!b.cookie_names().iter().any(|n| n == "__Host-portcullis"));

    // A callback URL used once cannot be used again, not even by the same browser.
    b.run(json!({"op": "new_context"}));
    s.login(&mut b, "/", "dave");
    let used = b
        .navigations()
        .into_iter()
        .find(|u| u.starts_with(&callback))
        .expect("the browser went through the callback");
    let tokens_before = token_requests(&s).await;
    b.run(json!({"op": "new_context"}));
    let page = b.goto(&used);
    assert_eq!(page["status"], 400, "replayed: {page}");
    assert!(!b.cookie_names().iter().any(|n| n == "__Host-portcullis"));
    assert_eq!(
        token_requests(&s).await,
        tokens_before,
        "a bad callback makes no token request"
    );

    // Duplicated parameters.
    let page = b.goto(&format!("{callback}?state=a&state=b&code=c"));
    assert_eq!(page["status"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_session_survives_a_restart_of_portcullis() {
    let mut s = Stack::start().await;
    let mut b = Browser::start();
    s.login(&mut b, "/dashboard", "erin");
    assert!(s.portcullis.stop().success());
    s.portcullis = Portcullis::start(&s.config).await;
    let page = b.goto(&s.url("/dashboard?again=1"));
    assert_eq!(
        page["url"],
        s.url("/dashboard?again=1"),
        "no new login: {page}"
    );
    assert_eq!(
        deep_link_request(&s, "/dashboard").all("x-auth-request-email"),
        ["erin@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn redirects_never_leave_the_site() {
    let s = Stack::start().await;
    let http = http_client();
    for target in [
        "//evil.example",
        "/\\evil.example",
        "/%09/evil.example",
        "https:evil.example",
        "javascript:alert(1)",
    ] {
        // As a deep link: the provider or a refusal, never the target.
        let r = http
            .get(s.url(&format!("/{}", target.trim_start_matches('/'))))
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        if let Some(location) = r.headers().get("location") {
            let location = location.to_str().unwrap();
            assert!(location.starts_with(&s.op.issuer), "{target}: {location}");
        }
        // As a logout target: logout goes to the provider and asks it to come back here.
        let r = http
            .get(s.url(&format!(
                "/logout?returnTo={target}&post_logout_redirect_uri={target}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            location.as_str().starts_with(&s.op.issuer),
            "{target}: {location}"
        );
        let back = location
            .query_pairs()
            .find(|(k, _)| k == "post_logout_redirect_uri")
            .unwrap()
            .1;
        assert_eq!(back, format!("{}/", s.envoy.url), "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn short_tokens_are_refreshed_once_even_under_parallel_requests() {
    let s = Stack::start_with(Some(5), Store::Cookie).await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "frank");
    let first = deep_link_request(&s, "/start").all("authorization");
    // Past half of the 5 s lifetime (refresh_before is capped at half), before expiry.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let burst = b.run(json!({"op": "fetch_many", "url": s.url("/api/tables"), "count": 20}));
    assert_eq!(burst["statuses"], json!(vec![200; 20]), "{burst}");
    assert_eq!(
        metric(&s, "portcullis_refreshes_total{result=\"ok\"}").await,
        1,
        "one refresh for 20 requests"
    );
    if !fast_path() {
        let renewed = deep_link_request(&s, "/api/tables").all("authorization");
        assert_ne!(renewed, first, "the upstream got the new access token");
    }
    // Well past the first token's expiry the user is still working, without a new login.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let page = b.goto(&s.url("/later"));
    assert_eq!(page["url"], s.url("/later"), "{page}");
    assert_eq!(
        deep_link_request(&s, "/later").all("x-auth-request-email"),
        ["frank@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn an_unreachable_idp_keeps_the_session_until_the_token_expires() {
    let mut s = Stack::start_with(Some(5), Store::Cookie).await;
    let mut b = Browser::start();
    s.login(&mut b, "/", "ivan");
    s.op.proc.terminate(std::time::Duration::from_secs(5));
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        b.fetch(&s.url("/api/tables"))["status"],
        200,
        "refresh failed, token still valid"
    );
    assert!(metric(&s, "portcullis_refreshes_total{result=\"failed\"}").await >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        b.fetch(&s.url("/api/tables"))["status"],
        401,
        "expired and not refreshable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_refused_refresh_token_ends_the_session() {
    let mut s = Stack::start_with(Some(5), Store::Cookie).await;
    let mut b = Browser::start();
    s.login(&mut b, "/", "judy");
    // The OP keeps grants in memory: restarted, it no longer knows the refresh token.
    s.op.proc.terminate(std::time::Duration::from_secs(5));
    s.op = Op::start(s.op_options.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        b.fetch(&s.url("/api/tables"))["status"],
        401,
        "invalid_grant ends the session"
    );
    assert_eq!(
        metric(&s, "portcullis_refreshes_total{result=\"ended\"}").await,
        1
    );
    let log = s.portcullis.proc.stderr();
    assert!(
        log.lines().any(|l| l.contains(" audit ")
            && l.contains("refresh_refused")
            && l.contains("judy@example.com")
            && l.contains("session_ended")),
        "one audit line: {log}"
    );
    let page = b.goto(&s.url("/again"));
    assert!(
        page["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "a new login: {page}"
    );
}

/// With a server-side store, logout revokes the session: the old cookie value, replayed, is refused.
async fn logout_revokes(store: Store) -> Stack {
    let s = Stack::start_with(None, store).await;
    let mut b = Browser::start();
    s.login(&mut b, "/", "grace");
    let cookies = b.run(json!({"op": "cookies"}));
    let session = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis")
        .expect("a session cookie")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = || async {
        http_client()
            .get(s.url("/api/tables"))
            .header("cookie", format!("__Host-portcullis={session}"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        replay().await,
        200,
        "the copied cookie works while the session lives"
    );
    b.goto(&s.url("/logout"));
    assert_eq!(replay().await, 401, "{store:?}: replayed after logout");
    let page = b.goto(&s.url("/"));
    assert!(
        page["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "login again: {page}"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn memory_store_logout_revokes_the_session() {
    logout_revokes(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy, Redis and the OpenID provider: run scripts/test"]
async fn redis_store_survives_a_restart_and_logout_revokes_the_session() {
    let mut s = Stack::start_with(None, Store::Redis).await;
    let mut b = Browser::start();
    s.login(&mut b, "/before", "heidi");
    let cookie_len = b.run(json!({"op": "cookies"}))["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis")
        .map(|c| c["value"].as_str().unwrap().len())
        .unwrap();
    assert!(
        cookie_len < 200,
        "the cookie holds only a sealed session id ({cookie_len} bytes)"
    );
    assert!(s.portcullis.stop().success());
    s.portcullis = Portcullis::start(&s.config).await;
    let page = b.goto(&s.url("/after"));
    assert_eq!(
        page["url"],
        s.url("/after"),
        "still logged in after a restart: {page}"
    );
    assert_eq!(
        deep_link_request(&s, "/after").all("x-auth-request-email"),
        ["heidi@example.com"]
    );
    drop(b);
    logout_revokes(Store::Redis).await;
}

async fn metric(s: &Stack, series: &str) -> u64 {
    s.portcullis.metric(series).await
}

async fn token_requests(s: &Stack) -> u64 {
    token_requests_of(&s.portcullis.metrics().await)
}

fn token_requests_of(m: &str) -> u64 {
    m.lines()
        .filter(|l| {
            l.starts_with("portcullis_idp_request_duration_seconds_count{endpoint=\"token\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The last request the upstream saw under `prefix` (the browser also asks for /favicon.ico).
fn deep_link_request(s: &Stack, prefix: &str) -> Seen {
    s.upstream.last_under(prefix)
}

/// Parallel copies of one callback (a double submit, a prefetch, a retry): exactly one exchanges
/// the code and signs in; the others are refused without asking the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn parallel_copies_of_a_callback_exchange_the_code_once() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    let http = http_client();
    for round in 0..5 {
        b.run(json!({"op": "new_context"}));
        b.goto(&s.url(&format!("/round-{round}")));
        let (callback, cookie) = b.login_held("ivan", &s.url("/authorization-code/callback"));
        let before = token_requests(&s).await;
        let copies = (0..10).map(|_| {
            http.get(&callback)
                .header("cookie", &cookie)
                .header("sec-fetch-mode", "navigate")
                .send()
        });
        let answers = futures::future::join_all(copies).await;
        let mut statuses: Vec<u16> = answers
            .iter()
            .map(|r| r.as_ref().unwrap().status().as_u16())
            .collect();
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [[302].as_slice(), &[400; 9]].concat(),
            "round {round}"
        );
        let signed_in = answers
            .iter()
            .map(|r| r.as_ref().unwrap())
            .find(|r| r.status() == 302)
            .unwrap();
        assert_eq!(
            signed_in.headers()["location"],
            format!("/round-{round}").as_str()
        );
        assert_eq!(
            token_requests(&s).await,
            before + 1,
            "round {round}: one token request for ten copies"
        );
    }
    assert_eq!(
        metric(
            &s,
            "portcullis_logins_total{stage=\"completed\",reason=\"login_complete\"}"
        )
        .await,
        5
    );
}

/// A user in hundreds of groups: the ID token is larger than any bearer token may be, the session
/// takes many cookies, and it still signs in; a session too large for cookies ends the login on a
/// page that says so, never in a redirect loop; a server-side store keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn users_in_many_groups_sign_in_or_are_told_why_not() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    s.login(&mut b, "/team", "groups-200");
    let groups = deep_link_request(&s, "/team").all("x-auth-request-groups");
    assert_eq!(groups[0].split(',').count(), 200);
    let chunks = b
        .cookie_names()
        .iter()
        .filter(|n| n.starts_with("__Host-portcullis-"))
        .count();
    assert!(chunks >= 8, "the session took {chunks} chunk cookies");
    let again = b.goto(&s.url("/team/again"));
    assert_eq!(again["url"], s.url("/team/again"), "read back: {again}");

    b.run(json!({"op": "new_context"}));
    let at_idp = b.goto(&s.url("/team"));
    assert!(at_idp["url"].as_str().unwrap().starts_with(&s.op.issuer));
    let page = b.login("groups-600", &s.url("/authorization-code/callback"));
    assert!(
        page["text"].as_str().unwrap().contains("too large"),
        "the sign-in-failed page names the reason: {page}"
    );
    assert!(!b.cookie_names().iter().any(|n| n == "__Host-portcullis"));
    assert_eq!(
        metric(
            &s,
            "portcullis_logins_total{stage=\"failed\",reason=\"session_too_large\"}"
        )
        .await,
        1
    );
    drop(s);

    let s = Stack::start_with(None, Store::Redis).await;
    b.run(json!({"op": "new_context"}));
    s.login(&mut b, "/team", "groups-600");
    let groups = deep_link_request(&s, "/team").all("x-auth-request-groups");
    assert_eq!(groups[0].split(',').count(), 600);
}

/// A provider that does not say how long its access tokens live: the JWT's own `exp` decides when
/// to refresh, so the upstream never gets an expired token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_token_response_without_expires_in_still_refreshes() {
    let op = OpOptions {
        access_token_ttl: Some(6),
        omit_expires_in: true,
        ..OpOptions::auth0()
    };
    let s = Stack::start_op(op, Store::Cookie).await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "judy");
    let first = deep_link_request(&s, "/start").all("authorization");
    tokio::time::sleep(std::time::Duration::from_millis(4000)).await;
    let page = b.goto(&s.url("/later"));
    assert_eq!(page["url"], s.url("/later"), "{page}");
    assert_eq!(
        metric(&s, "portcullis_refreshes_total{result=\"ok\"}").await,
        1
    );
    if !fast_path() {
        assert_ne!(deep_link_request(&s, "/later").all("authorization"), first);
    }
}

/// The provider rotates refresh tokens and revokes the grant when one is used twice (Auth0's
/// rotation, oidc-provider's reuse detection). Two replicas share Redis (beside the cookie store):
/// after the access token runs short, 20 parallel requests land on both, one refresh reaches the
/// provider, the other replica takes its tokens, and the user stays signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy, Redis and the OpenID provider: run scripts/test"]
async fn replicas_sharing_redis_refresh_a_rotating_token_once() {
    let op = OpOptions {
        access_token_ttl: Some(8),
        rotate_refresh_tokens: true,
        ..OpOptions::auth0()
    };
    let s = Stack::start_replicated(op, Store::CookieSharedInRedis, 2, "").await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "karl");
    let token_requests_at_login = all_token_requests(&s).await;
    // Past half of the 8 s lifetime (refresh_before is capped at half), before expiry.
    tokio::time::sleep(std::time::Duration::from_millis(5000)).await;
    let burst = b.run(json!({"op": "fetch_many", "url": s.url("/api/tables"), "count": 20}));
    assert_eq!(burst["statuses"], json!(vec![200; 20]), "{burst}");
    assert_eq!(
        all_token_requests(&s).await - token_requests_at_login,
        1,
        "the provider saw one refresh for 20 requests on two replicas"
    );
    for replica in std::iter::once(&s.portcullis).chain(&s.replicas) {
        let m = replica.metrics().await;
        assert!(
            !m.contains("result=\"ended\"") && !m.contains("result=\"failed\""),
            "{m}"
        );
    }
    // Long after the first token expired, the user is still signed in, on both replicas.
    tokio::time::sleep(std::time::Duration::from_millis(4000)).await;
    for path in ["/later", "/later-again"] {
        let page = b.goto(&s.url(path));
        assert_eq!(page["url"], s.url(path), "{page}");
    }
}

/// While Redis is down, session requests fail at once (503, never a timeout each) and are counted;
/// when it is back, sessions are read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy, Redis and the OpenID provider: run scripts/test"]
async fn a_redis_that_is_down_is_not_asked_until_it_answers_again() {
    let mut s = Stack::start_with(None, Store::Redis).await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "leo");
    let mut redis = s.redis.take().unwrap();
    redis.stop();
    // On the fast path the pass lets the browser through without portcullis (pass.lifetime is the
    // bound, as the README says): without it, every request asks portcullis.
    b.run(json!({"op": "clear_cookie", "name": "__Host-portcullis-pass"}));
    let burst = b.run(json!({"op": "fetch_many", "url": s.url("/api/tables"), "count": 10}));
    assert_eq!(burst["statuses"], json!(vec![503; 10]), "{burst}");
    let short_circuited = metric(
        &s,
        "portcullis_redis_requests_total{result=\"short_circuit\"}",
    )
    .await;
    assert!(
        short_circuited >= 9,
        "one request finds Redis down, the others are not sent: {short_circuited}"
    );
    // Back (empty: its sessions are gone): the session is revoked, not unreadable.
    s.redis = Some(Redis::start_on(redis.port).await);
    let mut status = 0;
    for _ in 0..50 {
        status = b.fetch(&s.url("/api/tables"))["status"].as_u64().unwrap();
        if status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, 401, "Redis answers again");
}

/// Token endpoint calls of every replica.
async fn all_token_requests(s: &Stack) -> u64 {
    let mut total = 0;
    for replica in std::iter::once(&s.portcullis).chain(&s.replicas) {
        total += token_requests_of(&replica.metrics().await);
    }
    total
}

/// With `pass.enabled`, a signed-in browser gets a pass beside its session: Envoy's own `jwt_authn`
/// accepts it with the keys portcullis publishes on its admin port and copies the identity into the
/// headers; a changed pass is refused; the upstream never sees the cookie; logout clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_pass_from_a_login_is_verified_by_envoys_jwt_authn() {
    let s = Stack::start_replicated(
        OpOptions::auth0(),
        Store::Cookie,
        1,
        "pass: {enabled: true, lifetime: 2m}\n",
    )
    .await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "mona");
    let cookies = b.run(json!({"op": "cookies"}));
    let pass = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis-pass")
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .expect("a pass beside the session");
    assert!(
        !deep_link_request(&s, "/start")
            .all("cookie")
            .iter()
            .any(|c| c.contains("portcullis")),
        "the upstream never sees portcullis's cookies"
    );
    let jwks: Value = http_client()
        .get(format!("{}/.well-known/jwks.json", s.portcullis.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    // Envoy's own JWT filter with portcullis's published keys, in front of the same upstream.
    let admin_port: u16 = s
        .portcullis
        .admin
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (listener, envoy_admin) = (free_port(), free_port());
    let envoy = Envoy::start(&format!(
        r#"
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {envoy_admin}}}}}}}
static_resources:
  listeners:
  - name: pass
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: pass
          route_config:
            virtual_hosts:
            - {{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: upstream}}}}]}}
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                pass:
                  issuer: https://portcullis.invalid/
                  audiences: [portcullis]
                  from_cookies: [__Host-portcullis-pass]
                  remote_jwks:
                    http_uri: {{uri: "http://127.0.0.1:{admin_port}/.well-known/jwks.json", cluster: portcullis_admin, timeout: 2s}}
                  claim_to_headers:
                  - {{header_name: x-auth-request-user, claim_name: user}}
                  - {{header_name: x-auth-request-email, claim_name: email}}
                  - {{header_name: x-auth-request-groups, claim_name: groups}}
              rules: [{{match: {{prefix: "/"}}, requires: {{provider_name: pass}}}}]
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: upstream
    load_assignment: {{cluster_name: upstream, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]}}
  - name: portcullis_admin
    load_assignment: {{cluster_name: portcullis_admin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}}}]}}]}}
"#,
        upstream = s.upstream.port,
    ))
    .await;
    let http = http_client();
    let with_pass = |pass: String| {
        http.get(format!("http://127.0.0.1:{listener}/fast"))
            .header("cookie", format!("__Host-portcullis-pass={pass}"))
            .send()
    };
    let r = with_pass(pass.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = deep_link_request(&s, "/fast");
    assert_eq!(seen.all("x-auth-request-user"), ["mona@example.com"]);
    assert_eq!(seen.all("x-auth-request-email"), ["mona@example.com"]);
    let (head, _) = pass.rsplit_once('.').unwrap();
    let r = with_pass(format!("{head}.AAAA")).await.unwrap();
    assert_eq!(r.status(), 401, "a pass with another signature is refused");
    drop(envoy);

    b.goto(&s.url("/logout"));
    assert!(
        !b.cookie_names()
            .iter()
            .any(|n| n == "__Host-portcullis-pass"),
        "logout clears the pass"
    );
}

/// With the fast path's bootstrap, a signed-in browser's requests are let through by Envoy alone
/// (portcullis is not asked) with the identity portcullis would give; with envoy/envoy.yaml each is
/// a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn signed_in_requests_ask_portcullis_only_without_the_fast_path() {
    let s = Stack::start().await;
    let mut b = Browser::start();
    s.login(&mut b, "/start", "nina");
    let before = all_checks(&s).await;
    for i in 0..5 {
        let r = b.fetch(&s.url(&format!("/api/tables/{i}")));
        assert_eq!(r["status"], 200, "{r}");
        let seen = deep_link_request(&s, &format!("/api/tables/{i}"));
        assert_eq!(seen.all("x-auth-request-user"), ["nina@example.com"]);
        assert!(
            !seen.all("cookie").iter().any(|c| c.contains("portcullis")),
            "portcullis's cookies never reach the upstream"
        );
    }
    let asked = all_checks(&s).await - before;
    if fast_path() {
        assert_eq!(asked, 0, "Envoy let the signed-in requests through alone");
        s.envoy
            .wait_for_log(&let_through_alone("nina@example.com"))
            .await;
    } else {
        assert_eq!(asked, 5, "every request is a check");
    }
}

/// Every check portcullis answered.
async fn all_checks(s: &Stack) -> u64 {
    s.portcullis
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("portcullis_checks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
