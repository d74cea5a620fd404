//! `clean_path` and `safe_return_to` on any text: neither panics; a cleaned path cleans to itself
//! and is a prefix of the input; a return target is `/` or a safe path on this site.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::authz::path::{clean_path, is_valid_config_path, safe_return_to};

fuzz_target!(|raw: &str| {
    if let Ok(clean) = clean_path(raw) {
        assert_eq!(
            clean_path(clean),
            Ok(clean),
            "cleaning {raw:?} is not idempotent"
        );
        assert!(raw.starts_with(clean), "{raw:?} -> {clean:?}");
        assert!(!clean.contains('?'), "{raw:?} -> {clean:?}");
        assert!(
            clean.starts_with('/') && !clean.starts_with("//") && !clean.contains("//"),
            "{raw:?} -> {clean:?}"
        );
        for segment in clean.split('/') {
            assert!(segment != "." && segment != "..", "{raw:?} -> {clean:?}");
        }
    }
    let target = safe_return_to(raw);
    portcullis_fuzz::assert_safe_return_to(&target);
    assert!(target == "/" || target == raw, "{raw:?} -> {target:?}");
    // Where the browser goes back to is itself a safe target: applying it twice changes nothing.
    assert_eq!(safe_return_to(&target), target, "{raw:?}");
    if is_valid_config_path(raw) {
        assert_eq!(clean_path(raw), Ok(raw));
    }
});
