//! The test OpenID provider (tests/op/op.mjs, npm oidc-provider), shaped like an Auth0 tenant.

use std::path::PathBuf;
use std::process::Command;

use super::proc::tempdir;
use super::*;

/// The API identifier the test OP issues JWT access tokens for (`OP_AUDIENCE`).
pub const AUDIENCE: &str = "https://amundsen.example/api";
/// The API the test OP issues opaque access tokens for (`OP_OPAQUE_AUDIENCE`), checked by
/// introspection.
pub const OPAQUE_AUDIENCE: &str = "https://opaque.example/api";
/// The test OP's one client.
pub const CLIENT_ID: &str = "amundsen";
pub const CLIENT_SECRET: &str = "amundsen-secret";

/// How to start the test OP (tests/op/op.mjs). The default is the reference deployment's shape:
/// Auth0 paths, an issuer ending in "/", fixture key rs256-a signing.
#[derive(Debug, Clone)]
pub struct OpOptions {
    /// `OP_AUTH0_PATHS`: Auth0's endpoint paths and an issuer with a trailing "/".
    pub auth0_paths: bool,
    pub audience: String,
    /// A private JWKS; its first key signs.
    pub jwks_file: PathBuf,
    /// Access token lifetime (seconds); the OP's default is 3600.
    pub access_token_ttl: Option<u64>,
    /// Callback URLs of the client; empty: the OP's default.
    pub redirect_uris: Vec<String>,
    pub post_logout_uris: Vec<String>,
    /// A fixed port (to restart the OP where it was); `None`: a free one.
    pub port: Option<u16>,
    /// The client's token endpoint authentication (`OP_CLIENT_AUTH_METHOD`); `None`: basic.
    pub client_auth_method: Option<String>,
    /// `OP_OMIT_EXPIRES_IN`: token responses without `expires_in`.
    pub omit_expires_in: bool,
    /// `OP_ROTATE_REFRESH_TOKENS`: a new refresh token each time, reuse revokes the grant.
    pub rotate_refresh_tokens: bool,
    /// `OP_BACKCHANNEL_LOGOUT_URI`: where the provider POSTs logout tokens.
    pub backchannel_logout_uri: Option<String>,
    /// `OP_NO_INTROSPECTION`: no introspection endpoint (as Auth0).
    pub no_introspection: bool,
}

impl Default for OpOptions {
    fn default() -> Self {
        Self {
            auth0_paths: true,
            audience: AUDIENCE.to_owned(),
            jwks_file: repo_root().join("tests/fixtures/keys/op-jwks.json"),
            access_token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_uris: Vec::new(),
            port: None,
            client_auth_method: None,
            omit_expires_in: false,
            rotate_refresh_tokens: false,
            backchannel_logout_uri: None,
            no_introspection: false,
        }
    }
}

impl OpOptions {
    /// Auth0's shape (the default).
    pub fn auth0() -> Self {
        Self::default()
    }

    /// oidc-provider's own paths; the issuer has no trailing "/".
    pub fn plain() -> Self {
        Self {
            auth0_paths: false,
            ..Self::default()
        }
    }
}

pub struct Op {
    pub proc: Proc,
    pub port: u16,
    /// The client's first callback URL (a token helper's login stops before it).
    redirect_uri: String,
    /// Exactly as in its tokens and discovery document.
    pub issuer: String,
    pub audience: String,
}

