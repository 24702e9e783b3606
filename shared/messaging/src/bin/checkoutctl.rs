//! `checkoutctl`: see what failed and why, and send it round again.
//!
//! ```text
//! checkoutctl dlq list    --service payment
//! checkoutctl dlq show    --service payment <message-id>
//! checkoutctl dlq replay  --service payment <message-id> | --all
//! checkoutctl dlq purge   --service payment --yes
//! ```
//!
//! A replayed message goes back to its original exchange and routing key,
//! so every service bound to it sees it again; each one's inbox makes that
//! harmless for those that had already applied it.

use anyhow::{Context as _, bail};
use checkout_messaging::dead_letter::{self, DeadLetter};
use checkout_messaging::{Topology, connect};
use clap::{Args, Parser, Subcommand};
use lapin::types::{AMQPValue, ShortString};
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
}

#[derive(Debug, Args)]
struct Service {
    /// The service whose dead letters to work on: order, payment, inventory, email.
    #[arg(long)]
    service: String,
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
    /// Publish dead letters again to their original routing key.
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
    let topology = Topology::new(cli.namespace.as_str())?;
    let connection = connect(&cli.amqp_url, "checkoutctl")
        .await
        .context("cannot connect to the broker (AMQP_URL)")?;
    let channel = connection.create_channel().await?;
    let Command::Dlq { action } = cli.command;
    match action {
        Dlq::List { service, limit } => {
            let letters = dead_letter::peek(&channel, &dlq(&topology, &service), limit).await?;
            println!(
                "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  ERROR",
                "MESSAGE ID", "TYPE", "REASON", "ATTEMPTS", "FAILED AT", "ROUTING KEY"
            );
            for l in &letters {
                println!(
                    "{:<36}  {:<18}  {:<9}  {:>8}  {:<24}  {:<20}  {}",
                    or_dash(&l.message_id),
                    or_dash(&l.event_type),
                    or_dash(&l.reason),
                    l.attempts.map_or("-".to_owned(), |n| n.to_string()),
                    or_dash(&l.failed_at),
                    or_dash(&l.original_routing_key),
                    one_line(l.error.as_deref().unwrap_or("-"), 100),
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        Dlq::Show {
            service,
            message_id,
        } => {
            let letters =
                dead_letter::peek(&channel, &dlq(&topology, &service), usize::MAX).await?;
            let Some(letter) = letters
                .iter()
                .find(|l| l.message_id.as_deref() == Some(&message_id))
            else {
                bail!(
                    "no dead letter {message_id} in {}",
                    dlq(&topology, &service)
                );
            };
            show(letter);
        }
        Dlq::Replay {
            service,
            message_id,
            all,
        } => {
            let outcome = dead_letter::replay(&channel, &dlq(&topology, &service), |l| {
                all || l.message_id == message_id
            })
            .await?;
            println!(
                "replayed {}, left {} in the queue",
                outcome.replayed, outcome.left
            );
            if !all && outcome.replayed == 0 {
                bail!("nothing replayed: no dead letter with that id and an original route");
            }
        }
        Dlq::Purge { service, yes } => {
            if !yes {
                bail!(
                    "purging deletes every dead letter of {}; add --yes to confirm",
                    service.service
                );
            }
            let purged = dead_letter::purge(&channel, &dlq(&topology, &service)).await?;
            println!("purged {purged} dead letter(s)");
        }
    }
    let _ = connection.close(200, ShortString::from("done")).await;
    Ok(())
}

fn dlq(topology: &Topology, service: &Service) -> String {
    topology.dead_letter_queue(&service.service)
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

fn show(letter: &DeadLetter) {
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
        or_dash(&letter.original_exchange),
        or_dash(&letter.original_routing_key)
    );
    println!("error:         {}", letter.error.as_deref().unwrap_or("-"));
    println!("headers:");
    for (key, value) in letter.headers.inner() {
        let value = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            other => format!("{other:?}"),
        };
        println!("  {key}: {}", one_line(&value, 200));
    }
    println!("body:");
    match serde_json::from_slice::<serde_json::Value>(&letter.body) {
        Ok(json) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        Err(_) => println!("{}", String::from_utf8_lossy(&letter.body)),
    }
}
