//! The Inventory service against a real PostgreSQL: its handler applied
//! without a broker (each test with a fresh database holding the demo
//! catalog, checking reservations, stock and the outbox), its catalog, and
//! the whole service over HTTP.

mod catalog;
mod concurrent;
mod flash_sale;
mod http;
mod products;
mod reserve;
mod shuffled;
mod statements;
mod support;
