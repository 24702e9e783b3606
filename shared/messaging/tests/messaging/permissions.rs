//! Nobody gets in where they don't belong, on the real broker: each
//! service's own user (as `checkoutctl broker definitions` makes it) may
//! publish only its own events and reach only its own queues, and a
//! consumer refuses an event whose `source` is not its owner's — whoever
//! published it.
//!
//! Each test provisions a namespace of its own the way a deployment is
//! provisioned — the definitions imported with `rabbitmqctl
//! import_definitions` (users, permissions, topic permissions, topology),
//! then the topology declared by an administrator — and removes the
//! namespace and its users at the end, also when it fails.

use crate::support::{ADMIN_URL, AMQP_URL, eventually};
use checkout_events::{
    Currency, Envelope, Event, Money, OrderConfirmed, OrderId, PUBLISHERS, PaymentCaptured,
    SUBSCRIPTIONS,
};
use checkout_messaging::access::{self, BrokerUser};
use checkout_messaging::{Consumer, Handler, HandlerError, Outcome, RetryPolicy, Topology};
use checkout_operator::dlq::{self, DeadLetter};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Short, so a retry comes back within the test.
fn retries() -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(100)])
}

/// A namespace provisioned as a deployment is, with a user per service.
struct Secured {
    topology: Topology,
    /// `service` → its user's password.
    passwords: HashMap<&'static str, String>,
    db_name: Option<String>,
    cleaned: bool,
}

impl Secured {
    async fn new() -> Secured {
        let topology = Topology::new(format!("test-acl-{}", Uuid::now_v7().simple()))
            .expect("valid namespace");
        let mut secured = Secured {
            topology,
            passwords: HashMap::new(),
            db_name: None,
            cleaned: false,
        };
        let users: Vec<(BrokerUser, String)> = access::deployment_users(&secured.topology, None)
            .into_iter()
            .zip(PUBLISHERS)
            .map(|((user, _variable), publisher)| {
                let password = Uuid::now_v7().simple().to_string();
                secured
                    .passwords
                    .insert(publisher.service, password.clone());
                (user, password)
            })
            .collect();
        let plan = secured.topology.plan(SUBSCRIPTIONS, &retries());
        let definitions = access::definitions(&plan, &users);
        rabbitmqctl(&["import_definitions"], Some(definitions.to_string()))
            .await
            .expect("rabbitmqctl import_definitions");
        // What was imported is what the code declares: a queue with other
        // arguments would fail here with PRECONDITION_FAILED.
        let admin = connect_as_admin().await;
        secured
            .topology
            .provision(&admin, SUBSCRIPTIONS, &retries())
            .await
            .expect("the imported definitions are the code's topology");
        let _ = admin.close(200, ShortString::from("done")).await;
        secured
    }

