//! Browser sessions: what a logged-in browser carries, sealed into a cookie (the default store:
//! survives restarts, needs no shared state between replicas), with absolute and idle timeouts.

pub mod codec;
pub mod cookie;
pub mod error;
pub mod record;
pub mod redis;
pub mod revoked;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use codec::{Codec, Purpose};
pub use cookie::{Cookies, Jar};
pub use error::StoreError;
pub use record::Session;
pub use redis::RedisStore;
pub use revoked::{Revocations, Revoked};
pub use store::{Backend, StoreKind};

use crate::secret::KeyedHash;
use crate::token::validate;

/// Why a request carries no usable session. Bounded: a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMiss {
    None,
    Invalid,
    Expired,
    Idle,
    /// A server-side store no longer has it: logged out (or evicted).
    Revoked,
    /// The server-side store did not answer: fail closed.
    Unavailable,
}

/// The cookie store's plaintext: the session as JSON, less the principal's claims when they are
/// the ID token's own (as a login leaves them), which would put them in the cookie twice: about
/// 700 bytes of a 3.9 KB Auth0 session, and Envoy pays for every byte of a cookie on every request.
/// A refresh may bring a new ID token, kept for the logout hint only; who the user is stays what
/// the login settled, so the claims then differ from the token's and are written out.
fn cookie_plaintext(s: &Session) -> serde_json::Result<Vec<u8>> {
    let mut json = serde_json::to_value(s)?;
    if id_token_claims(&s.id_token).as_ref() == Some(&s.principal.claims)
        && let Some(principal) = json.get_mut("principal").and_then(Value::as_object_mut)
    {
        principal.remove("claims");
    }
    serde_json::to_vec(&json)
}

/// [`cookie_plaintext`] read back; `None` is an invalid session. Cookies sealed with the claims
/// written out (all of them before this, and those after a refresh) open as they are.
fn session_from_cookie(plain: &[u8]) -> Option<Session> {
    let mut json: Value = serde_json::from_slice(plain).ok()?;
    if !json.get("principal")?.as_object()?.contains_key("claims") {
        let claims = id_token_claims(json.get("id_token")?.as_str()?)?;
        json["principal"]["claims"] = Value::Object(claims);
    }
    serde_json::from_value(json).ok()
}

/// The claims a principal takes from an ID token at login (the payload less the claims held
/// apart), read without verifying: the token was verified at login and the cookie is sealed.
fn id_token_claims(id_token: &str) -> Option<Map<String, Value>> {
    Some(validate::rest_of(
        validate::decode(id_token, validate::Origin::TokenEndpoint)
            .ok()?
            .into_claims(),
    ))
}

/// The names of the turn to refresh a session's access token, and of its published result.
fn refresh_names(sid: &str, exp: u64) -> (String, String) {
    (
        format!("refresh-turn:{sid}:{exp}"),
        format!("refresh:{sid}:{exp}"),
    )
}

/// What the cookie holds when the session itself lives server-side.
#[derive(Serialize, Deserialize)]
struct Handle {
    sid: String,
}

/// Sessions: sealing, reading, timeouts, and the configured store.
#[derive(Debug)]
pub struct SessionStore {
    codec: Codec,
    cookies: Cookies,
    absolute: Duration,
    idle: Duration,
    backend: Backend,
    /// Cookie store only: sessions already opened, by a keyed hash of the sealed cookie. A browser
    /// sends the same cookie with every request, and opening it (AES-GCM over about 3-4 KB, then
    /// JSON) was most of a session check. What a cookie opens to never changes, so a cached entry
    /// is exactly what opening would give; the timeouts are still checked on every request.
    opened: moka::sync::Cache<[u8; 32], Arc<Session>>,
    hash: KeyedHash,
    /// Redis when configured (`session.redis`, whatever the store): what replicas agree on.
    shared: Option<RedisStore>,
    /// Sessions the provider ended (back-channel logout).
    revocations: Arc<Revocations>,
    /// Whose ids revocations name: the provider's issuer.
    scope: Arc<str>,
}

/// Who refreshes an access token, among the replicas sharing Redis.
pub enum RefreshTurn {
    /// Nothing is shared (no Redis): this process refreshes, once (its own single flight).
    Alone,
    /// This replica refreshes; then [`SessionStore::publish_refresh`] or
    /// [`SessionStore::release_refresh`].
    Mine,
    /// Another replica refreshed it: its session, with the new tokens.
    Done(Box<Session>),
    /// Another replica held the turn and published nothing in time.
    Lost,
}

