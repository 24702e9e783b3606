//! `checkout-bench`: the parts of `scripts/bench` that need Rust — the
//! relay-versus-raw-confirms measurement, one quorum queue's ceiling, and
//! deleting a benchmark's broker namespace afterwards.

use checkout_events::SUBSCRIPTIONS;
use checkout_load::queue_bench::QueueBench;
use checkout_load::relay_bench::RelayBench;
use checkout_messaging::{RetryPolicy, Topology};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Helpers for scripts/bench.
#[derive(Debug, Parser)]
#[command(name = "checkout-bench", version)]
struct Args {
    /// The broker.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay publish rate vs a raw publisher-confirms loop, in one run.
    Relay {
        /// The PostgreSQL server, without a database name.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
        postgres_url: String,
        /// Messages each side publishes.
        #[arg(long, default_value_t = 20_000)]
        messages: u32,
        /// Confirms the raw loop keeps in flight.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// One quorum queue's ceiling: publish with confirms and consume with
    /// acks at once, through one queue (README "Scaling out").
    Queue {
        /// Messages through the queue.
        #[arg(long, default_value_t = 100_000)]
        messages: u32,
        /// Confirms the publisher keeps in flight.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Consumers, each on its own channel.
        #[arg(long, default_value_t = 4)]
        consumers: usize,
        /// Each consumer's prefetch.
        #[arg(long, default_value_t = 64)]
        prefetch: u16,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Deletes every exchange and queue the services declared under a namespace.
    Cleanup {
        /// The namespace the services ran with (BROKER_NAMESPACE).
        #[arg(long)]
        namespace: String,
        /// The RETRY_DELAYS the services ran with (retry queues are named after them).
        #[arg(long)]
        retry_delays: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    checkout_load::exit_status("checkout-bench", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let amqp_url = args.amqp_url;
    match args.command {
        Command::Relay {
            postgres_url,
            messages,
            in_flight,
            json,
        } => {
            let bench = RelayBench {
                postgres_url,
                amqp_url,
                messages,
                in_flight,
            };
            relay(bench, json).await
        }
        Command::Queue {
            messages,
            in_flight,
            consumers,
            prefetch,
            json,
        } => {
            let bench = QueueBench {
                amqp_url,
                messages,
                in_flight,
                consumers,
                prefetch,
                deadline: std::time::Duration::from_secs(300),
            };
            queue(bench, json).await
        }
        Command::Cleanup {
            namespace,
            retry_delays,
        } => cleanup(&amqp_url, namespace, &retry_delays).await,
    }
}

/// The relay against raw publisher confirms, printed.
async fn relay(bench: RelayBench, json: bool) -> anyhow::Result<()> {
    let in_flight = bench.in_flight;
    let result = bench.run().await?;
    print(
        json,
        serde_json::json!({
            "messages": result.messages,
            "relay_per_s": result.relay_per_second,
            "raw_per_s": result.raw_per_second,
        }),
        format!(
            "{} messages: relay {:.0}/s, raw confirms ({in_flight} in flight) {:.0}/s",
            result.messages, result.relay_per_second, result.raw_per_second
        ),
    );
    Ok(())
}

/// One quorum queue's ceiling, printed.
async fn queue(bench: QueueBench, json: bool) -> anyhow::Result<()> {
    let (consumers, prefetch) = (bench.consumers, bench.prefetch);
    let result = bench.run().await?;
    print(
        json,
        serde_json::json!({
            "messages": result.messages,
            "published_per_s": result.published_per_second,
            "through_per_s": result.through_per_second,
        }),
        format!(
            "{} messages through one quorum queue: published (confirmed) {:.0}/s, \
             published and consumed (acked, {consumers} consumers x prefetch {prefetch}) {:.0}/s",
            result.messages, result.published_per_second, result.through_per_second
        ),
    );
    Ok(())
}

/// Prints a result one way: `fields` as one line of JSON under `--json`
/// (what `scripts/bench` parses), else `sentence` for a person.
fn print(json: bool, fields: serde_json::Value, sentence: String) {
    if json {
        println!("{fields}");
    } else {
        println!("{sentence}");
    }
}

/// Deletes what the services declared under `namespace`.
async fn cleanup(amqp_url: &str, namespace: String, retry_delays: &str) -> anyhow::Result<()> {
    let topology = Topology::new(namespace)?;
    let retries = RetryPolicy::parse(retry_delays)?;
    let connection = checkout_messaging::connect(amqp_url, "checkout-bench cleanup")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the broker: {e}"))?;
    let channel = connection.create_channel().await?;
    let deleted = topology.delete(&channel, SUBSCRIPTIONS, &retries).await;
    let _ = connection.close(200, "cleanup done".into()).await;
    deleted?;
    Ok(())
}
