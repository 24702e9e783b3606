//! W3C trace context (`traceparent`, `tracestate`) in and out of the three
//! carriers a trace crosses: HTTP headers, a JSON map stored on an outbox
//! row, and AMQP message headers.
//!
//! All of them go through the global propagator that [`crate::init`]
//! installs; without it (unit tests) injection writes nothing and
//! extraction yields an empty context, which is harmless.

use lapin::types::{AMQPValue, FieldTable, ShortString};
pub use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use std::collections::HashMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The context of `span` as a string map, ready to be stored (e.g. as JSON
/// on an outbox row) and extracted later by [`context_from_map`].
pub fn span_context_map(span: &Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut map));
    map
}

/// The context stored by [`span_context_map`].
pub fn context_from_map(map: &HashMap<String, String>) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(map))
}

/// Writes the context of `span` into AMQP message headers.
pub fn inject_amqp(span: &Span, headers: &mut FieldTable) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut AmqpInjector(headers))
    });
}

/// Reads the context a producer put into AMQP message headers.
pub fn extract_amqp(headers: &FieldTable) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&AmqpExtractor(headers)))
}

/// Reads the context of an incoming HTTP request.
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    })
}

/// Makes `parent` the parent of a span that has not been entered yet, then
/// records the resulting trace id in the span's `trace_id` field (if it
/// declares one) so log lines carry it.
///
/// An invalid (empty) parent leaves the span a root, which is what a request
/// without `traceparent` should be.
pub fn adopt_parent(span: &Span, parent: Context) {
    if parent.span().span_context().is_valid() && span.set_parent(parent).is_err() {
        tracing::debug!("span already started; parent context not applied");
    }
    record_trace_id(span);
}

/// Makes `producer` — the context a message carried — both the parent of
/// a consumer span that has not been entered yet and the target of a span
/// link, as the messaging conventions ask of a `process` span: the parent
/// keeps one order's saga in one trace, the link says which send it
/// answers (and survives a backend that shows only links).
pub fn adopt_producer(span: &Span, producer: Context) {
    let producer_span = producer.span().span_context().clone();
    adopt_parent(span, producer);
    if producer_span.is_valid() {
        span.add_link(producer_span);
    }
}

/// Marks `span` as failed: `error.type` (a low-cardinality class such as
/// `permanent` or `500`) and an error status with `description`. The span
/// must declare `error.type` (as `tracing::field::Empty`).
pub fn record_error(span: &Span, error_type: &str, description: &str) {
    span.record("error.type", error_type);
    span.set_status(opentelemetry::trace::Status::error(description.to_owned()));
}

/// Records the span's trace id in its `trace_id` field.
pub fn record_trace_id(span: &Span) {
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// The trace id of `span` in its W3C hex form (32 lowercase hex digits).
pub fn trace_id(span: &Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}

struct AmqpInjector<'a>(&'a mut FieldTable);

impl Injector for AmqpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Propagator keys are short constants; skip anything the AMQP
        // short-string limit would refuse rather than panic.
        if let Ok(key) = ShortString::try_new(key) {
            self.0.insert(key, AMQPValue::LongString(value.into()));
        }
    }
}

struct AmqpExtractor<'a>(&'a FieldTable);

impl Extractor for AmqpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_headers_carry_a_traceparent_both_ways() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(traceparent.into()),
        );
        let cx = extract_amqp(&headers);
        let span_cx = cx.span().span_context().clone();
        assert!(span_cx.is_valid());
        assert_eq!(
            span_cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let mut map = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut map));
        assert_eq!(
            map.get("traceparent").map(String::as_str),
            Some(traceparent)
        );
        assert_eq!(
            context_from_map(&map).span().span_context().trace_id(),
            span_cx.trace_id()
        );
    }
}
