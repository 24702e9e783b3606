//! `checkout-load`: places orders against a running checkout and follows
//! each to its final state; see the crate docs and `--help`.

use checkout_load::drive::{Load, Run, is_loopback};
use checkout_load::mix::Mix;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// Places orders over HTTP at a fixed rate (--rate) or with N closed-loop
/// clients (--clients), follows every order to CONFIRMED or CANCELLED, and
/// reports rates and latency percentiles.
#[derive(Debug, Parser)]
// A later flag overrides an earlier one, so scripts can append to a base
// command line (scripts/bench does).
#[command(name = "checkout-load", version, args_override_self = true)]
struct Args {
    /// The Order service (loopback only).
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:8080")]
    order_url: String,
    /// The broker the checkout publishes to; the tool listens there for
    /// order.confirmed and order.cancelled.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// The checkout's broker namespace (its exchange is <namespace>.events).
    #[arg(long, env = "BROKER_NAMESPACE", default_value = "checkout")]
    namespace: String,
    /// Open loop: place this many orders per second.
    #[arg(long, conflicts_with = "clients", required_unless_present = "clients")]
    rate: Option<f64>,
    /// Closed loop: this many clients, each placing its next order once the
    /// previous one is final.
    #[arg(long)]
    clients: Option<usize>,
    /// Seconds to place orders for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds to wait for pending orders after the load stops (and, in a
    /// closed loop, the longest a client waits for one order).
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// Percent of orders paid with the declined card (tok_decline).
    #[arg(long, default_value_t = 10.0)]
    declined: f64,
    /// Percent of orders for more than Inventory holds.
    #[arg(long, default_value_t = 10.0)]
    out_of_stock: f64,
    /// The SKUs good and declined orders buy one unit of, in turn
    /// (comma-separated); keep them stocked.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "CB-001,KB-001,MS-001,LP-001"
    )]
    sku: Vec<String>,
    /// The SKU out-of-stock orders ask too many of; no other order may buy it.
    #[arg(long, default_value = "MN-001")]
    out_of_stock_sku: String,
    /// How many units an out-of-stock order asks for (1–1000, above stock).
    #[arg(long, default_value_t = 1000)]
    out_of_stock_quantity: u32,
    /// Open loop: the most POSTs outstanding before slots are skipped.
    #[arg(long, default_value_t = 2048)]
    max_in_flight: usize,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    checkout_load::exit_status("checkout-load", run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_loopback(&args.order_url),
        "refusing to load {}: the load tool targets loopback only",
        args.order_url
    );
    anyhow::ensure!(
        (0.0..=100.0).contains(&(args.declined + args.out_of_stock))
            && args.declined >= 0.0
            && args.out_of_stock >= 0.0,
        "--declined and --out-of-stock are percentages that add up to at most 100"
    );
    anyhow::ensure!(!args.sku.is_empty(), "--sku needs at least one SKU");
    anyhow::ensure!(
        !args.sku.contains(&args.out_of_stock_sku),
        "--out-of-stock-sku must not be one the good orders buy"
    );
    let load = match (args.rate, args.clients) {
        (Some(rate), _) => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            Load::Open {
                rate,
                max_in_flight: args.max_in_flight.max(1),
            }
        }
        (None, Some(clients)) => Load::Closed {
            clients: clients.max(1),
        },
        (None, None) => anyhow::bail!("give --rate or --clients"),
    };
    let run = Run {
        order_url: args.order_url,
        amqp_url: args.amqp_url,
        exchange: format!("{}.events", args.namespace),
        load,
        duration: Duration::from_secs(args.duration),
        drain: Duration::from_secs(args.drain),
        mix: Mix {
            declined_pct: args.declined,
            out_of_stock_pct: args.out_of_stock,
            skus: args.sku,
            out_of_stock_sku: args.out_of_stock_sku,
            out_of_stock_quantity: args.out_of_stock_quantity,
        },
        progress: !args.quiet,
    };
    let report = run.execute().await?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
