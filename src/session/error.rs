//! The session layer's one error: why a session (or a claim shared by replicas) could not be read
//! or written. Expected misses (no cookie, expired) are [`super::SessionMiss`] values, not errors.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("session store timed out")]
    Timeout,
    /// Known to be down: not asked until a background probe reaches it again.
    #[error("session store is down (not asked until a probe reaches it)")]
    Down,
    #[error("session store: {0}")]
    Redis(String),
    #[error("session data unreadable")]
    Corrupt,
    /// Too large for the cookie store: a server-side store keeps any size.
    #[error("session too large for cookies ({0}); use session.store: redis or memory")]
    TooLarge(#[from] super::cookie::TooLarge),
}
