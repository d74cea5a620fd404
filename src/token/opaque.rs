//! Opaque access tokens (anything but a JWS): the provider is asked (introspection or userinfo),
//! and its answer is cached per token: a positive one until the token's `exp` and at most
//! `cache`, a negative one for [`NEGATIVE_TTL`]. One question per token at a time, and at most
//! `rate` questions a second per issuer, so a flood of made-up tokens costs the provider no more
//! than that; beyond it a token is refused without a question.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde_json::{Map, Value};

use super::cache::Digest;
use super::validate::TimeRules;
use super::validate::TokenRejection;
use crate::identity::{IdentityClaims, Principal};
use crate::idp::{Ask, ProviderMetadata, TokenInfo, TokenInfoClient};

/// How long a refusal is remembered: long enough that a replayed bad token costs no question,
/// short enough that a token the provider had not yet stored (a race at issuance) recovers.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// `bearer[].opaque_cache`, `bearer[].opaque_rate`.
#[derive(Debug, Clone, Copy)]
pub struct OpaqueLimits {
    /// A positive answer is kept at most this long (and never past the token's `exp`): how long
    /// a token the provider revoked may still be honoured.
    pub cache: Duration,
    /// Questions to the provider a second, at most (and the burst).
    pub rate: u32,
}

/// What is remembered of one answer.
#[derive(Clone)]
struct Answer {
    verdict: Result<Arc<Principal>, TokenRejection>,
    exp: Option<u64>,
    ttl: Duration,
}

struct AnswerExpiry;

impl moka::Expiry<Digest, Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &Digest, value: &Answer, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// One issuer's opaque tokens.
pub struct Opaque {
    info: TokenInfoClient,
    answers: Cache<Digest, Answer>,
    limits: OpaqueLimits,
    questions: RateLimit,
}

/// What an answer is judged against.
pub struct Judge<'a> {
    /// The issuer as discovered: what `iss` must be when the answer has one.
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub identity: &'a IdentityClaims,
    pub rules: TimeRules,
}

impl Opaque {
    pub fn new(info: TokenInfoClient, limits: OpaqueLimits, max_entries: u64) -> Self {
        Self {
            info,
            answers: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(AnswerExpiry)
                .build(),
            limits,
            questions: RateLimit::new(limits.rate),
        }
    }

    /// Whether `digest` was answered already (a metric's hit or miss).
    pub fn knows(&self, digest: &Digest) -> bool {
        self.answers.contains_key(digest)
    }

    pub async fn verify(
        &self,
        token: &str,
        digest: Digest,
        now: u64,
        provider: Option<&ProviderMetadata>,
        judge: &Judge<'_>,
    ) -> Result<Arc<Principal>, TokenRejection> {
        // Concurrent checks of one token wait for the one question; a failure to ask is not
        // remembered (the next request asks again, within the rate).
        let answer = self
            .answers
            .try_get_with(digest, async {
                let provider = provider.ok_or(TokenRejection::CheckUnavailable)?;
                if !self.questions.try_take() {
                    return Err(TokenRejection::CheckRateLimited);
                }
                let info = self.info.info(provider, token).await.map_err(|e| {
                    tracing::warn!(
                        issuer = judge.issuer,
                        endpoint = self.info.ask().kind(),
                        error = %e,
                        "cannot check an opaque token"
                    );
                    TokenRejection::CheckUnavailable
                })?;
                Ok::<_, TokenRejection>(self.remember(info, now, judge))
            })
            .await
            .map_err(|e| *e)?;
        match answer.verdict {
            Ok(_) if answer.exp.is_some_and(|exp| exp <= now) => Err(TokenRejection::Expired),
            verdict => verdict,
        }
    }

    fn remember(&self, info: TokenInfo, now: u64, judge: &Judge<'_>) -> Answer {
        let verdict = match info {
            TokenInfo::Inactive => Err(TokenRejection::Inactive),
            TokenInfo::Active(claims) => judge_claims(claims, self.info.ask(), now, judge),
        };
        match verdict {
            Ok((principal, exp)) => {
                let left = exp.map_or(self.limits.cache, |exp| {
                    Duration::from_secs(exp.saturating_sub(now))
                });
                Answer {
                    verdict: Ok(Arc::new(principal)),
                    exp,
                    ttl: left.min(self.limits.cache).max(Duration::from_secs(1)),
                }
            }
            Err(why) => Answer {
                verdict: Err(why),
                exp: None,
                ttl: NEGATIVE_TTL,
            },
        }
    }
}

