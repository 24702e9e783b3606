//! The Payment service against a real PostgreSQL: its consumer handler
//! applied without a broker (each test with a fresh database, checking the
//! `payments` row and the outbox), and the whole service over HTTP.

mod charges;
mod faults;
mod http;
mod shuffled;
mod statements;
mod support;
