//! A `Cookie` header of any text: `Jar::parse`, `Cookies::read` and `Cookies::strip` never panic,
//! what is stripped for the upstream holds none of ours, and `SessionStore::load` (fixed key)
//! refuses it without panicking. The same bytes are also sealed as a session cookie's plaintext
//! with the store's own key, so the JSON behind the AES-GCM seal is fuzzed too.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::session::cookie::Stripped;
use portcullis::session::{Cookies, Jar, Purpose, SessionStore};
use portcullis::token::now_secs;
use portcullis_fuzz::{SESSION_COOKIE, block_on, fill, session_store};

fn store() -> &'static SessionStore {
    static STORE: OnceLock<SessionStore> = OnceLock::new();
    STORE.get_or_init(session_store)
}

fn cookies_of(header: &str, secure: bool) {
    let cookies = Cookies::new("portcullis", secure);
    let jar = Jar::parse(header);
    let names = jar.names();
    let ours = names.iter().any(|n| cookies.is_ours(n));
    let _ = cookies.read(&jar, cookies.session_name());
    let _ = cookies.read(&jar, &cookies.login_name("0123456789abcdef"));
    match cookies.strip(&jar) {
        Stripped::Unchanged => assert!(!ours, "{header:?}: ours left in"),
        Stripped::Empty => assert!(ours, "{header:?}: emptied without ours"),
        Stripped::Rest(rest) => {
            assert!(ours, "{header:?}: rewritten without ours");
            let left = Jar::parse(&rest);
            for n in left.names() {
                assert!(!cookies.is_ours(n), "{header:?} -> {rest:?}: {n} left in");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = now_secs();
    if let Ok(text) = std::str::from_utf8(data) {
        // `@SESSION@` in a corpus entry becomes a session sealed at start-up: loads go deep.
        let header = fill(text);
        cookies_of(&header, true);
        cookies_of(&header, false);
        let jar = Jar::parse(&header);
        let _ = block_on(store().load(&jar, now));
    }
    // The bytes as the plaintext of a well-sealed session cookie: only the JSON stands between.
    let sealed = store().codec().seal(Purpose::Session, data);
    let header = format!("{SESSION_COOKIE}={sealed}");
    let _ = block_on(store().load(&Jar::parse(&header), now));
});
