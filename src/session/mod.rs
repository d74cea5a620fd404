//! Browser sessions: what a logged-in browser carries, sealed into a cookie (the default store:
//! survives restarts, needs no shared state between replicas), with absolute and idle timeouts.

pub mod codec;
pub mod cookie;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use codec::{Codec, Purpose};
pub use cookie::Cookies;

use crate::authz::Principal;

/// One logged-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Random, per login: names the session for single-flight refreshes.
    pub sid: String,
    pub principal: Principal,
    pub id_token: String,
    pub access_token: Option<String>,
    /// Unix seconds; 0 when unknown.
    pub access_expires_at: u64,
    /// When the current access token was obtained (its lifetime bounds how early it is refreshed).
    pub access_issued_at: u64,
    pub refresh_token: Option<String>,
    pub created_at: u64,
    pub seen_at: u64,
}

/// Why a request carries no usable session. Bounded: a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMiss {
    None,
    Invalid,
    Expired,
    Idle,
}

/// Sessions in cookies: sealing, reading, timeouts.
#[derive(Debug)]
pub struct SessionStore {
    codec: Codec,
    cookies: Cookies,
    absolute: Duration,
    idle: Duration,
}

/// `seen_at` is rewritten at most this often, so an active session does not reissue its cookie on
/// every request.
const TOUCH_EVERY: u64 = 60;

impl SessionStore {
    pub fn new(codec: Codec, cookies: Cookies, absolute: Duration, idle: Duration) -> Self {
        Self {
            codec,
            cookies,
            absolute,
            idle,
        }
    }

    pub fn cookies(&self) -> &Cookies {
        &self.cookies
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn load(&self, cookie_header: Option<&str>, now: u64) -> Result<Session, SessionMiss> {
        let header = cookie_header.ok_or(SessionMiss::None)?;
        let sealed = self
            .cookies
            .read(header, self.cookies.session_name())
            .ok_or(SessionMiss::None)?;
        let plain = self
            .codec
            .open(Purpose::Session, &sealed)
            .map_err(|_| SessionMiss::Invalid)?;
        let session: Session = serde_json::from_slice(&plain).map_err(|_| SessionMiss::Invalid)?;
        if now >= session.created_at.saturating_add(self.absolute.as_secs()) {
            return Err(SessionMiss::Expired);
        }
        if now >= session.seen_at.saturating_add(self.idle.as_secs()) {
            return Err(SessionMiss::Idle);
        }
        Ok(session)
    }

    /// Whether the cookie should be reissued to record activity.
    pub fn needs_touch(&self, s: &Session, now: u64) -> bool {
        now >= s.seen_at.saturating_add(TOUCH_EVERY)
    }

    /// `Set-Cookie` lines storing `s`. `present` are the cookie names the browser sent.
    pub fn save(&self, s: &Session, present: &[&str]) -> Vec<String> {
        let json = serde_json::to_vec(s).expect("a session always serializes");
        let sealed = self.codec.seal(Purpose::Session, &json);
        let left = s
            .created_at
            .saturating_add(self.absolute.as_secs())
            .saturating_sub(s.seen_at);
        self.cookies.set(
            self.cookies.session_name(),
            &sealed,
            Duration::from_secs(left),
            present,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn store() -> SessionStore {
        SessionStore::new(
            Codec::new(&[Secret::new(crate::secret::generate_base64(32))]),
            Cookies::new("portcullis", true),
            Duration::from_secs(3600),
            Duration::from_secs(600),
        )
    }

    fn session(now: u64) -> Session {
        Session {
            sid: "sid".into(),
            principal: Principal::from_claims("sub".into(), Default::default(), "email", "groups"),
            id_token: "a.b.c".repeat(300),
            access_token: Some("d.e.f".repeat(300)),
            access_expires_at: now + 300,
            access_issued_at: now,
            refresh_token: Some("r".into()),
            created_at: now,
            seen_at: now,
        }
    }

    fn jar(lines: &[String]) -> String {
        lines
            .iter()
            .map(|l| l.split(';').next().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn a_saved_session_loads_back() {
        let st = store();
        let cookie = jar(&st.save(&session(1000), &[]));
        let s = st.load(Some(&cookie), 1001).unwrap();
        assert_eq!(s.principal.subject, "sub");
        assert_eq!(s.refresh_token.as_deref(), Some("r"));
    }

    #[test]
    fn timeouts() {
        let st = store();
        let cookie = jar(&st.save(&session(1000), &[]));
        assert_eq!(
            st.load(Some(&cookie), 1000 + 600).unwrap_err(),
            SessionMiss::Idle
        );
        let mut s = session(1000);
        s.seen_at = 1000 + 3000;
        let cookie = jar(&st.save(&s, &[]));
        assert_eq!(
            st.load(Some(&cookie), 1000 + 3600).unwrap_err(),
            SessionMiss::Expired
        );
    }

    #[test]
    fn foreign_and_missing_cookies() {
        let st = store();
        assert_eq!(st.load(None, 0).unwrap_err(), SessionMiss::None);
        assert_eq!(st.load(Some("a=b"), 0).unwrap_err(), SessionMiss::None);
        assert_eq!(
            st.load(Some("__Host-portcullis=garbage"), 0).unwrap_err(),
            SessionMiss::Invalid
        );
        let cookie = jar(&store().save(&session(1000), &[]));
        assert_eq!(
            st.load(Some(&cookie), 1001).unwrap_err(),
            SessionMiss::Invalid,
            "another key"
        );
    }
}
