//! The session record: what one logged-in browser holds, sealed into its cookie (cookie store) or
//! kept under its `sid` (memory, redis).

use serde::{Deserialize, Serialize};

use crate::identity::Principal;

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
