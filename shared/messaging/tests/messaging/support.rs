//! A fresh database and broker namespace per test, plus a test event.

use checkout_events::{Envelope, Event, Subscription};
use checkout_messaging::{RetryPolicy, Topology, connect};
use checkout_testkit::TestDatabase;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

pub(crate) const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub(crate) const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The one queue these tests consume from, bound to the test events.
pub(crate) const PROBE: &[Subscription] = &[Subscription {
    service: "probe",
    routing_keys: &["test.happened"],
}];

/// A second subscriber of the test events, declared by the tests that need
/// to see that a message reaches one queue and not the others.
pub(crate) const BYSTANDER: &[Subscription] = &[Subscription {
    service: "bystander",
    routing_keys: &["test.happened"],
}];

/// Short delays, so retry tests take a fraction of a second.
pub(crate) fn retries() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(100), Duration::from_millis(200)])
}

/// A test event: which writer wrote it, and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Happened {
    pub(crate) writer: u32,
    pub(crate) seq: u32,
}

impl Event for Happened {
    const TYPE: &'static str = "Happened";
    const VERSION: u32 = 1;
    const ROUTING_KEY: &'static str = "test.happened";
}

pub(crate) struct TestEnv {
    pub(crate) pool: PgPool,
    /// The test's database; dropped by [`TestEnv::cleanup`], or by its own
    /// `Drop` when a test fails.
    db: Option<TestDatabase>,
    pub(crate) broker: std::sync::Arc<Connection>,
    pub(crate) channel: Channel,
    pub(crate) topology: Topology,
    /// Set by [`TestEnv::cleanup`]; otherwise (a failed assertion) `Drop`
    /// removes the broker names.
    cleaned: bool,
}

impl TestEnv {
    /// A new database with the messaging tables and a `state` table, and a
    /// declared topology under a fresh namespace.
    pub(crate) async fn new() -> TestEnv {
        let db = TestDatabase::messaging_only("messaging", 20)
            .await
            .expect("a test database (postgres is up)");
        let pool = db.pool().clone();
        sqlx::query("CREATE TABLE state (id UUID PRIMARY KEY, note TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("state table");

        let namespace = format!("test-{}", Uuid::now_v7().simple());
        let topology = Topology::new(namespace).expect("valid namespace");
        let broker = connect(AMQP_URL, "messaging-tests")
            .await
            .expect("rabbitmq is up");
        topology
            .provision(&broker, PROBE, &retries())
            .await
            .expect("provision");
        let channel = broker.create_channel().await.expect("channel");
        TestEnv {
            pool,
            db: Some(db),
            broker: std::sync::Arc::new(broker),
            channel,
            topology,
            cleaned: false,
        }
    }

    /// Removes the database and the broker names.
    pub(crate) async fn cleanup(mut self) {
        let _ = self.broker.close(200, ShortString::from("done")).await;
        self.pool.close().await;
        remove(&self.topology).await;
        self.cleaned = true;
        if let Some(db) = self.db.take() {
            db.drop().await.expect("drop the test database");
        }
    }

    /// The test database.
    pub(crate) fn db(&self) -> &TestDatabase {
        self.db.as_ref().expect("the database until cleanup")
    }

    /// The test's database refuses new connections and ends the open ones,
    /// as an outage would; `false` lets them in again.
    pub(crate) async fn refuse_connections(&self, refuse: bool) {
        self.db()
            .refuse_connections(refuse)
            .await
            .expect("alter the test database");
    }

    /// Takes messages from `queue` until `done` says enough, or the queue
    /// is empty and the deadline has passed; acks what it takes.
    pub(crate) async fn drain(
        &self,
        queue: &str,
        deadline: Duration,
        done: impl Fn(&[lapin::message::Delivery]) -> bool,
    ) -> Vec<lapin::message::Delivery> {
        let mut got = Vec::new();
        let until = Instant::now() + deadline;
        while !done(&got) {
            match self
                .channel
                .basic_get(ShortString::from(queue), BasicGetOptions::default())
                .await
                .expect("basic_get")
            {
                Some(message) => {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .expect("ack");
                    got.push(message.delivery);
                }
                None if Instant::now() >= until => break,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        got
    }

    /// How many messages wait in `queue` (not counting unacked ones).
    pub(crate) async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                ShortString::from(queue),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Publishes raw bytes to the test exchange, as a misbehaving producer would.
    pub(crate) async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        self.publish_with(routing_key, body, BasicProperties::default())
            .await;
    }

    /// Publishes an envelope to the test exchange, with the properties the
    /// relay sets.
    pub(crate) async fn publish(&self, envelope: &Envelope) {
        let body = serde_json::to_vec(envelope).expect("serializable");
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(envelope.id.to_string()))
            .with_type(ShortString::from(envelope.event_type.as_str()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2);
        self.publish_with(Happened::ROUTING_KEY, &body, properties)
            .await;
    }

    async fn publish_with(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                ShortString::from(self.topology.exchange()),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
    }

    /// Makes the broker refuse, message by message, whatever is published
    /// with `routing_key`: binds it to a queue that takes nothing (no room,
    /// `x-overflow: reject-publish`), so the broker nacks each such publish
    /// and keeps the channel open. The queue is exclusive to the test's
    /// connection, so it goes when the test does.
    pub(crate) async fn refuse(&self, routing_key: &str) -> String {
        let queue = self.topology.queue(&format!("refuser.{routing_key}"));
        let mut arguments = lapin::types::FieldTable::default();
        arguments.insert(
            ShortString::from("x-max-length"),
            lapin::types::AMQPValue::LongInt(0),
        );
        arguments.insert(
            ShortString::from("x-overflow"),
            lapin::types::AMQPValue::LongString("reject-publish".into()),
        );
        self.channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .expect("declare the refusing queue");
        self.channel
            .queue_bind(
                ShortString::from(queue.as_str()),
                ShortString::from(self.topology.exchange()),
                ShortString::from(routing_key),
                lapin::options::QueueBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("bind the refusing queue");
        queue
    }

    /// An exchange without an alternate exchange or any binding, so that a
    /// mandatory publish to it comes back as unroutable. Deleted by
    /// [`TestEnv::cleanup`].
    pub(crate) async fn bare_exchange(&self) -> String {
        let exchange = bare_exchange(&self.topology);
        self.channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("declare the bare exchange");
        exchange
    }

    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }
}

impl Drop for TestEnv {
    /// A test that panicked never reached [`TestEnv::cleanup`]: remove its
    /// broker names anyway, on a thread of its own (this one may be a
    /// runtime's). The database removes itself.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let topology = self.topology.clone();
        let removed = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(remove(&topology));
        })
        .join();
        if removed.is_err() {
            eprintln!(
                "could not remove the broker names of {}",
                self.topology.exchange()
            );
        }
    }
}

