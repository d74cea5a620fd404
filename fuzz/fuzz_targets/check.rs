//! A whole Check from any protobuf bytes: `CheckRequest` decoded with prost, answered by the gRPC
//! service over the core of `portcullis_fuzz::core` (never panics), and the answer encodes.
//!
//! `@TOKEN@` and `@SESSION@` in a header value become this run's fresh bearer token and session
//! cookie, so the committed corpus reaches allowed requests without holding a credential that
//! expires. Nothing else can be allowed: no route of the fuzz config is public, so an OK answer
//! without one of the placeholders would be a forged credential.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::EnvoyMetadata;
use portcullis::grpc::AuthorizationService;
use portcullis::proto::{Authorization, CheckRequest, check_response};
use portcullis_fuzz::{SESSION_PLACEHOLDER, TOKEN_PLACEHOLDER, block_on, core, fill};
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = CheckRequest::decode(data) else {
        return;
    };
    let mut credential = false;
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        for value in http.headers.values_mut() {
            if value.contains(TOKEN_PLACEHOLDER) || value.contains(SESSION_PLACEHOLDER) {
                credential = true;
                *value = fill(value);
            }
        }
    }
    let core = core();
    let service = AuthorizationService::new(
        core.authorizer.clone(),
        core.metrics.clone(),
        EnvoyMetadata::Identity,
    );
    let resp = block_on(service.check(tonic::Request::new(req)))
        .expect("the service answers every check")
        .into_inner();
    if let Some(check_response::HttpResponse::OkResponse(_)) = &resp.http_response {
        assert!(credential, "allowed without a credential: {resp:?}");
    }
    let _ = resp.encode_to_vec();
});
