//! Telemetry for every service: a `tracing` subscriber that logs with trace
//! ids and exports spans over OTLP, and W3C trace-context propagation across
//! the three hops a trace takes here — HTTP headers, outbox rows and AMQP
//! message headers.
//!
//! What it does not own: which spans exist. Those are made where the work
//! happens (HTTP layer, relay, consumer), with the helpers of [`propagation`].

pub mod log_format;
pub mod propagation;

pub use log_format::LogFormat;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG is not a valid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// `LOG_FORMAT` is neither `text` nor `json`.
    #[error(transparent)]
    LogFormat(#[from] log_format::InvalidLogFormat),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter alive; [`Guard::shutdown`] flushes the spans not yet sent.
#[derive(Debug)]
#[must_use = "dropping the guard without shutdown loses the last spans"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes pending spans and stops the exporter. Blocks the calling
    /// thread (up to the exporter's timeout), so async code runs it through
    /// `spawn_blocking`.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans at shutdown failed: {error}");
        }
    }
}

/// The environment variables [`init`] honours (the OTLP exporter reads the
/// endpoint itself), for tools that check a deployment's settings.
pub const VARIABLES: &[&str] = &[
    "RUST_LOG",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    log_format::VARIABLE,
];

/// Installs the global subscriber and propagator for `service_name`.
///
/// - Logs go to stderr, filtered by `RUST_LOG` (default `info`); every line
///   inside a request or message span carries that span's `trace_id`. With
///   `LOG_FORMAT=json` each line is one JSON object with the `trace_id` and
///   `span_id` of its span ([`log_format`]).
/// - Spans are exported over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`
///   (default `http://localhost:4318`) in batches, unless
///   `OTEL_SDK_DISABLED=true`.
pub fn init(service_name: &str) -> Result<Guard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::new("info"),
    };
    let format = LogFormat::parse(std::env::var(log_format::VARIABLE).ok().as_deref())?;
    let fmt = fmt_layer(format).with_filter(filter);

    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let provider = if disabled {
        None
    } else {
        // The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT (the exporter
        // reads it and appends /v1/traces itself).
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()?;
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(service_name.to_owned())
                        .build(),
                )
                .build(),
        )
    };

    // Spans below `info` are not exported: the trace shows the saga, the
    // debug log shows the details.
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name.to_owned()))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });

    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Guard { provider })
}

/// The log layer writing to stderr in `format`.
fn fmt_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(true),
        ),
        LogFormat::Json => Box::new(log_format::json_layer(std::io::stderr)),
    }
}
