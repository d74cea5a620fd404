//! Logging: plain or JSON lines on stderr, filtered by `log.level` (or `RUST_LOG` when set); the
//! audit events (audit.rs) stay on at `info` whatever the filter, unless it names them. And
//! tracing: OpenTelemetry spans exported over OTLP, off unless the standard `OTEL_*` variables
//! turn it on; the trace a request arrives with (W3C `traceparent`) is continued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The target of portcullis's own spans (Check, JWKS and discovery fetches, the code exchange,
/// refresh, Redis). At `trace` level: nothing but the OpenTelemetry layer asks for them, so with
/// tracing off they are never even built.
pub const SPANS: &str = "portcullis::span";

/// Whether spans are exported (set once by [`init`]).
static TRACING: AtomicBool = AtomicBool::new(false);

/// `log.format`: one line per event, for people (plain) or for log pipelines (json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still waiting.
#[must_use]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

/// Logs, and traces when the environment asks for them. Call inside the tokio runtime (the span
/// exporter runs on it).
pub fn init(format: LogFormat, level: &str) -> Telemetry {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(with_audit(&f)).ok())
        .unwrap_or_else(|| EnvFilter::new(with_audit(level)));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        // A plain line says `audit` in its message; a pipeline reading JSON picks the target.
        LogFormat::Plain => fmt.with_target(false).with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let (traces, trace_problem) = match traces_from_env(&env) {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("portcullis"))
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.target() == SPANS
            }))
    });
    // try_init: a second call (tests, check-config after serve) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(problem) = trace_problem {
        tracing::warn!("tracing is off: {problem}");
    } else if traces.is_some() {
        TRACING.store(true, Ordering::Relaxed);
        tracing::info!("tracing on: spans exported over OTLP (OTEL_* settings)");
    }
    Telemetry { traces }
}

/// An OTLP span exporter when the standard variables ask for one: an endpoint
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or
/// `OTEL_TRACES_EXPORTER=otlp`, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
/// The protocol (`grpc` or `http/protobuf`), endpoint, headers, timeout, batching and
/// `OTEL_SERVICE_NAME` are read by the exporter and SDK as the specification says.
fn traces_from_env(env: &HashMap<String, String>) -> Result<Option<SdkTracerProvider>, String> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let asked = get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || get("OTEL_TRACES_EXPORTER") == Some("otlp");
    let refused = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER") == Some("none");
    if !asked || refused {
        return Ok(None);
    }
    if let Some(other) = get("OTEL_TRACES_EXPORTER").filter(|e| *e != "otlp") {
        return Err(format!(
            "OTEL_TRACES_EXPORTER={other}: only otlp (or none) is supported"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if get("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("portcullis");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The span of one check: its route, decision and reason are recorded when it is decided
/// (`Decision::describe`).
pub fn check_span() -> tracing::Span {
    // One load when tracing is off: not even the span's callsite is asked (about 150 ns a check
    // otherwise, measured in benches/core.rs's gRPC group).
    if !TRACING.load(Ordering::Relaxed) {
        return tracing::Span::none();
    }
    tracing::trace_span!(
        target: SPANS,
        "check",
        otel.kind = "server",
        route = tracing::field::Empty,
        decision = tracing::field::Empty,
        reason = tracing::field::Empty,
    )
}

/// Makes `span` a child of the trace the request carries (its `traceparent` and `tracestate`,
/// read through `header`). With tracing off the headers are not even looked up; without a valid
/// `traceparent` nothing changes.
pub fn continue_trace(span: &tracing::Span, header: impl Fn(&str) -> Option<String>) {
    if span.is_disabled() {
        return;
    }
    let Some(traceparent) = header("traceparent") else {
        return;
    };
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent);
    if let Some(state) = header("tracestate") {
        carrier.insert("tracestate".to_owned(), state);
    }
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// `filter` with the audit events at `info`, unless it says what to do with them itself
/// (`audit=off`): a quieter `log.level` must not silence them.
fn with_audit(filter: &str) -> String {
    if filter.split(',').any(|d| d.trim().starts_with("audit")) {
        filter.to_owned()
    } else if filter.trim().is_empty() {
        "audit=info".to_owned()
    } else {
        format!("{filter},audit=info")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_events_stay_on_unless_the_filter_names_them() {
        assert_eq!(with_audit("warn"), "warn,audit=info");
        assert_eq!(
            with_audit("portcullis=debug,info"),
            "portcullis=debug,info,audit=info"
        );
        assert_eq!(with_audit("warn,audit=off"), "warn,audit=off");
        assert_eq!(with_audit(""), "audit=info");
        assert!(EnvFilter::try_new(with_audit("error")).is_ok());
    }
}
