//! ID token validation at the callback (OIDC Core 3.1.3.7): signature from the provider's JWKS,
//! `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`. The openidconnect crate leaves `azp` and `iat` to its
//! callers; here nothing is left out.

use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::validate::{self, Origin, TimeRules, TokenRejection};

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
    rules: TimeRules,
) -> Result<IdClaims, TokenRejection> {
    let decoded = validate::decode(id_token, Origin::TokenEndpoint)?;
    if decoded.iss() != issuer {
        return Err(TokenRejection::InvalidClaims);
    }
    if decoded.is_expired(now, rules.leeway) {
        return Err(TokenRejection::Expired);
    }
    let key = keys.key_for(decoded.kid.as_deref(), decoded.alg).await?;
    let audiences = [client_id.to_owned()];
    let expected = validate::Expected {
        audiences: &audiences,
        now,
        rules,
    };
    // `verify` requires iat (3.1.3.7 item 10) and refuses one in the future.
    let claims = validate::verify(decoded, &key, &expected)?;
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{ISS, TIME_RULES, keys, rs};
    use crate::token::now_secs;

    const CLIENT: &str = "amundsen";

    fn claims() -> Value {
        let now = now_secs();
        json!({"iss": ISS, "aud": CLIENT, "sub": "auth0|1", "iat": now, "exp": now + 300,
               "nonce": "n-123", "email": "a@example.com"})
    }

    fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = claims();
        f(c.as_object_mut().unwrap());
        rs(&c)
    }

    async fn check(token: &str) -> Result<IdClaims, TokenRejection> {
        validate(token, &keys(), ISS, CLIENT, "n-123", now_secs(), TIME_RULES).await
    }

    #[tokio::test]
    async fn a_valid_id_token_passes() {
        let c = check(&rs(&claims())).await.unwrap();
        assert_eq!(c.sub, "auth0|1");
        assert_eq!(c.claims["email"], "a@example.com");
    }

    #[tokio::test]
    async fn an_id_token_with_hundreds_of_groups_is_not_too_large() {
        let groups: Vec<String> = (0..500).map(|i| format!("group-{i:05}")).collect();
        let token = with(|c| {
            c.insert("groups".into(), json!(groups));
        });
        assert!(
            token.len() > 8 * 1024,
            "larger than any bearer token may be"
        );
        let c = check(&token).await.unwrap();
        assert_eq!(c.claims["groups"].as_array().unwrap().len(), 500);
    }

    #[tokio::test]
    async fn nonce_must_match() {
        assert_eq!(
            check(&with(|c| {
                c.insert("nonce".into(), json!("other"));
            }))
            .await
            .err(),
            Some(TokenRejection::InvalidClaims)
        );
        assert_eq!(
            check(&with(|c| {
                c.remove("nonce");
            }))
            .await
            .err(),
            Some(TokenRejection::InvalidClaims)
        );
    }

    #[tokio::test]
    async fn audience_and_azp() {
        assert_eq!(
            check(&with(|c| {
                c.insert("aud".into(), json!("someone-else"));
            }))
            .await
            .err(),
            Some(TokenRejection::WrongAudience)
        );
        // Several audiences need azp naming us (3.1.3.7 items 4 and 5).
        assert_eq!(
            check(&with(|c| {
                c.insert("aud".into(), json!([CLIENT, "api"]));
            }))
            .await
            .err(),
            Some(TokenRejection::WrongAudience)
        );
        assert!(
            check(&with(|c| {
                c.insert("aud".into(), json!([CLIENT, "api"]));
                c.insert("azp".into(), json!(CLIENT));
            }))
            .await
            .is_ok()
        );
        assert_eq!(
            check(&with(|c| {
                c.insert("azp".into(), json!("other"));
            }))
            .await
            .err(),
            Some(TokenRejection::WrongAudience)
        );
    }

    #[tokio::test]
    async fn issuer_iat_and_expiry() {
        assert_eq!(
            check(&with(|c| {
                c.insert("iss".into(), json!("https://evil.example/"));
            }))
            .await
            .err(),
            Some(TokenRejection::InvalidClaims)
        );
        assert_eq!(
            check(&with(|c| {
                c.remove("iat");
            }))
            .await
            .err(),
            Some(TokenRejection::InvalidClaims)
        );
        let now = now_secs();
        assert_eq!(
            check(&with(|c| {
                c.insert("iat".into(), json!(now + 600));
            }))
            .await
            .err(),
            Some(TokenRejection::NotYetValid)
        );
        assert_eq!(
            check(&with(|c| {
                c.insert("exp".into(), json!(now - 600));
            }))
            .await
            .err(),
            Some(TokenRejection::Expired)
        );
    }

    #[tokio::test]
    async fn signature_and_algorithm() {
        let t = rs(&claims());
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.rsplit_once('.').unwrap();
        let forged = json!({"iss": ISS, "aud": CLIENT, "sub": "admin", "iat": now_secs(), "exp": now_secs() + 300, "nonce": "n-123"});
        use base64::Engine as _;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
        assert_eq!(
            check(&format!("{head}.{body}.{sig}")).await.err(),
            Some(TokenRejection::BadSignature)
        );
        assert_eq!(check("a.b").await.err(), Some(TokenRejection::Malformed));
    }
}
