//! `checkoutctl outbox`: a service's parked outbox rows, and unparking them.

use super::render::one_line;
use anyhow::{Context as _, bail};
use checkout_messaging::outbox::{self, Selection};
use clap::Subcommand;
use std::io::Write;

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxAction {
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

/// Runs `action` on the service database at `database_url`.
pub(super) async fn run(
    database_url: &str,
    action: OutboxAction,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .context("cannot connect to the service's database (DATABASE_URL)")?;
    let done = match action {
        OutboxAction::Parked { limit } => parked(&pool, limit, out).await,
        OutboxAction::Unpark { event_id, all } => unpark(&pool, event_id, all, out).await,
    };
    pool.close().await;
    done
}

async fn parked(pool: &sqlx::PgPool, limit: i64, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows = outbox::parked(pool, limit).await?;
    writeln!(
        out,
        "{:<36}  {:<18}  {:<20}  {:>8}  {:<24}  ERROR",
        "EVENT ID", "TYPE", "ROUTING KEY", "ATTEMPTS", "PARKED AT"
    )?;
    for row in &rows {
        writeln!(
            out,
            "{:<36}  {:<18}  {:<20}  {:>8}  {:<24}  {}",
            row.event_id,
            row.event_type,
            row.routing_key,
            row.attempts,
            row.parked_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            one_line(row.last_error.as_deref().unwrap_or("-"), 100),
        )?;
    }
    writeln!(out, "{} parked row(s)", rows.len())?;
    Ok(())
}

async fn unpark(
    pool: &sqlx::PgPool,
    event_id: Option<uuid::Uuid>,
    all: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let selection = match event_id {
        Some(id) if !all => Selection::Events(vec![id]),
        _ => Selection::All,
    };
    let unparked = outbox::unpark(pool, selection).await?;
    writeln!(
        out,
        "unparked {unparked} row(s); the relay publishes them now"
    )?;
    if !all && unparked == 0 {
        bail!("nothing unparked: no parked row with that event id");
    }
    Ok(())
}
