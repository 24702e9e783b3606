//! Counting the SQL statements a piece of code sends, from the event sqlx
//! logs for each one (target `sqlx::query`): how a test proves what a step
//! costs PostgreSQL. Statements, more than commits, are what a busy
//! database spends its time on, and each is a round trip too.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber as _;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};

/// The target of sqlx's event for each statement it has run.
const TARGET: &str = "sqlx::query";

/// Runs `work` and returns its output with the number of SQL statements it
/// ran: `COMMIT` included, if `work` commits, but not `BEGIN`, which sqlx
/// sends without logging it, nor sqlx's own look-ups of column types, made
/// once per connection. Only `work`'s
/// own statements count, also while other tests run in the same process:
/// the counter is `work`'s subscriber alone, not a global one.
pub async fn count_statements<F: Future>(work: F) -> (F::Output, usize) {
    LazyLock::force(&ASK_EVERY_TIME);
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Counter {
        count: count.clone(),
    };
    let output = work.with_subscriber(Dispatch::new(counter)).await;
    (output, count.load(Ordering::SeqCst))
}

/// Applies `envelope` with `handler` in a transaction and commits it, as
/// [`crate::handle`] does, and returns the statements the handler ran: what
/// the event costs the service's database beyond the consumer's own (one
/// `SAVEPOINT` per event, and per batch a `BEGIN`, an inbox `INSERT` and a
/// `COMMIT`). Panics if the handler fails.
pub async fn handler_statements<H: checkout_messaging::Handler>(
    pool: &sqlx::PgPool,
    handler: &H,
    envelope: &checkout_events::Envelope,
) -> usize {
    let mut tx = pool.begin().await.expect("begin");
    let (handled, statements) = count_statements(handler.handle(envelope, &mut tx)).await;
    handled.expect("the event is handled");
    tx.commit().await.expect("commit");
    statements
}

/// Registered once, for the life of the process, before any counter.
/// tracing caches whether a callsite is wanted when it is first met; with a
/// single dispatcher registered it asks the dispatcher current *on the
/// thread that met it*, so a service's task meeting sqlx's callsite while a
/// counter exists would cache "never" and hide the counter's statements.
/// With this one registered too, every callsite is "sometimes": the
/// current dispatcher is asked at each event.
static ASK_EVERY_TIME: LazyLock<Dispatch> = LazyLock::new(|| Dispatch::new(AskEveryTime));

/// A subscriber that wants nothing, but wants to be asked.
struct AskEveryTime;

impl Subscriber for AskEveryTime {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The `summary` field of sqlx's event: the statement's first words.
struct Summary(String);

impl Visit for Summary {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = format!("{value:?}");
        }
    }
}

/// A subscriber that only counts sqlx's statement events.
struct Counter {
    count: Arc<AtomicUsize>,
}

impl Subscriber for Counter {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == TARGET
    }

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut summary = Summary(String::new());
        event.record(&mut summary);
        // sqlx looks up the types of a statement's columns in `pg_type` the
        // first time a connection meets them, and caches them: the cost of a
        // fresh connection, not of the work a running service repeats.
        if !summary.0.contains("pg_type") {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }

    // Spans are not enabled (only events have the target), so these are
    // never called with anything to keep.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
