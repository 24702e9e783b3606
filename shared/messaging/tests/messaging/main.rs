//! Integration tests of the messaging machinery against the real RabbitMQ
//! and PostgreSQL of the machine. Each test has its own database and its
//! own exchange and queue names, and removes them at the end; the
//! permission tests also their own broker users.

mod acks;
mod batch;
mod broker_queues;
mod connection;
mod consumer;
mod dead_letters;
mod dlq_tool;
mod outage;
mod outbox;
mod permissions;
mod permissions_consumer;
mod permissions_queues;
mod proxy;
mod relay;
mod relay_pipeline;
mod relay_refusals;
mod relay_stalls;
mod replay;
mod retention;
mod support;
