//! The callout form of the native fast path's filter (`envoy-module/src/callout.rs`) on any request
//! and any answer: `MODE` byte (the route's `fast`: ask, bearer, pass or through), then
//! `REQUEST\n\nANSWER\n\nBODY`, headers one `name: value` a line. The filter never panics; no
//! client-sent identity header reaches portcullis or survives; an allow sets exactly what the answer
//! said; a refusal is the answer's own or a bare 403; and the same request is let through again
//! without asking only after an allow that named it reusable, with the same identity headers and
//! none of portcullis's cookies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_envoy::callout::{
    Answer, Answered, DECISION_HEADER, Next, PlainRouted, REUSE_HEADER, Settings, on_answer,
    on_request_headers,
};

const NOW: u64 = 1_000;
const IDENTITY: [&str; 2] = ["x-auth-request-user", "x-auth-request-email"];

fn settings() -> Settings {
    let json = serde_json::json!({
        "session": "portcullis",
        "pass_cookie": "portcullis-pass",
        "cluster": "portcullis_http",
        "timeout_ms": 1000,
        "upstream_headers": IDENTITY,
        "user_header": IDENTITY[0],
        "cache_entries": 4,
    });
    Settings::from_json(json.to_string().as_bytes()).expect("the target's settings")
}

fn headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect()
}

/// The one value of `name`, as the filter reads an answer.
fn one<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    let mut found = headers.iter().filter(|(n, _)| n == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

fn ours(r: &PlainRouted) -> bool {
    r.plain.get("cookie").iter().any(|h| {
        h.split([';', ',']).any(|part| {
            part.split_once('=').is_some_and(|(n, _)| {
                let n = n.trim();
                n == "portcullis" || n.starts_with("portcullis-")
            })
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fast = ["ask", "bearer", "pass", "through"][usize::from(mode % 4)];
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, "\n\n");
    let request = headers(parts.next().unwrap_or_default());
    let answer = headers(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default().as_bytes().to_vec();
    let pairs: Vec<(&str, &str)> = request
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let s = settings();

    let mut r = PlainRouted::new(Some(fast), &pairs);
    let before = r.plain.headers.clone();
    let next = on_request_headers(&s, &mut r, NOW);
    if fast == "through" {
        assert_eq!(next, Next::Continue);
        assert_eq!(r.plain.headers, before, "through: untouched");
        return;
    }
    let Next::Ask(asked) = next else {
        panic!("let through with nothing remembered: {before:?}");
    };
    for h in IDENTITY {
        assert!(r.plain.get(h).is_empty(), "{h} kept");
        assert!(
            !asked.iter().any(|(k, _)| k == h.as_bytes()),
            "{h} asked with"
        );
    }

    let answered = on_answer(
        &s,
        &mut r,
        Some(Answer {
            headers: &answer,
            body,
        }),
        NOW,
    );
    let status = one(&answer, ":status");
    let decision = one(&answer, DECISION_HEADER).and_then(|d| d.split_once(' '));
    let allowed = matches!(answered, Answered::Allow(_));
    match &answered {
        Answered::Allow(_) => {
            assert_eq!(status, Some("200"));
            assert_eq!(decision.map(|d| d.0), Some("allow"));
            for h in IDENTITY {
                let set: Vec<&str> = r.plain.get(h);
                match one(&answer, h) {
                    Some(v) => assert_eq!(set, [v], "{h}"),
                    None => assert!(set.is_empty(), "{h} set without the answer"),
                }
            }
        }
        Answered::Respond {
            status: 403,
            headers,
            body,
        } if headers.is_empty() && body.is_empty() => {}
        Answered::Respond { status: code, .. } => {
            assert_eq!(status.and_then(|s| s.parse().ok()), Some(*code));
            assert!(matches!(decision.map(|d| d.0), Some("deny" | "redirect")));
        }
    }

    // The same request again: let through only as the answer allowed.
    let mut again = PlainRouted::new(Some(fast), &pairs);
    if on_request_headers(&s, &mut again, NOW) == Next::Continue {
        assert!(allowed, "let through after a refusal");
        let reuse = one(&answer, REUSE_HEADER).and_then(|v| v.split_once(' '));
        assert!(
            reuse.is_some_and(
                |(held, until)| held == fast && until.parse::<u64>().is_ok_and(|u| u > NOW)
            ),
            "let through without a reuse for {fast}: {answer:?}"
        );
        for h in IDENTITY {
            assert_eq!(again.plain.get(h), r.plain.get(h), "{h} as first set");
        }
        assert!(
            !ours(&again),
            "{:?}: portcullis's cookies left",
            again.plain.get("cookie")
        );
    }
});
