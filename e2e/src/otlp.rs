//! A trace collector small enough to live inside a test: an HTTP server
//! that accepts OTLP/HTTP protobuf exports (`POST /v1/traces`) and keeps
//! every span it is sent, labelled with the `service.name` of the process
//! that sent it.
//!
//! The services export to it exactly as they would to Jaeger or an
//! OpenTelemetry Collector (`OTEL_EXPORTER_OTLP_ENDPOINT`), so the test sees
//! the trace an operator would see, without a collector to install.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// The attribute (OpenTelemetry semantic conventions) that messaging spans
/// carry their message's routing key in.
pub const ROUTING_KEY: &str = "messaging.rabbitmq.destination.routing_key";

/// A batch of a few thousand spans is a few megabytes; axum refuses bodies
/// over 2 MB by default.
const MAX_EXPORT_BYTES: usize = 64 * 1024 * 1024;

/// One span as the receiver got it, with ids in the W3C hex form.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that exported it (`order-service`).
    pub service: String,
    /// Its `service.instance.id`: which replica (`payment-service-1`).
    pub instance: Option<String>,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id; `None` for the root of a trace.
    pub parent_span_id: Option<String>,
    /// The span's name (`POST /orders`, `e2e_….payment process`).
    pub name: String,
    /// SERVER, PRODUCER, CONSUMER, …
    pub kind: SpanKind,
    /// The span's attributes, every value as text.
    pub attributes: BTreeMap<String, String>,
    /// When it started, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
}

impl fmt::Display for ReceivedSpan {
    /// One line: `payment-service CONSUMER "e2e_….payment process" [order.created] 1a2b3c4d5e6f7a8b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {:?}",
            self.service,
            self.kind.as_str_name().trim_start_matches("SPAN_KIND_"),
            self.name
        )?;
        if let Some(routing_key) = self.attributes.get(ROUTING_KEY) {
            write!(f, " [{routing_key}]")?;
        }
        write!(f, " {}", self.span_id)
    }
}

/// The running receiver. Dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts listening on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .layer(DefaultBodyLimit::max(MAX_EXPORT_BYTES))
            .with_state(spans.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("e2e: the OTLP receiver stopped: {error}");
            }
        });
        Ok(Self {
            endpoint,
            spans,
            server,
        })
    }

    /// What to put in `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends
    /// `/v1/traces`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans received so far of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `POST /v1/traces`: decode, keep, acknowledge.
async fn export(State(store): State<Arc<Mutex<Vec<ReceivedSpan>>>>, body: Bytes) -> Response {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("e2e: the OTLP receiver got an undecodable export: {error}");
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|resource| resource.attributes)
            .unwrap_or_default();
        let service = attribute(&resource, "service.name").unwrap_or_default();
        let instance = attribute(&resource, "service.instance.id");
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    instance: instance.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?))))
                        .collect(),
                    start_unix_nanos: span.start_time_unix_nano,
                });
            }
        }
    }
    store
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(received);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The spans as an indented tree, children in the order they started; a
/// span whose parent is not among `spans` is shown at the top level, marked.
pub fn tree(spans: &[ReceivedSpan]) -> String {
    let mut sorted: Vec<&ReceivedSpan> = spans.iter().collect();
    sorted.sort_by_key(|span| span.start_unix_nanos);
    let known = |id: &String| sorted.iter().any(|span| &span.span_id == id);
    let mut text = String::new();
    for span in &sorted {
        match &span.parent_span_id {
            None => render(&sorted, span, 0, &mut text),
            Some(parent) if !known(parent) => {
                text.push_str(&format!("(parent {parent} missing)\n"));
                render(&sorted, span, 1, &mut text);
            }
            Some(_) => {}
        }
    }
    text
}

fn render(spans: &[&ReceivedSpan], span: &ReceivedSpan, depth: usize, text: &mut String) {
    text.push_str(&format!("{}{span}\n", "  ".repeat(depth)));
    for child in spans
        .iter()
        .filter(|child| child.parent_span_id.as_ref() == Some(&span.span_id))
    {
        render(spans, child, depth + 1, text);
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Bytes as lowercase hex: how trace and span ids are written everywhere else.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