/// Deletes a test's broker names.
async fn remove(topology: &Topology) {
    let broker = connect(AMQP_URL, "messaging-tests-cleanup")
        .await
        .expect("rabbitmq is up");
    let channel = broker.create_channel().await.expect("channel");
    // Deleting what does not exist is no error: most tests have no bystander.
    topology
        .delete(&channel, BYSTANDER, &retries())
        .await
        .expect("delete the bystander");
    topology
        .delete(&channel, PROBE, &retries())
        .await
        .expect("delete topology");
    // Deleting an exchange that was never declared is not an error.
    channel
        .exchange_delete(
            ShortString::from(bare_exchange(topology).as_str()),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete the bare exchange");
    let _ = broker.close(200, ShortString::from("done")).await;
}

fn bare_exchange(topology: &Topology) -> String {
    format!("{}.bare", topology.exchange())
}

/// A TCP proxy in front of RabbitMQ that can hold back everything the
/// broker sends (confirms, replies), as a broker that stops answering on
/// a live connection would. What the client sends still goes through.
pub(crate) struct Proxy {
    /// An AMQP URL that connects through the proxy.
    pub(crate) url: String,
    hold: watch::Sender<bool>,
    opened: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let (hold, held) = watch::channel(false);
        let opened = Arc::new(AtomicU64::new(0));
        let counter = opened.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let broker = TcpStream::connect("127.0.0.1:5672")
                    .await
                    .expect("rabbitmq is up");
                let (client, broker) = (Arc::new(client), Arc::new(broker));
                tokio::spawn(forward(
                    client.clone(),
                    broker.clone(),
                    None,
                    Some(counter.clone()),
                ));
                tokio::spawn(forward(broker, client, Some(held.clone()), None));
            }
        });
        Proxy {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            hold,
            opened,
            task,
        }
    }

    /// Holds back (`true`) or lets through (`false`) what the broker sends.
    pub(crate) fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    /// How many channels clients have asked to open through the proxy.
    pub(crate) fn channels_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `channel.open` method frame after its type and channel number: size
/// 5, class 20, method 10, an empty reserved short string, frame end.
const CHANNEL_OPEN: &[u8] = &[0, 0, 0, 5, 0, 20, 0, 10, 0, 0xCE];

/// Copies `from` to `to`, waiting while `held` says so; counts the
/// `channel.open` frames that pass into `opened`.
async fn forward(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    held: Option<watch::Receiver<bool>>,
    opened: Option<Arc<AtomicU64>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    // The end of the previous read, so a frame split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match read(&from, &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(opened) = &opened {
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(&buffer[..n]);
            let found = seen
                .windows(CHANNEL_OPEN.len())
                .filter(|w| *w == CHANNEL_OPEN)
                .count();
            opened.fetch_add(found as u64, Ordering::SeqCst);
            tail = seen[seen.len().saturating_sub(CHANNEL_OPEN.len() - 1)..].to_vec();
        }
        if let Some(held) = &held {
            let mut held = held.clone();
            if held.wait_for(|on| !on).await.is_err() {
                return;
            }
        }
        if write_all(&to, &buffer[..n]).await.is_err() {
            return;
        }
    }
}

async fn read(stream: &TcpStream, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Polls `check` until it returns true or `deadline` passes.
pub(crate) async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
