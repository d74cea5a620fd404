//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0, 2.4 and 2.6): signed by
//! the provider's keys, `iss` the provider, `aud` naming this client, a recent `iat`, an unexpired
//! `exp`, a `jti`, the back-channel logout event, a `sid` or a `sub`, and no `nonce` (so that an
//! ID token can never pass for one). Whether its `jti` was seen before is the caller's to check.

use serde_json::Value;

use super::jwks::JwksCache;
use super::validate::{self, Origin, TimeRules, TokenRejection, numeric_date};

/// The member of `events` that makes a JWT a logout token.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token issued longer ago than this (plus leeway) is refused: the provider sends it at
/// once, and the window bounds how long its `jti` must be remembered.
pub const MAX_AGE: u64 = 300;
/// How long a logout token's `jti` must be remembered: as long as the token could be accepted at
/// all (its age, the clock skew either way at the largest `provider.leeway`, 60 s, and a margin).
pub const REPLAY_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(MAX_AGE + 2 * 60 + 60);

/// What a valid logout token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    pub jti: String,
    /// The provider's session: every sign-in through it ends.
    pub sid: Option<String>,
    /// The user: every session begun before ends.
    pub sub: Option<String>,
}

/// Why a logout token was refused. Bounded: a metric label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutRejection {
    /// Signature, issuer, audience, dates, shape: as for any token.
    Token(TokenRejection),
    /// No back-channel logout event, or a `nonce`: some other JWT.
    NotALogoutToken,
    /// Issued more than [`MAX_AGE`] ago.
    TooOld,
    MissingJti,
    /// Neither `sid` nor `sub` (or one of them not a string).
    NoSubject,
}

impl LogoutRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token(t) => t.as_str(),
            Self::NotALogoutToken => "not_a_logout_token",
            Self::TooOld => "logout_token_too_old",
            Self::MissingJti => "logout_token_without_jti",
            Self::NoSubject => "logout_token_without_sid_or_sub",
        }
    }
}

impl From<TokenRejection> for LogoutRejection {
    fn from(t: TokenRejection) -> Self {
        Self::Token(t)
    }
}

