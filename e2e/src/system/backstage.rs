//! What a test does behind the services' backs: closes their broker
//! connections, ends or refuses their database connections, runs SQL in
//! their databases, reads queue depths and dead letters — the faults and
//! the looks no API offers.

use super::System;
use crate::process::Service;
use crate::resources;
use anyhow::Context as _;
use checkout_operator::dlq::{self as dead_letter, DeadLetter};
use lapin::types::ShortString;

impl System {
    /// Closes this system's broker connections (all services), as
    /// `rabbitmqctl close_connection` does. Returns how many.
    pub async fn close_broker_connections(&self) -> anyhow::Result<usize> {
        resources::close_broker_connections(&self.id).await
    }

    /// Terminates every database connection of this system's services, as
    /// `pg_terminate_backend` does. Returns how many.
    pub async fn terminate_database_connections(&self) -> anyhow::Result<i64> {
        resources::terminate_database_connections(&self.options.postgres_url, &self.id).await
    }

    /// Makes `service`'s database refuse new connections and ends the open
    /// ones (`refuse`), as an outage would, or lets connections in again.
    pub async fn refuse_database(&self, service: Service, refuse: bool) -> anyhow::Result<()> {
        let name = self.database_of(service)?;
        resources::refuse_connections(&self.options.postgres_url, &name, refuse).await
    }

    /// Runs `sql` in `service`'s own database (to inject a fault there).
    pub async fn execute_in(&self, service: Service, sql: &str) -> anyhow::Result<()> {
        let name = self.database_of(service)?;
        resources::execute_in(&self.options.postgres_url, &name, sql).await
    }

    /// The one `bigint` that `sql` selects in `service`'s own database
    /// (`SELECT count(*) …`), to look where no API shows.
    pub async fn count_in(&self, service: Service, sql: &str) -> anyhow::Result<i64> {
        let name = self.database_of(service)?;
        resources::count_in(&self.options.postgres_url, &name, sql).await
    }

    /// How many messages wait in the broker queue `queue`.
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        resources::queue_depth(&self.options.amqp_url, queue).await
    }

    /// This system's broker names.
    pub fn topology(&self) -> anyhow::Result<checkout_messaging::Topology> {
        Ok(checkout_messaging::Topology::new(self.id.as_str())?)
    }

    /// The broker URL `service` is started with: the administrator's URL
    /// with the service's own user (`<id>.<service>`) and password.
    pub fn broker_url(&self, service: Service) -> anyhow::Result<String> {
        let password = self
            .broker_passwords
            .get(&service)
            .context("the broker is not provisioned yet")?;
        let user = checkout_messaging::access::service_user_name(&self.topology()?, service.name());
        with_credentials(&self.options.amqp_url, &user, password)
    }

    /// The broker URL of the console's own user (`<id>.console`).
    pub fn console_broker_url(&self) -> anyhow::Result<String> {
        let user = checkout_messaging::access::console_user(&self.topology()?).name;
        with_credentials(&self.options.amqp_url, &user, &self.console_broker_password)
    }

    /// The broker URL of the administrator the harness provisions with.
    pub fn admin_broker_url(&self) -> &str {
        &self.options.amqp_url
    }

    /// The messages in `service`'s dead-letter queue, left there (each is
    /// fetched and given back), as `checkoutctl dlq list` shows them.
    pub async fn dead_letters(&self, service: Service) -> anyhow::Result<Vec<DeadLetter>> {
        let queue = self.topology()?.dead_letter_queue(service.name());
        let connection = checkout_messaging::connect(&self.options.amqp_url, "e2e dead letters")
            .await
            .context("cannot connect to the broker")?;
        let channel = connection.create_channel().await?;
        let letters = dead_letter::peek(&channel, &queue, 1000).await;
        let _ = connection.close(200, ShortString::from("done")).await;
        Ok(letters?)
    }

    fn database_of(&self, service: Service) -> anyhow::Result<String> {
        self.databases
            .iter()
            .find(|(owner, _)| *owner == service)
            .map(|(_, name)| name.clone())
            .context("no database for the service")
    }
}

/// `url` (`amqp://user:password@host…`) with `user` and `password` instead.
fn with_credentials(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("not a URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // Names and passwords are [a-z0-9._] (the harness makes them): no
    // percent-encoding needed.
    Ok(format!("{scheme}://{user}:{password}@{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_keeps_the_host_and_takes_its_own_credentials() {
        for (admin, expected) in [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://ns.order:pw@127.0.0.1:5672/%2f",
            ),
            ("amqp://localhost:5672", "amqp://ns.order:pw@localhost:5672"),
            ("amqps://a:b@broker/vh", "amqps://ns.order:pw@broker/vh"),
        ] {
            assert_eq!(
                with_credentials(admin, "ns.order", "pw").expect("a URL"),
                expected
            );
        }
    }
}
