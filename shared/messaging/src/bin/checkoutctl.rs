//! `checkoutctl`: see what failed and why, and send it round again; and
//! provision the broker before the services start.
//!
//! ```text
//! checkoutctl dlq list    --service payment
//! checkoutctl dlq show    --service payment <message-id>
//! checkoutctl dlq replay  --service payment <message-id> | --all
//! checkoutctl dlq purge   --service payment --yes
//! checkoutctl outbox --database-url postgres://…/orders parked
//! checkoutctl outbox --database-url postgres://…/orders unpark <event-id> | --all
//! checkoutctl broker provision                 # every exchange, queue and binding (AMQP_URL: an administrator)
//! checkoutctl broker definitions [--operator NAME] [--password-placeholders]
//! ```
//!
//! `broker definitions` prints the RabbitMQ definitions of the namespace:
//! one user per service (`<namespace>.<service>`, password from
//! `BROKER_<SERVICE>_PASSWORD`), its permissions and topic permissions,
//! the operator if named (password from `BROKER_OPERATOR_PASSWORD`), and
//! the whole topology. `rabbitmqctl import_definitions` or the broker's
//! `load_definitions` take it as it is; `--password-placeholders` writes
//! `${BROKER_…_PASSWORD}` instead of the passwords (the compose file's
//! template).
//!
//! A replayed message goes back to the queue of the service that failed it
//! (not to the topic exchange, which would hand it to every subscriber
//! again), and only if that service is bound to its original routing key.
//!
//! `list`, `show` and `replay` first check that the dead-letter queue has
//! the delivery limit this version declares: on RabbitMQ 4 a queue declared
//! by an older version loses a dead letter after about 20 looks, so they
//! refuse to read it (`--allow-legacy-queue` overrides). Card tokens are
//! masked in everything printed.
//!
//! `outbox` works on one service's database (`DATABASE_URL`): the rows the
//! broker refused on every attempt until the relay parked them, and making
//! them due again once the cause is fixed.