impl Op {
    /// Starts the OP on a free loopback port and waits until its discovery document answers.
    pub async fn start(opts: OpOptions) -> Self {
        installed("tests/op/node_modules/oidc-provider");
        let port = opts.port.unwrap_or_else(free_port);
        let issuer = format!(
            "http://127.0.0.1:{port}{}",
            if opts.auth0_paths { "/" } else { "" }
        );
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("tests/op/op.mjs"))
            .env("OP_HOST", "127.0.0.1")
            .env("OP_PORT", port.to_string())
            .env("OP_ISSUER", &issuer)
            .env("OP_AUDIENCE", &opts.audience)
            .env("OP_JWKS_FILE", &opts.jwks_file)
            .env_remove("OP_AUTH0_PATHS");
        if opts.auth0_paths {
            cmd.env("OP_AUTH0_PATHS", "1");
        }
        if let Some(method) = &opts.client_auth_method {
            cmd.env("OP_CLIENT_AUTH_METHOD", method);
        }
        for (var, on) in [
            ("OP_ROTATE_REFRESH_TOKENS", opts.rotate_refresh_tokens),
            ("OP_OMIT_EXPIRES_IN", opts.omit_expires_in),
            ("OP_NO_INTROSPECTION", opts.no_introspection),
        ] {
            if on {
                cmd.env(var, "1");
            } else {
                cmd.env_remove(var);
            }
        }
        if let Some(ttl) = opts.access_token_ttl {
            cmd.env("OP_ACCESS_TOKEN_TTL", ttl.to_string());
        }
        match &opts.backchannel_logout_uri {
            Some(uri) => cmd.env("OP_BACKCHANNEL_LOGOUT_URI", uri),
            None => cmd.env_remove("OP_BACKCHANNEL_LOGOUT_URI"),
        };
        for (var, list) in [
            ("OP_REDIRECT_URIS", &opts.redirect_uris),
            ("OP_POST_LOGOUT_URIS", &opts.post_logout_uris),
        ] {
            if list.is_empty() {
                cmd.env_remove(var);
            } else {
                cmd.env(var, list.join(","));
            }
        }
        let mut proc = Proc::spawn("op", cmd, tempdir("op"));
        let op_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        proc.wait_for_http(&op_url, 200, Some("jwks_uri")).await;
        Self {
            proc,
            port,
            redirect_uri: opts
                .redirect_uris
                .first()
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1:10000/authorization-code/callback".into()),
            issuer,
            audience: opts.audience,
        }
    }

    /// The discovery URL portcullis derives from the issuer.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }

    pub async fn discovery(&self) -> serde_json::Value {
        http_client()
            .get(self.discovery_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A real JWT access token for the audience from the OP's token endpoint (client credentials,
    /// Auth0's machine-to-machine flow: `sub` is the client_id, no email).
    pub async fn client_credentials_token(&self) -> String {
        self.client_credentials_token_for(Some(&self.audience))
            .await
    }

    /// A client-credentials access token for `audience`: [`OPAQUE_AUDIENCE`] or none gives an
    /// opaque one.
    pub async fn client_credentials_token_for(&self, audience: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(audience.map(|a| ("audience", a)));
        let json = self.client_post("token_endpoint", &form).await;
        json["access_token"].as_str().unwrap().to_owned()
    }

    /// `user`'s tokens, as a client of the OP's own gets them: `browser` signs in (authorization
    /// code with PKCE, `offline_access` for a refresh token) and the code is exchanged here. The
    /// access token is for `audience`; with none, an opaque one good at userinfo only.
    pub async fn user_tokens(
        &self,
        browser: &mut Browser,
        user: &str,
        audience: Option<&str>,
    ) -> serde_json::Value {
        use base64::Engine as _;
        use sha2::Digest as _;
        let verifier = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let discovery = self.discovery().await;
        let mut authorize =
            url::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid email profile offline_access")
            .append_pair("prompt", "consent")
            .append_pair("state", "test")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(audience.map(|a| ("audience", a)));
        browser.goto(authorize.as_str());
        let (held, _) = browser.login_held(user, &self.redirect_uri);
        let code = url::Url::parse(&held)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {held}"));
        self.client_post(
            "token_endpoint",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await
    }

    /// Revokes an access token at the OP (RFC 7009).
    pub async fn revoke(&self, token: &str) {
        self.client_post(
            "revocation_endpoint",
            &[("token", token), ("token_type_hint", "access_token")],
        )
        .await;
    }

    /// POSTs `form` as the client to the endpoint the discovery document names `endpoint`; the
    /// answer must be a 200 (JSON, or empty).
    async fn client_post(&self, endpoint: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let url = self.discovery().await[endpoint]
            .as_str()
            .unwrap_or_else(|| panic!("the OP names no {endpoint}"))
            .to_owned();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = http_client()
            .post(url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{endpoint}: {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}
