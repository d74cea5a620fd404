//! `Config::from_yaml` on any YAML with a few environment variables beside it: never panics.
//!
//! The input is `YAML` followed by any number of `\0NAME=value` parts; only the names portcullis
//! reads (`PORTCULLIS_*` and flaskoidc's) are kept. Inputs naming a device or /proc are skipped:
//! `*_file` settings and `OIDC_CLIENT_SECRETS` read the file they name, and reading `/dev/zero`
//! or `/dev/stdin` never ends (an operator's mistake, not an attacker's input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::{Config, Env};

const FLASKOIDC: [&str; 10] = [
    "OIDC_CLIENT_SECRETS",
    "FLASK_OIDC_CONFIG_URL",
    "FLASK_OIDC_CLIENT_ID",
    "FLASK_OIDC_CLIENT_SECRET",
    "FLASK_OIDC_USER_ID_FIELD",
    "OIDC_CALLBACK_ROUTE",
    "OVERWRITE_REDIRECT_URI",
    "FLASK_OIDC_SCOPES",
    "FLASK_OIDC_SECRET_KEY",
    "FLASK_OIDC_WHITELISTED_ENDPOINTS",
];

fuzz_target!(|input: &str| {
    if input.contains("/dev") || input.contains("/proc") || input.contains("/sys") {
        return;
    }
    let mut parts = input.split('\0');
    let yaml = parts.next().unwrap_or_default();
    let mut env = Env::new();
    for part in parts {
        let Some((name, value)) = part.split_once('=') else {
            continue;
        };
        if name.starts_with("PORTCULLIS_") || FLASKOIDC.contains(&name) {
            env.insert(name.to_owned(), value.to_owned());
        }
    }
    if let Ok(config) = Config::from_yaml(yaml, &env, None) {
        // A config that loads is one the service can describe and warn about.
        let _ = portcullis::app::config_warnings(&config);
    }
});
