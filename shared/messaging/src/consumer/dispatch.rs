//! One delivery from bytes to a verdict: decode the envelope, open its
//! `process` span, refuse a forgery ([`admit`](Consumer::admit)); once its
//! batch has been applied ([`super::batch`]), turn what the handler
//! answered into a verdict and settle it ([`conclude`](Consumer::conclude)).

use super::verdict::Verdict;
use super::{Consumer, Handler, HandlerError, Outcome, Session};
use crate::dead_letter::Reason;
use crate::metrics::HANDLER_DURATION;
use crate::spans::{self, Message};
use checkout_events::Envelope;
use checkout_telemetry::propagation::extract_amqp;
use lapin::message::Delivery;
use std::time::Instant;
use tracing::{Instrument, Span};

/// What applying one event came to: `Ok(None)` means it had already been
/// processed (the inbox row was there).
pub(super) type Applied = Result<Option<Outcome>, HandlerError>;

/// A decoded, admitted delivery waiting for its batch's transaction.
pub(super) struct Pending {
    pub(super) delivery: Delivery,
    pub(super) envelope: Envelope,
    /// Its `process` span: the handler runs in it, so the events it emits
    /// carry this trace context.
    pub(super) span: Span,
    started: Instant,
}

/// A delivery settled without reaching a handler: poison or a forgery.
pub(super) struct Refused {
    delivery: Delivery,
    verdict: Verdict,
    event_type: String,
    span: Span,
}

impl<H: Handler> Consumer<H> {
    /// Decodes `delivery` and checks its source: poison and forgeries are
    /// refused (to be dead-lettered), everything else waits for its batch.
    pub(super) fn admit(&self, delivery: Delivery) -> Result<Pending, Box<Refused>> {
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
                return Err(Box::new(Refused {
                    delivery,
                    verdict,
                    event_type: "unknown".to_owned(),
                    span: Span::none(),
                }));
            }
        };
        let span = self.consumer_span(&delivery, &envelope);
        if let Some(why) = forged(&envelope) {
            span.in_scope(|| {
                tracing::warn!(
                    event_type = %envelope.event_type,
                    source = %envelope.source,
                    "{why}; dead-lettering"
                );
            });
            return Err(Box::new(Refused {
                delivery,
                verdict: Verdict::DeadLetter(Reason::Forbidden, why),
                event_type: envelope.event_type,
                span,
            }));
        }
        Ok(Pending {
            delivery,
            envelope,
            span,
            started,
        })
    }

    /// Settles a refused delivery (dead-letters it), in its span.
    pub(super) async fn refuse(&self, session: &Session, refused: Box<Refused>) {
        let Refused {
            delivery,
            verdict,
            event_type,
            span,
        } = *refused;
        self.settle(session, &delivery, verdict, &event_type)
            .instrument(span)
            .await;
    }

    /// Settles an applied (or failed) delivery once its batch has
    /// committed or been given up, in its span.
    pub(super) async fn conclude(&self, session: &Session, pending: Pending, applied: Applied) {
        let Pending {
            delivery,
            envelope,
            span,
            started,
        } = pending;
        async {
            let verdict = verdict_of(applied, &envelope);
            // Labels take only known types: the broker's string is anyone's.
            let event_type = checkout_events::event_type_label(&envelope.event_type);
            self.settle(session, &delivery, verdict, event_type).await;
            metrics::histogram!(HANDLER_DURATION, "event_type" => event_type)
                .record(started.elapsed().as_secs_f64());
        }
        .instrument(span)
        .await;
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

/// What becomes of `envelope` once the handler applied it (or not).
fn verdict_of(applied: Applied, envelope: &Envelope) -> Verdict {
    match applied {
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
        // Not reached: outages are waited out by the batch.
        Err(HandlerError::Unavailable(error)) => Verdict::Retry(error.to_string()),
        Err(HandlerError::Poison(error)) => Verdict::DeadLetter(Reason::Poison, error),
        Err(HandlerError::Permanent(error)) => Verdict::DeadLetter(Reason::Permanent, error),
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
