//! The messaging machinery of the checkout, written once for every service:
//!
//! - [`topology`]: the exchanges, queues and bindings, provisioned by an
//!   administrator and declared idempotently by each service for its own names;
//! - [`access`]: the broker user of each service and what it may do, and the
//!   broker definitions that provision a deployment;
//! - [`outbox`]: events written in the caller's transaction, with the trace
//!   context of the span that wrote them;
//! - [`relay`]: publishes committed outbox rows with publisher confirms;
//!   a row the broker refuses is retried on its own schedule and parked
//!   after its last attempt, without holding up the rows behind it;
//! - [`retention`]: how long published outbox rows and inbox rows are
//!   kept, and the pruning;
//! - [`consumer`]: decodes deliveries, deduplicates them through the inbox
//!   table and runs a [`Handler`] in the same transaction; retries transient
//!   failures through delay queues ([`retry`]) and dead-letters the rest with
//!   the reason, and pauses while the service's database is down
//!   ([`consumer`] says which failure is which);
//! - [`dead_letter`]: the headers a retried or dead-lettered message
//!   carries, and the reasons (the operator tool, `checkout_operator`,
//!   reads them);
//! - [`publish`]: one publish awaited until the broker confirms it;
//! - [`spans`]: the send and process spans, after the OpenTelemetry
//!   messaging conventions;
//! - [`depth`]: the depths of the unroutable and dead-letter queues as gauges;
//! - [`metrics`]: the names of what the machinery counts.
//!
//! It knows nothing of orders or payments: events are opaque [`Envelope`]s.
//!
//! [`Envelope`]: checkout_events::Envelope

pub mod access;
pub mod claim;
pub mod consumer;
pub mod dead_letter;
pub mod depth;
pub mod metrics;
pub mod outbox;
mod pause;
pub mod publish;
pub mod relay;
pub mod retention;
pub mod retry;
pub mod spans;
pub mod topology;

pub use consumer::{Consumer, Handler, HandlerError, Outcome, is_outage};
pub use depth::watch_depths;
pub use outbox::{Cause, Outbox};
pub use relay::{Relay, RelayError, wake_relays};
pub use retention::Retention;
pub use retry::RetryPolicy;
pub use spans::Peer;
pub use topology::{DeclareError, InvalidNamespace, Plan, QueueState, Topology};

use lapin::types::LongString;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Creates or upgrades the outbox and inbox tables in `pool`'s database.
///
/// The history is kept in `_checkout_messaging_migrations`, apart from the
/// service's own `_sqlx_migrations`, so both can be versioned independently.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut migrator = Migrator::with_migrations(MIGRATIONS.iter().cloned().collect());
    migrator.dangerous_set_table_name("_checkout_messaging_migrations");
    migrator.run(pool).await
}

/// The largest AMQP frame this client proposes (RabbitMQ's default is
/// 128 KiB). lapin keeps a send and a receive buffer of 32 frames per
/// connection: at 128 KiB that is 8 MiB of memory per connection for
/// nothing — events are a few hundred bytes, and a larger message is
/// simply split into several frames. Measured on a release order-service at
/// idle: 27.9 MiB RSS with RabbitMQ's frame size, 12.7 MiB with this one
/// (a frame's content header — every AMQP header of a message — must fit
/// in one frame: 32 KiB holds ours many times over).
/// A `frame_max` in the URL wins.
pub const FRAME_MAX: u32 = 32 * 1024;

/// Opens a broker connection; a service opens two (one consumes, one
/// publishes) and roles each open their own channels on them. `name` shows
/// in the RabbitMQ UI. Proposes [`FRAME_MAX`] unless the URL sets `frame_max`.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e: String| lapin::Error::from(std::io::Error::other(e)))?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Connection::connect_uri(uri, properties).await
}
