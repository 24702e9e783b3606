//! Declaring a plan on the broker (as an administrator, or a service its
//! own part), checking a dead-letter queue's arguments, and deleting a
//! namespace — keeping what an older version left where replacing it would
//! lose messages.

use super::{DeclareError, Plan, QueueState, Topology, name};
use crate::retry::RetryPolicy;
use checkout_events::Subscription;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};

impl Topology {
    /// Declares the whole [plan](Topology::plan) on channels of its own
    /// from `connection` — an administrator's: it declares the shared
    /// exchanges and every service's queues. Safe to run concurrently and
    /// repeatedly. A dead-letter or unroutable queue left by an older
    /// version with other arguments is kept as it is, with one warning that
    /// names it and says how to replace it, and declaring goes on; any
    /// other difference fails (`PRECONDITION_FAILED`).
    pub async fn provision(
        &self,
        connection: &Connection,
        subscriptions: &[Subscription],
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        declare_plan(connection, &self.plan(subscriptions, retries)).await
    }

    /// What a service declares at start with its own broker user: checks
    /// (passively) that the events exchange exists, then declares
    /// `service`'s [own plan](Topology::own_plan) with delay queues for
    /// `retries` — idempotent, and a check that the provisioned queues have
    /// this version's arguments. It declares nothing the service's user may
    /// not: no shared exchange, no other service's name, no binding from
    /// the events exchange.
    pub async fn declare_own(
        &self,
        connection: &Connection,
        service: &str,
        retries: &RetryPolicy,
    ) -> Result<(), DeclareError> {
        let exchange = self.exchange();
        let probe = connection.create_channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        match probe
            .exchange_declare(
                name(&exchange),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                return Err(DeclareError::NotProvisioned {
                    exchange,
                    namespace: self.namespace.clone(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        declare_plan(connection, &self.own_plan(service, retries)).await?;
        Ok(())
    }

    /// Whether `service`'s dead-letter queue exists with the arguments this
    /// version declares — above all the delivery limit that keeps looking
    /// at it from deleting dead letters on RabbitMQ 4. It asks on channels
    /// of its own: a passive declare (is it there?), then a declare with the
    /// current arguments, which the broker refuses if they differ.
    pub async fn check_dead_letter_queue(
        &self,
        connection: &Connection,
        service: &str,
    ) -> Result<QueueState, lapin::Error> {
        let queue = self.dead_letter_queue(service);
        let probe = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match probe
            .queue_declare(name(&queue), passive, FieldTable::default())
            .await
        {
            Ok(_) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::NOTFOUND) => {
                return Ok(QueueState::Missing);
            }
            Err(error) => return Err(error),
        }
        let probe = connection.create_channel().await?;
        match declare_queue(&probe, &queue, Self::dead_letter_queue_arguments()).await {
            Ok(()) => {
                let _ = probe.close(200, ShortString::from("checked")).await;
                Ok(QueueState::Current)
            }
            Err(error) if soft_error(&error) == Some(AMQPSoftError::PRECONDITIONFAILED) => {
                Ok(QueueState::Legacy(error_text(&error)))
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes everything [`Topology::provision`] (and the services'
    /// [`Topology::declare_own`]) made for `subscriptions` and `retries`,
    /// messages included (tests use it to leave nothing behind).
    pub async fn delete(
        &self,
        channel: &Channel,
        subscriptions: &[Subscription],
        retries: &RetryPolicy,
    ) -> Result<(), lapin::Error> {
        let plan = self.plan(subscriptions, retries);
        for queue in &plan.queues {
            channel
                .queue_delete(name(&queue.name), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in &plan.exchanges {
            channel
                .exchange_delete(name(&exchange.name), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Declares `plan` on channels of its own from `connection`, keeping
/// legacy queues that may be kept (see [`QueueSpec::kept_if_legacy`]).
async fn declare_plan(connection: &Connection, plan: &Plan) -> Result<(), lapin::Error> {
    let mut declarer = Declarer {
        connection,
        channel: connection.create_channel().await?,
    };
    let declared = declarer.declare(plan).await;
    let _ = declarer
        .channel
        .close(200, ShortString::from("topology declared"))
        .await;
    declared
}

/// The channel declarations go through, and the connection to open a new
/// one on when the broker closes it over a queue kept from an older version.
struct Declarer<'c> {
    connection: &'c Connection,
    channel: Channel,
}

impl Declarer<'_> {
    async fn declare(&mut self, plan: &Plan) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in &plan.exchanges {
            self.channel
                .exchange_declare(
                    name(&exchange.name),
                    exchange.kind.clone(),
                    durable,
                    exchange.arguments.clone(),
                )
                .await?;
        }
        for queue in &plan.queues {
            if queue.kept_if_legacy {
                self.declare_kept_queue(&queue.name, queue.arguments.clone())
                    .await?;
            } else {
                declare_queue(&self.channel, &queue.name, queue.arguments.clone()).await?;
            }
        }
        for binding in &plan.bindings {
            self.channel
                .queue_bind(
                    name(&binding.queue),
                    name(&binding.exchange),
                    name(&binding.routing_key),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Declares a queue that an older version may have declared with other
    /// arguments (a dead-letter or the unroutable queue). Such a queue is
    /// kept as it is, with a warning: it still works, and replacing it
    /// would drop its messages.
    async fn declare_kept_queue(
        &mut self,
        queue: &str,
        args: FieldTable,
    ) -> Result<(), lapin::Error> {
        let error = match declare_queue(&self.channel, queue, args).await {
            Ok(()) => return Ok(()),
            Err(error) if soft_error(&error) == Some(AMQPSoftError::PRECONDITIONFAILED) => error,
            Err(error) => return Err(error),
        };
        tracing::warn!(
            queue,
            broker = %error_text(&error),
            "queue {queue} was declared by an older version with other arguments; keeping it \
             as it is. Replace it when it is empty: check with `checkoutctl dlq list` (dead \
             letters) or move its messages, then `rabbitmqctl delete_queue {queue}` and \
             provision again (see the README: Dead letters)"
        );
        self.channel = self.connection.create_channel().await?;
        Ok(())
    }
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(name(queue), options, args).await?;
    Ok(())
}

/// The channel-level error the broker answered with, if that is what `error` is.
fn soft_error(error: &lapin::Error) -> Option<AMQPSoftError> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft.clone()),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// The broker's text for a protocol error, else the error's own.
fn error_text(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        _ => error.to_string(),
    }
}
