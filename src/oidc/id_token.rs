//! ID token validation at the callback (OIDC Core 3.1.3.7): signature from the provider's JWKS,
//! `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`. The openidconnect crate leaves `azp` and `iat` to its
//! callers; here nothing is left out.

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use crate::token::JwksCache;
use crate::token::validate::{self, TokenRejection};

/// The claims of a valid ID token.
pub struct IdClaims {
    pub sub: String,
    pub claims: Map<String, Value>,
}

pub async fn validate(
    id_token: &str,
    keys: &JwksCache,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
    leeway: u64,
) -> Result<IdClaims, TokenRejection> {
    validate::check_shape(id_token)?;
    let header = validate::header(id_token)?;
    let key = keys.key_for(header.kid.as_deref(), header.alg).await?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[client_id]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = leeway;
    let claims = validate::verify(id_token, &key.key, &v, now, leeway)?;
    // iat is required in ID tokens (3.1.3.7 item 10); `verify` already refused one in the future.
    if claims.iat.is_none() {
        return Err(TokenRejection::InvalidClaims);
    }
    let rest = claims.rest;
    // Item 4 and 5: with several audiences azp must be present; when present it must be us.
    let several = matches!(rest.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match rest.get("azp") {
        Some(Value::String(azp)) if azp == client_id => {}
        None if !several => {}
        _ => return Err(TokenRejection::WrongAudience),
    }
    match rest.get("nonce") {
        Some(Value::String(n)) if n == nonce => {}
        _ => return Err(TokenRejection::InvalidClaims),
    }
    Ok(IdClaims {
        sub: claims.sub,
        claims: rest,
    })
}
