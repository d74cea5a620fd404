//! Tracing: Envoy (the shipped config, with its OpenTelemetry tracer on) and portcullis both
//! export spans over OTLP/HTTP to a receiver here, which decodes them with the OTLP protobuf
//! types. portcullis's Check span continues Envoy's trace, under Envoy's ext_authz span; its key
//! fetches and discovery are spans too. Needs `scripts/setup`; run by `scripts/test`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_yaml_ng::Value;
use support::*;

/// One exported span: who sent it, its name, and where it sits in its trace.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

/// An OTLP/HTTP receiver on loopback: every span posted to `/v1/traces`, decoded.
async fn receiver() -> (u16, Arc<Mutex<Vec<Exported>>>) {
    let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.push(Exported {
                                service: service.clone(),
                                name: span.name,
                                trace_id: span.trace_id,
                                span_id: span.span_id,
                                parent_span_id: span.parent_span_id,
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, spans)
}

/// The shipped Envoy config with tracing on: every request sampled, spans to the receiver.
fn traced(config: &str, receiver: u16) -> String {
    let mut config: Value = serde_yaml_ng::from_str(config).unwrap();
    let tracing: Value = serde_yaml_ng::from_str(&format!(
        "random_sampling: {{value: 100}}\n\
         provider:\n  name: envoy.tracers.opentelemetry\n  typed_config:\n    \
         '@type': type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig\n    \
         service_name: envoy\n    \
         http_service:\n      http_uri: {{uri: 'http://127.0.0.1:{receiver}/v1/traces', cluster: otel, timeout: 2s}}\n"
    ))
    .unwrap();
    let hcm = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["tracing"] = tracing;
    let cluster: Value = serde_yaml_ng::from_str(&format!(
        "name: otel\ntype: STATIC\nconnect_timeout: 1s\n\
         load_assignment:\n  cluster_name: otel\n  endpoints:\n  - lb_endpoints:\n    \
         - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {receiver}}}}}}}\n"
    ))
    .unwrap();
    let Value::Sequence(clusters) = &mut config["static_resources"]["clusters"] else {
        panic!("no clusters");
    };
    clusters.push(cluster);
    // Envoy sends its spans every 5 s by default.
    config["layered_runtime"] = serde_yaml_ng::from_str(
        "layers: [{name: tracing, static_layer: {tracing.opentelemetry.flush_interval_ms: 200}}]",
    )
    .unwrap();
    serde_yaml_ng::to_string(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn a_check_continues_envoys_trace_and_key_fetches_are_spans() {
    let (port, spans) = receiver().await;
    let upstream = EchoUpstream::start().await;
    let op = Op::start(OpOptions::auth0()).await;
    let grpc = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let portcullis = Portcullis::start_with_env(
        &format!(
            "listen: {{grpc: '127.0.0.1:{grpc}'}}\n\
             provider: {{issuer: '{issuer}', client_id: {CLIENT_ID}}}\n\
             bearer: [{{issuer: '{issuer}', audiences: ['{AUDIENCE}']}}]\n\
             routes: [{{name: api, path_prefix: /, action: api}}]\n",
            issuer = op.issuer,
        ),
        "portcullis=debug,info",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let envoy = Envoy::start(&traced(
        &shipped_config("envoy/envoy.yaml", EnvoyPorts::free(grpc, upstream.port)),
        port,
    ))
    .await;
    let token = op.client_credentials_token().await;
    let r = http_client()
        .get(format!("{}/api/tables", envoy.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut found = None;
    for _ in 0..100 {
        let all = spans.lock().unwrap().clone();
        let check = all
            .iter()
            .find(|s| s.name == "check" && s.service.contains("portcullis"));
        if let Some(check) = check
            && let Some(parent) = all
                .iter()
                .find(|s| s.service.contains("envoy") && s.span_id == check.parent_span_id)
        {
            found = Some((check.clone(), parent.clone(), all));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some((check, parent, all)) = found else {
        panic!(
            "no portcullis check span under an Envoy span: {:#?}",
            spans.lock().unwrap()
        );
    };
    assert_eq!(check.trace_id, parent.trace_id, "one trace");
    assert!(
        parent.name.contains("ext_authz") || parent.name.contains("Authorization"),
        "the parent is Envoy's call to portcullis: {parent:?}"
    );
    // Envoy's own root span of the request is in the same trace.
    assert!(
        all.iter().any(|s| s.service.contains("envoy")
            && s.trace_id == check.trace_id
            && s.parent_span_id.is_empty()),
        "{all:#?}"
    );
    for name in ["jwks.fetch", "oidc.discovery"] {
        assert!(
            all.iter()
                .any(|s| s.name == name && s.service.contains("portcullis")),
            "{name}: {all:#?}"
        );
    }
    drop(portcullis);
}
