//! The dead-letter queues on the broker, through the same code as
//! `checkoutctl dlq` (this is the one module that imports it): list,
//! find, replay, purge, with the same semantics — a look takes messages
//! and gives them back, a replay goes to the failing service's own queue
//! through its retry exchange and only for a routing key it is bound to,
//! a queue declared without the delivery limit is refused.
//!
//! The console holds one broker connection (as user `checkout.console`,
//! which may touch the dead-letter queues and the retry exchanges only)
//! and reconnects when it is lost. Operations run one at a time: two looks
//! at one queue at once would each see only the messages the other had not
//! taken.

use crate::dead_letters::{Letter, Selection, order_of, trace_of};
use checkout_events::SUBSCRIPTIONS;
use checkout_messaging::{QueueState, Topology, connect};
use checkout_operator::dlq::{self as dead_letter, DeadLetter, mask_card_tokens};
use lapin::Connection;
use lapin::types::ShortString;
use std::sync::Arc;
use tokio::sync::Mutex;

/// At most this many dead letters of one service are read for a page.
pub(crate) const LIST_LIMIT: usize = 500;

/// What a replay did, as the page reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplayOutcome {
    pub(crate) replayed: usize,
    pub(crate) left: usize,
    /// Selected letters that stay, with why (message id or `-`).
    pub(crate) not_replayed: Vec<(String, String)>,
}

/// The broker side of the Dead letters pages.
///
/// Each operation runs as a task of its own, so a request that is
/// abandoned (its client gone, `HTTP_REQUEST_TIMEOUT`) does not cut a look
/// short between taking messages and giving them back.
#[derive(Debug, Clone)]
pub(crate) struct Broker(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    amqp_url: String,
    topology: Topology,
    connection: Mutex<Option<Connection>>,
}

impl Broker {
    pub(crate) fn new(amqp_url: String, topology: Topology) -> Self {
        Self(Arc::new(Inner {
            amqp_url,
            topology,
            connection: Mutex::new(None),
        }))
    }

    /// Whether the broker answers (the readiness probe).
    pub(crate) async fn reachable(&self) -> bool {
        self.0.reachable().await
    }

    /// The service's dead letters (up to [`LIST_LIMIT`]), left in the queue.
    pub(crate) async fn list(&self, service: &str) -> Result<Vec<Letter>, String> {
        let (inner, service) = (self.0.clone(), service.to_owned());
        detached(async move { inner.list(&service).await }).await
    }

    /// One dead letter of the service, left in the queue.
    pub(crate) async fn find(
        &self,
        service: &str,
        message_id: &str,
    ) -> Result<Option<Letter>, String> {
        let (inner, service, id) = (self.0.clone(), service.to_owned(), message_id.to_owned());
        detached(async move { inner.find(&service, &id).await }).await
    }

    /// Sends the selected dead letters back to the service's queue.
    pub(crate) async fn replay(
        &self,
        service: &str,
        selection: &Selection,
    ) -> Result<ReplayOutcome, String> {
        let (inner, service, selection) = (self.0.clone(), service.to_owned(), selection.clone());
        detached(async move { inner.replay(&service, &selection).await }).await
    }

    /// Deletes every dead letter of the service; answers how many.
    pub(crate) async fn purge(&self, service: &str) -> Result<u32, String> {
        let (inner, service) = (self.0.clone(), service.to_owned());
        detached(async move { inner.purge(&service).await }).await
    }
}

/// Runs `operation` to its end even if the caller stops waiting.
async fn detached<T: Send + 'static>(
    operation: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(operation)
        .await
        .map_err(|error| format!("the broker operation failed: {error}"))?
}

impl Inner {
    /// An operation in progress holds the connection, so it counts as an answer.
    async fn reachable(&self) -> bool {
        match self.connection.try_lock() {
            Ok(mut slot) => self.connected(&mut slot).await.is_ok(),
            Err(_) => true,
        }
    }

    async fn list(&self, service: &str) -> Result<Vec<Letter>, String> {
        let mut slot = self.connection.lock().await;
        let connection = self.connected(&mut slot).await?;
        let queue = self.readable_queue(connection, service).await?;
        let channel = connection.create_channel().await.map_err(text)?;
        let letters = dead_letter::peek(&channel, &queue, LIST_LIMIT)
            .await
            .map_err(text)?;
        let _ = channel.close(200, ShortString::from("listed")).await;
        let work_queue = self.topology.queue(service);
        Ok(letters.iter().map(|l| letter(l, &work_queue)).collect())
    }

