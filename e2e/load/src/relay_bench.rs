//! The relay against the broker's own limit, in one run: how fast
//! [`Relay::publish_pending`] empties an outbox of N rows, versus a raw lapin
//! loop publishing N messages of the same size to the same kind of queue
//! with publisher confirms and 256 in flight.
//!
//! Both publish persistent, mandatory messages to a topic exchange bound to
//! one quorum queue, as the services do, in the order raw, relay, relay,
//! raw (half the messages each time), and the queue is purged between
//! runs so none pays for another's backlog. The relay's number
//! includes everything it does per batch: the `FOR UPDATE SKIP LOCKED`
//! claim, a producer span and headers per message, the confirms, and the
//! `UPDATE … published_at` in the same transaction.
//!
//! The CPU time each side costs per message is read from `/proc` around
//! each run ([`crate::cpu`]): this process, the broker and PostgreSQL.
//! On a shared, noisy machine it is steadier than the rates.
//!
//! Everything it creates (a database and two broker names, all called
//! `bench_relay_<id>`) is removed again, also when a step fails.

use crate::cpu::{PerMessage, Snapshot};
use crate::queue_bench::{Target, publish_confirmed};
use anyhow::Context as _;
use checkout_messaging::Relay;
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ExchangeKind};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What to measure against.
#[derive(Debug, Clone)]
pub struct RelayBench {
    /// The PostgreSQL server, without a database name.
    pub postgres_url: String,
    /// The broker.
    pub amqp_url: String,
    /// How many messages each side publishes.
    pub messages: u32,
    /// Confirms the raw loop keeps in flight.
    pub in_flight: usize,
    /// Batches the relay keeps awaiting their confirms at once
    /// ([`Relay::with_batches_in_flight`]).
    pub batches_in_flight: u8,
}

/// The two rates.
#[derive(Debug, Clone, Copy)]
pub struct RelayResult {
    /// Messages each side published.
    pub messages: u32,
    /// The relay's confirmed publishes per second.
    pub relay_per_second: f64,
    /// The raw loop's confirmed publishes per second.
    pub raw_per_second: f64,
    /// What the relay's runs cost per message: this process (the relay),
    /// the broker and PostgreSQL.
    pub relay_cpu: PerMessage,
    /// The same for the raw loop's runs.
    pub raw_cpu: PerMessage,
}

impl RelayBench {
    /// Creates the database and broker names, measures both sides, and
    /// removes what it created whatever happened.
    pub async fn run(&self) -> anyhow::Result<RelayResult> {
        let simple = Uuid::now_v7().simple().to_string();
        let id = format!("bench_relay_{}", &simple[simple.len() - 12..]);
        admin(&self.postgres_url, format!("CREATE DATABASE \"{id}\"")).await?;
        let connection = checkout_messaging::connect(&self.amqp_url, "checkout-bench relay")
            .await
            .with_context(|| format!("cannot connect to the broker at {}", self.amqp_url))?;

        let result = self.measure(&id, &connection).await;

        let mut cleanup = Vec::new();
        if let Err(e) = delete_broker_names(&connection, &id).await {
            cleanup.push(format!("broker names {id}.*: {e}"));
        }
        let _ = connection.close(200, "relay bench done".into()).await;
        if let Err(e) = admin(
            &self.postgres_url,
            format!("DROP DATABASE IF EXISTS \"{id}\" WITH (FORCE)"),
        )
        .await
        {
            cleanup.push(format!("database {id}: {e:#}"));
        }
        let result = result?;
        anyhow::ensure!(cleanup.is_empty(), "cleanup failed: {}", cleanup.join("; "));
        Ok(result)
    }

    async fn measure(&self, id: &str, connection: &Connection) -> anyhow::Result<RelayResult> {
        // A connection for each batch in flight, and one for the bench.
        let pool = PgPoolOptions::new()
            .max_connections(u32::from(self.batches_in_flight) + 1)
            .connect(&format!("{}/{id}", self.postgres_url))
            .await?;
        checkout_messaging::migrate(&pool).await?;
        let (exchange, queue) = declare_sink(connection, id).await?;
        let half = (self.messages / 2).max(1);
        fill_outbox(&pool, half).await?;
        let payload: String = sqlx::query_scalar("SELECT envelope::text FROM outbox LIMIT 1")
            .fetch_one(&pool)
            .await?;

        // Raw, relay, relay, raw, half the messages each time: whoever goes
        // second meets a broker still busy with the first's queue, and the
        // alternation cancels that order effect out.
        let (mut raw, mut relay_time) = (Duration::ZERO, Duration::ZERO);
        let (mut raw_cpu, mut relay_cpu) = (PerMessage::default(), PerMessage::default());
        let total = 2 * half;
        let before = Snapshot::now();
        raw += self
            .raw(connection, &exchange, payload.as_bytes(), half)
            .await
            .context("raw publish loop")?;
        raw_cpu += Snapshot::now().per_message_since(&before, total);
        purge(connection, &queue).await?;
        for refill in [false, true] {
            if refill {
                fill_outbox(&pool, half).await?;
            }
            let relay = Relay::new(pool.clone(), exchange.as_str())
                .with_batches_in_flight(self.batches_in_flight);
            let before = Snapshot::now();
            relay_time += empty_outbox(&relay, &pool, connection)
                .await
                .context("relay")?;
            relay_cpu += Snapshot::now().per_message_since(&before, total);
            purge(connection, &queue).await?;
        }
        let before = Snapshot::now();
        raw += self
            .raw(connection, &exchange, payload.as_bytes(), half)
            .await
            .context("raw publish loop")?;
        raw_cpu += Snapshot::now().per_message_since(&before, total);
        pool.close().await;

        let rate = |elapsed: Duration| f64::from(2 * half) / elapsed.as_secs_f64();
        Ok(RelayResult {
            messages: total,
            relay_per_second: rate(relay_time),
            raw_per_second: rate(raw),
            relay_cpu,
            raw_cpu,
        })
    }

