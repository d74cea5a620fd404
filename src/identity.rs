//! Who the caller is, once a credential has been validated: the value token/ produces, session/
//! stores, and the route rules and identity headers read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the verified claims become a principal.
#[derive(Debug, Clone)]
pub struct IdentityClaims {
    pub user_id_claim: String,
    pub groups_claim: String,
}

/// Whether the email claim may be trusted, as the issuer stated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailVerified {
    Yes,
    No,
    /// The token says nothing (Auth0 access tokens usually don't).
    Unstated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// The `sub` claim.
    pub subject: String,
    /// The value of `provider.user_id_claim`, falling back to `sub` when absent or not a string.
    pub user: String,
    /// The `email` claim, unless the issuer said it is not verified.
    pub email: Option<String>,
    pub email_verified: EmailVerified,
    /// The `provider.groups_claim` (array of strings, or one string).
    pub groups: Vec<String>,
    /// Every claim, for per-route `require.claims`.
    pub claims: Map<String, Value>,
}

impl Principal {
    /// Builds the principal from validated claims. `sub` must already be known to be a string.
    pub fn from_claims(
        subject: String,
        claims: Map<String, Value>,
        user_id_claim: &str,
        groups_claim: &str,
    ) -> Self {
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(true)) => EmailVerified::Yes,
            Some(Value::Bool(false)) => EmailVerified::No,
            _ => EmailVerified::Unstated,
        };
        // An email the issuer itself calls unverified must not become an identity upstream.
        let email = match (email_verified, claims.get("email")) {
            (EmailVerified::No, _) => None,
            (_, Some(Value::String(e))) if !e.is_empty() => Some(e.clone()),
            _ => None,
        };
        let user = match (user_id_claim, claims.get(user_id_claim)) {
            ("email", _) => email.clone(),
            (_, Some(Value::String(u))) if !u.is_empty() => Some(u.clone()),
            _ => None,
        }
        .unwrap_or_else(|| subject.clone());
        let groups = match claims.get(groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        Self {
            subject,
            user,
            email,
            email_verified,
            groups,
            claims,
        }
    }

    /// The claim is a string equal to one of `any_of`, an array containing one of them, or a bool or
    /// number whose JSON text is one of them.
    pub fn claim_matches(&self, claim: &str, any_of: &[String]) -> bool {
        let one = |v: &Value| match v {
            Value::String(s) => any_of.iter().any(|a| a == s),
            Value::Bool(_) | Value::Number(_) => {
                let text = v.to_string();
                any_of.contains(&text)
            }
            _ => false,
        };
        match self.claims.get(claim) {
            Some(Value::Array(items)) => items.iter().any(one),
            Some(v) => one(v),
            None => false,
        }
    }

    /// The groups as one header value: comma-separated, each name with `%` and `,` percent-encoded,
    /// so that `["eng,admins", "ops"]` stays two groups (`eng%2Cadmins,ops`) and decoding is
    /// unambiguous. The same string goes into the identity header and the pass.
    pub fn groups_header(&self) -> String {
        let mut out = String::new();
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for c in group.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    ',' => out.push_str("%2C"),
                    c => out.push(c),
                }
            }
        }
        out
    }

    /// The domain of a verified email with exactly one `@`, for `require.email_domains`.
    pub fn verified_email_domain(&self) -> Option<&str> {
        if self.email_verified != EmailVerified::Yes {
            return None;
        }
        let email = self.email.as_deref()?;
        let (local, domain) = email.split_once('@')?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return None;
        }
        Some(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(claims: Value, user_id_claim: &str) -> Principal {
        let Value::Object(map) = claims else { panic!() };
        Principal::from_claims("sub-1".into(), map, user_id_claim, "groups")
    }

    #[test]
    fn user_comes_from_the_configured_claim_or_sub() {
        let p = principal(json!({"email": "a@x.io", "nickname": "al"}), "email");
        assert_eq!(p.user, "a@x.io");
        let p = principal(json!({"email": "a@x.io", "nickname": "al"}), "nickname");
        assert_eq!(p.user, "al");
        let p = principal(json!({"nickname": 7}), "nickname");
        assert_eq!(p.user, "sub-1");
    }

    #[test]
    fn an_unverified_email_is_not_an_identity() {
        let p = principal(json!({"email": "a@x.io", "email_verified": false}), "email");
        assert_eq!(p.email, None);
        assert_eq!(p.user, "sub-1");
        let p = principal(json!({"email": "a@x.io"}), "email");
        assert_eq!(p.email.as_deref(), Some("a@x.io"));
        assert_eq!(p.verified_email_domain(), None, "unstated is not verified");
    }

    #[test]
    fn email_domain_needs_verification_and_one_at() {
        let p = principal(json!({"email": "a@x.io", "email_verified": true}), "email");
        assert_eq!(p.verified_email_domain(), Some("x.io"));
        let p = principal(
            json!({"email": "a@b@x.io", "email_verified": true}),
            "email",
        );
        assert_eq!(p.verified_email_domain(), None);
        let p = principal(json!({"email": "@x.io", "email_verified": true}), "email");
        assert_eq!(p.verified_email_domain(), None);
    }

    #[test]
    fn groups_and_claims() {
        let p = principal(
            json!({"groups": ["a", 3, "b"], "role": "admin", "tier": 2, "ok": true, "perms": ["read:x"]}),
            "email",
        );
        assert_eq!(p.groups, vec!["a", "b"]);
        assert!(p.claim_matches("role", &["admin".into()]));
        assert!(!p.claim_matches("role", &["user".into()]));
        assert!(p.claim_matches("tier", &["2".into()]));
        assert!(p.claim_matches("ok", &["true".into()]));
        assert!(p.claim_matches("perms", &["read:x".into()]));
        assert!(!p.claim_matches("missing", &["x".into()]));
        let p = principal(json!({"groups": "solo"}), "email");
        assert_eq!(p.groups, vec!["solo"]);
    }
}