    async fn find(&self, service: &str, message_id: &str) -> Result<Option<Letter>, String> {
        let mut slot = self.connection.lock().await;
        let connection = self.connected(&mut slot).await?;
        let queue = self.readable_queue(connection, service).await?;
        let channel = connection.create_channel().await.map_err(text)?;
        let found = dead_letter::find(&channel, &queue, message_id)
            .await
            .map_err(text)?;
        let _ = channel.close(200, ShortString::from("found")).await;
        Ok(found.map(|l| letter(&l, &self.topology.queue(service))))
    }

    async fn replay(&self, service: &str, selection: &Selection) -> Result<ReplayOutcome, String> {
        let subscription = SUBSCRIPTIONS
            .iter()
            .find(|s| s.service == service)
            .ok_or_else(|| format!("{service} is not a service with a queue"))?;
        let mut slot = self.connection.lock().await;
        let connection = self.connected(&mut slot).await?;
        self.readable_queue(connection, service).await?;
        let channel = connection.create_channel().await.map_err(text)?;
        let work_queue = self.topology.queue(service);
        let outcome = dead_letter::replay(&channel, &self.topology, subscription, |l| {
            selection.picks(&letter(l, &work_queue))
        })
        .await
        .map_err(text)?;
        let _ = channel.close(200, ShortString::from("replayed")).await;
        tracing::warn!(
            service,
            ?selection,
            replayed = outcome.replayed,
            "dead letters replayed from the console"
        );
        Ok(ReplayOutcome {
            replayed: outcome.replayed,
            left: outcome.left,
            not_replayed: outcome
                .not_replayed
                .into_iter()
                .map(|n| (n.message_id.unwrap_or_else(|| "-".to_owned()), n.why))
                .collect(),
        })
    }

    async fn purge(&self, service: &str) -> Result<u32, String> {
        let mut slot = self.connection.lock().await;
        let connection = self.connected(&mut slot).await?;
        let channel = connection.create_channel().await.map_err(text)?;
        let purged = dead_letter::purge(&channel, &self.topology.dead_letter_queue(service))
            .await
            .map_err(text)?;
        let _ = channel.close(200, ShortString::from("purged")).await;
        tracing::warn!(service, purged, "dead letters purged from the console");
        Ok(purged)
    }

    /// The held connection, opened again if it was lost.
    async fn connected<'a>(
        &self,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a Connection, String> {
        if slot.as_ref().is_none_or(|c| !c.status().connected()) {
            let connection = connect(&self.amqp_url, "console-service")
                .await
                .map_err(|e| format!("cannot reach the broker (AMQP_URL): {e}"))?;
            *slot = Some(connection);
        }
        slot.as_ref()
            .ok_or_else(|| "no broker connection".to_owned())
    }

    /// The service's dead-letter queue, if it exists and has the delivery
    /// limit that makes looking at it safe (as `checkoutctl dlq` checks;
    /// the console has no override).
    async fn readable_queue(
        &self,
        connection: &Connection,
        service: &str,
    ) -> Result<String, String> {
        let queue = self.topology.dead_letter_queue(service);
        match self
            .topology
            .check_dead_letter_queue(connection, service)
            .await
            .map_err(text)?
        {
            QueueState::Current => Ok(queue),
            QueueState::Missing => Err(format!(
                "there is no dead-letter queue {queue}: has the {service} service started?"
            )),
            QueueState::Legacy(broker) => Err(format!(
                "{queue} was declared by an older version without the delivery limit ({broker}); \
                 replace it first (README: Dead letters)"
            )),
        }
    }
}

fn text(error: lapin::Error) -> String {
    error.to_string()
}

/// The tool's dead letter as the console shows it: masked throughout.
fn letter(l: &DeadLetter, work_queue: &str) -> Letter {
    let headers: Vec<(String, String)> = l
        .headers
        .inner()
        .iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                mask_card_tokens(&dead_letter::header_text(value)).into_owned(),
            )
        })
        .collect();
    let trace_id = headers
        .iter()
        .find(|(key, _)| key == "traceparent")
        .and_then(|(_, value)| trace_of(value));
    Letter {
        message_id: l.message_id.clone(),
        event_type: l.event_type.clone(),
        reason: l.reason.clone(),
        error: l.error.as_deref().map(|e| mask_card_tokens(e).into_owned()),
        handler: l.handler.clone(),
        attempts: l.attempts,
        failed_at: l.failed_at.clone(),
        routing_key: l.original_route(work_queue).map(|r| r.routing_key),
        order_id: order_of(&l.body),
        trace_id,
        headers,
        body: l.masked_body(),
    }
}
