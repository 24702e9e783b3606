//! The process shell every service shares, so each service's `lib.rs` only
//! says what is its own (routes, handlers, migrations):
//!
//! - [`config`]: the environment, with working defaults and one clear line
//!   per bad variable;
//! - [`Runtime`]: database pool and migrations, the broker connection and
//!   topology, the outbox relay and consumers as supervised tasks, and the
//!   HTTP server — started in that order and stopped in reverse on SIGTERM;
//! - [`http`]: problem+json errors (a database outage is a 503), the
//!   extractors that produce them, the server span of every request, and
//!   the health routes;
//! - [`admin`]: the `ADMIN_TOKEN` bearer check of admin and operator
//!   endpoints (the [`admin::Admin`] extractor);
//! - `server`: the HTTP/1 server with its header read timeout, request
//!   timeout and bound on concurrent requests ([`config::HttpLimits`]);
//! - [`faults`]: the fault switches (`GET/PUT /faults`, `FAULTS_ENABLED`)
//!   and the delivery faults around every consumer handler;
//! - [`metrics`]: the Prometheus recorder and `GET /metrics`, with HTTP
//!   request metrics and gauges read from the database at scrape time;
//! - `openapi`: the OpenAPI 3.1 document generated from a service's routes,
//!   served at `/openapi.json`, with a browsable reference at `/docs`
//!   ([`Runtime::with_api`]).

pub mod admin;
mod application;
pub mod config;
pub mod faults;
pub mod http;
mod launch;
pub mod metrics;
mod openapi;
mod runtime;
mod server;
mod session;
mod signal;

pub use application::{Application, BrokerStatus};
pub use config::{Config, ConfigError, HttpLimits, ServiceInfo};
pub use faults::{Faults, Switch};
pub use launch::launch;
pub use runtime::Runtime;
pub use server::serve;
pub use signal::terminate;
