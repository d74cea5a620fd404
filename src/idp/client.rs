//! One HTTP client for every call to an IdP: timeouts, a size cap on answers, and a metric per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;
use url::Url;

use crate::metrics::{FetchResult, IdpEndpoint, Metrics};
use crate::secret::Secret;

/// IdP answers larger than this are refused: a JWKS or discovery document is a few KiB.
const MAX_BODY: usize = 512 * 1024;

#[derive(Debug, Error)]
pub enum IdpError {
    #[error("{url}: {kind}")]
    Request { url: String, kind: &'static str },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: answer larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url}: not a valid document: {detail}")]
    Document { url: String, detail: String },
}

#[derive(Clone)]
pub struct IdpClient {
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl IdpClient {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            // A redirect to another host could hand us someone else's keys.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend is built in");
        Self { http, metrics }
    }

    /// GET a JSON document, with the body capped at [`MAX_BODY`].
    pub async fn get_json(
        &self,
        endpoint: IdpEndpoint,
        url: &Url,
    ) -> Result<bytes::Bytes, IdpError> {
        let started = Instant::now();
        let result = self.get_bounded(url).await;
        let label = if result.is_ok() {
            FetchResult::ok
        } else {
            FetchResult::error
        };
        self.metrics.idp_call(endpoint, label, started.elapsed());
        result
    }

    /// GET with the caller's own access token as the credential (the userinfo endpoint). Returns
    /// the status and body whatever the status: a 401 there is an answer, not a failure.
    pub async fn get_with_token(
        &self,
        endpoint: IdpEndpoint,
        url: &Url,
        token: &str,
    ) -> Result<(u16, bytes::Bytes), IdpError> {
        let started = Instant::now();
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token);
        self.send_counted(endpoint, url, request, started).await
    }

    async fn get_bounded(&self, url: &Url) -> Result<bytes::Bytes, IdpError> {
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let (status, body) = self.send_bounded(url, request).await?;
        if !status.is_success() {
            return Err(IdpError::Status {
                url: url.as_str().to_owned(),
                status: status.as_u16(),
            });
        }
        Ok(body)
    }

    /// POST a form to a token endpoint, authenticating the client as `auth` says (RFC 6749 2.3.1).
    /// Returns the status and body whatever the status: token endpoints explain errors in JSON.
    pub async fn post_form(
        &self,
        endpoint: IdpEndpoint,
        url: &Url,
        client_id: &str,
        auth: ClientAuth<'_>,
        form: &[(&str, &str)],
    ) -> Result<(u16, bytes::Bytes), IdpError> {
        let started = Instant::now();
        let mut fields = form.to_vec();
        let request = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let request = match auth {
            ClientAuth::Basic(secret) => {
                request.basic_auth(form_encode(client_id), Some(form_encode(secret)))
            }
            ClientAuth::Post(secret) => {
                fields.push(("client_id", client_id));
                fields.push(("client_secret", secret));
                request
            }
            // A public client names itself in the form (RFC 6749 2.3, 3.2.1).
            ClientAuth::None => {
                fields.push(("client_id", client_id));
                request
            }
        };
        let request = request.form(&fields);
        self.send_counted(endpoint, url, request, started).await
    }

    /// [`Self::send_bounded`], counted as a call to `endpoint` that succeeded with a 2xx.
    async fn send_counted(
        &self,
        endpoint: IdpEndpoint,
        url: &Url,
        request: reqwest::RequestBuilder,
        started: Instant,
    ) -> Result<(u16, bytes::Bytes), IdpError> {
        let result = self.send_bounded(url, request).await;
        let label = if matches!(&result, Ok((s, _)) if s.is_success()) {
            FetchResult::ok
        } else {
            FetchResult::error
        };
        self.metrics.idp_call(endpoint, label, started.elapsed());
        result.map(|(s, b)| (s.as_u16(), b))
    }

    async fn send_bounded(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), IdpError> {
        let shown = || url.as_str().to_owned();
        let mut response = request.send().await.map_err(|e| IdpError::Request {
            url: shown(),
            kind: request_error_kind(&e),
        })?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(IdpError::TooLarge { url: shown() });
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| IdpError::Request {
            url: shown(),
            kind: request_error_kind(&e),
        })? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(IdpError::TooLarge { url: shown() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body.freeze()))
    }
}

/// A short, bounded description: reqwest's own messages can be long chains.
fn request_error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    }
}

/// RFC 6749 2.3.1: the client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How the client authenticates at the token endpoint (`provider.token_endpoint_auth_method`); introspection
/// follows it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

/// A client of the provider: the login client at the token endpoint, or whoever introspects
/// (RFC 7662 2.1: the endpoint requires authentication).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub auth_method: Option<TokenEndpointAuth>,
}

impl ClientCredentials {
    /// How the client authenticates at an endpoint of the provider: as configured; else
    /// `client_secret_basic` unless the provider says (`supported`) it takes only
    /// `client_secret_post`.
    pub fn auth(&self, supported: &[String]) -> ClientAuth<'_> {
        let Some(secret) = self.client_secret.as_ref().map(Secret::expose) else {
            return ClientAuth::None;
        };
        match self.auth_method {
            Some(TokenEndpointAuth::ClientSecretBasic) => return ClientAuth::Basic(secret),
            Some(TokenEndpointAuth::ClientSecretPost) => return ClientAuth::Post(secret),
            None => {}
        }
        let post_only = !supported.is_empty()
            && supported.iter().any(|m| m == "client_secret_post")
            && !supported.iter().any(|m| m == "client_secret_basic");
        if post_only {
            ClientAuth::Post(secret)
        } else {
            ClientAuth::Basic(secret)
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `client_secret_basic`: HTTP Basic (every provider must support it).
    Basic(&'a str),
    /// `client_secret_post`: in the form, for providers that accept only that.
    Post(&'a str),
    /// A public client (no secret).
    None,
}