pub async fn validate(
    token: &str,
    keys: &JwksCache,
    issuer: &str,
    client_id: &str,
    now: u64,
    rules: TimeRules,
) -> Result<LogoutClaims, LogoutRejection> {
    let decoded = validate::decode(token, Origin::Bearer)?;
    if decoded.iss() != issuer {
        return Err(TokenRejection::UnknownIssuer.into());
    }
    if decoded.is_expired(now, rules.leeway) {
        return Err(TokenRejection::Expired.into());
    }
    let key = keys
        .key_for(decoded.kid.as_deref(), decoded.alg)
        .await
        .map_err(TokenRejection::from)?;
    let mut claims = decoded.verified_claims(&key)?;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenRejection::WrongAudience.into());
    }
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(TokenRejection::InvalidClaims)?;
    if iat > now.saturating_add(rules.leeway) {
        return Err(TokenRejection::NotYetValid.into());
    }
    if iat.saturating_add(MAX_AGE + rules.leeway) < now {
        return Err(LogoutRejection::TooOld);
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(EVENT));
    if !matches!(event, Some(Value::Object(_))) || claims.contains_key("nonce") {
        return Err(LogoutRejection::NotALogoutToken);
    }
    let jti = match claims.remove("jti") {
        Some(Value::String(j)) if !j.is_empty() => j,
        _ => return Err(LogoutRejection::MissingJti),
    };
    let mut id = |name: &str| match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(LogoutRejection::NoSubject),
    };
    let (sid, sub) = (id("sid")?, id("sub")?);
    if sid.is_none() && sub.is_none() {
        return Err(LogoutRejection::NoSubject);
    }
    Ok(LogoutClaims { jti, sid, sub })
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::testing::{ISS, TIME_RULES, keys, mint, rs};
    use crate::token::now_secs;

    const CLIENT: &str = "amundsen";

    fn claims() -> Value {
        let now = now_secs();
        json!({"iss": ISS, "aud": CLIENT, "iat": now, "exp": now + 120, "jti": "j-1",
               "sid": "op-session", "sub": "auth0|1", "events": {EVENT: {}}})
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        rs(&c)
    }

    async fn check(token: &str) -> Result<LogoutClaims, LogoutRejection> {
        validate(token, &keys(), ISS, CLIENT, now_secs(), TIME_RULES).await
    }

    #[tokio::test]
    async fn a_logout_token_names_the_session_and_the_user() {
        let c = check(&rs(&claims())).await.unwrap();
        assert_eq!(c.jti, "j-1");
        assert_eq!(c.sid.as_deref(), Some("op-session"));
        assert_eq!(c.sub.as_deref(), Some("auth0|1"));
        let only_sid = check(&with(|c| {
            c.remove("sub");
        }))
        .await
        .unwrap();
        assert_eq!(
            (only_sid.sid.as_deref(), only_sid.sub),
            (Some("op-session"), None)
        );
    }

    #[tokio::test]
    async fn everything_else_is_refused_with_its_reason() {
        let now = now_secs();
        let cases: Vec<(&str, String, LogoutRejection)> = vec![
            (
                "another key",
                mint("rs256-b", &claims()),
                LogoutRejection::Token(TokenRejection::UnknownKey),
            ),
            (
                "another issuer",
                with(|c| {
                    c.insert("iss".into(), json!("https://evil.example/"));
                }),
                LogoutRejection::Token(TokenRejection::UnknownIssuer),
            ),
            (
                "another audience",
                with(|c| {
                    c.insert("aud".into(), json!("other-client"));
                }),
                LogoutRejection::Token(TokenRejection::WrongAudience),
            ),
            (
                "no audience",
                with(|c| {
                    c.remove("aud");
                }),
                LogoutRejection::Token(TokenRejection::WrongAudience),
            ),
            (
                "expired",
                with(|c| {
                    c.insert("exp".into(), json!(now - 600));
                }),
                LogoutRejection::Token(TokenRejection::Expired),
            ),
            (
                "no exp",
                with(|c| {
                    c.remove("exp");
                }),
                LogoutRejection::Token(TokenRejection::InvalidClaims),
            ),
            (
                "no iat",
                with(|c| {
                    c.remove("iat");
                }),
                LogoutRejection::Token(TokenRejection::InvalidClaims),
            ),
            (
                "from the future",
                with(|c| {
                    c.insert("iat".into(), json!(now + 600));
                }),
                LogoutRejection::Token(TokenRejection::NotYetValid),
            ),
            (
                "old",
                with(|c| {
                    c.insert("iat".into(), json!(now - 3600));
                }),
                LogoutRejection::TooOld,
            ),
            (
                "no event",
                with(|c| {
                    c.remove("events");
                }),
                LogoutRejection::NotALogoutToken,
            ),
            (
                "another event",
                with(|c| {
                    c.insert("events".into(), json!({"urn:other": {}}));
                }),
                LogoutRejection::NotALogoutToken,
            ),
            (
                "event not an object",
                with(|c| {
                    c.insert("events".into(), json!({EVENT: true}));
                }),
                LogoutRejection::NotALogoutToken,
            ),
            (
                "an ID token's nonce",
                with(|c| {
                    c.insert("nonce".into(), json!("n"));
                }),
                LogoutRejection::NotALogoutToken,
            ),
            (
                "no jti",
                with(|c| {
                    c.remove("jti");
                }),
                LogoutRejection::MissingJti,
            ),
            (
                "neither sid nor sub",
                with(|c| {
                    c.remove("sid");
                    c.remove("sub");
                }),
                LogoutRejection::NoSubject,
            ),
            (
                "sid not a string",
                with(|c| {
                    c.insert("sid".into(), json!(7));
                }),
                LogoutRejection::NoSubject,
            ),
            (
                "not a JWT",
                "logout".into(),
                LogoutRejection::Token(TokenRejection::Malformed),
            ),
        ];
        for (what, token, why) in cases {
            assert_eq!(check(&token).await.err(), Some(why), "{what}");
        }
    }
}
