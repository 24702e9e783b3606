//! The Order service started as the binary starts it (port 0, its own
//! database and broker names), driven over HTTP and through its consumer
//! handler.

mod catalog;
mod deadline;
mod helpers;
mod http_surface;
mod idempotency;
mod metrics;
mod outage;
mod place_order;
mod saga;
mod statements;
mod timeline;
