//! The Email service's integration tests: one binary, one module per topic.

mod notifications;
mod receiver;
mod smtp;
