//! What the checkout's tests share (a `[dev-dependencies]` crate): a fresh,
//! migrated database per test and a configuration whose broker names and
//! port are the test's own, so tests run in parallel and leave nothing
//! behind; a service served on port 0; events published as a producer
//! would; deterministic races and shuffles; and checks of a running
//! service's HTTP surface ([`api`]: its OpenAPI document against its
//! router; [`fuzz`]: random requests, no 5xx) and of its consumer
//! ([`contract`]: every event fixture it claims is applied); and the SQL
//! statements a step runs, counted.
//!
//! One module per job: [`database`], [`config`], [`serving`],
//! [`publishing`], [`shuffling`], [`races`], [`outbox`], [`statements`];
//! their items are re-exported here, so a test writes `checkout_testkit::spawn`.

pub mod api;
pub mod config;
pub mod contract;
pub mod database;
pub mod fuzz;
pub mod outbox;
pub mod publishing;
pub mod races;
pub mod serving;
pub mod shuffling;
pub mod statements;

pub use config::{admin_authorization, isolated_config, new_admin_token};
pub use database::{TestDatabase, with_database};
pub use outbox::{outbox_envelopes, outbox_event_types};
pub use publishing::{publish, publish_raw};
pub use races::{from_order, handle, race};
pub use serving::{Running, Serving, delete_topology, provision, serve, spawn, spawn_with};
pub use shuffling::shuffled;
pub use statements::{count_statements, handler_statements};
