//! `checkout-bench`: the parts of `scripts/bench` that need Rust — the
//! relay-versus-raw-confirms measurement, one quorum queue's ceiling, and
//! deleting a benchmark's broker namespace afterwards.

use checkout_events::SUBSCRIPTIONS;
use checkout_load::cpu::PerMessage;
use checkout_load::queue_bench::{QueueBench, QueueResult};
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
        /// Batches the relay keeps awaiting their confirms at once.
        #[arg(long, default_value_t = 3)]
        batches_in_flight: u8,
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
        /// Above 1: compare acking each delivery with one `multiple` ack
        /// per up to this many deliveries that arrived together, in four
        /// alternating runs (each, multiple, multiple, each).
        #[arg(long, default_value_t = 1)]
        ack_every: u16,
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
            batches_in_flight,
            json,
        } => {
            let bench = RelayBench {
                postgres_url,
                amqp_url,
                messages,
                in_flight,
                batches_in_flight,
            };
            relay(bench, json).await
        }
        Command::Queue {
            messages,
            in_flight,
            consumers,
            prefetch,
            ack_every,
            json,
        } => {
            let bench = QueueBench {
                amqp_url,
                messages,
                in_flight,
                consumers,
                prefetch,
                ack_every: 1,
                deadline: std::time::Duration::from_secs(300),
            };
            if ack_every > 1 {
                compare_acks(bench, ack_every, json).await
            } else {
                queue(bench, json).await
            }
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
            "relay_cpu_us_per_msg": cpu_json(&result.relay_cpu),
            "raw_cpu_us_per_msg": cpu_json(&result.raw_cpu),
        }),
        format!(
            "{} messages: relay {:.0}/s, raw confirms ({in_flight} in flight) {:.0}/s; \
             CPU µs per message (client / broker / PostgreSQL): relay {}, raw {}",
            result.messages,
            result.relay_per_second,
            result.raw_per_second,
            cpu_text(&result.relay_cpu),
            cpu_text(&result.raw_cpu),
        ),
    );
    Ok(())
}

/// One quorum queue's ceiling, printed.
async fn queue(bench: QueueBench, json: bool) -> anyhow::Result<()> {
    let (consumers, prefetch) = (bench.consumers, bench.prefetch);
    let result = bench.run().await?;
    let broker_cpu_us = broker_cpu_us(&result);
    print(
        json,
        serde_json::json!({
            "messages": result.messages,
            "published_per_s": result.published_per_second,
            "through_per_s": result.through_per_second,
            "broker_cpu_us_per_msg": broker_cpu_us,
        }),
        format!(
            "{} messages through one quorum queue: published (confirmed) {:.0}/s, \
             published and consumed (acked, {consumers} consumers x prefetch {prefetch}) {:.0}/s, \
             broker {broker_cpu_us:.1} µs CPU/msg",
            result.messages, result.published_per_second, result.through_per_second
        ),
    );
    Ok(())
}

/// Acking each delivery against one `multiple` ack per `ack_every`, in
/// alternating runs (each, multiple, multiple, each: whoever runs second
/// meets a warmer broker, and the alternation cancels that out), printed
/// as each mode's mean rate and the broker's CPU per message.
async fn compare_acks(bench: QueueBench, ack_every: u16, json: bool) -> anyhow::Result<()> {
    let mut runs: Vec<(u16, QueueResult)> = Vec::new();
    for every in [1, ack_every, ack_every, 1] {
        let run = QueueBench {
            ack_every: every,
            ..bench.clone()
        };
        runs.push((every, run.run().await?));
    }
    let mean = |every: u16, of: fn(&QueueResult) -> f64| {
        let picked: Vec<f64> = runs
            .iter()
            .filter(|(e, _)| *e == every)
            .map(|(_, r)| of(r))
            .collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    let through = |r: &QueueResult| r.through_per_second;
    let (each_cpu, multiple_cpu) = (mean(1, broker_cpu_us), mean(ack_every, broker_cpu_us));
    print(
        json,
        serde_json::json!({
            "messages": bench.messages,
            "ack_every": ack_every,
            "each_through_per_s": mean(1, through),
            "multiple_through_per_s": mean(ack_every, through),
            "each_broker_cpu_us_per_msg": each_cpu,
            "multiple_broker_cpu_us_per_msg": multiple_cpu,
        }),
        format!(
            "{} messages x 2 runs each, {} consumers x prefetch {}: \
             ack each {:.0}/s, broker {each_cpu:.1} µs CPU/msg; \
             multiple ack per <= {ack_every} {:.0}/s, broker {multiple_cpu:.1} µs CPU/msg \
             ({:+.1} %)",
            bench.messages,
            bench.consumers,
            bench.prefetch,
            mean(1, through),
            mean(ack_every, through),
            (multiple_cpu / each_cpu - 1.0) * 100.0
        ),
    );
    Ok(())
}

/// A run's CPU per message, for `--json`.
fn cpu_json(cpu: &PerMessage) -> serde_json::Value {
    serde_json::json!({
        "client": cpu.client_us,
        "broker": cpu.broker_us,
        "postgres": cpu.postgres_us,
    })
}

/// A run's CPU per message, for a person.
fn cpu_text(cpu: &PerMessage) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        cpu.client_us, cpu.broker_us, cpu.postgres_us
    )
}

/// The broker's CPU per message in µs, NaN (null in JSON) if unknown.
fn broker_cpu_us(result: &QueueResult) -> f64 {
    result
        .broker_cpu_per_message
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
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
