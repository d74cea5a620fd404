//! The variable names of a flaskoidc `.env` (Amundsen's OIDC guide), read as config so that
//! migrating is "source your .env, start portcullis". Every name flaskoidc reads is honoured with
//! its flaskoidc meaning or refused with a line that names it and says what to do instead.
//! `PORTCULLIS_*` variables win over these.

use std::path::Path;

use aws_lc_rs::hkdf;
use base64::Engine as _;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::env::{Env, set, string_list};
use super::file::resolve;

/// The `SECRET_KEY`s flaskoidc falls back to: public, so never a session secret.
const FLASKOIDC_DEFAULT_SECRETS: [&str; 2] =
    ["base-flask-oidc-secret-key", "!-flask-oidc-secret-key"];

/// Writes what the flaskoidc variables in `env` say into the YAML tree; what is allowed but worth
/// knowing goes to `warnings`.
pub(super) fn overlay(
    root: &mut Value,
    env: &Env,
    base: Option<&Path>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    if let Some(path) = get("OIDC_CLIENT_SECRETS") {
        overlay_client_secrets(root, &resolve(base, Path::new(path)), problems);
    }
    if let Some(url) = get("FLASK_OIDC_CONFIG_URL") {
        // flaskoidc is given the discovery URL; the issuer is what precedes the well-known suffix.
        match url.strip_suffix(".well-known/openid-configuration") {
            Some(issuer) if !issuer.is_empty() => {
                set(root, &["provider", "issuer"], Value::String(issuer.into()))
            }
            _ => problems.push(format!(
                "FLASK_OIDC_CONFIG_URL: {url:?} does not end in /.well-known/openid-configuration"
            )),
        }
    }
    for (var, path) in [
        ("FLASK_OIDC_PROVIDER_NAME", ["provider", "name"]),
        ("FLASK_OIDC_CLIENT_ID", ["provider", "client_id"]),
        ("FLASK_OIDC_CLIENT_SECRET", ["provider", "client_secret"]),
        ("FLASK_OIDC_USER_ID_FIELD", ["provider", "user_id_claim"]),
        ("OIDC_CALLBACK_ROUTE", ["login", "callback_path"]),
        ("OVERWRITE_REDIRECT_URI", ["login", "redirect_uri"]),
        (
            "FLASK_OIDC_OVERWRITE_REDIRECT_URI",
            ["login", "after_login"],
        ),
    ] {
        if let Some(v) = get(var) {
            set(root, &path, Value::String(v.into()));
        }
    }
    if let Some(v) = get("FLASK_OIDC_REDIRECT_URI") {
        // flaskoidc's callback: a path (its default /auth), or a whole URL.
        match v.split_once("://") {
            Some((_, rest)) => {
                set(root, &["login", "redirect_uri"], Value::String(v.into()));
                let path = rest.find('/').map_or("/", |i| &rest[i..]);
                set(
                    root,
                    &["login", "callback_path"],
                    Value::String(path.into()),
                );
            }
            None => set(root, &["login", "callback_path"], Value::String(v.into())),
        }
    }
    if let Some(v) = get("FLASK_OIDC_FORCE_SCHEMA") {
        match v.to_ascii_lowercase().as_str() {
            s @ ("http" | "https") => set(root, &["login", "scheme"], Value::String(s.into())),
            _ => problems.push(format!(
                "FLASK_OIDC_FORCE_SCHEMA: {v:?} is neither http nor https"
            )),
        }
    }
    if let Some(v) = get("FLASK_OIDC_SCOPES") {
        set(root, &["provider", "scopes"], string_list(v));
    }
    if let Some(v) = get("FLASK_OIDC_SECRET_KEY") {
        match session_secret(v) {
            Ok((secret, warning)) => {
                set(root, &["session", "secret"], Value::String(secret));
                warnings.extend(warning);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(v) = get("FLASK_OIDC_LOG_LEVEL") {
        let level = match v.to_ascii_uppercase().as_str() {
            "DEBUG" => Some("debug"),
            "INFO" => Some("info"),
            "WARNING" | "WARN" => Some("warn"),
            "ERROR" | "CRITICAL" | "FATAL" => Some("error"),
            _ => None,
        };
        match level {
            Some(l) => set(root, &["log", "level"], Value::String(l.into())),
            None => problems.push(format!(
                "FLASK_OIDC_LOG_LEVEL: {v:?} is not DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )),
        }
    }
    if get("FLASK_OIDC_LOG_DATE_FORMAT").is_some() {
        problems.push(
            "FLASK_OIDC_LOG_DATE_FORMAT: portcullis writes RFC 3339 times in every line (and \
             JSON with log.format json); unset it"
                .into(),
        );
    }
    if let Some(path) = get("FLASK_OIDC_PROVIDER_ADDITIONAL_PARAMETERS_FILE_PATH") {
        overlay_additional_parameters(root, &resolve(base, Path::new(path)), problems);
    }
    if let Some(v) = get("FLASK_OIDC_WHITELISTED_ENDPOINTS") {
        // flaskoidc names Flask endpoints; Amundsen's (status, healthcheck, health) are served at
        // the path of the same name, so each becomes a public path prefix ahead of the other routes.
        let mut routes: Vec<Value> = Vec::new();
        let Value::Sequence(names) = string_list(v) else {
            unreachable!()
        };
        for name in names {
            let Value::String(name) = name else { continue };
            let mut r = Mapping::new();
            r.insert("name".into(), Value::String(format!("flaskoidc-{name}")));
            r.insert("path_prefix".into(), Value::String(format!("/{name}")));
            r.insert("action".into(), Value::String("public".into()));
            routes.push(Value::Mapping(r));
        }
        let existing = match root.get("routes") {
            Some(Value::Sequence(s)) => s.clone(),
            _ => default_routes_yaml(),
        };
        routes.extend(existing);
        set(root, &["routes"], Value::Sequence(routes));
    }
}

/// A Flask `SECRET_KEY` as a session secret: base64 of 32 bytes or more is taken as it is; any
/// other string is stretched (HKDF-SHA256) into 32 bytes, with a warning when it is short.
fn session_secret(key: &str) -> Result<(String, Option<String>), String> {
    if FLASKOIDC_DEFAULT_SECRETS.contains(&key) {
        return Err(
            "FLASK_OIDC_SECRET_KEY: this is flaskoidc's published default; set a secret of your \
             own (portcullis gen-secret prints one)"
                .into(),
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    if b64.decode(key).is_ok_and(|raw| raw.len() >= 32) {
        return Ok((key.to_owned(), None));
    }
    let mut stretched = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis flaskoidc secret key")
        .extract(key.as_bytes())
        .expand(&[b"session.secret"], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut stretched))
        .map_err(|_| "FLASK_OIDC_SECRET_KEY: cannot be stretched".to_owned())?;
    let warning = (key.len() < 32).then(|| {
        format!(
            "FLASK_OIDC_SECRET_KEY is {} characters: stretched into a session key, but a short \
             secret is a guessable one; use 32 random bytes (portcullis gen-secret)",
            key.len()
        )
    });
    Ok((b64.encode(stretched), warning))
}

/// flaskoidc's extra parameters for the provider (a JSON object): the authorization request's.
fn overlay_additional_parameters(root: &mut Value, path: &Path, problems: &mut Vec<String>) {
    let var = "FLASK_OIDC_PROVIDER_ADDITIONAL_PARAMETERS_FILE_PATH";
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t)
                .map_err(|e| e.to_string())
        });
    match parsed {
        Err(e) => problems.push(format!("{var}: {}: {e}", path.display())),
        Ok(params) => {
            for (k, v) in params {
                match v {
                    serde_json::Value::String(v) => set(
                        root,
                        &["provider", "extra_auth_params", &k],
                        Value::String(v),
                    ),
                    _ => problems.push(format!(
                        "{var}: {}: {k:?} is not a string; portcullis sends strings only",
                        path.display()
                    )),
                }
            }
        }
    }
}

/// A flaskoidc `client_secrets.json`: `{"web": {"client_id", "client_secret", "issuer"?, ...}}`.
fn overlay_client_secrets(root: &mut Value, path: &Path, problems: &mut Vec<String>) {
    #[derive(Deserialize)]
    struct Secrets {
        web: Web,
    }
    #[derive(Deserialize)]
    struct Web {
        client_id: Option<String>,
        client_secret: Option<String>,
        issuer: Option<String>,
        redirect_uris: Option<Vec<String>>,
    }
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<Secrets>(&t).map_err(|e| e.to_string()));
    match parsed {
        Err(e) => problems.push(format!("OIDC_CLIENT_SECRETS: {}: {e}", path.display())),
        Ok(Secrets { web }) => {
            for (v, p) in [
                (web.client_id, ["provider", "client_id"]),
                (web.client_secret, ["provider", "client_secret"]),
                (web.issuer, ["provider", "issuer"]),
                (
                    web.redirect_uris.and_then(|u| u.into_iter().next()),
                    ["login", "redirect_uri"],
                ),
            ] {
                if let Some(v) = v {
                    set(root, &p, Value::String(v));
                }
            }
        }
    }
}

fn default_routes_yaml() -> Vec<Value> {
    serde_yaml_ng::from_str("[{name: app, path_prefix: /, action: login}]").expect("static YAML")
}
