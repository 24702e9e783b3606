//! Measuring the checkout: the load tool (`checkout-load`) and the helpers
//! `scripts/bench` needs (`checkout-bench`).
//!
//! The load tool places orders over HTTP against a running checkout and
//! follows every order to its final state by consuming `order.confirmed` and
//! `order.cancelled` from a private queue bound to the checkout's exchange
//! ([`follow`]). It drives either an open loop (a fixed rate, whatever the
//! system does: [`drive`]) or a closed loop (N clients, each placing its next
//! order once the previous one is final), and reports rates and HDR latency
//! percentiles ([`stats`]).
//!
//! What it does not do: start the services (`scripts/bench` and
//! `scripts/run-local` do), or talk to anything but loopback.

pub mod cpu;
pub mod drive;
pub mod follow;
pub mod mix;
pub mod queue_bench;
pub mod relay_bench;
pub mod stats;

/// The exit status of a command-line tool: success, or its error chain on
/// stderr after the tool's name and a failure status.
pub fn exit_status(tool: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{tool}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