/// How long a replica may hold the turn to refresh (the IdP client gives up after 5 s).
const REFRESH_TURN: Duration = Duration::from_secs(10);
/// How long another replica's refresh is waited for, and how often it is looked for meanwhile.
const REFRESH_WAIT: Duration = Duration::from_secs(6);
const REFRESH_POLL: Duration = Duration::from_millis(50);
/// How long a published refresh is kept for the requests still carrying the old token.
const REFRESH_KEPT: Duration = Duration::from_secs(60);

/// Opened cookie-store sessions kept at most (a session is 2-4 KB), and for how long: an active
/// browser's cookie is reissued at least every [`TOUCH_EVERY`] anyway.
const OPENED_SESSIONS: u64 = 1_000;
const OPENED_TTL: Duration = Duration::from_secs(120);

/// `seen_at` is rewritten at most this often, so an active session does not reissue its cookie (or
/// rewrite its store entry) on every request.
const TOUCH_EVERY: u64 = 60;

impl SessionStore {
    pub fn new(
        codec: Codec,
        cookies: Cookies,
        absolute: Duration,
        idle: Duration,
        backend: Backend,
    ) -> Self {
        Self {
            codec,
            cookies,
            absolute,
            idle,
            backend,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_SESSIONS)
                .time_to_live(OPENED_TTL)
                .build(),
            hash: KeyedHash::random(),
            shared: None,
            revocations: Revocations::new(absolute, None),
            scope: Arc::from(""),
        }
    }

    /// The provider (its issuer) whose sessions these are: what back-channel revocations match.
    pub fn scoped_to(mut self, issuer: &str) -> Self {
        self.scope = Arc::from(issuer.trim_end_matches('/'));
        self
    }

    /// When a session of `sub` signed in at `now` begins: `now`, or just after the provider
    /// ended the user's sessions in this same second. A user revoked by `sub` (every session
    /// begun at or before then) who signs in again at once must not be revoked with them: that
    /// would send the browser round the provider until the clock ticks.
    pub fn begins(&self, sub: &str, now: u64) -> u64 {
        match self.revocations.revoked_at(&self.scope, Revoked::Sub(sub)) {
            Some(at) if at >= now => at + 1,
            _ => now,
        }
    }

    /// Ends, from its next request, every session of this provider that `what` names.
    pub async fn revoke(&self, what: Revoked<'_>, now: u64) -> Result<(), StoreError> {
        self.revocations.revoke(&self.scope, what, now).await
    }

    /// Checks every session against `revocations` (which a reload keeps).
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = revocations;
        self
    }

    /// Shares one-time claims and refreshes with every replica using `redis`.
    pub fn shared_with(mut self, redis: RedisStore) -> Self {
        self.shared = Some(redis);
        self
    }

    pub fn cookies(&self) -> &Cookies {
        &self.cookies
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub async fn load(&self, jar: &Jar<'_>, now: u64) -> Result<Session, SessionMiss> {
        let sealed = self
            .cookies
            .read(jar, self.cookies.session_name())
            .ok_or(SessionMiss::None)?;
        let session: Session = if self.backend.is_server_side() {
            let plain = self
                .codec
                .open(Purpose::Session, &sealed)
                .map_err(|_| SessionMiss::Invalid)?;
            let handle: Handle =
                serde_json::from_slice(&plain).map_err(|_| SessionMiss::Invalid)?;
            match self.backend.get(&handle.sid).await {
                Ok(Some(s)) => s,
                Ok(None) => return Err(SessionMiss::Revoked),
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable");
                    return Err(SessionMiss::Unavailable);
                }
            }
        } else {
            self.open_cookie(&sealed)?
        };
        if now >= session.created_at.saturating_add(self.absolute.as_secs()) {
            return Err(SessionMiss::Expired);
        }
        if now >= session.seen_at.saturating_add(self.idle.as_secs()) {
            return Err(SessionMiss::Idle);
        }
        if self.revocations.ends(&self.scope, &session) {
            // Gone from a server-side store too, so that no replica opens it again.
            if let Err(e) = self.backend.delete(&session.sid).await {
                tracing::warn!(error = %e, "deleting a revoked session failed");
            }
            return Err(SessionMiss::Revoked);
        }
        Ok(session)
    }

    /// The session a cookie-store cookie holds, opened once per distinct cookie value.
    fn open_cookie(&self, sealed: &str) -> Result<Session, SessionMiss> {
        let digest = self.hash.digest(sealed.as_bytes());
        if let Some(s) = self.opened.get(&digest) {
            return Ok(Session::clone(&s));
        }
        let plain = self
            .codec
            .open(Purpose::Session, sealed)
            .map_err(|_| SessionMiss::Invalid)?;
        let session = session_from_cookie(&plain).ok_or(SessionMiss::Invalid)?;
        self.opened.insert(digest, Arc::new(session.clone()));
        Ok(session)
    }

    /// Whether the session should be stored again to record activity.
    pub fn needs_touch(&self, s: &Session, now: u64) -> bool {
        now >= s.seen_at.saturating_add(TOUCH_EVERY)
    }

    /// Stores `s` and returns the `Set-Cookie` lines for it. `present` are the cookie names the
    /// browser sent.
    pub async fn save(&self, s: &Session, present: &[&str]) -> Result<Vec<String>, StoreError> {
        let left = s
            .created_at
            .saturating_add(self.absolute.as_secs())
            .saturating_sub(s.seen_at);
        let plain = if self.backend.is_server_side() {
            let ttl = Duration::from_secs(left).min(self.idle);
            self.backend.put(s, ttl).await?;
            serde_json::to_vec(&Handle { sid: s.sid.clone() })
        } else {
            cookie_plaintext(s)
        }
        .expect("a session always serializes");
        let sealed = self.codec.seal(Purpose::Session, &plain);
        Ok(self.cookies.set(
            self.cookies.session_name(),
            &sealed,
            Duration::from_secs(left),
            present,
        )?)
    }

    /// True for the first claim of `key` within `ttl` among the replicas sharing Redis; without
    /// Redis, always true (the caller's own process decides).
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.shared {
            Some(redis) => redis.set_once(&format!("claim:{key}"), ttl).await,
            None => Ok(true),
        }
    }

    /// Whose turn it is to refresh the access token of session `sid` that expires at `exp`: a
    /// replica that finds the turn taken waits for the taker's tokens. A refresh token used twice
    /// makes a provider that rotates them (Auth0, oidc-provider) revoke the grant: the user would
    /// be signed out by two replicas refreshing at once.
    pub async fn refresh_turn(&self, sid: &str, exp: u64) -> Result<RefreshTurn, StoreError> {
        let Some(redis) = &self.shared else {
            return Ok(RefreshTurn::Alone);
        };
        let (lock, result) = refresh_names(sid, exp);
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        loop {
            // The result first: it is published before the turn expires, and read after the turn
            // is taken, so no replica refreshes a token another has refreshed.
            if let Some(sealed) = redis.get_shared(&result).await? {
                return self.open_published(&sealed).map(RefreshTurn::Done);
            }
            if redis.set_once(&lock, REFRESH_TURN).await? {
                return match redis.get_shared(&result).await? {
                    Some(sealed) => self.open_published(&sealed).map(RefreshTurn::Done),
                    None => Ok(RefreshTurn::Mine),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(RefreshTurn::Lost);
            }
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }

    /// The refreshed session, for the other replicas (sealed: it holds tokens).
    pub async fn publish_refresh(
        &self,
        sid: &str,
        exp: u64,
        s: &Session,
    ) -> Result<(), StoreError> {
        let Some(redis) = &self.shared else {
            return Ok(());
        };
        let plain = serde_json::to_vec(s).expect("a session always serializes");
        let sealed = self.codec.seal(Purpose::Session, &plain);
        redis
            .put_shared(
                &refresh_names(sid, exp).1,
                sealed.into_bytes(),
                REFRESH_KEPT,
            )
            .await
    }

    /// A refresh that brought no tokens: another replica may try.
    pub async fn release_refresh(&self, sid: &str, exp: u64) -> Result<(), StoreError> {
        match &self.shared {
            Some(redis) => redis.delete_shared(&refresh_names(sid, exp).0).await,
            None => Ok(()),
        }
    }

    fn open_published(&self, sealed: &[u8]) -> Result<Box<Session>, StoreError> {
        let sealed = std::str::from_utf8(sealed).map_err(|_| StoreError::Corrupt)?;
        let plain = self
            .codec
            .open(Purpose::Session, sealed)
            .map_err(|_| StoreError::Corrupt)?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt)
    }

    /// Logout: the session as it was (for the IdP's `id_token_hint`), deleted from a server-side
    /// store so that its cookie, even copied, is worth nothing from now on.
    pub async fn end(&self, jar: &Jar<'_>, now: u64) -> Option<Session> {
        let s = self.load(jar, now).await.ok()?;
        if let Err(e) = self.backend.delete(&s.sid).await {
            tracing::warn!(error = %e, "deleting a session at logout failed");
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Principal;
    use crate::secret::Secret;

    fn store() -> SessionStore {
        SessionStore::new(
            Codec::new(&[Secret::new(crate::secret::generate_base64(32))]),
            Cookies::new("portcullis", true),
            Duration::from_secs(3600),
            Duration::from_secs(600),
            Backend::Cookie,
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

    #[tokio::test]
    async fn a_user_revoked_this_second_who_signs_in_again_stays_in() {
        let st = store().scoped_to("https://op.example/");
        assert_eq!(st.begins("sub", 1_000), 1_000);
        st.revoke(Revoked::Sub("sub"), 1_000).await.unwrap();
        let again = st.begins("sub", 1_000);
        assert_eq!(again, 1_001, "after the revocation, not in the same second");
        let mut s = session(1_000);
        assert!(
            st.revocations.ends(&st.scope, &s),
            "the session before it ends"
        );
        s.created_at = again;
        assert!(
            !st.revocations.ends(&st.scope, &s),
            "the one after it does not"
        );
        assert_eq!(st.begins("sub", 1_005), 1_005);
        assert_eq!(st.begins("other", 1_000), 1_000);
    }

    fn jar(lines: &[String]) -> String {
        lines
            .iter()
            .map(|l| l.split(';').next().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn save(st: &SessionStore, s: &Session) -> String {
        jar(&st.save(s, &[]).await.unwrap())
    }

    #[tokio::test]
    async fn a_saved_session_loads_back() {
        let st = store();
        let cookie = save(&st, &session(1000)).await;
        let s = st.load(&Jar::parse(&cookie), 1001).await.unwrap();
        assert_eq!(s.principal.subject, "sub");
        assert_eq!(s.refresh_token.as_deref(), Some("r"));
    }

    #[tokio::test]
    async fn an_opened_cookie_is_cached_and_still_times_out() {
        let st = store();
        let cookie = save(&st, &session(1000)).await;
        let first = st.load(&Jar::parse(&cookie), 1001).await.unwrap();
        let sealed = st
            .cookies
            .read(&Jar::parse(&cookie), st.cookies.session_name())
            .unwrap();
        assert!(st.opened.contains_key(&st.hash.digest(sealed.as_bytes())));
        let again = st.load(&Jar::parse(&cookie), 1002).await.unwrap();
        assert_eq!(
            (again.sid, again.access_token),
            (first.sid, first.access_token)
        );
        // The cached session is held to the same timeouts as a freshly opened one.
        assert_eq!(
            st.load(&Jar::parse(&cookie), 1000 + 600).await.unwrap_err(),
            SessionMiss::Idle
        );
        // One byte changed in the sealed value is another cookie, and AES-GCM refuses it.
        let (name, value) = cookie.split_once('=').unwrap();
        let flip = if value.ends_with('A') { 'B' } else { 'A' };
        let tampered = format!("{name}={}{flip}", &value[..value.len() - 1]);
        assert_eq!(
            st.load(&Jar::parse(&tampered), 1001).await.unwrap_err(),
            SessionMiss::Invalid
        );
    }

    #[tokio::test]
    async fn timeouts() {
        let st = store();
        let cookie = save(&st, &session(1000)).await;
        assert_eq!(
            st.load(&Jar::parse(&cookie), 1000 + 600).await.unwrap_err(),
            SessionMiss::Idle
        );
        let mut s = session(1000);
        s.seen_at = 1000 + 3000;
        let cookie = save(&st, &s).await;
        assert_eq!(
            st.load(&Jar::parse(&cookie), 1000 + 3600)
                .await
                .unwrap_err(),
            SessionMiss::Expired
        );
    }

    #[tokio::test]
    async fn foreign_and_missing_cookies() {
        let st = store();
        assert_eq!(
            st.load(&Jar::default(), 0).await.unwrap_err(),
            SessionMiss::None
        );
        assert_eq!(
            st.load(&Jar::parse("a=b"), 0).await.unwrap_err(),
            SessionMiss::None
        );
        assert_eq!(
            st.load(&Jar::parse("__Host-portcullis=garbage"), 0)
                .await
                .unwrap_err(),
            SessionMiss::Invalid
        );
        let cookie = save(&store(), &session(1000)).await;
        assert_eq!(
            st.load(&Jar::parse(&cookie), 1001).await.unwrap_err(),
            SessionMiss::Invalid,
            "another key"
        );
    }

    #[tokio::test]
    async fn a_server_side_session_is_revoked_by_logout() {
        let st = SessionStore::new(
            Codec::new(&[Secret::new(crate::secret::generate_base64(32))]),
            Cookies::new("portcullis", true),
            Duration::from_secs(3600),
            Duration::from_secs(600),
            Backend::Memory(store::MemoryStore::new(10, Default::default())),
        );
        let now = crate::token::now_secs();
        let cookie = save(&st, &session(now)).await;
        assert!(
            cookie.len() < 200,
            "the cookie holds only a sealed id: {}",
            cookie.len()
        );
        assert_eq!(st.load(&Jar::parse(&cookie), now).await.unwrap().sid, "sid");
        assert!(st.end(&Jar::parse(&cookie), now).await.is_some());
        assert_eq!(
            st.load(&Jar::parse(&cookie), now).await.unwrap_err(),
            SessionMiss::Revoked,
            "replayed after logout"
        );
    }

    /// An unsigned JWT with `claims` (opening reads it, nothing verifies it).
    fn id_token(claims: &Value) -> String {
        use base64::Engine as _;
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","kid":"k"}"#),
            b64(claims.to_string().as_bytes()),
            b64(&[7; 256])
        )
    }

    /// A session as a login leaves it: the principal made from its ID token's claims.
    fn logged_in(now: u64) -> Session {
        let claims = serde_json::json!({"iss": "https://op/", "aud": "amundsen", "sub": "auth0|1",
            "exp": now + 600, "iat": now, "email": "a@example.com", "email_verified": true,
            "groups": ["ops"], "picture": "https://example.com/a.png", "nonce": "n"});
        let rest = validate::rest_of(claims.as_object().unwrap().clone());
        Session {
            principal: Principal::from_claims("auth0|1".into(), rest, "email", "groups"),
            id_token: id_token(&claims),
            ..session(now)
        }
    }

    fn plaintext(st: &SessionStore, cookie: &str) -> Value {
        let sealed = st
            .cookies
            .read(&Jar::parse(cookie), st.cookies.session_name())
            .unwrap();
        serde_json::from_slice(&st.codec.open(Purpose::Session, &sealed).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn claims_the_id_token_holds_are_not_sealed_twice_and_open_the_same() {
        let st = store();
        let s = logged_in(1000);
        let cookie = save(&st, &s).await;
        assert!(
            plaintext(&st, &cookie)["principal"].get("claims").is_none(),
            "the claims are read back from the ID token"
        );
        let opened = st.load(&Jar::parse(&cookie), 1001).await.unwrap();
        assert_eq!(opened.principal.claims, s.principal.claims);
        assert_eq!(opened.principal.email.as_deref(), Some("a@example.com"));
        assert_eq!(opened.id_token, s.id_token);
    }

    #[tokio::test]
    async fn after_a_new_id_token_the_login_claims_are_kept() {
        let st = store();
        let mut s = logged_in(1000);
        // A refresh brought an ID token saying something else: it is the logout hint only.
        s.id_token = id_token(&serde_json::json!({"iss": "https://op/", "sub": "auth0|1",
            "exp": 2000, "groups": ["admin"]}));
        let cookie = save(&st, &s).await;
        assert!(plaintext(&st, &cookie)["principal"].get("claims").is_some());
        let opened = st.load(&Jar::parse(&cookie), 1001).await.unwrap();
        assert_eq!(opened.principal.claims, s.principal.claims);
        assert_eq!(
            opened.principal.claims["groups"],
            serde_json::json!(["ops"])
        );
    }

    #[tokio::test]
    async fn a_cookie_sealed_with_its_claims_written_out_still_opens() {
        let st = store();
        let s = logged_in(1000);
        let sealed = st
            .codec
            .seal(Purpose::Session, &serde_json::to_vec(&s).unwrap());
        let cookie = format!("{}={sealed}", st.cookies.session_name());
        let opened = st.load(&Jar::parse(&cookie), 1001).await.unwrap();
        assert_eq!(opened.principal.claims, s.principal.claims);
    }

    #[tokio::test]
    async fn claims_left_out_with_an_unreadable_id_token_are_an_invalid_session() {
        let st = store();
        let mut json = serde_json::to_value(logged_in(1000)).unwrap();
        json["principal"].as_object_mut().unwrap().remove("claims");
        json["id_token"] = "not.a.jwt".into();
        let sealed = st
            .codec
            .seal(Purpose::Session, &serde_json::to_vec(&json).unwrap());
        let cookie = format!("{}={sealed}", st.cookies.session_name());
        assert_eq!(
            st.load(&Jar::parse(&cookie), 1001).await.unwrap_err(),
            SessionMiss::Invalid
        );
    }
}
