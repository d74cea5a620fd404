//! Fixtures for unit tests, integration tests and benchmarks, written once (the `testing` feature,
//! which every test and bench build turns on through the dev-dependency on this crate): the keys
//! under `tests/fixtures/keys`, a JWKS of their public halves, a verifier with them installed (no
//! IdP needed), tokens signed with them, and the Check request Envoy sends.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::idp::IdpClient;
use crate::metrics::Metrics;
use crate::token::keys::KeySet;
use crate::token::{IdentityClaims, Issuer, JwksCache, TimeRules, TokenCache, Verifier, now_secs};

/// The defaults of `provider.leeway` and `provider.max_token_lifetime`.
pub const TIME_RULES: TimeRules = TimeRules {
    leeway: 30,
    max_lifetime: 24 * 3600,
};

/// The issuer and audience of [`verifier`] and [`claims`] (Auth0's shapes).
pub const ISS: &str = "https://tenant.example.com/";
pub const AUD: &str = "https://amundsen/api";

/// A file of `tests/fixtures/keys`: `<key>.pem`, `<key>.jwk.json`, `<key>.pub.jwk.json` for the
/// keys rs256-a, rs256-b and es256-a.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A JWKS document with the public halves of the named fixture keys.
pub fn jwks(keys: &[&str]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| fixture(&format!("{k}.pub.jwk.json")))
        .collect();
    format!(r#"{{"keys": [{}]}}"#, keys.join(","))
}

/// The key set of a provider publishing fixture keys rs256-a and es256-a.
pub fn key_set() -> KeySet {
    KeySet::from_json(jwks(&["rs256-a", "es256-a"]).as_bytes()).expect("fixture JWKS")
}

/// A key cache with [`key_set`] installed.
pub fn keys() -> JwksCache {
    let metrics = Arc::new(Metrics::new());
    // Port 9 on loopback refuses at once: an unknown kid's refetch fails fast and keeps the set.
    let cache = JwksCache::fixed(
        "http://127.0.0.1:9/jwks".parse().expect("a URL"),
        IdpClient::new(metrics.clone()),
        metrics,
        Duration::from_secs(3600),
    );
    cache.install(key_set());
    cache
}

/// Bearer tokens of [`ISS`] for [`AUD`], checked with [`keys`]; `cache_entries` 0 makes every
/// check cold.
pub fn verifier(cache_entries: u64) -> Verifier {
    let metrics = Arc::new(Metrics::new());
    let issuer = Issuer::new(ISS, &[AUD.to_owned()], Arc::new(keys()));
    Verifier::new(
        vec![issuer],
        IdentityClaims {
            user_id_claim: "email".into(),
            groups_claim: "groups".into(),
        },
        TIME_RULES,
        TokenCache::new(cache_entries, Duration::from_secs(300)),
        metrics,
    )
}

/// The claims of an Auth0 access token for alice that [`verifier`] accepts, valid for 5 minutes.
pub fn claims() -> Value {
    let now = now_secs();
    json!({
        "iss": ISS, "aud": [AUD, format!("{ISS}userinfo")], "sub": "auth0|123",
        "iat": now, "exp": now + 300, "email": "alice@example.com", "email_verified": true,
        "groups": ["ops"],
    })
}

/// `claims` signed with fixture key `key` as `alg` (which may be wrong for the key, on purpose),
/// with `kid` in the header.
pub fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let encoding_key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap_or_else(|e| panic!("fixture key {key}: {e}"));
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key).expect("signing with a fixture key")
}

/// `claims` signed as a provider publishing fixture key `key` would: its own algorithm, and the
/// key's name as `kid`.
pub fn mint(key: &str, claims: &Value) -> String {
    let jwk: Value = serde_json::from_str(&fixture(&format!("{key}.jwk.json")))
        .unwrap_or_else(|e| panic!("fixture key {key}: {e}"));
    let alg = match jwk["alg"].as_str() {
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        other => panic!("fixture key {key}: unexpected alg {other:?}"),
    };
    sign(key, alg, Some(key), claims)
}

/// A token signed by fixture key rs256-a, as [`keys`] expects.
pub fn rs(claims: &Value) -> String {
    mint("rs256-a", claims)
}

/// The Check request Envoy sends for `GET <path>` on `host` (HTTPS) with `headers` (lowercase
/// names: only what `allowed_headers` lets through).
pub fn check_request(
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::proto::CheckRequest {
    use crate::proto::{AttributeContext, CheckRequest, attribute_context};
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        host: host.into(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request { http: Some(http) }),
            ..Default::default()
        }),
    }
}

/// The audit events written on this thread while the guard lives, as JSON objects (the shape
/// `log.format: json` gives them). For current-thread tests: the subscriber is this thread's.
pub struct AuditLog {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl AuditLog {
    pub fn capture() -> Self {
        let lines: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("off,audit=info"))
            .json()
            .flatten_event(true)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let text = String::from_utf8(self.lines.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