    /// Publishes `messages` copies of `payload`, keeping `in_flight`
    /// confirms outstanding; every one must be acked and routed.
    async fn raw(
        &self,
        connection: &Connection,
        exchange: &str,
        payload: &[u8],
        messages: u32,
    ) -> anyhow::Result<Duration> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let started = Instant::now();
        let properties = || {
            BasicProperties::default()
                .with_message_id(ShortString::from(Uuid::now_v7().to_string()))
                .with_content_type(ShortString::from("application/json"))
                .with_type(ShortString::from("OrderCreated"))
                .with_delivery_mode(2)
        };
        let target = Target {
            exchange,
            routing_key: "order.created",
            mandatory: true,
        };
        publish_confirmed(
            &channel,
            &target,
            payload,
            messages,
            self.in_flight,
            properties,
        )
        .await?;
        let elapsed = started.elapsed();
        let _ = channel.close(200, "raw done".into()).await;
        Ok(elapsed)
    }
}

/// Empties the outbox with [`Relay::publish_pending`], as the relay's loop
/// does once woken.
async fn empty_outbox(
    relay: &Relay,
    pool: &PgPool,
    connection: &Connection,
) -> anyhow::Result<Duration> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    while relay.publish_pending(&channel).await? > 0 {}
    let elapsed = started.elapsed();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(left == 0, "the relay left {left} rows unpublished");
    let _ = channel.close(200, "relay done".into()).await;
    Ok(elapsed)
}

/// `n` outbox rows shaped like an `OrderCreated` envelope (~600 bytes).
async fn fill_outbox(pool: &PgPool, n: u32) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, routing_key, envelope, trace_context) \
         SELECT gen_random_uuid(), 'OrderCreated', 'order.created', \
           jsonb_build_object( \
             'id', gen_random_uuid(), 'type', 'OrderCreated', 'version', 1, \
             'occurred_at', now(), 'source', 'order-service', \
             'correlation_id', gen_random_uuid(), 'causation_id', NULL, \
             'data', jsonb_build_object( \
               'order_id', gen_random_uuid(), 'customer_id', 'load-42', \
               'customer_email', 'load-42@customers.example', \
               'items', jsonb_build_array(jsonb_build_object( \
                 'sku', 'CB-001', 'quantity', 1, \
                 'unit_price', jsonb_build_object('amount', 999, 'currency', 'USD'))), \
               'total', jsonb_build_object('amount', 999, 'currency', 'USD'), \
               'note', repeat('x', 180))), \
           jsonb_build_object('traceparent', \
             '00-' || md5(random()::text) || '-' || left(md5(random()::text), 16) || '-01') \
         FROM generate_series(1, $1)",
    )
    .bind(i64::from(n))
    .execute(pool)
    .await?;
    Ok(())
}

async fn declare_sink(connection: &Connection, id: &str) -> anyhow::Result<(String, String)> {
    let (exchange, queue) = (format!("{id}.events"), format!("{id}.sink"));
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            ShortString::from(exchange.as_str()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            ShortString::from(queue.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(queue.as_str()),
            ShortString::from(exchange.as_str()),
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok((exchange, queue))
}

async fn purge(connection: &Connection, queue: &str) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel
        .queue_purge(ShortString::from(queue), QueuePurgeOptions::default())
        .await?;
    let _ = channel.close(200, "purged".into()).await;
    Ok(())
}

async fn delete_broker_names(connection: &Connection, id: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .queue_delete(
            ShortString::from(format!("{id}.sink")),
            QueueDeleteOptions::default(),
        )
        .await?;
    channel
        .exchange_delete(
            ShortString::from(format!("{id}.events")),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    let _ = channel.close(200, "deleted".into()).await;
    Ok(())
}

/// Runs one statement on the server's maintenance database. The names
/// spliced in are generated here (`bench_relay_<hex>`), never input.
async fn admin(server_url: &str, sql: String) -> anyhow::Result<()> {
    let url = format!("{server_url}/postgres");
    let mut connection = PgConnection::connect(&url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    result.with_context(|| sql)?;
    Ok(())
}
