//! The publishing half of a batch: every claimed row published in its
//! `send` span, in id order, without waiting for a confirm.

use super::batch::PendingRow;
use super::{Relay, RelayError};
use crate::spans::{self, Message};
use checkout_telemetry::propagation::{context_from_map, inject_amqp};
use futures::future::maybe_done;
use lapin::options::BasicPublishOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use std::future::Future as _;
use std::task::Poll;
use tokio::time::Instant;
use tracing::{Instrument, Span};

/// What the publishing half of a batch left to settle.
pub(super) struct Sent {
    /// Rows sent, with their confirm and their `send` span.
    pub(super) in_flight: Vec<(PendingRow, PublisherConfirm, Span)>,
    pub(super) failure: Option<RelayError>,
    pub(super) timed_out: bool,
}

impl Relay {
    /// Publishes each row in its `send` span, until one fails or the
    /// deadline.
    ///
    /// Every publish is handed to lapin's I/O loop before any is awaited:
    /// awaiting each in turn woke that thread (and this task) once per
    /// message. A publish's first poll queues its frames and registers its
    /// confirm, and the first polls run in row order, so the messages still
    /// go out in id order.
    pub(super) async fn send_all(
        &self,
        channel: &Channel,
        rows: Vec<PendingRow>,
        deadline: Instant,
    ) -> Sent {
        let spans: Vec<Span> = rows.iter().map(|row| self.producer_span(row)).collect();
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut timed_out = false;
        {
            let mut sends: Vec<_> = rows
                .iter()
                .zip(&spans)
                .map(|(row, span)| {
                    Box::pin(maybe_done(
                        self.send(channel, row, span).instrument(span.clone()),
                    ))
                })
                .collect();
            std::future::poll_fn(|cx| {
                for send in &mut sends {
                    let _queued = send.as_mut().poll(cx);
                }
                Poll::Ready(())
            })
            .await;
            for send in &mut sends {
                if tokio::time::timeout_at(deadline, send.as_mut())
                    .await
                    .is_err()
                {
                    timed_out = true;
                    break;
                }
                outcomes.push(send.as_mut().take_output());
            }
        }
        let mut sent = Sent {
            in_flight: Vec::with_capacity(rows.len()),
            failure: None,
            timed_out,
        };
        for ((row, span), outcome) in rows.into_iter().zip(spans).zip(outcomes) {
            match outcome {
                Some(Ok(confirm)) => sent.in_flight.push((row, confirm, span)),
                Some(Err(error)) => {
                    // The rows after it were queued too, and may even have
                    // gone out: unmarked, they are published again later.
                    sent.failure = Some(error.into());
                    break;
                }
                None => break,
            }
        }
        sent
    }

    async fn send(
        &self,
        channel: &Channel,
        row: &PendingRow,
        span: &Span,
    ) -> Result<PublisherConfirm, lapin::Error> {
        let mut headers = FieldTable::default();
        inject_amqp(span, &mut headers);
        let mut properties = BasicProperties::default()
            .with_message_id(ShortString::from(row.event_id.to_string()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(headers);
        // The schema's CHECKs keep these within AMQP's 255-byte limit.
        if let Ok(kind) = ShortString::try_new(row.event_type.as_str()) {
            properties = properties.with_type(kind);
        }
        let routing_key = ShortString::try_new(row.routing_key.as_str())
            .unwrap_or_else(|_| ShortString::from("invalid.routing-key"));
        channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                routing_key,
                // Mandatory: an unroutable message comes back instead of
                // vanishing (the alternate exchange normally takes it first).
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                row.envelope.as_bytes(),
                properties,
            )
            .await
    }

    /// The `send <exchange>` span of one row, a child of the span that
    /// wrote it.
    fn producer_span(&self, row: &PendingRow) -> Span {
        let message = Message {
            id: &row.event_id,
            conversation_id: row
                .correlation_id
                .as_ref()
                .map(|id| id as &dyn std::fmt::Display),
            event_type: row.event_type.as_str(),
            routing_key: row.routing_key.as_str(),
        };
        spans::send(
            &self.exchange,
            message,
            &self.peer,
            "publish",
            Some(context_from_map(&row.trace_context.0)),
        )
    }
}
