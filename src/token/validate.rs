//! The checks of one token, as pure functions: shape, header, unverified peek, verification.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::KeyMiss;

/// Longer tokens are refused before any decoding. Auth0 access tokens are 1-3 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

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
    InvalidClaims,
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
            Self::InvalidClaims => "token_invalid_claims",
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

/// Three non-empty base64url parts and nothing else, within [`MAX_TOKEN_LEN`].
pub fn check_shape(token: &str) -> Result<(), TokenRejection> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenRejection::TooLarge);
    }
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TokenRejection::Malformed);
        }
    }
    if parts != 3 {
        return Err(TokenRejection::Malformed);
    }
    Ok(())
}

pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// The header, unverified. `alg: none` and unknown algorithms fail to parse; HMAC is refused here,
/// before any key is looked at.
pub fn header(token: &str) -> Result<Header, TokenRejection> {
    let h = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
    if h.alg.family() == AlgorithmFamily::Hmac {
        return Err(TokenRejection::AlgorithmNotAllowed);
    }
    Ok(Header {
        alg: h.alg,
        kid: h.kid,
    })
}

/// `iss` and `exp` read before verification: to pick the issuer's keys, and to refuse an expired
/// token without looking up (and maybe fetching) any key. Both are verified again after the signature.
pub struct Peek {
    pub iss: String,
    pub exp: u64,
}

pub fn peek(token: &str) -> Result<Peek, TokenRejection> {
    #[derive(Deserialize)]
    struct Raw {
        iss: Option<Value>,
        exp: Option<Value>,
    }
    let raw: Raw = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| TokenRejection::Malformed)?;
    let iss = match raw.iss {
        Some(Value::String(s)) => s,
        _ => return Err(TokenRejection::InvalidClaims),
    };
    let exp = match raw.exp.as_ref().and_then(numeric_date) {
        Some(exp) => exp,
        None => return Err(TokenRejection::InvalidClaims),
    };
    Ok(Peek { iss, exp })
}

/// A NumericDate (RFC 7519 2): a JSON number, possibly fractional. Strings, negatives and
/// non-finite values are not dates.
fn numeric_date(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// The verified claims portcullis needs by name; everything else stays in `rest`.
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: Option<u64>,
    pub rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    #[serde(deserialize_with = "date")]
    exp: u64,
    #[serde(default, deserialize_with = "optional_date")]
    iat: Option<u64>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn date<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    numeric_date(&v).ok_or_else(|| serde::de::Error::custom("not a NumericDate"))
}

fn optional_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    date(d).map(Some)
}

/// Signature, then `exp`, `nbf`, `aud`, `iss` presence (jsonwebtoken, which refuses wrongly typed
/// claims since 10.3), then what it leaves to us: `sub` a string and `iat` not in the future.
pub fn verify(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    now: u64,
    leeway: u64,
) -> Result<Claims, TokenRejection> {
    let data =
        jsonwebtoken::decode::<RawClaims>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenRejection::BadSignature,
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
            ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::UnsupportedAlgorithm => TokenRejection::AlgorithmNotAllowed,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::Json(_) => TokenRejection::InvalidClaims,
            _ => TokenRejection::Malformed,
        })?;
    let RawClaims {
        sub,
        exp,
        iat,
        rest,
    } = data.claims;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenRejection::NotYetValid);
    }
    if sub.is_empty() {
        return Err(TokenRejection::InvalidClaims);
    }
    Ok(Claims {
        sub,
        exp,
        iat,
        rest,
    })
}
