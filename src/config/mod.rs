//! The config: read from YAML (unknown keys refused), overlaid with the environment (`PORTCULLIS_*`
//! and flaskoidc's names), and validated into the [`Config`] the service runs with. Every problem
//! is reported, one line each, before any port is bound.
//!
//! ```text
//! mod.rs        Config::load: read, overlay, validate
//! validate.rs   the schema -> the settings, every problem collected
//! flaskoidc.rs  a flaskoidc .env's names, written into the YAML tree
//! env.rs        PORTCULLIS_SECTION__KEY, written into the YAML tree
//! file.rs       the YAML schema and its defaults
//! settings.rs   Config: what the service runs with
//! ```

mod env;
mod file;
mod flaskoidc;
mod settings;
mod validate;

pub use env::{Env, process_env};
pub use settings::{
    BearerIssuer, Config, EnvoyMetadata, Listen, Log, Login, Provider, SessionConfig,
};

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};
use thiserror::Error;

use file::FileConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One line per problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads, overlays the environment, and validates.
    pub fn load(path: &Path, env: &Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, env, path.parent())
    }

    /// `base` resolves relative `*_file` paths (the config file's folder).
    pub fn from_yaml(text: &str, env: &Env, base: Option<&Path>) -> Result<Self, ConfigError> {
        let mut value: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Invalid(vec![format!("config: {e}")]))?
        };
        if !value.is_mapping() {
            return Err(ConfigError::Invalid(vec![
                "config: the top level must be a mapping".into(),
            ]));
        }
        let mut problems = Vec::new();
        flaskoidc::overlay(&mut value, env, base, &mut problems);
        env::overlay(&mut value, env, &mut problems);
        let file: FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let mut all = problems.clone();
            all.push(if path == "." {
                format!("config: {}", e.inner())
            } else {
                format!("{path}: {}", e.inner())
            });
            ConfigError::Invalid(all)
        })?;
        let config = validate::validate(file, base, &mut problems);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

#[cfg(test)]
mod tests;
