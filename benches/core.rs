//! Micro benchmarks of the decision core (issue: performance). Run: `cargo bench --bench core`.
//! Each group puts portcullis's work beside a baseline measured in the same run, so the ratio is
//! what to read: cold bearer validation against the raw RS256 signature check of the same crypto
//! library, the cache key's hash against SHA-256, sealing and opening a session cookie, and whole
//! decisions (cached bearer, cookie session) against the cost of polling a ready future, and a
//! decision with an upstream assertion against the same decision without one.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::app::Core;
use portcullis::authz::{AuthzRequest, Decision};
use portcullis::config::{Config, EnvoyMetadata};
use portcullis::grpc::AuthorizationService;
use portcullis::metrics::Metrics;
use portcullis::proto::{Authorization, CheckRequest, CheckResponse};
use portcullis::secret::Secret;
use portcullis::session::{Codec, Purpose};
use portcullis::testing::{AUD, ISS, fixture, key_set, mint, verifier};
use portcullis::token::TokenCache;
use prost::Message as _;

/// An Auth0-shaped access token (about 900 bytes) signed with fixture key rs256-a.
fn token(jti: usize) -> String {
    let now = support::now();
    mint(
        "rs256-a",
        &serde_json::json!({"iss": ISS, "aud": [AUD, format!("{ISS}userinfo")], "sub": "auth0|123",
            "iat": now, "exp": now + 3600, "email": "alice@example.com", "email_verified": true,
            "groups": ["ops"], "scope": "openid profile email read:metadata", "azp": "amundsen",
            "jti": jti}),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bearer(c: &mut Criterion) {
    let rt = runtime();
    let tokens: Vec<String> = (0..512).map(token).collect();

    // Baselines: aws-lc-rs verifying the same RS256 signature, with the key parsed once (what
    // token::keys does when a key set loads) and rebuilt from the JWK's n and e on every call
    // (what jsonwebtoken's DecodingKey does).
    let jwk: serde_json::Value = serde_json::from_str(&fixture("rs256-a.pub.jwk.json")).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let components = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let alg = &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
    let parsed = components.to_parsed_public_key(alg).unwrap();
    let (message, signature) = tokens[0].rsplit_once('.').unwrap();
    let signature = b64.decode(signature).unwrap();

    let mut g = c.benchmark_group("bearer");
    g.bench_function("raw RS256 verify, key parsed once (aws-lc-rs)", |b| {
        b.iter(|| parsed.verify_sig(message.as_bytes(), &signature).unwrap())
    });
    g.bench_function("raw RS256 verify, key rebuilt per call (aws-lc-rs)", |b| {
        b.iter(|| {
            components
                .verify(alg, message.as_bytes(), &signature)
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

    // The token cache's key: what a cached check hashes, against SHA-256 of the same bytes.
    let cache = TokenCache::new(1, Duration::from_secs(1));
    let t = tokens[0].as_bytes();
    let mut g = c.benchmark_group(format!("cache key of a {} byte token", t.len()));
    g.bench_function("SHA-256 (aws-lc-rs)", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t))
    });
    g.bench_function("keyed BLAKE3 (portcullis)", |b| {
        b.iter(|| cache.digest(&tokens[0]))
    });
    g.finish();
}

/// The service's own core, built from a config as `portcullis serve` builds it, with the fixture
/// key installed in place of discovery (no provider is asked during a decision).
fn core(rt: &tokio::runtime::Runtime, secret: &str) -> Core {
    core_with(rt, secret, "")
}

/// [`core`] with more top-level config keys (`extra`, YAML lines).
fn core_with(rt: &tokio::runtime::Runtime, secret: &str, extra: &str) -> Core {
    let yaml = format!(
        "provider:\n  issuer: '{ISS}'\n  client_id: amundsen\n  client_secret: s3cret\n  audience: '{AUD}'\n\
         session: {{secret: '{secret}'}}\n{extra}\
         routes:\n\
         - {{name: api, path_prefix: /api/, action: api}}\n\
         - {{name: app, path_prefix: /, action: login}}\n"
    );
    let config = Config::from_yaml(&yaml, &Default::default(), None).unwrap();
    let core = rt
        .block_on(Core::build(&config, Arc::new(Metrics::new())))
        .unwrap();
    core.caches[0].install(key_set());
    core
}

fn decision(c: &mut Criterion) {
    let rt = runtime();
    let secret = support::session_secret();
    let core = core(&rt, &secret);
    let token = token(0);
    let request = |path: &str, header: (&str, String)| {
        let mut req = AuthzRequest {
            method: "GET".into(),
            authority: "amundsen.example.com".into(),
            scheme: "https".into(),
            path: path.into(),
            ..Default::default()
        };
        for (name, value) in [
            header,
            ("accept", "application/json".into()),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)".into()),
            (
                "x-request-id",
                "0f8c3e52-61a4-4b8e-9a55-3c2d1f0e9b77".into(),
            ),
        ] {
            req.headers.insert(name.into(), value);
        }
        req
    };
    let bearer = request(
        "/api/metadata/v0/table/gold.core.users?index=0",
        ("authorization", format!("Bearer {token}")),
    );
    // A cookie whose last activity is over a minute old is reissued on every check, and a
    // criterion group runs longer than that: each group gets one sealed just before it.
    let session_request = || {
        let cookie = rt.block_on(common::fresh_session_cookie(ISS, &secret, &token));
        request(
            "/table_detail/gold/hive/core/users",
            ("cookie", format!("_ga=GA1.2.3; {cookie}; theme=dark")),
        )
    };
    let session = session_request();
    let authorizer = core.authorizer.load_full();
    let _context = rt.enter();
    for (what, req) in [("bearer", &bearer), ("session", &session)] {
        let d = futures::executor::block_on(authorizer.check(req));
        assert!(matches!(d, Decision::Allow(_)), "{what}: {d:?}");
    }
    let mut g = c.benchmark_group("decision");
    g.bench_function("floor: polling a ready future", |b| {
        b.iter(|| futures::executor::block_on(async { std::hint::black_box(1) }))
    });
    g.bench_function("cached bearer", |b| {
        b.iter(|| futures::executor::block_on(authorizer.check(&bearer)))
    });
    g.bench_function("cookie session", |b| {
        b.iter(|| futures::executor::block_on(authorizer.check(&session)))
    });
    g.finish();

    // One Check as the gRPC service sees it: the request decoded from its wire bytes, the
    // service's answer (decision, metrics, log, conversion) encoded back. Beside it the no-op
    // authorizer doing the same decode and encode around an answer it does not think about.
    let service = AuthorizationService::new(
        core.authorizer.clone(),
        core.metrics.clone(),
        EnvoyMetadata::Identity,
    );
    let wire = |req: &AuthzRequest| {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        support::check_request(&req.authority, &req.path, &headers).encode_to_vec()
    };
    let round_trip = |server: &dyn Authorization, bytes: &[u8]| {
        let req = CheckRequest::decode(bytes).unwrap();
        let resp: CheckResponse =
            futures::executor::block_on(server.check(tonic::Request::new(req)))
                .unwrap()
                .into_inner();
        resp.encode_to_vec()
    };
    let mut g = c.benchmark_group("grpc check (decode, answer, encode)");
    let bearer_wire = wire(&bearer);
    let session_wire = wire(&session_request());
    g.bench_function("no-op authorizer", |b| {
        b.iter(|| round_trip(&common::Noop::default(), &bearer_wire))
    });
    g.bench_function("portcullis, cached bearer", |b| {
        b.iter(|| round_trip(&service, &bearer_wire))
    });
    g.bench_function("portcullis, cookie session", |b| {
        b.iter(|| round_trip(&service, &session_wire))
    });
    g.finish();
}

/// `upstream.assertion`: a cached bearer decision with and without it, and what signing one
/// costs (what every request would pay without the cache of one assertion per caller and route).
fn assertion(c: &mut Criterion) {
    let rt = runtime();
    let secret = support::session_secret();
    let plain = core(&rt, &secret);
    let asserting = core_with(
        &rt,
        &secret,
        "upstream: {assertion: {audience: amundsen}}\n",
    );
    let mut req = AuthzRequest {
        method: "GET".into(),
        authority: "amundsen.example.com".into(),
        scheme: "https".into(),
        path: "/api/metadata/v0/table/gold.core.users".into(),
        ..Default::default()
    };
    req.headers
        .insert("authorization".into(), format!("Bearer {}", token(0)));
    let (plain, asserting) = (
        plain.authorizer.load_full(),
        asserting.authorizer.load_full(),
    );
    let _context = rt.enter();
    let d = futures::executor::block_on(asserting.check(&req));
    let Decision::Allow(a) = d else {
        panic!("{d:?}")
    };
    assert!(
        a.set_headers
            .iter()
            .any(|(n, _)| &**n == "x-portcullis-assertion")
    );
    let keys = portcullis::token::pass::PassKeys::derive(&[Secret::new(secret.clone())]);
    let claims = serde_json::json!({"iss": "https://portcullis.invalid/", "aud": "amundsen",
        "sub": "auth0|123", "user": "alice@example.com", "email": "alice@example.com",
        "email_verified": true, "groups": ["ops"], "route": "api", "iat": 1, "exp": 61});
    let mut g = c.benchmark_group("upstream assertion");
    g.bench_function("cached bearer, no assertion", |b| {
        b.iter(|| futures::executor::block_on(plain.check(&req)))
    });
    g.bench_function("cached bearer, with its assertion", |b| {
        b.iter(|| futures::executor::block_on(asserting.check(&req)))
    });
    g.bench_function("signing one assertion (EdDSA, what the cache saves)", |b| {
        b.iter(|| keys.sign(&claims).unwrap())
    });
    g.finish();
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

criterion_group!(benches, bearer, decision, assertion, session_cookie);
criterion_main!(benches);