/// An active answer's claims, judged as a JWT's would be: the issuer, the audience
/// (introspection; userinfo names none), the time window, and who it is. Returns the principal
/// and the token's `exp` when the answer gives one.
fn judge_claims(
    mut claims: Map<String, Value>,
    ask: &Ask,
    now: u64,
    judge: &Judge<'_>,
) -> Result<(Principal, Option<u64>), TokenRejection> {
    let leeway = judge.rules.leeway;
    if let Ask::Introspect(_) = ask {
        // A refresh token or an ID token is active too; only an access token is a credential.
        // oidc-provider, Okta and Keycloak name the type `token_type` (Keycloak also `typ`).
        let kind = claims
            .get("token_type")
            .or_else(|| claims.get("typ"))
            .and_then(Value::as_str);
        if !kind.is_some_and(|k| k.eq_ignore_ascii_case("bearer")) {
            return Err(TokenRejection::InvalidClaims);
        }
        // Sender-constrained (DPoP, mTLS): its proof is not something portcullis can check.
        if claims.contains_key("cnf") {
            return Err(TokenRejection::InvalidClaims);
        }
        if let Some(iss) = claims.get("iss")
            && iss.as_str() != Some(judge.issuer)
        {
            return Err(TokenRejection::UnknownIssuer);
        }
        let for_us = match claims.get("aud") {
            Some(Value::String(a)) => judge.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| judge.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !for_us {
            return Err(TokenRejection::WrongAudience);
        }
    }
    let number = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(TokenRejection::InvalidClaims),
    };
    let exp = number("exp")?;
    if exp.is_some_and(|exp| exp.saturating_add(leeway) <= now) {
        return Err(TokenRejection::Expired);
    }
    if number("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenRejection::NotYetValid);
    }
    // A client-credentials token names no user: the client is who asks (as its JWT's `sub`).
    let subject = ["sub", "client_id"]
        .iter()
        .find_map(|name| claims.get(*name).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .ok_or(TokenRejection::InvalidClaims)?
        .to_owned();
    // The provider asked vouches for the token: its issuer, where the answer names none
    // (userinfo never does), so that route rules and provider checks see who issued it.
    claims
        .entry("iss")
        .or_insert_with(|| Value::String(judge.issuer.to_owned()));
    let principal = Principal::from_claims(
        subject,
        claims,
        &judge.identity.user_id_claim,
        &judge.identity.groups_claim,
    );
    Ok((principal, exp))
}

/// A token bucket: `rate` a second, bursts of `rate`.
struct RateLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    fn try_take(&self) -> bool {
        let mut state = self
            .state
            .lock()
            .expect("never poisoned: no panics while held");
        let now = Instant::now();
        let (tokens, since) = *state;
        let tokens = (tokens + now.duration_since(since).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::idp::ClientCredentials;

    fn introspect() -> Ask {
        Ask::Introspect(ClientCredentials {
            client_id: "c".into(),
            client_secret: None,
            auth_method: None,
        })
    }

    fn judged(claims: Value, ask: &Ask) -> Result<(Principal, Option<u64>), TokenRejection> {
        let identity = IdentityClaims {
            user_id_claim: "email".into(),
            groups_claim: "groups".into(),
        };
        let judge = Judge {
            issuer: "https://op.example/",
            audiences: &["https://api.example".to_owned()],
            identity: &identity,
            rules: TimeRules {
                leeway: 30,
                max_lifetime: 86_400,
            },
        };
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        judge_claims(claims, ask, 1_000, &judge)
    }

    fn good() -> Value {
        json!({
            "token_type": "Bearer", "iss": "https://op.example/", "aud": "https://api.example",
            "sub": "alice", "email": "alice@example.com", "exp": 2_000, "client_id": "c",
            "groups": ["g1"]
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = good();
        v[field] = value;
        v
    }

    fn without(field: &str) -> Value {
        let mut v = good();
        v.as_object_mut().unwrap().remove(field);
        v
    }

    #[test]
    fn an_active_access_token_for_us_is_its_subject() {
        let (p, exp) = judged(good(), &introspect()).unwrap();
        assert_eq!(
            (p.subject.as_str(), p.user.as_str(), exp),
            ("alice", "alice@example.com", Some(2_000))
        );
        assert_eq!(p.groups, ["g1"]);
        let (p, _) = judged(without("sub"), &introspect()).unwrap();
        assert_eq!(p.subject, "c", "a client-credentials token is its client");
        let listed = with("aud", json!(["other", "https://api.example"]));
        assert!(judged(listed, &introspect()).is_ok());
    }

    #[test]
    fn introspection_answers_that_are_not_ours_are_refused() {
        let i = introspect();
        use TokenRejection::*;
        for (claims, why) in [
            (with("aud", json!("https://other.example")), WrongAudience),
            (without("aud"), WrongAudience),
            (with("iss", json!("https://evil.example/")), UnknownIssuer),
            (without("token_type"), InvalidClaims),
            (with("token_type", json!("refresh_token")), InvalidClaims),
            (with("cnf", json!({"jkt": "x"})), InvalidClaims),
            (with("exp", json!(900)), Expired),
            (with("exp", json!("2000")), InvalidClaims),
            (with("nbf", json!(1_100)), NotYetValid),
        ] {
            assert_eq!(judged(claims.clone(), &i).err(), Some(why), "{claims}");
        }
        let nobody = json!({"token_type": "Bearer", "aud": "https://api.example"});
        assert_eq!(judged(nobody, &i).err(), Some(InvalidClaims));
        assert!(judged(with("exp", json!(980)), &i).is_ok(), "within leeway");
    }

    #[test]
    fn userinfo_names_no_audience_or_type() {
        let answer = json!({"sub": "bob", "email": "bob@example.com", "email_verified": true});
        let (p, exp) = judged(answer, &Ask::Userinfo).unwrap();
        assert_eq!((p.user.as_str(), exp), ("bob@example.com", None));
        assert_eq!(p.claims["iss"], "https://op.example/", "the provider asked");
        assert_eq!(
            judged(json!({"email": "x@example.com"}), &Ask::Userinfo).err(),
            Some(TokenRejection::InvalidClaims)
        );
    }

    #[test]
    fn the_bucket_allows_its_burst_then_refuses() {
        let limit = RateLimit::new(3);
        let taken = (0..10).filter(|_| limit.try_take()).count();
        // A slow machine may refill one between the calls, never seven.
        assert!((3..=4).contains(&taken), "{taken}");
    }
}
