//! Issuing the pass (token/pass.rs) to signed-in browsers: a fresh one, as a cookie beside the
//! session's, whenever a request allowed by its session carries none that is good for this session
//! for at least half its life. Envoy's `jwt_authn` verifies it on the native fast path; portcullis
//! is asked again only once it runs out.

use std::sync::Arc;
use std::time::Duration;

use crate::session::{Cookies, Jar, Session};
use crate::token::pass::{PassClaims, PassKeys};

/// `pass` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSettings {
    /// A pass lives this long, and never past the session's access token.
    pub lifetime: Duration,
    pub issuer: String,
    pub audience: String,
}

/// What [`PassIssuer::refresh`] gives the answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Renewed {
    pub set_cookies: Vec<String>,
    /// The `exp` of the good pass the browser holds after this answer (the new one, else its own).
    pub held_until: Option<u64>,
}

#[derive(Debug)]
pub struct PassIssuer {
    settings: PassSettings,
    keys: Arc<PassKeys>,
}

impl PassIssuer {
    pub fn new(settings: PassSettings, keys: Arc<PassKeys>) -> Self {
        Self { settings, keys }
    }

    /// The `Set-Cookie` of a new pass for `s`, unless the request carries one good for it for at
    /// least half a pass's life; and until when the browser holds a good pass after it. A pass
    /// runs out no later than `until`: when portcullis would refresh the session's access token
    /// (Envoy does not ask portcullis while a pass is good, so the request that should refresh
    /// must find none); none is issued past it.
    pub fn refresh(
        &self,
        cookies: &Cookies,
        jar: &Jar<'_>,
        s: &Session,
        now: u64,
        until: Option<u64>,
    ) -> Renewed {
        let lifetime = self.settings.lifetime.as_secs();
        let current = cookies
            .read(jar, cookies.pass_name())
            .and_then(|pass| self.keys.open(&pass));
        if let Some(c) = current.filter(|c| c.sid == s.sid && c.exp >= now + lifetime / 2) {
            return Renewed {
                set_cookies: Vec::new(),
                held_until: Some(c.exp),
            };
        }
        let exp = until.map_or(now + lifetime, |u| u.min(now + lifetime));
        if exp <= now {
            return Renewed::default();
        }
        let p = &s.principal;
        let claims = PassClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: p.subject.clone(),
            user: p.user.clone(),
            email: p.email.clone(),
            email_verified: p.email_verified == crate::identity::EmailVerified::Yes,
            groups: p.groups_header(),
            sid: s.sid.clone(),
            iat: now,
            exp,
        };
        let set_cookies = match self.keys.sign(&claims) {
            Some(pass) => cookies
                .set(
                    cookies.pass_name(),
                    &pass,
                    Duration::from_secs(exp - now),
                    &[],
                )
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let held_until = (!set_cookies.is_empty()).then_some(exp);
        Renewed {
            set_cookies,
            held_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Principal;
    use crate::secret::Secret;

    fn issuer() -> PassIssuer {
        PassIssuer::new(
            PassSettings {
                lifetime: Duration::from_secs(300),
                issuer: "https://portcullis.invalid/".into(),
                audience: "portcullis".into(),
            },
            Arc::new(PassKeys::derive(&[Secret::new(
                crate::secret::generate_base64(32),
            )])),
        )
    }

    fn session(sid: &str, access_expires_at: u64) -> Session {
        let claims = serde_json::json!({"email": "a@example.com", "email_verified": true,
            "groups": ["ops", "eng,admins"]});
        Session {
            sid: sid.into(),
            principal: Principal::from_claims(
                "auth0|1".into(),
                claims.as_object().unwrap().clone(),
                "email",
                "groups",
            ),
            id_token: "i".into(),
            access_token: Some("a".into()),
            access_expires_at,
            access_issued_at: 0,
            refresh_token: None,
            created_at: 0,
            seen_at: 0,
        }
    }

    /// The pass a `Set-Cookie` carries, and the cookie a browser would send back.
    fn taken(p: &PassIssuer, set: &[String]) -> (PassClaims, String) {
        let pair = set[0].split(';').next().unwrap().to_owned();
        let value = pair.split_once('=').unwrap().1;
        (p.keys.open(value).unwrap(), pair)
    }

    #[test]
    fn a_pass_is_issued_once_and_again_only_near_its_end_or_for_another_session() {
        let p = issuer();
        let cookies = Cookies::new("portcullis", true);
        let s = session("s1", 10_000);
        let renewed = p.refresh(&cookies, &Jar::default(), &s, 1000, None);
        assert_eq!(renewed.held_until, Some(1300), "the new pass's exp");
        let set = renewed.set_cookies;
        assert_eq!(set.len(), 1);
        assert!(set[0].starts_with("__Host-portcullis-pass="), "{}", set[0]);
        assert!(set[0].contains("Max-Age=300") && set[0].contains("HttpOnly"));
        let (claims, cookie) = taken(&p, &set);
        assert_eq!(
            (claims.user.as_str(), claims.sid.as_str(), claims.exp),
            ("a@example.com", "s1", 1300)
        );
        assert_eq!(claims.groups, "ops,eng%2Cadmins");
        assert!(claims.email_verified);
        let jar = Jar::parse(&cookie);
        assert_eq!(
            p.refresh(&cookies, &jar, &s, 1100, None),
            Renewed {
                set_cookies: Vec::new(),
                held_until: Some(1300)
            },
            "still fresh: the browser's own pass is held until its exp"
        );
        assert_eq!(
            p.refresh(&cookies, &jar, &s, 1200, None).set_cookies.len(),
            1,
            "past half its life"
        );
        let other = session("s2", 10_000);
        assert_eq!(
            p.refresh(&cookies, &jar, &other, 1100, None)
                .set_cookies
                .len(),
            1,
            "another login"
        );
    }

    #[test]
    fn a_pass_runs_out_when_the_token_is_due_for_refresh() {
        let p = issuer();
        let cookies = Cookies::new("portcullis", false);
        let s = session("s1", 1200);
        let set = p.refresh(&cookies, &Jar::default(), &s, 1000, Some(1100));
        assert_eq!(taken(&p, &set.set_cookies).0.exp, 1100);
        assert_eq!(
            p.refresh(&cookies, &Jar::default(), &s, 1100, Some(1100)),
            Renewed::default(),
            "no pass once the token is due, and none held"
        );
    }
}
