//! Prometheus metrics for every service: the process's one recorder, the
//! `GET /metrics` route, HTTP request metrics, and gauges computed from the
//! service's database when the route is scraped.
//!
//! Libraries record through the `metrics` facade (the messaging crate's
//! names are in `checkout_messaging::metrics`); this module owns the only
//! exporter. It does not own which business metrics exist: a service adds
//! its own scrape-time gauges as [`Collector`]s.

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// HTTP requests served, by `method` (a standard method's name, else
/// `other`), `route` (the matched pattern, never the raw path, so ids do
/// not explode the series) and `status`. No label takes a value a client
/// chose: each distinct value is a series kept until restart.
pub const HTTP_REQUESTS: &str = "checkout_http_requests_total";
/// Seconds to serve an HTTP request, by `method`, `route` and `status`.
pub const HTTP_REQUEST_DURATION: &str = "checkout_http_request_duration_seconds";
/// Outbox rows the relay has still to publish (due, or waiting out a
/// refusal's backoff), read from the database at scrape time. Parked rows
/// are not included: they are [`OUTBOX_PARKED`], so this drains to zero
/// once the relay has caught up.
pub const OUTBOX_UNPUBLISHED: &str = "checkout_outbox_unpublished";
/// Age in seconds of the oldest outbox row the relay has still to publish
/// (0 when there is none; parked rows not included, or one of them would
/// make it grow for ever), read from the database at scrape time.
pub const OUTBOX_OLDEST_AGE: &str = "checkout_outbox_oldest_unpublished_age_seconds";
/// Outbox rows the relay gave up on after the broker refused them on every
/// attempt; each waits for an operator (`checkoutctl`). Anything above zero
/// deserves an alert. Read from the database at scrape time.
pub const OUTBOX_PARKED: &str = "checkout_outbox_parked";

/// Histogram buckets (seconds) for handler and request latency: from a
/// fast local commit to a message that waited out a retry pause, and on
/// to an order that waited for its deadline (`ORDER_DEADLINE`, 30 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Sets gauges from the service's database just before `/metrics` renders.
///
/// A plain function pointer, so services can name one in a `const`-like way
/// without boxing closures: `fn orders(pool: &PgPool) -> BoxFuture<'_, …>`.
pub type Collector = for<'a> fn(&'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>>;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder, labelling every series with
/// `service = <service>`, and returns its handle.
///
/// Only the first call installs anything: a test process that builds
/// several applications gets one recorder (labelled with the first
/// service's name) instead of a panic, and every application renders it.
pub fn install(service: &str) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            // Buckets rather than the exporter's default summaries, so that
            // Prometheus can aggregate latency across replicas.
            let recorder = PrometheusBuilder::new()
                .add_global_label("service", service)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .expect("LATENCY_BUCKETS is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (e.g. by a test
            // harness); then this handle simply renders nothing recorded.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Histograms accumulate samples until rendered; when nobody scrapes (a
/// developer machine) this keeps them bounded. A thread rather than a task:
/// the recorder outlives any one async runtime in a test process.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread");
    }
}

fn describe() {
    checkout_messaging::metrics::describe();
    crate::faults::describe();
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests served, by route and status");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to serve an HTTP request, by route and status"
    );
    metrics::describe_gauge!(
        OUTBOX_UNPUBLISHED,
        "Outbox rows not yet published, parked rows not included"
    );
    metrics::describe_gauge!(
        OUTBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest unpublished outbox row, parked rows not included"
    );
    metrics::describe_gauge!(
        OUTBOX_PARKED,
        "Outbox rows parked after the broker refused every attempt; each needs an operator"
    );
}

/// Reads the outbox backlog of the service's database into the three
/// gauges ([`checkout_messaging::outbox::backlog`]). Cheap: the partial
/// indexes it reads hold only unpublished rows.
pub fn outbox_backlog(pool: &PgPool) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let backlog = checkout_messaging::outbox::backlog(pool).await?;
        // Row counts fit an f64 exactly far beyond any real backlog.
        metrics::gauge!(OUTBOX_UNPUBLISHED).set(backlog.waiting as f64);
        metrics::gauge!(OUTBOX_OLDEST_AGE).set(backlog.oldest_waiting_age_secs);
        metrics::gauge!(OUTBOX_PARKED).set(backlog.parked as f64);
        Ok(())
    })
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    pool: PgPool,
    collectors: Arc<[Collector]>,
}

/// `GET /metrics`: runs the `collectors` against `pool`, then renders every
/// series in the Prometheus text format. A collector that fails (database
/// down) is logged and its gauges keep their last value; the scrape itself
/// still answers, so the message counters stay visible during an outage.
pub fn routes(service: &str, pool: PgPool, collectors: Vec<Collector>) -> Router {
    let scrape = Scrape {
        handle: install(service),
        pool,
        collectors: collectors.into(),
    };
    Router::new()
        .route("/metrics", get(render))
        .with_state(scrape)
}

async fn render(State(scrape): State<Scrape>) -> Response {
    for collect in scrape.collectors.iter() {
        if let Err(error) = collect(&scrape.pool).await {
            tracing::warn!(%error, "a scrape-time gauge could not be read");
        }
    }
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        scrape.handle.render(),
    )
        .into_response()
}

/// Middleware: counts and times each request by method, matched route and
/// status. Apply with `Router::route_layer` so the matched route is known.
pub async fn record_request(request: Request, next: Next) -> Response {
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// A request method as a label: the methods of RFC 9110 and PATCH by
/// name, any other token a client invents as `other`.
fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invented_method_is_labelled_other() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        let invented = http::Method::from_bytes(b"BREW-0194f0c2").expect("a token");
        assert_eq!(method_label(&invented), "other");
    }
}