    /// A connection as `service`'s own user, once the broker knows it
    /// (an import may still be settling).
    async fn connect_as(&self, service: &str) -> Connection {
        let user = access::service_user_name(&self.topology, service);
        let url = format!(
            "amqp://{user}:{}@127.0.0.1:5672/%2f",
            self.passwords[service]
        );
        let mut last = String::new();
        for _ in 0..100 {
            match checkout_messaging::connect(&url, &format!("acl-test {user}")).await {
                Ok(connection) => return connection,
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{user} cannot connect: {last}");
    }

    /// A database with the messaging tables and a `state` table.
    async fn database(&mut self) -> PgPool {
        let name = format!("test_acl_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(ADMIN_URL)
            .await
            .expect("postgres is up");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        self.db_name = Some(name.clone());
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
            .await
            .expect("connect");
        checkout_messaging::migrate(&pool).await.expect("migrate");
        sqlx::query("CREATE TABLE state (id UUID PRIMARY KEY, note TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("state table");
        pool
    }

    async fn cleanup(mut self) {
        remove(&self.topology, self.db_name.take()).await;
        self.cleaned = true;
    }
}

impl Drop for Secured {
    /// A failed test still removes its names, users and database.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (topology, db_name) = (self.topology.clone(), self.db_name.take());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(remove(&topology, db_name));
        })
        .join();
    }
}

async fn remove(topology: &Topology, db_name: Option<String>) {
    let admin = connect_as_admin().await;
    let channel = admin.create_channel().await.expect("channel");
    topology
        .delete(&channel, SUBSCRIPTIONS, &retries())
        .await
        .expect("delete the namespace");
    let _ = admin.close(200, ShortString::from("done")).await;
    for publisher in PUBLISHERS {
        let user = access::service_user_name(topology, publisher.service);
        rabbitmqctl(&["delete_user", &user], None)
            .await
            .expect("delete a test user");
    }
    if let Some(name) = db_name {
        let mut admin = PgConnection::connect(ADMIN_URL)
            .await
            .expect("postgres is up");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}

async fn connect_as_admin() -> Connection {
    checkout_messaging::connect(AMQP_URL, "acl-test admin")
        .await
        .expect("rabbitmq is up")
}

/// Runs `rabbitmqctl` (as the broker's administrator on this machine), with
/// `stdin` piped in. A user already gone counts as deleted (exit 67).
async fn rabbitmqctl(args: &[&str], stdin: Option<String>) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("rabbitmqctl")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| format!("rabbitmqctl stdin: {e}"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| format!("rabbitmqctl: {e}"))?;
        let gone = args.first().map(String::as_str) == Some("delete_user")
            && output.status.code() == Some(67);
        if output.status.success() || gone {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
    .await
    .expect("joined")
}

/// Publishes `body` and waits for the confirm, on a fresh channel (a
/// refusal closes the channel). The broker's refusal as text, if refused.
async fn publish(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<(), String> {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirmed = async {
        channel
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await
    }
    .await;
    match confirmed {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(other) => Err(format!("not acked: {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

fn refused(outcome: &Result<(), String>, what: &str) {
    match outcome {
        Err(error) if error.contains("ACCESS_REFUSED") => {}
        other => panic!("{what}: expected ACCESS_REFUSED, got {other:?}"),
    }
}

async fn fresh(connection: &Connection) -> Channel {
    connection.create_channel().await.expect("channel")
}

async fn depth(admin: &Connection, queue: &str) -> u32 {
    fresh(admin)
        .await
        .queue_declare(
            ShortString::from(queue),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists")
        .message_count()
}

fn envelope<E: Event>(event: &E, source: &str) -> Vec<u8> {
    serde_json::to_vec(&Envelope::new(event, source, Uuid::now_v7(), None).expect("envelope"))
        .expect("json")
}

fn captured() -> PaymentCaptured {
    PaymentCaptured {
        order_id: OrderId::new(),
        payment_id: Uuid::now_v7(),
        amount: Money::new(4999, Currency::parse("USD").expect("currency")),
    }
}

fn confirmed() -> OrderConfirmed {
    OrderConfirmed {
        order_id: OrderId::new(),
        customer_id: "c-42".to_owned(),
        customer_email: None,
        total: Money::new(4999, Currency::parse("USD").expect("currency")),
    }
}

#[tokio::test]
async fn the_payment_service_cannot_publish_order_confirmed() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let exchange = env.topology.exchange();

    let forged = publish(
        &payment,
        &exchange,
        OrderConfirmed::ROUTING_KEY,
        &envelope(&confirmed(), "order-service"),
    )
    .await;
    let own = publish(
        &payment,
        &exchange,
        PaymentCaptured::ROUTING_KEY,
        &envelope(&captured(), "payment-service"),
    )
    .await;

    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;
    refused(&forged, "payment publishing order.confirmed");
    let forged = forged.expect_err("refused");
    assert!(
        forged.contains("access to topic 'order.confirmed'"),
        "{forged}"
    );
    own.expect("payment publishes its own payment.captured");
}

#[tokio::test]
async fn the_payment_service_cannot_put_anything_into_another_services_queue() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let admin = connect_as_admin().await;
    let t = &env.topology;
    let order_queue = t.queue("order");
    let body = envelope(&captured(), "payment-service");

    // By name, through the default exchange: the pitfall the topology avoids.
    let default_exchange = publish(&payment, "", &order_queue, &body).await;
    // Through the Order service's own exchanges.
    let order_retry = publish(&payment, &t.retry_exchange("order"), &order_queue, &body).await;
    let order_dead_letter = publish(
        &payment,
        &t.dead_letter_exchange("order"),
        &t.dead_letter_queue("order"),
        &body,
    )
    .await;
    // Through the broker's predeclared exchanges.
    let amq_direct = publish(&payment, "amq.direct", &order_queue, &body).await;
    let amq_topic = publish(&payment, "amq.topic", "#", &body).await;
    // By binding the Order queue to an exchange of its own…
    let bind_other_queue = fresh(&payment)
        .await
        .queue_bind(
            ShortString::from(order_queue.as_str()),
            ShortString::from(t.retry_exchange("payment")),
            ShortString::from("sneak"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    // …or its own queue (or exchange) to more of the events exchange.
    let bind_own_queue = fresh(&payment)
        .await
        .queue_bind(
            ShortString::from(t.queue("payment")),
            ShortString::from(t.exchange()),
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    let sneaky = format!("{}.sneaky", t.queue("payment"));
    let own_exchange = fresh(&payment)
        .await
        .exchange_declare(
            ShortString::from(sneaky.as_str()),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    let bind_own_exchange = fresh(&payment)
        .await
        .exchange_bind(
            ShortString::from(sneaky.as_str()),
            ShortString::from(t.exchange()),
            ShortString::from("order.#"),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    // Nor by dead-lettering: a queue of its own whose dead-letter
    // exchange is the default exchange (or another service's) would have
    // the broker move its expired messages into the Order queue; RabbitMQ
    // asks for write permission on the dead-letter exchange at declare.
    let dead_letter_through = |exchange: String| {
        let payment = &payment;
        let queue = format!("{}.trap", t.queue("payment"));
        let order_queue = order_queue.clone();
        async move {
            let mut args = FieldTable::default();
            for (key, value) in [
                ("x-dead-letter-exchange", exchange),
                ("x-dead-letter-routing-key", order_queue),
            ] {
                args.insert(
                    ShortString::from(key),
                    lapin::types::AMQPValue::LongString(value.as_str().into()),
                );
            }
            args.insert(
                ShortString::from("x-message-ttl"),
                lapin::types::AMQPValue::LongLongInt(1),
            );
            fresh(payment)
                .await
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    lapin::options::QueueDeclareOptions::default(),
                    args,
                )
                .await
                .map(|_| ())
        }
    };
    let trap_default = dead_letter_through(String::new()).await;
    let trap_order = dead_letter_through(t.retry_exchange("order")).await;
    // Nor can it declare the shared names.
    let declare_events = fresh(&payment)
        .await
        .exchange_declare(
            ShortString::from(t.exchange()),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let order_depth = depth(&admin, &order_queue).await;
    let order_dlq_depth = depth(&admin, &t.dead_letter_queue("order")).await;

    let _ = fresh(&admin)
        .await
        .exchange_delete(ShortString::from(sneaky.as_str()), Default::default())
        .await;
    // Only there if the broker wrongly let it be declared.
    let _ = fresh(&admin)
        .await
        .queue_delete(
            ShortString::from(format!("{}.trap", t.queue("payment"))),
            Default::default(),
        )
        .await;
    let _ = admin.close(200, ShortString::from("done")).await;
    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;

    refused(&default_exchange, "the default exchange");
    assert!(
        default_exchange
            .expect_err("refused")
            .contains("access to exchange 'amq.default'")
    );
    refused(&order_retry, "the Order service's retry exchange");
    refused(
        &order_dead_letter,
        "the Order service's dead-letter exchange",
    );
    refused(&amq_direct, "amq.direct");
    refused(&amq_topic, "amq.topic");
    let refused_op = |result: Result<(), lapin::Error>, what: &str| {
        refused(&result.map_err(|e| e.to_string()), what);
    };
    refused_op(bind_other_queue, "binding the Order queue");
    refused_op(bind_own_queue, "binding its own queue to #");
    own_exchange.expect("an exchange of its own name is its own");
    refused_op(bind_own_exchange, "binding its own exchange to order.#");
    refused_op(declare_events, "declaring the events exchange");
    refused_op(
        trap_default,
        "a queue dead-lettering to the default exchange",
    );
    refused_op(
        trap_order,
        "a queue dead-lettering to the Order retry exchange",
    );
    assert_eq!(
        (order_depth, order_dlq_depth),
        (0, 0),
        "nothing reached the Order service"
    );
}

#[tokio::test]
async fn the_payment_service_cannot_consume_purge_or_delete_another_services_queue() {
    let env = Secured::new().await;
    let payment = env.connect_as("payment").await;
    let order_queue = env.topology.queue("order");
    let name = || ShortString::from(order_queue.as_str());

    let consume = fresh(&payment)
        .await
        .basic_consume(
            name(),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ());
    let get = fresh(&payment)
        .await
        .basic_get(name(), BasicGetOptions::default())
        .await
        .map(|_| ());
    let purge = fresh(&payment)
        .await
        .queue_purge(name(), QueuePurgeOptions::default())
        .await
        .map(|_| ());
    let delete = fresh(&payment)
        .await
        .queue_delete(name(), QueueDeleteOptions::default())
        .await
        .map(|_| ());
    let dlq = fresh(&payment)
        .await
        .basic_get(
            ShortString::from(env.topology.dead_letter_queue("order")),
            BasicGetOptions::default(),
        )
        .await
        .map(|_| ());
    let own = fresh(&payment)
        .await
        .basic_get(
            ShortString::from(env.topology.queue("payment")),
            BasicGetOptions::default(),
        )
        .await
        .map(|_| ());

    let _ = payment.close(200, ShortString::from("done")).await;
    env.cleanup().await;
    for (what, result) in [
        ("consume", consume),
        ("get", get),
        ("purge", purge),
        ("delete", delete),
        ("read the Order DLQ", dlq),
    ] {
        refused(&result.map_err(|e| e.to_string()), what);
    }
    own.expect("its own queue is readable");
}

/// Records every event it is given; fails the first attempt at each.
#[derive(Clone, Default)]
struct Recorder {
    attempts: Arc<Mutex<HashMap<Uuid, u32>>>,
}

impl Handler for Recorder {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        let attempt = {
            let mut attempts = self
                .attempts
                .lock()
                .map_err(|_| HandlerError::Permanent("poisoned lock".into()))?;
            let n = attempts.entry(envelope.id).or_default();
            *n += 1;
            *n
        };
        if attempt == 1 {
            return Err(HandlerError::Transient("the first try fails".into()));
        }
        sqlx::query("INSERT INTO state (id, note) VALUES ($1, $2)")
            .bind(envelope.id)
            .bind(&envelope.event_type)
            .execute(&mut *tx)
            .await?;
        Ok(Outcome::Applied)
    }
}

#[tokio::test]
async fn a_service_on_its_own_user_declares_retries_and_refuses_forged_events() {
    let mut env = Secured::new().await;
    let pool = env.database().await;
    let inventory = Arc::new(env.connect_as("inventory").await);
    let order = env.connect_as("order").await;
    let payment = env.connect_as("payment").await;
    let admin = connect_as_admin().await;
    let t = env.topology.clone();

    // What the service does at start, with its own user only.
    let declared = t.declare_own(&inventory, "inventory", &retries()).await;
    let stop = CancellationToken::new();
    let consumer =
        Consumer::new(pool.clone(), Recorder::default(), &t, "inventory").with_retries(retries());
    let running = tokio::spawn(consumer.run(inventory.clone(), inventory.clone(), stop.clone()));

    // The owner, as itself: applied, after a retry through the service's
    // own retry exchange and delay queue.
    let genuine =
        Envelope::new(&confirmed(), "order-service", Uuid::now_v7(), None).expect("envelope");
    let sent = publish(
        &order,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &serde_json::to_vec(&genuine).expect("json"),
    )
    .await;
    // Forged: the right routing key, another source — with the owner's
    // credentials, and with the administrator's.
    let by_owner = envelope(&confirmed(), "payment-service");
    let by_admin = envelope(&confirmed(), "test");
    let sent_by_owner = publish(
        &order,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &by_owner,
    )
    .await;
    let sent_by_admin = publish(
        &admin,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &by_admin,
    )
    .await;
    // And what Payment's user cannot send at all, it cannot forge either.
    let by_payment = publish(
        &payment,
        &t.exchange(),
        OrderConfirmed::ROUTING_KEY,
        &envelope(&confirmed(), "order-service"),
    )
    .await;

    let dlq = t.dead_letter_queue("inventory");
    let applied = eventually(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM state")
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    let parked = eventually(Duration::from_secs(10), || async {
        depth(&admin, &dlq).await == 2
    })
    .await;
    let letters: Vec<DeadLetter> = dlq::peek(&fresh(&admin).await, &dlq, 10)
        .await
        .expect("peek");
    let recorded: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM state")
        .fetch_all(&pool)
        .await
        .expect("state");
    let retry_queue_left = depth(&admin, &t.retry_queue("inventory", retries().delays()[0])).await;

    stop.cancel();
    let stopped = running.await.expect("joined");
    pool.close().await;
    for connection in [&order, &payment, &admin] {
        let _ = connection.close(200, ShortString::from("done")).await;
    }
    let _ = inventory.close(200, ShortString::from("done")).await;
    env.cleanup().await;

    declared.expect("the service declares its own names with its own user");
    stopped.expect("the consumer stops cleanly");
    sent.expect("order publishes order.confirmed");
    sent_by_owner.expect("the broker cannot tell a wrong source");
    sent_by_admin.expect("the administrator may publish anything");
    refused(&by_payment, "payment publishing order.confirmed");
    assert!(applied, "the genuine event was applied after one retry");
    assert_eq!(
        recorded,
        [genuine.id],
        "only the genuine event changed anything"
    );
    assert_eq!(retry_queue_left, 0);
    assert!(parked, "both forged events are dead-lettered");
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_eq!(letter.reason.as_deref(), Some("forbidden"), "{letter:?}");
        let error = letter.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("OrderConfirmed is published only by order-service"),
            "{error}"
        );
        assert_eq!(letter.handler.as_deref(), Some("inventory"));
    }
}
