//! The HTTP forward-auth adapter (`listen.http_authz`): the same decisions as the gRPC port, for
//! proxies that ask over HTTP. Nothing here decides anything: it reads the original request,
//! calls [`Authorizer::check`], records, and says the decision the way the asking proxy needs.
//!
//! ```text
//! /_portcullis/auth     nginx auth_request, ingress-nginx auth-url: the original request from
//!                       X-Original-URL, or X-Original-Method + X-Original-URI + X-Forwarded-Host;
//!                       answered with 200, 401 or 403 only (all nginx understands)
//! /_portcullis/forward  Traefik forwardAuth: X-Forwarded-Method/-Proto/-Host/-Uri; answered in full
//!                       (the login redirect, pages), Traefik sends non-2xx answers to the client
//! /_portcullis/start    ingress-nginx auth-signin: ?rd=<where the user was going>; the login
//!                       redirect, or straight back to rd when already signed in
//! anything else         the request itself is the original (Envoy's HTTP ext_authz, a proxy
//!                       passing the callback and logout paths on): answered in full
//! POST login.backchannel_logout_path   the provider's logout token (back-channel logout)
//! ```
//!
//! The original request is read from those headers only when the peer is in
//! `listen.trusted_proxies`; from anyone else they are refused, so no client can name a path it
//! is not requesting. An allow answers 200 with the headers the upstream must get: the identity
//! headers portcullis sets (absent when it removes them), and the effective `Cookie` (the client's
//! minus portcullis's own) and `Authorization`, so a proxy that copies them replaces the client's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tracing::Instrument as _;

use crate::authz::login::backchannel::{self, BackchannelRefusal};
use crate::authz::login::providers::Logins;
use crate::authz::path::safe_return_to;
use crate::authz::{Authorizer, AuthzRequest, Decision, DenyReason, DenyResponse, LiveAuthorizer};
use crate::listener::GuardedListener;
use crate::metrics::Metrics;
use crate::proxies::TrustedProxies;
use crate::telemetry;
use crate::token::TokenRejection;
use crate::token::logout_token::LogoutRejection;

/// nginx keeps only the first of several headers of one name in `$upstream_http_set_cookie`: to
/// nginx, each cookie of an allow is sent as `x-portcullis-set-cookie-N`, N from 1 (and a lone one
/// as `set-cookie` too, which is what ingress-nginx copies).
pub const NUMBERED_SET_COOKIE: &str = "x-portcullis-set-cookie-";
/// On an allow answered to a proxy that asks directly (the native filter's callout): which of the
/// request's credentials the allow rests on and until when it may stand for it, `bearer <unix>` or
/// `pass <unix>` (envoy-module/ caches it). Absent when the allow may not be reused.
pub const REUSE_HEADER: &str = "x-portcullis-reuse";
/// On every answer to a proxy that asks directly: the decision and its bounded reason
/// (`deny token_expired`), so the native filter's callout tells portcullis's answers from Envoy's own
/// (a 503 when portcullis is gone) and logs the reason.
pub const DECISION_HEADER: &str = "x-portcullis-decision";
/// A back-channel logout form: one logout token (a few KB) and little else.
const MAX_LOGOUT_FORM: usize = 16 * 1024;

/// The peer's address: `into_make_service_with_connect_info::<Peer>()`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

#[derive(Clone)]
struct ForwardState {
    authorizer: LiveAuthorizer,
    metrics: Arc<Metrics>,
    trusted: Arc<TrustedProxies>,
}

/// Who asks, and so where the original request is and what answers it understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// nginx `auth_request`: 2xx allows, 401 and 403 deny, anything else is its own 500.
    Nginx,
    /// Traefik `forwardAuth`: any non-2xx answer goes to the client as it is.
    Traefik,
    /// The request is the original; the answer goes to the client as it is.
    Direct,
}

pub fn router(
    authorizer: LiveAuthorizer,
    metrics: Arc<Metrics>,
    trusted: TrustedProxies,
) -> Router {
    Router::new().fallback(handle).with_state(ForwardState {
        authorizer,
        metrics,
        trusted: Arc::new(trusted),
    })
}

