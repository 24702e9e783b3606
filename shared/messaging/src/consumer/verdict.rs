//! Settling a delivery: ack it, retry it through a delay queue, or
//! dead-letter it — each forward published (in a `send` span of its own)
//! and confirmed before the original is acked, so a message is never both
//! gone and unsaved.

use super::acks::Refusal;
use super::{Consumer, Handler, Session};
use crate::dead_letter::{self, Reason, set_int, set_str};
use crate::metrics::{MESSAGE_RETRIES, MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED};
use crate::publish::publish_confirmed;
use crate::spans::{self, Message};
use lapin::message::Delivery;
use lapin::types::FieldTable;
use tracing::{Instrument, Span};

/// What becomes of a delivery.
#[derive(Debug)]
pub(super) enum Verdict {
    Ack(&'static str),
    Retry(String),
    DeadLetter(Reason, String),
}

/// Where a forward goes, and why.
struct Forward<'a> {
    exchange: &'a str,
    queue: &'a str,
    /// `retry` or `dead_letter`: the `send` span's purpose.
    purpose: &'static str,
}

impl<H: Handler> Consumer<H> {
    /// Acks, retries through a delay queue, or dead-letters — each only
    /// after the copy it needs is confirmed by the broker, so a message is
    /// never both gone and unsaved. A failure to settle needs no handling:
    /// the broker redelivers, and the inbox absorbs the repeat. A retry or
    /// dead letter marks the current (`process`) span failed.
    pub(super) async fn settle(
        &self,
        session: &Session,
        delivery: &Delivery,
        verdict: Verdict,
        event_type: &str,
    ) {
        let headers = delivery.properties.headers().as_ref();
        let retries_so_far = dead_letter::header_int(headers, dead_letter::RETRY_COUNT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let verdict = match verdict {
            Verdict::Retry(error) if self.retries.delay(retries_so_far).is_none() => {
                Verdict::DeadLetter(Reason::Exhausted, error)
            }
            other => other,
        };
        let outcome = match verdict {
            Verdict::Ack(outcome) => {
                ack(session, delivery).await;
                outcome
            }
            Verdict::Retry(error) => {
                spans::failed(&Span::current(), "transient", &error);
                self.retry(session, delivery, retries_so_far, &error).await;
                metrics::counter!(MESSAGE_RETRIES, "event_type" => event_type.to_owned())
                    .increment(1);
                "retried"
            }
            Verdict::DeadLetter(reason, error) => {
                spans::failed(&Span::current(), reason.as_str(), &error);
                self.dead_letter(session, delivery, retries_so_far, reason, &error)
                    .await;
                metrics::counter!(MESSAGES_DEAD_LETTERED, "reason" => reason.as_str()).increment(1);
                "dead_lettered"
            }
        };
        metrics::counter!(MESSAGES_CONSUMED, "event_type" => event_type.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    /// Sends a copy with `x-retry-count + 1` to the delay queue of the next
    /// retry's delay.
    async fn retry(
        &self,
        session: &Session,
        delivery: &Delivery,
        retries_so_far: u32,
        error: &str,
    ) {
        let delay = self.retries.delay(retries_so_far).unwrap_or_default();
        let mut headers = self.carried_headers(delivery);
        set_int(
            &mut headers,
            dead_letter::RETRY_COUNT,
            i64::from(retries_so_far) + 1,
        );
        set_str(&mut headers, dead_letter::ERROR, &truncate(error));
        let exchange = self.topology.retry_exchange(&self.service);
        let queue = self.topology.retry_queue(&self.service, delay);
        tracing::warn!(%error, retry = retries_so_far + 1, ?delay, "transient failure; retrying later");
        let to = Forward {
            exchange: &exchange,
            queue: &queue,
            purpose: "retry",
        };
        self.forward(session, delivery, &to, headers).await;
    }

    /// Sends a copy with the failure's headers to the dead-letter queue.
    async fn dead_letter(
        &self,
        session: &Session,
        delivery: &Delivery,
        retries_so_far: u32,
        reason: Reason,
        error: &str,
    ) {
        let mut headers = self.carried_headers(delivery);
        set_str(&mut headers, dead_letter::REASON, reason.as_str());
        set_str(&mut headers, dead_letter::ERROR, &truncate(error));
        set_str(&mut headers, dead_letter::HANDLER, &self.service);
        set_int(
            &mut headers,
            dead_letter::ATTEMPTS,
            i64::from(retries_so_far) + 1,
        );
        set_str(&mut headers, dead_letter::FAILED_AT, &now_rfc3339());
        tracing::error!(%error, reason = reason.as_str(), "dead-lettering");
        let exchange = self.topology.dead_letter_exchange(&self.service);
        let queue = self.topology.dead_letter_queue(&self.service);
        let to = Forward {
            exchange: &exchange,
            queue: &queue,
            purpose: "dead_letter",
        };
        self.forward(session, delivery, &to, headers).await;
    }

    /// The delivery's headers plus where it was first published, which a
    /// retry (routed through the service's retry exchange) would otherwise lose.
    fn carried_headers(&self, delivery: &Delivery) -> FieldTable {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        if !headers.contains_key(dead_letter::ORIGINAL_ROUTING_KEY) {
            set_str(
                &mut headers,
                dead_letter::ORIGINAL_EXCHANGE,
                delivery.exchange.as_str(),
            );
            set_str(
                &mut headers,
                dead_letter::ORIGINAL_ROUTING_KEY,
                delivery.routing_key.as_str(),
            );
        }
        headers
    }

    /// Puts a copy of the delivery in `to.queue` through `to.exchange` (one
    /// of the service's own, bound to the queue by its name), then acks the
    /// original. If the copy is refused, the original is rejected instead,
    /// which the work queue dead-letters; if the broker does not answer in
    /// time (it blocks publishers during an alarm), the original goes back
    /// to its queue to be handled again. Nothing is lost either way.
    async fn forward(
        &self,
        session: &Session,
        delivery: &Delivery,
        to: &Forward<'_>,
        headers: FieldTable,
    ) {
        let span = forward_span_of(delivery, to, &self.peer);
        let properties = delivery.properties.clone().with_headers(headers);
        let published = tokio::time::timeout(
            self.forward_timeout,
            publish_confirmed(
                &session.publisher,
                to.exchange,
                to.queue,
                &delivery.data,
                properties,
            ),
        )
        .instrument(span.clone())
        .await;
        let queue = to.queue;
        match published {
            Ok(Ok(())) => ack(session, delivery).await,
            Err(_elapsed) => {
                spans::failed(&span, "timeout", "the broker did not confirm in time");
                tracing::warn!(%queue, timeout = ?self.forward_timeout, "the broker did not confirm the forward in time; returning the delivery to its queue");
                if let Err(error) = session.acks.alone(delivery, Refusal::Requeue).await {
                    tracing::warn!(%error, "could not return it; the message will be redelivered");
                }
            }
            Ok(Err(error)) => {
                spans::failed(&span, "refused", &error);
                tracing::warn!(%error, %queue, "could not forward; rejecting to the queue's dead-letter exchange");
                if let Err(error) = session.acks.alone(delivery, Refusal::Reject).await {
                    tracing::warn!(%error, "could not reject; the message will be redelivered");
                }
            }
        }
    }
}

/// The `send` span of a forward: a child of the current `process` span,
/// since the forward is part of handling the delivery.
fn forward_span_of(delivery: &Delivery, to: &Forward<'_>, peer: &crate::spans::Peer) -> Span {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let message = Message {
        id: &message_id,
        conversation_id: None,
        event_type: delivery
            .properties
            .kind()
            .as_ref()
            .map_or("", |k| k.as_str()),
        routing_key: to.queue,
    };
    spans::send(to.exchange, message, peer, to.purpose, None)
}

/// Acks `delivery`, with the deliveries before it (see [`super::acks`]).
async fn ack(session: &Session, delivery: &Delivery) {
    if let Err(error) = session.acks.ack(delivery).await {
        tracing::warn!(%error, "could not ack; the message will be redelivered");
    }
}

/// Keeps error headers readable and well under frame limits.
fn truncate(error: &str) -> String {
    const MAX: usize = 2000;
    match error.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
