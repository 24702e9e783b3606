//! One delivery from bytes to a verdict: decode the envelope, open its
//! `process` span, refuse a forgery, and apply it with its inbox row —
//! waiting out outages of the database without counting an attempt.

use super::verdict::Verdict;
use super::{Consumer, Handler, HandlerError, Outcome, Session};
use crate::dead_letter::Reason;
use crate::metrics::HANDLER_DURATION;
use crate::spans::{self, Message};
use checkout_events::Envelope;
use checkout_telemetry::propagation::extract_amqp;
use futures::FutureExt as _;
use lapin::message::Delivery;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use tracing::{Instrument, Span};

impl<H: Handler> Consumer<H> {
    pub(super) async fn process(&self, session: &Session, delivery: Delivery) {
        let started = Instant::now();
        let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(
                    routing_key = %delivery.routing_key,
                    %error,
                    "not an event envelope; dead-lettering"
                );
                let verdict =
                    Verdict::DeadLetter(Reason::Poison, format!("not an event envelope: {error}"));
                self.settle(session, &delivery, verdict, "unknown").await;
                return;
            }
        };

        let span = self.consumer_span(&delivery, &envelope);
        async {
            if let Some(why) = forged(&envelope) {
                tracing::warn!(
                    event_type = %envelope.event_type,
                    source = %envelope.source,
                    "{why}; dead-lettering"
                );
                let verdict = Verdict::DeadLetter(Reason::Forbidden, why);
                self.settle(session, &delivery, verdict, &envelope.event_type)
                    .await;
                return;
            }
            let Some(verdict) = self.verdict(session, &envelope).await else {
                // Shutdown during an outage: the broker redelivers it.
                return;
            };
            // Labels take only known types: the broker's string is anyone's.
            let event_type = checkout_events::event_type_label(&envelope.event_type);
            self.settle(session, &delivery, verdict, event_type).await;
            metrics::histogram!(HANDLER_DURATION, "event_type" => event_type)
                .record(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await;
    }

    /// What becomes of `envelope` once the handler applied it (or not).
    /// `None` at shutdown during an outage.
    async fn verdict(&self, session: &Session, envelope: &Envelope) -> Option<Verdict> {
        let verdict = match self.apply_when_available(session, envelope).await? {
            Ok(Some(Outcome::Applied)) => Verdict::Ack("applied"),
            Ok(Some(Outcome::Ignored)) => {
                tracing::debug!(event_type = %envelope.event_type, "event type not handled here; ignored");
                Verdict::Ack("ignored")
            }
            Ok(None) => {
                tracing::info!("already processed; acknowledged without effect");
                Verdict::Ack("duplicate")
            }
            Err(HandlerError::Transient(error)) => Verdict::Retry(error.to_string()),
            // Not reached: outages are waited out above.
            Err(HandlerError::Unavailable(error)) => Verdict::Retry(error.to_string()),
            Err(HandlerError::Poison(error)) => Verdict::DeadLetter(Reason::Poison, error),
            Err(HandlerError::Permanent(error)) => Verdict::DeadLetter(Reason::Permanent, error),
        };
        Some(verdict)
    }

    /// [`apply`](Self::apply), waiting out outages of the database: while
    /// it is down the same delivery is tried again once it is back, without
    /// counting an attempt. A panicking handler is a transient failure (its
    /// transaction is rolled back by the drop). `None` at shutdown.
    async fn apply_when_available(
        &self,
        session: &Session,
        envelope: &Envelope,
    ) -> Option<Result<Option<Outcome>, HandlerError>> {
        loop {
            if !session.pause.wait_until_available().await {
                return None;
            }
            let applied = AssertUnwindSafe(self.apply(envelope))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-string payload".to_owned());
                    Err(HandlerError::Transient(
                        format!("the handler panicked: {message}").into(),
                    ))
                });
            match applied {
                Err(HandlerError::Unavailable(_)) if session.shutdown.is_cancelled() => {
                    return None;
                }
                Err(HandlerError::Unavailable(error)) => session.pause.report(&*error),
                other => return Some(other),
            }
        }
    }

    /// Runs the handler with the inbox row in one transaction. `Ok(None)`
    /// means the event had already been processed.
    async fn apply(&self, envelope: &Envelope) -> Result<Option<Outcome>, HandlerError> {
        // Not getting a connection at all is an outage whatever the error
        // says (a database that refuses connections answers 55000, say).
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| HandlerError::Unavailable(Box::new(e)))?;
        let fresh = sqlx::query(
            "INSERT INTO processed_events (event_id, handler) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(envelope.id)
        .bind(&self.service)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(None);
        }
        let outcome = self.handler.handle(envelope, &mut tx).await?;
        match outcome {
            Outcome::Applied => {
                // Handlers emit their replies into the outbox.
                crate::outbox::commit(tx).await?;
                self.handler.committed(envelope);
            }
            // Not recording it keeps the inbox to what was really done.
            Outcome::Ignored => tx.rollback().await?,
        }
        Ok(Some(outcome))
    }

    /// The `process <queue>` span of a delivery (see [`crate::spans`]).
    fn consumer_span(&self, delivery: &Delivery, envelope: &Envelope) -> Span {
        let queue = self.topology.queue(&self.service);
        let producer = delivery
            .properties
            .headers()
            .as_ref()
            .map(extract_amqp)
            .unwrap_or_default();
        let message = Message {
            id: &envelope.id,
            conversation_id: Some(&envelope.correlation_id),
            event_type: envelope.event_type.as_str(),
            routing_key: delivery.routing_key.as_str(),
        };
        spans::process(
            &queue,
            delivery.exchange.as_str(),
            delivery.delivery_tag,
            message,
            &self.peer,
            producer,
        )
    }
}

/// Why `envelope` is refused as forged: its `source` is not the owner of
/// its `type`. `None` for an event from its owner, and for a type this
/// code does not know (which no handler acts on).
fn forged(envelope: &Envelope) -> Option<String> {
    let owner = checkout_events::owner_of(&envelope.event_type)?;
    (envelope.source != owner.source).then(|| {
        format!(
            "forbidden: {} is published only by {}, this one says it comes from {:?}",
            envelope.event_type, owner.source, envelope.source
        )
    })
}
