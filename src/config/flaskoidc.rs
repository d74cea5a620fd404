//! The variable names of a flaskoidc `.env` (Amundsen's OIDC guide), read as config so that
//! migrating is "source your .env, start portcullis". `PORTCULLIS_*` variables win over these.

use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::env::{Env, set, string_list};
use super::file::resolve;

/// Writes what the flaskoidc variables in `env` say into the YAML tree.
pub(super) fn overlay(
    root: &mut Value,
    env: &Env,
    base: Option<&Path>,
    problems: &mut Vec<String>,
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
        ("FLASK_OIDC_CLIENT_ID", ["provider", "client_id"]),
        ("FLASK_OIDC_CLIENT_SECRET", ["provider", "client_secret"]),
        ("FLASK_OIDC_USER_ID_FIELD", ["provider", "user_id_claim"]),
        ("OIDC_CALLBACK_ROUTE", ["login", "callback_path"]),
        ("OVERWRITE_REDIRECT_URI", ["login", "redirect_uri"]),
    ] {
        if let Some(v) = get(var) {
            set(root, &path, Value::String(v.into()));
        }
    }
    if let Some(v) = get("FLASK_OIDC_SCOPES") {
        set(root, &["provider", "scopes"], string_list(v));
    }
    if let Some(v) = get("FLASK_OIDC_SECRET_KEY") {
        set(root, &["session", "secret"], Value::String(v.into()));
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
