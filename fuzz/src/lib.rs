//! What the fuzz targets share: one tokio runtime, the service's core built from a config as
//! `portcullis serve` builds it (with the fixture keys installed in place of discovery, so no
//! provider is ever asked), a fixed session secret, and credentials minted at start-up so that the
//! committed corpora never hold a token or a cookie that expires.
//!
//! Built once per fuzzing process (`OnceLock`), never per input.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis::app::Core;
use portcullis::authz::{Decision, DenyResponse};
use portcullis::config::Config;
use portcullis::identity::Principal;
use portcullis::metrics::Metrics;
use portcullis::secret::Secret;
use portcullis::session::{Backend, Codec, Cookies, Purpose, Session, SessionStore};
use portcullis::testing::{AUD, ISS};
use portcullis::token::now_secs;
use serde_json::{Value, json};

/// base64 of the bytes 0..32: the `session.secret` of every target, so a corpus entry sealed by
/// [`seal_login`] or [`session_cookie`] opens in every run.
pub const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The session cookie's name with the config's defaults (`portcullis`, secure).
pub const SESSION_COOKIE: &str = "__Host-portcullis";

/// A `state` of the shape portcullis issues (43 base64url characters): the callback target's
/// login cookie is sealed for it.
pub const STATE: &str = "c3RhdGUtb2YtdGhlLWZ1enotY2FsbGJhY2stdGFyZ2V";

/// Written into an input where a fresh bearer token (signed by fixture key rs256-a, valid for 12
/// hours from the start of the run) is to go.
pub const TOKEN_PLACEHOLDER: &str = "@TOKEN@";
/// Written into an input where a fresh session cookie value (sealed with [`SECRET`]) is to go.
pub const SESSION_PLACEHOLDER: &str = "@SESSION@";

/// The current-thread runtime every target runs its futures on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// The service's core, built from this config by `Core::build` (as benches/core.rs does), with
/// the fixture key set installed. The provider is never discovered: logins answer
/// `LoginUnavailable` once the login cookie has been checked, and no check leaves the machine.
pub fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| {
        let yaml = format!(
            "provider:\n  issuer: '{ISS}'\n  client_id: amundsen\n  client_secret: s3cret\n  audience: '{AUD}'\n\
             session: {{secret: '{SECRET}'}}\n\
             routes:\n\
             - {{name: api, path_prefix: /api/, action: api}}\n\
             - {{name: app, path_prefix: /, action: login}}\n"
        );
        let config = Config::from_yaml(&yaml, &Default::default(), None).expect("the fuzz config");
        let core = block_on(Core::build(&config, Arc::new(Metrics::new()))).expect("the core");
        core.caches[0].install(portcullis::testing::key_set());
        core
    })
}

/// The cookie codec of [`SECRET`].
pub fn codec() -> Codec {
    Codec::new(&[Secret::new(SECRET)])
}

/// A cookie-store session store as the config above makes one (12 h absolute, 1 h idle).
pub fn session_store() -> SessionStore {
    SessionStore::new(
        codec(),
        Cookies::new("portcullis", true),
        Duration::from_secs(12 * 3600),
        Duration::from_secs(3600),
        Backend::Cookie,
    )
}

/// The claims of a bearer token the core and `portcullis::testing::verifier` accept, for 12 hours.
pub fn claims() -> Value {
    let mut claims = portcullis::testing::claims();
    claims["exp"] = json!(now_secs() + 12 * 3600);
    claims
}

/// A bearer token both verifiers accept, minted once per process.
pub fn fresh_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| portcullis::testing::rs(&claims()))
}

/// alice's session as a login leaves it, sealed into the session cookie's value, once per process.
pub fn session_cookie() -> &'static str {
    static COOKIE: OnceLock<String> = OnceLock::new();
    COOKIE.get_or_init(|| {
        let now = now_secs();
        let principal = json!({"email": "alice@example.com", "groups": ["ops"], "name": "alice"});
        let session = Session {
            sid: "fuzz-session".into(),
            principal: Principal::from_claims(
                "auth0|123".into(),
                principal.as_object().expect("an object").clone(),
                "email",
                "groups",
            ),
            id_token: portcullis::testing::rs(&claims()),
            access_token: Some(fresh_token().to_owned()),
            access_expires_at: now + 11 * 3600,
            access_issued_at: now,
            refresh_token: None,
            created_at: now,
            seen_at: now,
        };
        let plain = serde_json::to_vec(&session).expect("a session serializes");
        codec().seal(Purpose::Session, &plain)
    })
}

/// A login cookie (`Set-Cookie`-free `name=value`) for [`STATE`], as `LoginFlow::start` seals one,
/// coming back to `return_to`.
pub fn seal_login(return_to: &str) -> String {
    let tx = json!({
        "state": STATE, "nonce": "fuzz-nonce", "verifier": "fuzz-verifier",
        "return_to": return_to,
        "redirect_uri": "https://amundsen.example.com/authorization-code/callback",
        "created_at": now_secs(),
    });
    let sealed = codec().seal(Purpose::Login, tx.to_string().as_bytes());
    format!("{SESSION_COOKIE}-login-{}={sealed}", &STATE[..16])
}

/// `text` with the placeholders replaced by this run's fresh credentials.
pub fn fill(text: &str) -> String {
    text.replace(TOKEN_PLACEHOLDER, fresh_token())
        .replace(SESSION_PLACEHOLDER, session_cookie())
}

/// A header value that would let a response split or smuggle: a control character.
fn injects(value: &str) -> bool {
    value.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// How the decision is said in HTTP, when portcullis answers it itself.
pub fn response(d: &Decision) -> Option<DenyResponse> {
    match d {
        Decision::Allow(_) => None,
        Decision::Deny(x) => Some(x.response()),
        Decision::Redirect(x) => Some(x.response()),
        Decision::Page(x) => Some(x.response()),
    }
}

/// Properties every decision holds: no header portcullis writes carries a control character, and
/// every redirect or retry target that stays on this site is a safe one.
pub fn check_decision(d: &Decision) {
    if let Some(r) = response(d) {
        for (name, value) in &r.headers {
            assert!(
                !injects(value),
                "header {name} carries a control character: {value:?}"
            );
        }
    }
    let cookies = match d {
        Decision::Allow(a) => {
            for (name, value) in &a.set_headers {
                assert!(!injects(value), "upstream header {name}: {value:?}");
            }
            &a.set_cookies
        }
        Decision::Deny(x) => &x.set_cookies,
        Decision::Redirect(x) => &x.set_cookies,
        Decision::Page(x) => {
            assert_safe_return_to(&x.retry);
            &x.set_cookies
        }
    };
    for c in cookies {
        assert!(!injects(c), "Set-Cookie carries a control character: {c:?}");
    }
}

/// What `safe_return_to` promises: `/`, or a path on this site with a single reading: one leading
/// `/`, no `//` and no `\` in its path, nothing but printable ASCII.
pub fn assert_safe_return_to(r: &str) {
    assert!(r.starts_with('/'), "{r:?}");
    assert!(!r.starts_with("//"), "{r:?}");
    let path = r.split_once('?').map_or(r, |(p, _)| p);
    assert!(!path.contains("//"), "{r:?}");
    assert!(!r.contains('\\'), "{r:?}");
    assert!(r.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{r:?}");
}
