//! One quorum queue's ceiling on this broker: how many messages a second go
//! through a single queue when they are published with confirms (persistent,
//! ~600 bytes, as the relay publishes events) while consumers with a
//! prefetch take and ack each one (as the services' consumers do). Every
//! quorum queue has one Raft leader, so this is the rate one service's work
//! queue can carry however many replicas consume it.
//!
//! Publishing and consuming run at once, on separate connections (as in the
//! services); the result is the rate at which messages were both confirmed
//! and acked. With `ack_every` above 1 a consumer acks what arrived
//! together (up to that many deliveries) with one `multiple` ack, instead of
//! each delivery on its own; the broker's CPU per message is read from
//! `/proc` around the run ([`crate::cpu`]) to compare the two.
//! Everything it creates (one queue, `bench_queue_<id>`) is
//! deleted again, also when a step fails.

use crate::cpu::{CpuTime, Family};
use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation, Connection};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What to measure.
#[derive(Debug, Clone)]
pub struct QueueBench {
    /// The broker (a user that may declare and delete a queue).
    pub amqp_url: String,
    /// Messages published and consumed.
    pub messages: u32,
    /// Confirms the publisher keeps in flight.
    pub in_flight: usize,
    /// Consumers, each on its own channel.
    pub consumers: usize,
    /// Each consumer's prefetch (the services' CONSUMER_PREFETCH).
    pub prefetch: u16,
    /// 1: ack each delivery; N > 1: one `multiple` ack for up to N
    /// deliveries that arrived together (at most the prefetch).
    pub ack_every: u16,
    /// The whole run's limit.
    pub deadline: Duration,
}

/// The rates.
#[derive(Debug, Clone, Copy)]
pub struct QueueResult {
    /// Messages through the queue.
    pub messages: u32,
    /// Confirmed publishes per second, while consumers ran.
    pub published_per_second: f64,
    /// Messages published, delivered and acked per second, first publish to last ack.
    pub through_per_second: f64,
    /// The broker's CPU time per message over the run, when the broker
    /// runs on this machine.
    pub broker_cpu_per_message: Option<Duration>,
}

impl QueueBench {
    /// Declares the queue, measures, deletes the queue.
    pub async fn run(&self) -> anyhow::Result<QueueResult> {
        let simple = Uuid::now_v7().simple().to_string();
        let queue = format!("bench_queue_{}", &simple[simple.len() - 12..]);
        let publisher = checkout_messaging::connect(&self.amqp_url, "checkout-bench queue")
            .await
            .with_context(|| format!("cannot connect to the broker at {}", self.amqp_url))?;
        let result = self.measure(&publisher, &queue).await;
        let deleted = async {
            let channel = publisher.create_channel().await?;
            channel
                .queue_delete(
                    ShortString::from(queue.as_str()),
                    QueueDeleteOptions::default(),
                )
                .await
        }
        .await;
        let _ = publisher.close(200, "queue bench done".into()).await;
        let result = result?;
        deleted.with_context(|| format!("cannot delete the queue {queue}"))?;
        Ok(result)
    }