async fn handle(
    State(s): State<ForwardState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // One authorizer for the whole request, whatever a reload does meanwhile.
    let authorizer = s.authorizer.load_full();
    if method == Method::POST
        && let Some(logins) = authorizer.logins()
        && logins.first().backchannel_logout_path() == Some(uri.path())
    {
        return backchannel(logins, body).await;
    }
    let trusted = s.trusted.contains(peer.ip());
    let (asker, original) = match uri.path() {
        "/_portcullis/auth" => (Asker::Nginx, nginx_original(&headers, trusted)),
        "/_portcullis/forward" => (Asker::Traefik, traefik_original(&headers, trusted)),
        "/_portcullis/start" => {
            return start(&s, &authorizer, &uri, &headers, trusted, started).await;
        }
        _ => (
            Asker::Direct,
            Some(direct_original(&method, &uri, &headers, trusted)),
        ),
    };
    // The proxy's span is the parent when it traces (Traefik, Envoy, nginx with OpenTelemetry).
    let span = telemetry::check_span();
    telemetry::continue_trace(&span, |name| header(&headers, name).map(str::to_owned));
    let (decision, req) = match original {
        Some(original) => {
            let req = authz_request(original, &headers);
            let decision = authorizer.check(&req).instrument(span.clone()).await;
            (decision, req)
        }
        None => {
            tracing::debug!(
                %peer,
                trusted,
                "forward-auth request without a usable original request (the peer must be in \
                 listen.trusted_proxies and send the original's method, host and URI)"
            );
            let refused = authorizer.refuse(DenyReason::InvalidRequest);
            (refused, AuthzRequest::default())
        }
    };
    decision.describe(&span);
    decision.record(&s.metrics, started.elapsed());
    let (kind, reason) = decision.kind_and_reason();
    let mut out = answer(decision, asker, &req);
    if asker == Asker::Direct {
        push(
            &mut out,
            DECISION_HEADER,
            &format!("{} {reason}", kind.as_str()),
        );
    }
    out
}

/// The provider's back-channel logout (`login.backchannel_logout_path`): a form with one
/// `logout_token`, from the provider itself (no forwarded headers are read).
async fn backchannel(logins: &Logins, body: Body) -> Response {
    let outcome = match axum::body::to_bytes(body, MAX_LOGOUT_FORM).await {
        Ok(form) => {
            let mut tokens = url::form_urlencoded::parse(&form)
                .filter(|(k, _)| k == "logout_token")
                .map(|(_, v)| v.into_owned());
            match (tokens.next(), tokens.next()) {
                (Some(token), None) => {
                    // Its issuer's flow checks it (every provider's tokens come to one path).
                    logins
                        .for_logout_token(&token)
                        .backchannel_logout(&token)
                        .await
                }
                _ => Err(BackchannelRefusal::Token(LogoutRejection::Token(
                    TokenRejection::Malformed,
                ))),
            }
        }
        Err(_) => Err(BackchannelRefusal::Token(LogoutRejection::Token(
            TokenRejection::TooLarge,
        ))),
    };
    to_response(backchannel::response(outcome))
}

/// `/_portcullis/start?rd=...`: where ingress-nginx sends a browser its auth-url refused. The login
/// for `rd` (a path, or an absolute URL on the request's own host), or back to it when signed in.
async fn start(
    s: &ForwardState,
    authorizer: &Authorizer,
    uri: &Uri,
    headers: &HeaderMap,
    trusted: bool,
    started: Instant,
) -> Response {
    let mut original = direct_original(&Method::GET, uri, headers, trusted);
    let rd = uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "rd")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    original.path = return_path(&rd, &original.authority);
    let req = authz_request(original, headers);
    let decision = authorizer.check(&req).await;
    decision.record(&s.metrics, started.elapsed());
    match decision {
        Decision::Allow(allow) => {
            let mut headers = vec![("location", safe_return_to(&req.path))];
            headers.extend(allow.set_cookies.into_iter().map(|c| ("set-cookie", c)));
            to_response(DenyResponse {
                status: 302,
                headers,
                body: String::new(),
            })
        }
        d @ (Decision::Deny(_) | Decision::Redirect(_) | Decision::Page(_)) => {
            answer(d, Asker::Direct, &req)
        }
    }
}

