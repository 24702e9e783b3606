//! The `checkoutctl` commands: see what failed and why, and send it round
//! again; and provision the broker before the services start.
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
//!
//! The commands run in-process too ([`Cli::from_args`], [`Cli::run`]): what
//! they print goes to the writers they are given.

mod broker;
mod dlq;
mod outbox;
mod render;

use checkout_messaging::Topology;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;

/// The command line of `checkoutctl`.
#[derive(Debug, Parser)]
#[command(name = "checkoutctl", about = "Operate the checkout's messaging")]
pub struct Cli {
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
pub(crate) enum Command {
    /// Dead-letter queues: one per service.
    Dlq {
        #[command(subcommand)]
        action: dlq::Dlq,
    },
    /// A service's outbox: rows the broker refused until they were parked.
    Outbox {
        /// The service's own database.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[command(subcommand)]
        action: outbox::OutboxAction,
    },
    /// What an administrator sets up before the services start.
    Broker {
        #[command(subcommand)]
        action: broker::Broker,
    },
}

impl Cli {
    /// The command line of this process (`--help` and a bad argument print
    /// and exit, as a command line does).
    pub fn from_env() -> Self {
        Self::parse()
    }

    /// Parses `args`, the program name first, as the command line would.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// Runs the command: what it prints goes to `out`, warnings to `err`.
    /// An error is what `checkoutctl` reports before it exits with 1.
    pub async fn run(self, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
        match self.command {
            Command::Dlq { action } => {
                let options = dlq::Options {
                    amqp_url: &self.amqp_url,
                    namespace: &self.namespace,
                    allow_legacy: self.allow_legacy_queue,
                };
                dlq::run(&options, action, out, err).await
            }
            Command::Outbox {
                database_url,
                action,
            } => outbox::run(&database_url, action, out).await,
            Command::Broker { action } => {
                broker::run(&self.amqp_url, &self.namespace, action, out).await
            }
        }
    }
}
