//! The login callback's query through the whole core (`Authorizer::check` of a core built by
//! `Core::build`): never panics, never allows, and every answer is a safe one (no control
//! character in a header, a retry target on this site).
//!
//! The input is `QUERY` or `QUERY\nRETURN_TO`: the second form also sends a login cookie sealed
//! with the core's key for `state=`[`STATE`] coming back to `RETURN_TO`, so the fuzzer gets past
//! the state and cookie checks (to `LoginUnavailable`: the fuzz core never discovers its provider,
//! so no code is ever exchanged).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::authz::{AuthzRequest, Decision};
use portcullis_fuzz::{block_on, check_decision, core, seal_login};

fuzz_target!(|input: &str| {
    let (query, login) = match input.split_once('\n') {
        Some((query, return_to)) => (query, Some(seal_login(return_to))),
        None => (input, None),
    };
    let mut req = AuthzRequest {
        method: "GET".into(),
        authority: "amundsen.example.com".into(),
        scheme: "https".into(),
        path: format!("/authorization-code/callback?{query}"),
        ..Default::default()
    };
    req.headers.insert("accept".into(), "text/html".into());
    if let Some(cookie) = login {
        req.headers.insert("cookie".into(), cookie);
    }
    let decision = block_on(core().authorizer.load().check(&req));
    assert!(
        !matches!(decision, Decision::Allow(_)),
        "{input:?}: {decision:?}"
    );
    check_decision(&decision);
});
