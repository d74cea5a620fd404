//! Micro benchmarks of the decision core (issue: performance). Run: `cargo bench --bench core`.
//! Each group puts portcullis's work beside a baseline measured in the same run, so the ratio is
//! what to read: cold bearer validation against the raw RS256 signature check of the same crypto
//! library, a cached check, sealing and opening a session cookie, and a whole decision.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::authz::policy::{PathMatch, Requirements, Route};
use portcullis::authz::{Action, Authorizer, AuthzRequest, IdentityHeaders, Policy, RouteName};
use portcullis::metrics::Metrics;
use portcullis::oidc::IdpClient;
use portcullis::secret::Secret;
use portcullis::session::{Codec, Purpose};
use portcullis::token::keys::KeySet;
use portcullis::token::{IdentityClaims, Issuer, JwksCache, TokenCache, Verifier};

const ISS: &str = "https://tenant.example.com/";
const AUD: &str = "https://amundsen/api";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn token(jti: usize) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"iss": ISS, "aud": [AUD, format!("{ISS}userinfo")], "sub": "auth0|123",
        "iat": now, "exp": now + 3600, "email": "alice@example.com", "email_verified": true,
        "groups": ["ops"], "jti": jti});
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs256-a".into());
    jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(fixture("rs256-a.pem").as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A verifier with the fixture key installed; `cache_entries` 0 means every check is cold.
fn verifier(cache_entries: u64) -> Verifier {
    let metrics = Arc::new(Metrics::new());
    let keys = JwksCache::fixed(
        "http://127.0.0.1:9/jwks".parse().unwrap(),
        IdpClient::new(metrics.clone()),
        metrics.clone(),
        Duration::from_secs(3600),
    );
    keys.install(
        KeySet::from_json(
            format!(r#"{{"keys": [{}]}}"#, fixture("rs256-a.pub.jwk.json")).as_bytes(),
        )
        .unwrap(),
    );
    Verifier::new(
        vec![Issuer::new(
            ISS,
            &[AUD.to_owned()],
            Arc::new(keys),
            Duration::from_secs(30),
        )],
        IdentityClaims {
            user_id_claim: "email".into(),
            groups_claim: "groups".into(),
        },
        Duration::from_secs(30),
        TokenCache::new(cache_entries, Duration::from_secs(300)),
        metrics,
    )
}

fn bearer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokens: Vec<String> = (0..512).map(token).collect();

    // Baseline: aws-lc-rs verifying the same RS256 signature from the JWK's n and e.
    let jwk: serde_json::Value = serde_json::from_str(&fixture("rs256-a.pub.jwk.json")).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let (message, signature) = tokens[0].rsplit_once('.').unwrap();
    let signature = b64.decode(signature).unwrap();

    let mut g = c.benchmark_group("bearer");
    g.bench_function("raw RS256 verify (aws-lc-rs)", |b| {
        b.iter(|| {
            public
                .verify(
                    &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                    message.as_bytes(),
                    &signature,
                )
                .unwrap()
        })
    });
    let cold = verifier(0);
    let mut i = 0;
    g.bench_function("cold validation (no token cache)", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            rt.block_on(cold.verify(&tokens[i])).unwrap()
        })
    });
    let warm = verifier(10_000);
    rt.block_on(warm.verify(&tokens[0])).unwrap();
    g.bench_function("cached validation", |b| {
        b.iter(|| rt.block_on(warm.verify(&tokens[0])).unwrap())
    });
    g.finish();

    // The whole pure decision for a cached bearer on an api route, headers and all.
    let authorizer = Authorizer::new(
        Policy::new(vec![Route {
            name: RouteName::new("api"),
            host: None,
            path: PathMatch::Prefix("/".into()),
            methods: None,
            action: Action::Api,
            require: Requirements::default(),
        }]),
        Arc::new(warm),
        IdentityHeaders::new(
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-groups",
        ),
    );
    let mut req = AuthzRequest {
        method: "GET".into(),
        authority: "amundsen.example.com".into(),
        scheme: "https".into(),
        path: "/api/metadata/v0/table/gold.core.users?index=0".into(),
        ..Default::default()
    };
    req.headers
        .insert("authorization".into(), format!("Bearer {}", tokens[0]));
    req.headers
        .insert("accept".into(), "application/json".into());
    c.bench_function("decision/cached bearer", |b| {
        b.iter(|| rt.block_on(authorizer.check(&req)))
    });
}

fn session_cookie(c: &mut Criterion) {
    let codec = Codec::new(&[Secret::new(portcullis::secret::generate_base64(32))]);
    // About what a session with an Auth0 ID token, access token and refresh token weighs.
    let plain = vec![b'x'; 2600];
    let sealed = codec.seal(Purpose::Session, &plain);
    let mut g = c.benchmark_group("session cookie");
    g.bench_function("seal 2.6 KB", |b| {
        b.iter(|| codec.seal(Purpose::Session, &plain))
    });
    g.bench_function("open 2.6 KB", |b| {
        b.iter(|| codec.open(Purpose::Session, &sealed).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bearer, session_cookie);
criterion_main!(benches);
