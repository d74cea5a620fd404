//! The checks of one token, as pure functions: shape, one decoding of header and claims, the
//! signature, then the claims.
//!
//! Each part is base64-decoded and parsed once; the signature is checked with the key parsed when
//! the key set was loaded (token::keys). jsonwebtoken's `decode` would parse the claims twice and
//! rebuild the RSA key per call, which cost half as much again as the signature itself.

use std::borrow::Cow;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::jwks::KeyMiss;
use super::keys::VerifyKey;

/// Where a token came from, which bounds its length before any decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `Authorization: Bearer`, from anyone, on every request: Auth0 access tokens are 1-3 KiB.
    Bearer,
    /// The token endpoint's answer to portcullis itself, over TLS, at login or refresh. An ID token
    /// with a few hundred group ids (an Auth0 Action, Entra ID, Keycloak roles) is 10-40 KiB.
    TokenEndpoint,
}

impl Origin {
    pub const fn max_len(self) -> usize {
        match self {
            Self::Bearer => 8 * 1024,
            Self::TokenEndpoint => 64 * 1024,
        }
    }
}

/// Why a bearer token was refused. Bounded: a metric label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    UnknownIssuer,
    UnknownKey,
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    /// `exp - iat` beyond `provider.max_token_lifetime`.
    LifetimeTooLong,
    InvalidClaims,
    /// An opaque token the provider does not honour.
    Inactive,
    /// An opaque token not asked about: the issuer's `opaque_rate` is spent.
    CheckRateLimited,
    /// An opaque token whose provider gave no answer.
    CheckUnavailable,
}

impl TokenRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed => "token_malformed",
            Self::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::UnknownIssuer => "token_unknown_issuer",
            Self::UnknownKey => "token_unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "token_wrong_audience",
            Self::LifetimeTooLong => "token_lifetime_too_long",
            Self::InvalidClaims => "token_invalid_claims",
            Self::Inactive => "token_inactive",
            Self::CheckRateLimited => "token_check_rate_limited",
            Self::CheckUnavailable => "token_check_unavailable",
        }
    }
}

impl From<KeyMiss> for TokenRejection {
    fn from(miss: KeyMiss) -> Self {
        match miss {
            KeyMiss::Unknown => Self::UnknownKey,
            KeyMiss::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
            KeyMiss::Unavailable => Self::KeysUnavailable,
        }
    }
}

/// The three parts of a compact JWS: non-empty base64url, within the origin's length.
fn split(token: &str, origin: Origin) -> Result<[&str; 3], TokenRejection> {
    if token.len() > origin.max_len() {
        return Err(TokenRejection::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    if ![header, payload, signature].iter().all(|p| is_base64url(p)) {
        return Err(TokenRejection::Malformed);
    }
    Ok([header, payload, signature])
}

/// Whether the token has a compact JWS's three parts; anything else may be an opaque token.
pub fn is_jws_shaped(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Written as a fold over every byte, without early exit, so that it compiles to vector code.
fn is_base64url(part: &str) -> bool {
    !part.is_empty()
        && part.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_'))
        })
}

fn b64(part: &str) -> Result<Vec<u8>, TokenRejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenRejection::Malformed)
}

/// A token decoded once, signature not yet checked. `iss` (a string) and `exp` are known already:
/// to pick the issuer's keys, and to refuse an expired token without looking up (and maybe
/// fetching) any key.
pub struct Decoded<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub exp: u64,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Shape, header and claims. `alg: none` and unknown algorithms are malformed; HMAC is refused
/// here, before any key is looked at; a `crit` header names extensions portcullis does not
/// implement (RFC 7515 4.1.11), so it is refused too.
pub fn decode(token: &str, origin: Origin) -> Result<Decoded<'_>, TokenRejection> {
    #[derive(Deserialize)]
    struct RawHeader<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
        kid: Option<String>,
        crit: Option<IgnoredAny>,
    }
    let [header, payload, signature] = split(token, origin)?;
    let header_json = b64(header)?;
    let h: RawHeader<'_> =
        serde_json::from_slice(&header_json).map_err(|_| TokenRejection::Malformed)?;
    if h.crit.is_some() {
        return Err(TokenRejection::Malformed);
    }
    let alg: Algorithm = h.alg.parse().map_err(|_| TokenRejection::Malformed)?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(TokenRejection::AlgorithmNotAllowed);
    }
    let claims = match serde_json::from_slice::<ClaimSet>(&b64(payload)?) {
        Ok(ClaimSet::Unique(claims)) => claims,
        Ok(ClaimSet::Duplicated) => return Err(TokenRejection::InvalidClaims),
        Err(_) => return Err(TokenRejection::Malformed),
    };
    if !matches!(claims.get("iss"), Some(Value::String(_))) {
        return Err(TokenRejection::InvalidClaims);
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(TokenRejection::InvalidClaims)?;
    Ok(Decoded {
        alg,
        kid: h.kid,
        exp,
        claims,
        signing_input: &token[..header.len() + 1 + payload.len()],
        signature: b64(signature)?,
    })
}