    async fn measure(&self, publisher: &Connection, queue: &str) -> anyhow::Result<QueueResult> {
        let channel = publisher.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(ShortString::from(queue), options, args)
            .await?;
        let consuming = checkout_messaging::connect(&self.amqp_url, "checkout-bench consume")
            .await
            .context("the consumers' connection")?;
        let acked = Arc::new(AtomicU32::new(0));
        let mut consumers = self.consume(&consuming, queue, &acked).await?;
        let cpu_before = CpuTime::now(Family::Broker);
        let started = Instant::now();
        let publishing = self.publish(&channel, queue);
        tokio::time::timeout(self.deadline, publishing)
            .await
            .context("publishing took longer than the deadline")??;
        let published = self.messages;
        let publish_time = started.elapsed();
        let left = self.deadline.saturating_sub(publish_time);
        tokio::time::timeout(left, async {
            while acked.load(Ordering::Relaxed) < self.messages {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .with_context(|| {
            format!(
                "{} of {} acked by the deadline",
                acked.load(Ordering::Relaxed),
                self.messages
            )
        })?;
        let through_time = started.elapsed();
        let broker_cpu_per_message = cpu_before
            .zip(CpuTime::now(Family::Broker))
            .map(|(before, after)| after.since(&before) / published.max(1));
        consumers.abort_all();
        let _ = consuming.close(200, "consumed".into()).await;
        let rate = |elapsed: Duration| f64::from(published) / elapsed.as_secs_f64();
        Ok(QueueResult {
            messages: published,
            published_per_second: rate(publish_time),
            through_per_second: rate(through_time),
            broker_cpu_per_message,
        })
    }

    /// Publishes the messages to `queue` through the default exchange with
    /// confirms, `in_flight` outstanding.
    async fn publish(&self, channel: &lapin::Channel, queue: &str) -> anyhow::Result<()> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let payload = vec![b'x'; 600];
        let properties = || {
            BasicProperties::default()
                .with_message_id(ShortString::from(Uuid::now_v7().to_string()))
                .with_delivery_mode(2)
        };
        // Through the default exchange, straight to the queue by its name.
        let target = Target {
            exchange: "",
            routing_key: queue,
            mandatory: false,
        };
        publish_confirmed(
            channel,
            &target,
            &payload,
            self.messages,
            self.in_flight,
            properties,
        )
        .await
    }

    /// Starts the consumers on `connection`, each on its own channel with
    /// the prefetch, counting acks in `acked`.
    async fn consume(
        &self,
        connection: &Connection,
        queue: &str,
        acked: &Arc<AtomicU32>,
    ) -> anyhow::Result<tokio::task::JoinSet<()>> {
        let mut consumers = tokio::task::JoinSet::new();
        for i in 0..self.consumers.max(1) {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.prefetch, BasicQosOptions { global: false })
                .await?;
            let deliveries = channel
                .basic_consume(
                    ShortString::from(queue),
                    ShortString::from(format!("bench-{i}")),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let ack_every = usize::from(self.ack_every.clamp(1, self.prefetch.max(1)));
            consumers.spawn(ack(deliveries, acked.clone(), self.messages, ack_every));
        }
        Ok(consumers)
    }
}

/// Acks every delivery until `total` are acked in all: each on its own,
/// or (`ack_every` > 1) up to `ack_every` that arrived together with one
/// `multiple` ack of the last (which settles every earlier tag on the
/// channel, all of them this consumer's and handled).
async fn ack(mut deliveries: lapin::Consumer, acked: Arc<AtomicU32>, total: u32, ack_every: usize) {
    while let Some(Ok(first)) = deliveries.next().await {
        let mut batch = vec![first];
        while batch.len() < ack_every {
            match deliveries.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(_)) | None) => return,
                None => break,
            }
        }
        let mut ok = true;
        if ack_every > 1 {
            if let Some(last) = batch.last() {
                ok = last
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .is_ok();
            }
        } else {
            for delivery in &batch {
                ok &= delivery.acker.ack(BasicAckOptions::default()).await.is_ok();
            }
        }
        if !ok {
            return;
        }
        let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        if acked.fetch_add(n, Ordering::Relaxed) + n >= total {
            return;
        }
    }
}

/// Where [`publish_confirmed`] publishes.
pub(crate) struct Target<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) routing_key: &'a str,
    /// Whether an unroutable message counts as a failure.
    pub(crate) mandatory: bool,
}

/// Publishes `messages` copies of `payload` to `target` on a channel in
/// confirm mode, keeping `in_flight` confirms outstanding; every one must
/// be acked (and, if mandatory, routed).
pub(crate) async fn publish_confirmed(
    channel: &lapin::Channel,
    target: &Target<'_>,
    payload: &[u8],
    messages: u32,
    in_flight: usize,
    properties: impl Fn() -> BasicProperties,
) -> anyhow::Result<()> {
    let mut pending = VecDeque::with_capacity(in_flight);
    for _ in 0..messages {
        let confirm = channel
            .basic_publish(
                ShortString::from(target.exchange),
                ShortString::from(target.routing_key),
                BasicPublishOptions {
                    mandatory: target.mandatory,
                    ..BasicPublishOptions::default()
                },
                payload,
                properties(),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= in_flight.max(1)
            && let Some(oldest) = pending.pop_front()
        {
            expect_ack(oldest.await?)?;
        }
    }
    while let Some(confirm) = pending.pop_front() {
        expect_ack(confirm.await?)?;
    }
    Ok(())
}

fn expect_ack(confirmation: Confirmation) -> anyhow::Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        other => anyhow::bail!("publish not confirmed: {other:?}"),
    }
}
