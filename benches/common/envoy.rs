//! The Envoy bench's variants and its config: the shipped envoy.yaml, one listener per variant;
//! for the native fast path's variants, the listener `portcullis envoy-config` generates.

use serde_yaml_ng::Value;

use crate::support::{self, AUDIENCE, EnvoyPorts, Op};

/// One listener of the bench Envoy and the requests sent to it.
pub struct Variant<'a> {
    /// A short name for the tables and ratios ("c'"), and the label printed beside it.
    pub key: &'static str,
    pub label: &'static str,
    pub port: u16,
    /// The auth filter before the router.
    pub filter: Filter,
    /// The authorizer process whose CPU time per request is reported.
    pub authorizer_pid: Option<u32>,
    /// The request header sent ("name: value"), made anew for each run: wrk cannot take up a
    /// reissued cookie, so every run gets one sealed just before it.
    pub header: &'a dyn Fn() -> String,
    pub path: &'static str,
}

/// "(key) label", padded to the width asked for.
impl std::fmt::Display for Variant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.pad(&format!("({}) {}", self.key, self.label))
    }
}

/// The auth filter of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    None,
    /// Envoy's own jwt_authn filter with its JWT cache, the provider's key inline.
    JwtAuthn,
    /// The shipped ext_authz filter, pointed at `cluster`: `portcullis` (the shipped one) or one
    /// of the [`Cluster`]s added.
    ExtAuthz {
        cluster: &'static str,
    },
    /// The native fast path: the filters and routes of the listener `portcullis envoy-config`
    /// generated (header removal, jwt_authn, Lua, ext_authz to its own portcullis), every route
    /// answering 200 itself; its Lua step stripping portcullis's cookies or (to count what that
    /// costs) not.
    FastPath(CookieStrip),
    /// The same generated with `--fast-path-filter native`: portcullis's Envoy filter in place of
    /// the Lua step and `jwt_authn`'s payload metadata.
    FastPathNative,
    /// The same generated with `--fast-path-filter callout`: portcullis's Envoy filter alone,
    /// asking portcullis over HTTP and letting what it allowed through again.
    FastPathCallout,
}

/// Whether the fast path's Lua step strips portcullis's cookies, as generated, or skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieStrip {
    On,
    Off,
}

/// An authorizer cluster added beside the shipped `portcullis` one, copied from it.
pub struct Cluster {
    pub name: &'static str,
    pub port: u16,
    /// Whether Envoy health-checks it every 5 s, as the shipped cluster does.
    pub health_checked: bool,
}

impl Cluster {
    /// A no-op authorizer: it has no health service.
    pub fn noop(name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            health_checked: false,
        }
    }

    /// Another portcullis, health-checked like the shipped one.
    pub fn portcullis(name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            health_checked: true,
        }
    }
}

