//! proto <-> core, both ways, and nothing else: `CheckRequest` -> [`AuthzRequest`], and
//! [`Decision`] -> `CheckResponse`. Every decision maps here, with exhaustive matches.

use std::collections::{BTreeMap, HashMap};

use prost_types::{Struct, Value, value::Kind};

use crate::authz::{AuthzRequest, Decision, DenyResponse};
use crate::config::EnvoyMetadata;
use crate::identity::Principal;
use crate::proto::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpStatus,
    OkHttpResponse, RpcStatus, check_response::HttpResponse,
    header_value_option::HeaderAppendAction,
};

/// google.rpc.Code values Envoy looks at: OK allows, anything else denies.
const RPC_OK: i32 = 0;
const RPC_UNAUTHENTICATED: i32 = 16;
const RPC_PERMISSION_DENIED: i32 = 7;

/// `None` when Envoy sent no HTTP attributes (not an HTTP filter's request).
pub fn authz_request(check: CheckRequest) -> Option<AuthzRequest> {
    let attributes = check.attributes?;
    let http = attributes.request?.http?;
    let headers = if http.headers.is_empty() {
        // Envoy fills `header_map` instead when `encode_raw_headers` is on.
        let mut joined: HashMap<String, String> = HashMap::new();
        for h in http.header_map.map(|m| m.headers).unwrap_or_default() {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            joined
                .entry(h.key.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        joined
    } else {
        http.headers
    };
    Some(AuthzRequest {
        method: http.method,
        authority: http.host,
        scheme: http.scheme,
        path: http.path,
        headers,
        context: attributes.context_extensions,
    })
}

pub fn check_response(decision: Decision, metadata: EnvoyMetadata) -> CheckResponse {
    match decision {
        Decision::Allow(allow) => CheckResponse {
            status: Some(RpcStatus {
                code: RPC_OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: allow
                    .set_headers
                    .into_iter()
                    .map(|(name, value)| header(name.to_string(), value))
                    .collect(),
                headers_to_remove: allow.remove_headers.iter().map(|n| n.to_string()).collect(),
                response_headers_to_add: allow
                    .set_cookies
                    .into_iter()
                    .map(|c| header("set-cookie".to_owned(), c))
                    .collect(),
            })),
            dynamic_metadata: match (metadata, allow.reason.shadowed()) {
                // What a shadow route would have answered, for Envoy's access log
                // (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:shadow)%), like a deny's reason.
                (_, Some(would)) => Some(fields([("shadow", would)])),
                (EnvoyMetadata::Identity, None) => allow.identity.as_deref().map(identity_metadata),
                (EnvoyMetadata::None, None) => None,
            },
        },
        Decision::Deny(deny) => answered(deny.response(), deny.reason.as_str()),
        Decision::Redirect(redirect) => answered(redirect.response(), redirect.reason.as_str()),
        Decision::Page(page) => answered(page.response(), page.reason.as_str()),
    }
}

/// A response portcullis answers itself (Envoy sends it to the client instead of the upstream).
fn answered(response: DenyResponse, reason: &'static str) -> CheckResponse {
    let code = match response.status {
        401 => RPC_UNAUTHENTICATED,
        _ => RPC_PERMISSION_DENIED,
    };
    CheckResponse {
        status: Some(RpcStatus {
            code,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(response.status),
            }),
            headers: response
                .headers
                .into_iter()
                .map(|(name, value)| header(name.to_owned(), value))
                .collect(),
            body: response.body,
        })),
        // The bounded reason, for Envoy's access log: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%
        dynamic_metadata: Some(fields([("reason", reason.to_owned())])),
    }
}

/// Every header replaces the request's own, except `Set-Cookie`, of which there may be several.
fn header(key: String, value: String) -> HeaderValueOption {
    let action = if key == "set-cookie" {
        HeaderAppendAction::AppendIfExistsOrAdd
    } else {
        HeaderAppendAction::OverwriteIfExistsOrAdd
    };
    HeaderValueOption {
        header: Some(HeaderValue {
            key,
            value,
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// `sub`, `user` and `email` for Envoy's access logs and RBAC.
fn identity_metadata(p: &Principal) -> Struct {
    let mut f = vec![("sub", p.subject.clone()), ("user", p.user.clone())];
    if let Some(email) = &p.email {
        f.push(("email", email.clone()));
    }
    fields(f)
}

fn fields(pairs: impl IntoIterator<Item = (&'static str, String)>) -> Struct {
    Struct {
        fields: pairs
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    Value {
                        kind: Some(Kind::StringValue(v)),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Map, json};

    use super::*;
    use crate::authz::{Allow, AllowReason, Deny, DenyReason, RouteName};

    fn allow() -> Decision {
        let claims: Map<String, serde_json::Value> =
            serde_json::from_value(json!({"sub": "auth0|1", "email": "a@example.com"})).unwrap();
        Decision::Allow(Allow {
            route: RouteName::new("api"),
            reason: AllowReason::Bearer,
            set_headers: vec![(Arc::from("x-auth-request-user"), "auth0|1".to_owned())],
            remove_headers: Vec::new(),
            identity: Some(Arc::new(Principal::from_claims(
                "auth0|1".to_owned(),
                claims,
                "sub",
                "groups",
            ))),
            set_cookies: Vec::new(),
            reuse: None,
        })
    }

    fn deny() -> Decision {
        Decision::Deny(Deny {
            route: RouteName::new("api"),
            reason: DenyReason::MissingCredential,
            identity: None,
            login_url: None,
            set_cookies: Vec::new(),
        })
    }

    fn metadata_keys(answer: &CheckResponse) -> Vec<&str> {
        answer
            .dynamic_metadata
            .iter()
            .flat_map(|m| m.fields.keys().map(String::as_str))
            .collect()
    }

    #[test]
    fn an_allow_gives_envoy_the_identity_unless_told_not_to() {
        let with = check_response(allow(), EnvoyMetadata::Identity);
        assert_eq!(metadata_keys(&with), ["email", "sub", "user"]);
        let without = check_response(allow(), EnvoyMetadata::None);
        assert!(without.dynamic_metadata.is_none(), "{without:?}");
        // Everything else in the answer is the same.
        assert_eq!(with.http_response, without.http_response);
        assert_eq!(with.status, without.status);
    }

    #[test]
    fn a_shadow_allow_gives_envoy_what_it_would_have_done_and_no_one() {
        let Decision::Allow(mut shadow) = allow() else {
            unreachable!()
        };
        shadow.reason = AllowReason::Shadow {
            would: crate::authz::decision::DecisionKind::Deny,
            reason: "group_required",
        };
        let answer = check_response(Decision::Allow(shadow), EnvoyMetadata::Identity);
        assert_eq!(metadata_keys(&answer), ["shadow"]);
    }

    #[test]
    fn a_deny_gives_its_reason_either_way() {
        for metadata in [EnvoyMetadata::Identity, EnvoyMetadata::None] {
            let answer = check_response(deny(), metadata);
            assert_eq!(metadata_keys(&answer), ["reason"], "{metadata:?}");
        }
    }
}
