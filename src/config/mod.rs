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
        let mut config = Self::from_yaml(&text, env, path.parent())?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// The files this config was read from (the config file, then the secret files it names):
    /// what a reload watches.
    pub fn files(&self) -> Vec<PathBuf> {
        self.source
            .iter()
            .chain(&self.secret_files)
            .cloned()
            .collect()
    }

    /// `base` resolves relative `*_file` paths (the config file's folder).
    pub fn from_yaml(text: &str, env: &Env, base: Option<&Path>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let value = merged(text, env, base, &mut problems, &mut warnings)?;
        // Schema problems (unknown keys, wrong types) come all at once; the semantic checks run on
        // a schema read without any, where each problem found is one of the user's.
        let file = read_schema(value, &mut problems);
        let Some(file) = file.filter(|_| problems.is_empty()) else {
            return Err(ConfigError::Invalid(problems));
        };
        let config = validate::validate(file, base, &mut problems);
        match config {
            Some(mut c) if problems.is_empty() => {
                c.warnings = warnings;
                Ok(c)
            }
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    /// The file (or nothing) with the environment over it, as YAML, secrets redacted: what each
    /// variable became (`check-config --print`). Not validated.
    pub fn effective(text: &str, env: &Env, base: Option<&Path>) -> Result<String, ConfigError> {
        let (mut problems, mut warnings) = (Vec::new(), Vec::new());
        let mut value = merged(text, env, base, &mut problems, &mut warnings)?;
        for path in [
            &["provider", "client_secret"][..],
            &["session", "secret"],
            &["session", "redis", "url"],
        ] {
            redact(&mut value, path);
        }
        for list in ["bearer", "providers"] {
            if let Some(Value::Sequence(entries)) = value.get_mut(list) {
                for entry in entries {
                    redact(entry, &["client_secret"]);
                }
            }
        }
        Ok(serde_yaml_ng::to_string(&value).expect("a YAML tree always serializes"))
    }
}

/// The YAML text with the flaskoidc names and then `PORTCULLIS_*` over it.
fn merged(
    text: &str,
    env: &Env,
    base: Option<&Path>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Value, ConfigError> {
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
    flaskoidc::overlay(&mut value, env, base, problems, warnings);
    env::overlay(&mut value, env, problems);
    Ok(value)
}

/// Replaces the value at `path` (a string or a list of them) with `<redacted>`.
fn redact(value: &mut Value, path: &[&str]) {
    let mut cur = value;
    for key in path {
        match cur.get_mut(*key) {
            Some(next) => cur = next,
            None => return,
        }
    }
    *cur = match cur {
        Value::Sequence(s) => Value::Sequence(vec![Value::String("<redacted>".into()); s.len()]),
        _ => Value::String("<redacted>".into()),
    };
}

/// How many problems of the schema (unknown keys, wrong types) are looked for in one run.
const MAX_SCHEMA_PROBLEMS: usize = 50;

/// The YAML tree read into the schema, every unknown key and wrongly typed value reported: serde
/// stops at the first, so each one found is noted, taken out of the tree, and the rest read again.
/// `None` when a problem cannot be taken out (a required key is missing).
fn read_schema(mut value: Value, problems: &mut Vec<String>) -> Option<FileConfig> {
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, FileConfig>(value.clone()) {
            Ok(file) => return Some(file),
            Err(e) => e,
        };
        let path = e.path().to_string();
        let mut message = e.inner().to_string();
        if message.contains("duration") {
            message.push_str(" (write it as 30s, 5m, 1h or 500ms)");
        }
        problems.push(if path == "." {
            format!("config: {message}")
        } else {
            format!("{path}: {message}")
        });
        let segments: Vec<&serde_path_to_error::Segment> = e.path().iter().collect();
        if !remove_at(&mut value, &segments) {
            return None;
        }
    }
    None
}

/// Takes the value at `path` out of the tree; false when there is none to take.
fn remove_at(value: &mut Value, path: &[&serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for segment in parents {
        cur = match (segment, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(s)) => match s.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(s)) if *index < s.len() => {
            s.remove(*index);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
