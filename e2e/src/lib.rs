//! The end-to-end harness of the checkout: it runs the four real service
//! binaries against real PostgreSQL and RabbitMQ and drives them only the
//! way a user (or an operator) can — over HTTP, and by reading the traces
//! they export.
//!
//! What it owns, per test ([`System::start`]):
//! - building the binaries from the current source (once per test process),
//! - four fresh databases and a private broker namespace, named after the
//!   system's id (`e2e_<12 hex>`), so tests run in parallel without meeting;
//!   the namespace is provisioned as a deployment's is, with a broker user
//!   per service (`e2e_<id>.<service>`, a random password) that may touch
//!   only that service's names, and each service runs as its own user,
//! - the service processes (optionally several replicas of each consumer
//!   service), each logging to `target/e2e-logs/<id>/<instance>.log`,
//! - an OTLP receiver that collects every span the services export, and a
//!   mail sink the Email service sends to,
//! - and, at [`System::shutdown`] (or on drop, if the test failed first),
//!   removing all of that again. A passing test's logs are deleted unless
//!   `E2E_KEEP_LOGS` is set; a failing test's logs are kept and their path
//!   is printed.
//!
//! What it does not own: assertions. The helpers fetch and wait; the tests
//! in `tests/` say what must be true. Waiting is always polling with a
//! deadline ([`poll`]), never a sleep that hopes to be long enough.
//!
//! Needs PostgreSQL (a role that may create databases) and RabbitMQ; see
//! [`Options`] for where it looks for them. If the test process itself is
//! killed (SIGKILL, a CI timeout), no cleanup runs: the leftovers are its
//! service processes, the databases `e2e_<id>_*`, the exchanges and
//! queues `e2e_<id>.*` and the broker users `e2e_<id>.*`. Provisioning
//! needs `rabbitmqctl` (as for the fault tests) and an administrator's
//! broker URL. (Ctrl-C reaches the services too, which then stop.)

pub mod api;
mod binaries;
pub mod browser;
mod console;
mod observe;
pub mod otlp;
pub mod poll;
mod process;
mod resources;
mod smtp;
mod system;

pub use api::{
    Accepted, CatalogEntry, Compensation, Email, Money, Order, OrderLine, OrderPage, OrderSummary,
    Payment, Product, Reservation, Stock,
};
pub use console::{Console, JAEGER_UI_URL};
pub use otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
pub use poll::{Probe, eventually};
pub use process::Service;
pub use smtp::MailSink;
pub use system::{Options, System};

/// The SKUs Inventory seeds its catalog with; a system is ready for orders
/// once the Order service has learnt all of them.
pub const DEMO_SKUS: [&str; 5] = ["KB-001", "MS-001", "MN-001", "CB-001", "LP-001"];
