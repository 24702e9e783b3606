//! How log lines look (`LOG_FORMAT`): human-readable text by default, or
//! one JSON object per line for a log shipper, carrying the `trace_id` and
//! `span_id` of the span the line was logged in — the keys that join a log
//! line to its trace in Jaeger or any OpenTelemetry backend.
//!
//! The JSON is tracing-subscriber's (`timestamp`, `level`, `fields`,
//! `target`, `span`) with the two ids added; they are left out when the
//! line was logged outside any exported span (start-up, shutdown) or with
//! export off (`OTEL_SDK_DISABLED=true`).

use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use std::sync::{Arc, OnceLock};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The variable that chooses the format.
pub const VARIABLE: &str = "LOG_FORMAT";

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `text` (the default): one human-readable line per event.
    #[default]
    Text,
    /// `json`: one JSON object per line, with `trace_id` and `span_id`.
    Json,
}

/// `LOG_FORMAT` holds something other than `text` or `json`.
#[derive(Debug, thiserror::Error)]
#[error("LOG_FORMAT: expected text or json, got {0:?}")]
pub struct InvalidLogFormat(String);

impl LogFormat {
    /// Reads `raw` (the value of `LOG_FORMAT`; unset or empty is `text`).
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidLogFormat> {
        match raw.map(str::trim) {
            None | Some("") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(other) => Err(InvalidLogFormat(other.to_owned())),
        }
    }
}

/// The JSON log layer writing to `writer`: tracing-subscriber's JSON
/// lines with the OpenTelemetry ids added.
pub(crate) fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let dispatch = DispatchSlot::default();
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true)
        .json()
        .event_format(JsonWithTraceIds {
            inner: tracing_subscriber::fmt::format().json(),
            dispatch: dispatch.clone(),
        })
        .and_then(dispatch)
}

/// The subscriber the layer is part of. The ids are read from the
/// OpenTelemetry layer through it, and `tracing::dispatcher::get_default`
/// cannot give it while an event is being dispatched (it answers the no-op
/// dispatcher to a re-entrant call), so it is kept when registered.
#[derive(Debug, Clone, Default)]
struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// tracing-subscriber's JSON lines, plus the OpenTelemetry ids of the
/// nearest exported span around the event.
#[derive(Debug)]
struct JsonWithTraceIds {
    inner: Format<Json>,
    dispatch: DispatchSlot,
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // Before formatting: the ids are read through the span's
        // extensions, which formatting may hold.
        let ids = self
            .dispatch
            .0
            .get()
            .and_then(WeakDispatch::upgrade)
            .and_then(|dispatch| exported_span(ctx, &dispatch));
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_ids(line, ids.as_ref()))
    }
}

/// The span context of the innermost span around the event that the
/// OpenTelemetry layer exports (spans below INFO are not exported).
fn exported_span<S, N>(ctx: &FmtContext<'_, S, N>, dispatch: &Dispatch) -> Option<SpanContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let innermost = ctx.parent_span()?;
    innermost.scope().find_map(|span| {
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), dispatch)?;
        let span_context = cx.span().span_context().clone();
        span_context.is_valid().then_some(span_context)
    })
}

/// `line` (one JSON object and a newline) with `trace_id` and `span_id`
/// added as its last members.
fn with_ids(line: String, ids: Option<&SpanContext>) -> String {
    let Some(ids) = ids else { return line };
    let object = line.trim_end();
    let Some(open) = object.strip_suffix('}') else {
        return line;
    };
    let separator = if open.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!(
        "{open}{separator}\"trace_id\":\"{}\",\"span_id\":\"{}\"}}\n",
        ids.trace_id(),
        ids.span_id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn text_is_the_default_and_anything_else_is_refused_by_name() {
        assert_eq!(LogFormat::parse(None).ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("")).ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")).ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" JSON ")).ok(), Some(LogFormat::Json));
        let error = LogFormat::parse(Some("yaml")).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "LOG_FORMAT: expected text or json, got \"yaml\""
        );
    }

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_carries_the_ids_of_its_exported_span() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(json_layer(move || writer.clone()))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            span.context().span().span_context().clone()
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["fields"]["answer"], 42);
        assert_eq!(lines[1]["trace_id"], expected.trace_id().to_string());
        assert_eq!(lines[1]["span_id"], expected.span_id().to_string());
    }

    #[test]
    fn the_ids_are_added_to_the_object() {
        let ids = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let line = with_ids("{\"level\":\"INFO\"}\n".to_owned(), Some(&ids));
        let value: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(value["span_id"], "00f067aa0ba902b7");
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let empty = with_ids("{}\n".to_owned(), Some(&ids));
        assert!(
            serde_json::from_str::<serde_json::Value>(&empty).is_ok(),
            "{empty}"
        );
        assert_eq!(with_ids("{\"a\":1}\n".to_owned(), None), "{\"a\":1}\n");
    }
}