use anyhow::{Context as _, bail};
use checkout_events::{SUBSCRIPTIONS, Subscription};
use checkout_messaging::access::{self, BrokerUser};
use checkout_messaging::dead_letter::{self, DeadLetter, mask_card_tokens};
use checkout_messaging::outbox::{self, Selection};
use checkout_messaging::{QueueState, RetryPolicy, Topology, connect};
use clap::{Args, Parser, Subcommand};
use lapin::Connection;
use lapin::types::ShortString;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "checkoutctl", about = "Operate the checkout's messaging")]
struct Cli {
    /// The broker.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    amqp_url: String,
    /// The namespace of the deployment's exchanges and queues.
    #[arg(long, env = "BROKER_NAMESPACE", default_value = Topology::DEFAULT_NAMESPACE, global = true)]
    namespace: String,
    /// Read a dead-letter queue declared by an older version (without the
    /// delivery limit) anyway. On RabbitMQ 4 every look uses up one of its
    /// 20 deliveries, after which the broker deletes the dead letter.
    #[arg(long, global = true)]
    allow_legacy_queue: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dead-letter queues: one per service.
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
    /// A service's outbox: rows the broker refused until they were parked.
    Outbox {
        /// The service's own database.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// What an administrator sets up before the services start.
    Broker {
        #[command(subcommand)]
        action: Broker,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// One line per parked row, oldest first: event id, type, routing key, attempts, error.
    Parked {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Make parked rows due again (attempts reset), after fixing the cause.
    Unpark {
        /// The event id of the row to unpark.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        event_id: Option<uuid::Uuid>,
        /// Unpark every parked row.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Broker {
    /// Declare every exchange, queue and binding of the namespace, as an
    /// administrator (AMQP_URL must be allowed to declare all of them).
    Provision {
        /// The services' RETRY_DELAYS: their delay queues are named after them.
        #[arg(long, env = "RETRY_DELAYS", default_value = "1s,5s,30s,2m")]
        retry_delays: String,
    },
    /// Print the RabbitMQ definitions of the namespace: users, permissions,
    /// topic permissions and topology (JSON, for `rabbitmqctl
    /// import_definitions` or `load_definitions`).
    Definitions {
        /// The services' RETRY_DELAYS.
        #[arg(long, env = "RETRY_DELAYS", default_value = "1s,5s,30s,2m")]
        retry_delays: String,
        /// Add the operator user for people, with this name.
        #[arg(long)]
        operator: Option<String>,
        /// Write `${BROKER_…_PASSWORD}` placeholders instead of the
        /// passwords from the environment.
        #[arg(long)]
        password_placeholders: bool,
    },
}

#[derive(Debug, Args)]
struct Service {
    /// The service whose dead letters to work on: order, payment, inventory, email.
    #[arg(long)]
    service: String,
    /// For `replay`: the routing keys bound to the service's queue,
    /// comma-separated, for a deployment whose bindings are not the
    /// checkout's own (by default they come from the checkout's subscriptions).
    #[arg(long, value_delimiter = ',')]
    routing_keys: Option<Vec<String>>,
}

impl Service {
    /// The service's subscription: its routing keys as given, else the
    /// checkout's; a service in neither is refused.
    fn subscription(&self) -> anyhow::Result<Subscription> {
        if let Some(keys) = &self.routing_keys {
            // Leaked once per run of a short-lived command.
            let keys: Vec<&'static str> = keys
                .iter()
                .map(|key| &*Box::leak(key.clone().into_boxed_str()))
                .collect();
            return Ok(Subscription {
                service: Box::leak(self.service.clone().into_boxed_str()),
                routing_keys: Box::leak(keys.into_boxed_slice()),
            });
        }
        match SUBSCRIPTIONS.iter().find(|s| s.service == self.service) {
            Some(subscription) => Ok(*subscription),
            None => {
                let known: Vec<&str> = SUBSCRIPTIONS.iter().map(|s| s.service).collect();
                bail!(
                    "unknown service {:?}: one of {} (or give its --routing-keys)",
                    self.service,
                    known.join(", ")
                )
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum Dlq {
    /// One line per dead letter: id, type, reason, attempts, time, route, error.
    List {
        #[command(flatten)]
        service: Service,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Everything about one dead letter: headers and body.
    Show {
        #[command(flatten)]
        service: Service,
        /// Its message id.
        message_id: String,
    },
    /// Send dead letters back to the queue of the service that failed them.
    Replay {
        #[command(flatten)]
        service: Service,
        /// The message id to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<String>,
        /// Replay every dead letter of the service.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead letter of the service.
    Purge {
        #[command(flatten)]
        service: Service,
        /// Confirm: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("checkoutctl: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("checkoutctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dlq { action } => {
            dlq(
                &cli.amqp_url,
                &cli.namespace,
                cli.allow_legacy_queue,
                action,
            )
            .await
        }
        Command::Outbox {
            database_url,
            action,
        } => parked_outbox(&database_url, action).await,
        Command::Broker { action } => broker(&cli.amqp_url, &cli.namespace, action).await,
    }
}

async fn broker(amqp_url: &str, namespace: &str, action: Broker) -> anyhow::Result<()> {
    let topology = Topology::new(namespace)?;
    match action {
        Broker::Definitions {
            retry_delays,
            operator,
            password_placeholders,
        } => {
            let retries = RetryPolicy::parse(&retry_delays).context("--retry-delays")?;
            let password = |variable: &str| -> anyhow::Result<String> {
                if password_placeholders {
                    return Ok(format!("${{{variable}}}"));
                }
                std::env::var(variable)
                    .ok()
                    .filter(|value| !value.is_empty())
                    .with_context(|| format!("{variable} is not set"))
            };
            let users = access::deployment_users(&topology, operator.as_deref())
                .into_iter()
                .map(|(user, variable)| Ok((user, password(&variable)?)))
                .collect::<anyhow::Result<Vec<(BrokerUser, String)>>>()?;
            let plan = topology.plan(SUBSCRIPTIONS, &retries);
            let definitions = access::definitions(&plan, &users);
            println!("{}", serde_json::to_string_pretty(&definitions)?);
        }
        Broker::Provision { retry_delays } => {
            let retries = RetryPolicy::parse(&retry_delays).context("--retry-delays")?;
            let connection = connect(amqp_url, "checkoutctl provision")
                .await
                .context("cannot connect to the broker (AMQP_URL)")?;
            let provisioned = topology
                .provision(&connection, SUBSCRIPTIONS, &retries)
                .await;
            let _ = connection.close(200, ShortString::from("done")).await;
            provisioned
                .context("cannot provision the topology (is AMQP_URL an administrator's?)")?;
            println!(
                "provisioned {}: the events exchange and the queues of {}",
                topology.namespace(),
                SUBSCRIPTIONS
                    .iter()
                    .map(|s| s.service)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

async fn parked_outbox(database_url: &str, action: OutboxAction) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .context("cannot connect to the service's database (DATABASE_URL)")?;
    match action {
        OutboxAction::Parked { limit } => {
            let rows = outbox::parked(&pool, limit).await?;
            println!(
                "{:<36}  {:<18}  {:<20}  {:>8}  {:<24}  ERROR",
                "EVENT ID", "TYPE", "ROUTING KEY", "ATTEMPTS", "PARKED AT"
            );
            for row in &rows {
                println!(
                    "{:<36}  {:<18}  {:<20}  {:>8}  {:<24}  {}",
                    row.event_id,
                    row.event_type,
                    row.routing_key,
                    row.attempts,
                    row.parked_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    one_line(row.last_error.as_deref().unwrap_or("-"), 100),
                );
            }
            println!("{} parked row(s)", rows.len());
        }
        OutboxAction::Unpark { event_id, all } => {
            let selection = match event_id {
                Some(id) if !all => Selection::Events(vec![id]),
                _ => Selection::All,
            };
            let unparked = outbox::unpark(&pool, selection).await?;
            println!("unparked {unparked} row(s); the relay publishes them now");
            if !all && unparked == 0 {
                bail!("nothing unparked: no parked row with that event id");
            }
        }
    }
    pool.close().await;
    Ok(())
}

async fn dlq(
    amqp_url: &str,
    namespace: &str,
    allow_legacy: bool,
    action: Dlq,
) -> anyhow::Result<()> {
    let topology = Topology::new(namespace)?;
    let connection = connect(amqp_url, "checkoutctl")
        .await
        .context("cannot connect to the broker (AMQP_URL)")?;
    match action {
        Dlq::List { service, limit } => {
            let queue =
                readable_queue(&connection, &topology, &service.service, allow_legacy).await?;
            let channel = connection.create_channel().await?;
            let letters = dead_letter::peek(&channel, &queue, limit).await?;
            let work_queue = topology.queue(&service.service);
            println!(
                "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  ERROR",
                "MESSAGE ID", "TYPE", "REASON", "ATTEMPTS", "FAILED AT", "ROUTING KEY"
            );
            for l in &letters {
                let route = l.original_route(&work_queue).map(|r| r.routing_key);
                println!(
                    "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  {}",
                    or_dash(&l.message_id),
                    or_dash(&l.event_type),
                    or_dash(&l.reason),
                    l.attempts.map_or("-".to_owned(), |n| n.to_string()),
                    or_dash(&l.failed_at),
                    or_dash(&route),
                    one_line(&mask_card_tokens(l.error.as_deref().unwrap_or("-")), 100),
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        Dlq::Show {
            service,
            message_id,
        } => {
            let queue =
                readable_queue(&connection, &topology, &service.service, allow_legacy).await?;
            let channel = connection.create_channel().await?;
            let Some(letter) = dead_letter::find(&channel, &queue, &message_id).await? else {
                bail!("no dead letter {message_id} in {queue}");
            };
            show(&letter, &topology.queue(&service.service));
        }
        Dlq::Replay {
            service,
            message_id,
            all,
        } => {
            let subscription = service.subscription()?;
            readable_queue(&connection, &topology, subscription.service, allow_legacy).await?;
            let channel = connection.create_channel().await?;
            let outcome = dead_letter::replay(&channel, &topology, &subscription, |l| {
                all || l.message_id == message_id
            })
            .await?;
            println!(
                "replayed {}, left {} in the queue (replayed to {})",
                outcome.replayed,
                outcome.left,
                topology.queue(subscription.service)
            );
            for not in &outcome.not_replayed {
                println!("  not replayed {}: {}", or_dash(&not.message_id), not.why);
            }
            if !all && outcome.replayed == 0 {
                bail!("nothing replayed: no replayable dead letter with that id");
            }
        }
        Dlq::Purge { service, yes } => {
            if !yes {
                bail!(
                    "purging deletes every dead letter of {}; add --yes to confirm",
                    service.service
                );
            }
            let channel = connection.create_channel().await?;
            let purged =
                dead_letter::purge(&channel, &topology.dead_letter_queue(&service.service)).await?;
            println!("purged {purged} dead letter(s)");
        }
    }
    let _ = connection.close(200, ShortString::from("done")).await;
    Ok(())
}

/// The service's dead-letter queue, once it is known to exist and to have
/// the delivery limit that makes looking at it safe.
async fn readable_queue(
    connection: &Connection,
    topology: &Topology,
    service: &str,
    allow_legacy: bool,
) -> anyhow::Result<String> {
    let queue = topology.dead_letter_queue(service);
    match topology
        .check_dead_letter_queue(connection, service)
        .await?
    {
        QueueState::Current => {}
        QueueState::Missing => bail!(
            "there is no dead-letter queue {queue}: has the {service} service started in namespace {:?}?",
            topology.exchange().trim_end_matches(".events")
        ),
        QueueState::Legacy(broker) if allow_legacy => {
            eprintln!(
                "checkoutctl: warning: {queue} is a legacy queue ({broker}); reading it anyway"
            );
        }
        QueueState::Legacy(broker) => bail!(
            "{queue} was declared by an older version without the delivery limit ({broker}). \
             On RabbitMQ 4 each look uses up one of its 20 deliveries and the broker then \
             deletes the dead letter. Replace the queue first (README: Dead letters), or pass \
             --allow-legacy-queue on RabbitMQ 3"
        ),
    }
    Ok(queue)
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

fn show(letter: &DeadLetter, work_queue: &str) {
    let route = letter.original_route(work_queue);
    println!("message id:    {}", or_dash(&letter.message_id));
    println!("type:          {}", or_dash(&letter.event_type));
    println!("reason:        {}", or_dash(&letter.reason));
    println!("handler:       {}", or_dash(&letter.handler));
    println!(
        "attempts:      {}",
        letter.attempts.map_or("-".to_owned(), |n| n.to_string())
    );
    println!("failed at:     {}", or_dash(&letter.failed_at));
    println!(
        "original:      {} / {}",
        route.as_ref().map_or("-", |r| r.exchange.as_str()),
        route.as_ref().map_or("-", |r| r.routing_key.as_str())
    );
    println!(
        "error:         {}",
        mask_card_tokens(letter.error.as_deref().unwrap_or("-"))
    );
    println!("headers:");
    for (key, value) in letter.headers.inner() {
        println!(
            "  {key}: {}",
            one_line(&mask_card_tokens(&dead_letter::header_text(value)), 300)
        );
    }
    println!("body:");
    println!("{}", letter.masked_body());
}