/// `rd` as a path on this site: an absolute URL counts only on `host` itself.
fn return_path(rd: &str, host: &str) -> String {
    let path = match rd.split_once("://") {
        Some(("http" | "https", rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest.split_at(end) {
                (authority, path)
                    if authority.eq_ignore_ascii_case(host) && path.starts_with('/') =>
                {
                    path
                }
                _ => "/",
            }
        }
        Some(_) => "/",
        None => rd,
    };
    safe_return_to(path)
}

/// The original request, as the adapter found it.
struct Original {
    method: String,
    authority: String,
    scheme: String,
    path: String,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().filter(|v| !v.is_empty())
}

/// ingress-nginx sends `X-Original-URL` (the whole URL) and `X-Original-Method`; a plain nginx
/// config (deploy/nginx) sends `X-Original-URI`, `X-Original-Method`, `X-Forwarded-Host` and
/// `X-Forwarded-Proto`.
fn nginx_original(headers: &HeaderMap, trusted: bool) -> Option<Original> {
    if !trusted {
        return None;
    }
    let method = header(headers, "x-original-method")?.to_owned();
    if let Some(url) = header(headers, "x-original-url") {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        return Some(Original {
            method,
            authority: authority.to_owned(),
            scheme: scheme.to_ascii_lowercase(),
            path: match path.starts_with('/') {
                true => path.to_owned(),
                false => format!("/{path}"),
            },
        });
    }
    Some(Original {
        method,
        authority: header(headers, "x-forwarded-host")?.to_owned(),
        scheme: header(headers, "x-forwarded-proto")
            .unwrap_or("http")
            .to_owned(),
        path: header(headers, "x-original-uri")?.to_owned(),
    })
}

/// Traefik's forwardAuth names the original in `X-Forwarded-*`.
fn traefik_original(headers: &HeaderMap, trusted: bool) -> Option<Original> {
    if !trusted {
        return None;
    }
    Some(Original {
        method: header(headers, "x-forwarded-method")?.to_owned(),
        authority: header(headers, "x-forwarded-host")?.to_owned(),
        scheme: header(headers, "x-forwarded-proto")
            .unwrap_or("http")
            .to_owned(),
        path: header(headers, "x-forwarded-uri")?.to_owned(),
    })
}

/// The request itself; only the scheme may come from a trusted proxy (TLS ended before it).
fn direct_original(method: &Method, uri: &Uri, headers: &HeaderMap, trusted: bool) -> Original {
    let proto = header(headers, "x-forwarded-proto").filter(|_| trusted);
    Original {
        method: method.as_str().to_owned(),
        authority: header(headers, "host")
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.to_string()))
            .unwrap_or_default(),
        scheme: proto.unwrap_or("http").to_owned(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// The core's request: the original's method, host and path, the headers as received (lowercase
/// names; repeated ones joined as HTTP joins them, cookies with `; `).
fn authz_request(original: Original, headers: &HeaderMap) -> AuthzRequest {
    let mut joined: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(if name == "cookie" { "; " } else { "," });
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    AuthzRequest {
        method: original.method,
        authority: original.authority,
        scheme: original.scheme,
        path: original.path,
        headers: joined,
        context: HashMap::new(),
    }
}

/// Every decision said for `asker`, with exhaustive matches.
fn answer(decision: Decision, asker: Asker, req: &AuthzRequest) -> Response {
    let (response, redirect) = match decision {
        Decision::Allow(allow) => {
            let mut out = Response::new(axum::body::Body::empty());
            for (name, value) in &allow.set_headers {
                push(&mut out, name, value);
            }
            // A proxy that copies Cookie and Authorization from this answer replaces the
            // client's: say the client's own where portcullis left them as they were.
            for name in ["cookie", "authorization"] {
                let handled = allow.set_headers.iter().any(|(n, _)| &**n == name)
                    || allow.remove_headers.iter().any(|n| &**n == name);
                if let (false, Some(value)) = (handled, req.header(name)) {
                    push(&mut out, name, value);
                }
            }
            if let (Asker::Direct, Some(reuse)) = (asker, allow.reuse) {
                push(
                    &mut out,
                    REUSE_HEADER,
                    &format!("{} {}", reuse.held.as_str(), reuse.until),
                );
            }
            let single = allow.set_cookies.len() == 1;
            for (i, cookie) in allow.set_cookies.into_iter().enumerate() {
                if asker == Asker::Nginx {
                    push(
                        &mut out,
                        &format!("{NUMBERED_SET_COOKIE}{}", i + 1),
                        &cookie,
                    );
                }
                // ingress-nginx copies `$upstream_http_set_cookie`: right when there is one.
                if asker != Asker::Nginx || single {
                    push(&mut out, "set-cookie", &cookie);
                }
            }
            return out;
        }
        Decision::Deny(deny) => (deny.response(), false),
        Decision::Redirect(redirect) => (redirect.response(), true),
        Decision::Page(page) => (page.response(), false),
    };
    match asker {
        Asker::Traefik | Asker::Direct => to_response(response),
        // nginx takes 401 (a login is needed: its error_page sends the browser to
        // /_portcullis/start) and 403; any other status would be its own 500, which only a
        // server error should be.
        Asker::Nginx => {
            let status = match (redirect, response.status) {
                (true, _) | (false, 401) => 401,
                (false, s) if s >= 500 => s,
                (false, _) => 403,
            };
            to_response(DenyResponse {
                status,
                headers: response
                    .headers
                    .into_iter()
                    .filter(|(name, _)| *name == "www-authenticate" && status == 401)
                    .collect(),
                body: response.body,
            })
        }
    }
}

fn to_response(r: DenyResponse) -> Response {
    let mut out = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
        r.body,
    )
        .into_response();
    for (name, value) in &r.headers {
        push(&mut out, name, value);
    }
    out
}

/// Appends a header; a value HTTP cannot carry is left out (the core never makes one).
fn push(out: &mut Response, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        out.headers_mut().append(name, value);
    }
}

#[cfg(test)]
mod tests;