/// The shipped envoy.yaml, its listener copied once per variant with that variant's filter and a
/// direct 200 instead of the upstream, its `portcullis` cluster at `portcullis` and copied for
/// each of `clusters`. The fast path's variants take their listener from `fast_path` (the output
/// of `portcullis envoy-config`), whose clusters join under names starting `fast-`, the native
/// ones from `fast_path_native` (the same portcullis, so the same clusters).
pub fn envoy_config(
    op: &Op,
    portcullis: u16,
    clusters: &[Cluster],
    variants: &[Variant],
    fast_path: &str,
    fast_path_native: &str,
    fast_path_callout: &str,
) -> String {
    let ports = EnvoyPorts::free(portcullis, support::free_port());
    let mut config: Value =
        serde_yaml_ng::from_str(&support::shipped_config("envoy/envoy.yaml", ports)).unwrap();
    let resources = &mut config["static_resources"];
    let template = resources["listeners"][0].clone();
    let Value::Sequence(shipped) =
        template["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].clone()
    else {
        panic!("envoy.yaml: no http_filters");
    };
    let ext_authz = shipped[0].clone();
    let router = shipped[shipped.len() - 1].clone();
    assert_eq!(ext_authz["name"], "envoy.filters.http.ext_authz");
    assert_eq!(router["name"], "envoy.filters.http.router");
    let jwt_authn = jwt_authn(op);
    let filter = |f: Filter| match f {
        Filter::None => None,
        Filter::JwtAuthn => Some(jwt_authn.clone()),
        Filter::ExtAuthz { cluster } => {
            let mut f = ext_authz.clone();
            f["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = cluster.into();
            Some(f)
        }
        Filter::FastPath(_) | Filter::FastPathNative | Filter::FastPathCallout => {
            unreachable!("the fast path's listener is generated whole")
        }
    };

    let (fast_listener, fast_clusters) = fast_path_parts(fast_path);
    let (native_listener, _) = fast_path_parts(fast_path_native);
    let (callout_listener, callout_clusters) = fast_path_parts(fast_path_callout);
    let listeners: Vec<Value> = variants
        .iter()
        .map(|v| {
            match v.filter {
                Filter::FastPath(strip) => return fast_path_listener(&fast_listener, v, strip),
                Filter::FastPathNative => {
                    return fast_path_listener(&native_listener, v, CookieStrip::On);
                }
                Filter::FastPathCallout => {
                    return fast_path_listener(&callout_listener, v, CookieStrip::On);
                }
                _ => {}
            }
            let mut l = template.clone();
            l["name"] = format!("bench-{}", v.key.replace('\'', "-prime")).into();
            l["address"]["socket_address"]["port_value"] = v.port.into();
            let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
            if let Value::Mapping(m) = hcm {
                m.remove("access_log");
            }
            hcm["route_config"]["virtual_hosts"][0]["routes"] = serde_yaml_ng::from_str(
                r#"[{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "ok"}}}]"#,
            )
            .unwrap();
            let chain = filter(v.filter).into_iter().chain([router.clone()]);
            hcm["http_filters"] = Value::Sequence(chain.collect());
            l
        })
        .collect();
    resources["listeners"] = Value::Sequence(listeners);

    let Value::Sequence(shipped) = &mut resources["clusters"] else {
        panic!("envoy.yaml: no clusters");
    };
    let template = shipped
        .iter()
        .find(|c| c["name"] == "portcullis")
        .expect("portcullis cluster")
        .clone();
    for c in clusters {
        let mut cluster = template.clone();
        cluster["name"] = c.name.into();
        cluster["load_assignment"]["cluster_name"] = c.name.into();
        if let Value::Mapping(m) = &mut cluster
            && !c.health_checked
        {
            m.remove("health_checks");
        }
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["port_value"] = c.port.into();
        shipped.push(cluster);
    }
    // The callout form's clusters (its upstream and portcullis's HTTP port) are the same
    // portcullis's: only the one the others lack joins.
    let more: Vec<Value> = callout_clusters
        .into_iter()
        .filter(|c| !fast_clusters.iter().any(|f| f["name"] == c["name"]))
        .collect();
    shipped.extend(fast_clusters);
    shipped.extend(more);
    serde_yaml_ng::to_string(&config).unwrap()
}

/// The listener and the clusters of a generated bootstrap, every cluster renamed `fast-NAME`
/// (references too) so that none meets a bench cluster's name.
fn fast_path_parts(bootstrap: &str) -> (Value, Vec<Value>) {
    let config: Value = serde_yaml_ng::from_str(bootstrap).expect("envoy-config is YAML");
    let resources = &config["static_resources"];
    let Value::Sequence(mut clusters) = resources["clusters"].clone() else {
        panic!("envoy-config: no clusters");
    };
    let names: Vec<String> = clusters
        .iter()
        .map(|c| c["name"].as_str().expect("a cluster name").to_owned())
        .collect();
    let mut listener = resources["listeners"][0].clone();
    rename_clusters(&mut listener, &names);
    clusters.iter_mut().for_each(|c| rename_clusters(c, &names));
    (listener, clusters)
}

/// Renames every cluster of `names` to `fast-NAME` wherever `value` names one.
fn rename_clusters(value: &mut Value, names: &[String]) {
    match value {
        Value::Mapping(m) => {
            for (key, v) in m.iter_mut() {
                let names_cluster =
                    matches!(key.as_str(), Some("name" | "cluster" | "cluster_name"));
                match v {
                    Value::String(s) if names_cluster && names.contains(s) => {
                        *s = format!("fast-{s}");
                    }
                    // The callout filter's JSON config names the cluster it asks.
                    Value::String(s) if key.as_str() == Some("value") => {
                        for n in names {
                            *s = s.replace(
                                &format!("\"cluster\":\"{n}\""),
                                &format!("\"cluster\":\"fast-{n}\""),
                            );
                        }
                    }
                    _ => rename_clusters(v, names),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| rename_clusters(v, names)),
        _ => {}
    }
}

/// The generated listener for variant `v`: its port, no access log, every route that would go
/// upstream a direct 200, and the Lua step's cookie strip as `strip` says.
fn fast_path_listener(generated: &Value, v: &Variant, strip: CookieStrip) -> Value {
    let mut l = generated.clone();
    l["name"] = format!("bench-{}", v.key).into();
    l["address"]["socket_address"]["port_value"] = v.port.into();
    let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
    if let Value::Mapping(m) = hcm {
        m.remove("access_log");
    }
    let Value::Sequence(hosts) = &mut hcm["route_config"]["virtual_hosts"] else {
        panic!("envoy-config: no virtual_hosts");
    };
    for route in hosts
        .iter_mut()
        .filter_map(|h| h["routes"].as_sequence_mut())
        .flatten()
    {
        if let Value::Mapping(r) = route
            && r.remove("route").is_some()
        {
            r.insert(
                "direct_response".into(),
                serde_yaml_ng::from_str(r#"{status: 200, body: {inline_string: "ok"}}"#).unwrap(),
            );
        }
    }
    if strip == CookieStrip::Off {
        let Value::Sequence(filters) = &mut hcm["http_filters"] else {
            panic!("envoy-config: no http_filters");
        };
        let lua = filters
            .iter_mut()
            .find(|f| f["name"] == "envoy.filters.http.lua")
            .expect("envoy-config: a Lua filter");
        let code = &mut lua["typed_config"]["default_source_code"]["inline_string"];
        let script = code.as_str().expect("inline Lua").to_owned();
        let without = script.replace("\n  strip(h)\n", "\n");
        assert_ne!(without, script, "the Lua step no longer calls strip(h)");
        *code = without.into();
    }
    l
}

/// Envoy's jwt_authn filter for the provider `op`, with its key inline and a JWT cache.
fn jwt_authn(op: &Op) -> Value {
    let jwks = format!(
        r#"{{"keys": [{}]}}"#,
        std::fs::read_to_string(
            support::repo_root().join("tests/fixtures/keys/rs256-a.pub.jwk.json")
        )
        .unwrap()
    );
    serde_yaml_ng::from_str(&format!(
        r#"
name: envoy.filters.http.jwt_authn
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
  providers:
    op:
      issuer: "{}"
      audiences: ["{AUDIENCE}"]
      local_jwks: {{ inline_string: {} }}
      jwt_cache_config: {{ jwt_cache_size: 100 }}
  rules:
  - match: {{ prefix: "/" }}
    requires: {{ provider_name: op }}
"#,
        op.issuer,
        serde_json::to_string(&jwks).unwrap()
    ))
    .unwrap()
}
