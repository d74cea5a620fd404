//! The environment as config: the `PORTCULLIS_*` overlay, applied to the YAML before it is read,
//! and the helpers that write into the YAML tree (shared with the flaskoidc overlay).

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

/// Environment variables that are read as config. Passed in, so tests need not touch the process.
pub type Env = BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// `PORTCULLIS_SECTION__KEY=value` sets `section.key`; the list sections are whole variables
/// (`PORTCULLIS_ROUTES`, `PORTCULLIS_BEARER`). A value starting with `[` or `{` is YAML (lists,
/// maps); `true`/`false` are booleans; anything else is a string, so ids made of digits stay strings.
pub(super) fn overlay(root: &mut Value, env: &Env, problems: &mut Vec<String>) {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("PORTCULLIS_") else {
            continue;
        };
        if !rest.contains("__") && !TOP_LEVEL_LISTS.contains(&rest) {
            continue; // PORTCULLIS_CONFIG and friends are not config keys
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            problems.push(format!("{name}: empty key segment"));
            continue;
        }
        match env_value(raw) {
            Ok(v) => set_path(root, &path, v),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
}

const TOP_LEVEL_LISTS: [&str; 2] = ["ROUTES", "BEARER"];

fn env_value(raw: &str) -> Result<Value, serde_yaml_ng::Error> {
    let t = raw.trim();
    if t.starts_with('[') || t.starts_with('{') {
        serde_yaml_ng::from_str(t)
    } else if t == "true" || t == "false" {
        Ok(Value::Bool(t == "true"))
    } else {
        Ok(Value::String(raw.to_owned()))
    }
}

fn set_path(root: &mut Value, path: &[String], v: Value) {
    let mut cur = root;
    for key in &path[..path.len() - 1] {
        let map = match cur {
            Value::Mapping(m) => m,
            other => {
                *other = Value::Mapping(Mapping::new());
                let Value::Mapping(m) = other else {
                    unreachable!()
                };
                m
            }
        };
        cur = map
            .entry(Value::String(key.clone()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if let Value::Mapping(m) = cur {
        m.insert(Value::String(path[path.len() - 1].clone()), v);
    } else {
        let mut m = Mapping::new();
        m.insert(Value::String(path[path.len() - 1].clone()), v);
        *cur = Value::Mapping(m);
    }
}

pub(super) fn set(root: &mut Value, path: &[&str], v: Value) {
    let owned: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    set_path(root, &owned, v);
}

pub(super) fn string_list(raw: &str) -> Value {
    Value::Sequence(
        raw.split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    )
}
