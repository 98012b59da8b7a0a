//! Log output of Plum's binaries (`plum-controller`, `plum-agent`): `--log-format text|json`
//! (env `PLUM_LOG_FORMAT`), the filter from `PLUM_LOG`, to stderr. JSON is tracing-subscriber's
//! own formatter: one object per line with `timestamp`, `level`, `target`, `fields` and the
//! fields of the current span (`span`) and of every span it is in (`spans`), so a request's
//! `trace_id` is on each line logged within it.
//!
//! [`init_with`] adds a layer of the binary's own beside the log output (the controller's OTLP
//! span export, feature `otlp`): `PLUM_LOG` then filters the log output only, and the extra
//! layer gets what its own filter asks for.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The environment variable of the filter (`tracing_subscriber::EnvFilter` directives).
pub const FILTER_ENV: &str = "PLUM_LOG";

/// Installs the process's subscriber; `default_filter` applies when `PLUM_LOG` is unset or bad.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_target(false).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init()
        }
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
    }
}

/// A layer [`init_with`] installs beside the log output, with its own filter.
pub type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// [`init`] plus `extra`. The log output is the same (format, `PLUM_LOG`, stderr), filtered per
/// layer: a span `extra` wants (e.g. DEBUG request spans) is created even when `PLUM_LOG`
/// leaves it out of the log.
pub fn init_with(format: LogFormat, default_filter: &str, extra: ExtraLayer) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let base = tracing_subscriber::registry().with(extra);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => base
            .with(
                fmt.with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => {
            base.with(fmt.json().with_current_span(true).with_span_list(true).with_filter(filter)).init()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[arg(long, value_enum, default_value_t)]
        log_format: LogFormat,
    }

    #[test]
    fn the_format_is_text_json_or_a_clear_error() {
        assert_eq!(Flags::try_parse_from(["x"]).unwrap().log_format, LogFormat::Text);
        assert_eq!(Flags::try_parse_from(["x", "--log-format", "json"]).unwrap().log_format, LogFormat::Json);
        let err = Flags::try_parse_from(["x", "--log-format", "yaml"]).err().unwrap().to_string();
        assert!(err.contains("invalid value 'yaml'") && err.contains("text") && err.contains("json"), "{err}");
    }
}