impl Decoded<'_> {
    /// The payload's claims, for a token checked before (nothing here verifies it).
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// The claims, once the signature holds with `key`; none of them is checked here.
    pub fn verified_claims(self, key: &VerifyKey) -> Result<Map<String, Value>, TokenRejection> {
        if !key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
            return Err(TokenRejection::BadSignature);
        }
        Ok(self.claims)
    }

    pub fn iss(&self) -> &str {
        self.claims.get("iss").and_then(Value::as_str).unwrap_or("")
    }

    /// Past `exp` by more than the leeway.
    pub fn is_expired(&self, now: u64, leeway: u64) -> bool {
        self.exp.saturating_add(leeway) < now
    }
}

/// The claims object, refused when a name appears twice: RFC 7519 4 lets a parser take the last,
/// but two parsers that disagree about which `sub` counts is how confusion attacks start.
enum ClaimSet {
    Unique(Map<String, Value>),
    Duplicated,
}

impl<'de> Deserialize<'de> for ClaimSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Claims;
        impl<'de> Visitor<'de> for Claims {
            type Value = ClaimSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimSet, A::Error> {
                let mut claims = Map::new();
                let mut duplicated = false;
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    let value: Value = map.next_value()?;
                    duplicated |= claims.insert(name.into_owned(), value).is_some();
                }
                Ok(if duplicated {
                    ClaimSet::Duplicated
                } else {
                    ClaimSet::Unique(claims)
                })
            }
        }
        d.deserialize_map(Claims)
    }
}

/// A NumericDate (RFC 7519 2) as access tokens carry them (RFC 9068): a whole, non-negative
/// number of seconds. Fractions (`1.5`), exponents (`1e300`, which would never expire), strings
/// and negatives are not dates.
pub fn numeric_date(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The verified claims portcullis needs by name; everything else stays in `rest`.
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub rest: Map<String, Value>,
}

/// A token's claims less those [`Claims`] holds in fields of their own: what `rest` is.
pub fn rest_of(mut claims: Map<String, Value>) -> Map<String, Value> {
    for name in ["sub", "exp", "iat"] {
        claims.remove(name);
    }
    claims
}

/// How strict the time claims are read, in seconds: the clock skew allowed on `exp`, `nbf` and
/// `iat` (`provider.leeway`), and the longest life a token may claim (`provider.max_token_lifetime`).
#[derive(Debug, Clone, Copy)]
pub struct TimeRules {
    pub leeway: u64,
    pub max_lifetime: u64,
}

/// What a token must say of itself to be accepted, beyond `iss` and `exp`, which the caller checks
/// before looking up a key.
pub struct Expected<'a> {
    pub audiences: &'a [String],
    pub now: u64,
    pub rules: TimeRules,
}

/// The signature with `key`, then the claims: `nbf` with leeway, `aud` naming one of ours, `sub` a
/// non-empty string, `iat` present (RFC 9068 2.2, OIDC Core 2) and not in the future, and a life
/// (`exp - iat`) within the maximum. Wrongly typed claims are refused, never read as absent.
pub fn verify(
    token: Decoded<'_>,
    key: &VerifyKey,
    expected: &Expected<'_>,
) -> Result<Claims, TokenRejection> {
    if !key.verify(token.alg, token.signing_input.as_bytes(), &token.signature) {
        return Err(TokenRejection::BadSignature);
    }
    let Expected {
        audiences,
        now,
        rules: TimeRules {
            leeway,
            max_lifetime,
        },
    } = *expected;
    let mut rest = token.claims;
    let date = |name: &str| match rest.get(name) {
        None => Ok(None),
        Some(v) => numeric_date(v)
            .map(Some)
            .ok_or(TokenRejection::InvalidClaims),
    };
    let (nbf, iat) = (date("nbf")?, date("iat")?);
    let iat = iat.ok_or(TokenRejection::InvalidClaims)?;
    if [nbf, Some(iat)]
        .iter()
        .flatten()
        .any(|t| *t > now.saturating_add(leeway))
    {
        return Err(TokenRejection::NotYetValid);
    }
    if token.exp.saturating_sub(iat) > max_lifetime {
        return Err(TokenRejection::LifetimeTooLong);
    }
    let ours = |v: &Value| match v {
        Value::String(a) => Ok(audiences.contains(a)),
        _ => Err(TokenRejection::InvalidClaims),
    };
    let audience_ok = match rest.get("aud") {
        // Every entry is checked for its type, not only up to the first match.
        Some(Value::Array(auds)) => auds
            .iter()
            .try_fold(false, |found, a| Ok::<_, TokenRejection>(ours(a)? | found))?,
        Some(aud) => ours(aud)?,
        None => return Err(TokenRejection::InvalidClaims),
    };
    if !audience_ok {
        return Err(TokenRejection::WrongAudience);
    }
    let sub = match rest.remove("sub") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(TokenRejection::InvalidClaims),
    };
    Ok(Claims {
        sub,
        exp: token.exp,
        iat,
        rest: rest_of(rest),
    })
}
