//! Logging: plain or JSON lines on stderr, filtered by `log.level` (or `RUST_LOG` when set); the
//! audit events (audit.rs) stay on at `info` whatever the filter, unless it names them.

use tracing_subscriber::EnvFilter;

use serde::Deserialize;

/// `log.format`: one line per event, for people (plain) or for log pipelines (json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(with_audit(&f)).ok())
        .unwrap_or_else(|| EnvFilter::new(with_audit(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // try_init: a second call (tests, check-config after serve) keeps the first subscriber.
    let _ = match format {
        // A plain line says `audit` in its message; a pipeline reading JSON picks the target.
        LogFormat::Plain => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
