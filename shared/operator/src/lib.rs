//! What an operator does to a running checkout, as a library and as the
//! `checkoutctl` binary:
//!
//! - [`dlq`]: a service's dead-letter queue — list, show (card tokens
//!   masked), replay to the failing service's own queue, purge. The console
//!   and the binary call the same functions;
//! - [`cli`]: the `checkoutctl` commands (`dlq`, `outbox parked|unpark`,
//!   `broker provision|definitions`), runnable in-process with the output
//!   going to any writer.
//!
//! The services never link this crate: what the consumer writes on a dead
//! letter (the header vocabulary) lives in `checkout_messaging::dead_letter`.

pub mod cli;
pub mod dlq;
