//! `checkoutctl broker`: what an administrator sets up before the services
//! start — the topology itself, or the RabbitMQ definitions (users,
//! permissions, topology) that provision a deployment.

use anyhow::Context as _;
use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::access::{self, BrokerUser};
use checkout_messaging::{RetryPolicy, Topology, connect};
use clap::Subcommand;
use lapin::types::ShortString;
use std::io::Write;

#[derive(Debug, Subcommand)]
pub(crate) enum Broker {
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

/// Runs `action` for the namespace `namespace`.
pub(super) async fn run(
    amqp_url: &str,
    namespace: &str,
    action: Broker,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
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
            writeln!(out, "{}", serde_json::to_string_pretty(&definitions)?)?;
        }
        Broker::Provision { retry_delays } => {
            let retries = RetryPolicy::parse(&retry_delays).context("--retry-delays")?;
            provision(amqp_url, &topology, &retries, out).await?;
        }
    }
    Ok(())
}

async fn provision(
    amqp_url: &str,
    topology: &Topology,
    retries: &RetryPolicy,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let connection = connect(amqp_url, "checkoutctl provision")
        .await
        .context("cannot connect to the broker (AMQP_URL)")?;
    let provisioned = topology
        .provision(&connection, SUBSCRIPTIONS, retries)
        .await;
    let _ = connection.close(200, ShortString::from("done")).await;
    provisioned.context("cannot provision the topology (is AMQP_URL an administrator's?)")?;
    writeln!(
        out,
        "provisioned {}: the events exchange and the queues of {}",
        topology.namespace(),
        SUBSCRIPTIONS
            .iter()
            .map(|s| s.service)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(())
}
