//! Sends recorded notifications over SMTP: the `notifications` table is the
//! mail outbox and this task is its relay.
//!
//! Why not send inside the consumer's handler: the SMTP server accepting a
//! mail and the database committing the inbox row cannot be one atomic
//! step, and a handler that talks SMTP holds its transaction open across
//! the network. So the handler only records the mail (unique per order and
//! kind) and this task delivers it:
//!
//! 1. claim the next due row with `FOR UPDATE SKIP LOCKED` (replicas never
//!    send the same row at the same time);
//! 2. send it; the server's `250` after `DATA` is the point of no return;
//! 3. mark it sent (or schedule a retry, or give it up) and commit.
//!
//! A crash between 2 and 3 sends the mail again: delivery is at-least-once,
//! because SMTP itself cannot be exactly-once. The `Message-ID` is derived
//! from the row's id, so such a duplicate is recognisable as one.
//!
//! A transient failure (connection refused, timeout, a `4xx` reply) is
//! retried with exponential backoff; a `5xx` reply (or a recipient that is
//! not an address) fails the row at once, as do attempts running out. A
//! failed row keeps its last error, which `GET /emails` shows.

use crate::settings::{Settings, Transport};
use crate::store::{self, Mark, Unsent};
use checkout_runtime::{Faults, Switch};
use checkout_telemetry::propagation::{adopt_parent, context_from_map};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncTransport, Message};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Delivers the mail outbox; see the module docs.
#[derive(Debug)]
pub(crate) struct Sender {
    pool: PgPool,
    transport: Transport,
    config: Settings,
    /// `smtp_refuse` refuses a send here, before the server is asked.
    faults: Faults,
    /// Woken by the handler after each commit that recorded mail.
    wake: Arc<Notify>,
}

/// How one attempt ended.
enum Attempt {
    Sent,
    /// Worth trying again (the server or the network may recover).
    Transient(String),
    /// Will fail the same way every time.
    Permanent(String),
}

impl Sender {
    pub(crate) fn new(
        pool: PgPool,
        transport: Transport,
        config: Settings,
        faults: Faults,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            transport,
            config,
            faults,
            wake,
        }
    }

    /// Sends until `shutdown` is cancelled; the mail under way is finished first.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.send_next().await {
                Ok(true) => continue,
                Ok(false) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "mail sender: database error");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!("mail sender stopped");
    }

    /// Sends the next due mail, if any. `Ok(false)`: nothing is due.
    async fn send_next(&self) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let unsent = store::next_unsent(&mut tx).await?;
        let Some(mail) = unsent else {
            tx.commit().await?;
            return Ok(false);
        };

        let span = tracing::info_span!(
            "smtp send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            notification_id = %mail.id,
            kind = ?mail.kind,
            attempt = mail.attempts + 1,
        );
        adopt_parent(&span, context_from_map(&mail.trace_context.0));
        let attempt = self.send(&mail).instrument(span.clone()).await;
        let attempts = mail.attempts + 1;
        let mark = match &attempt {
            Attempt::Sent => {
                tracing::info!(parent: &span, recipient = %mail.recipient, "mail sent");
                Mark::Sent
            }
            Attempt::Transient(error) if attempts < self.config.max_attempts => {
                let delay = self.retry_delay(attempts);
                span.record("otel.status_code", "ERROR");
                tracing::warn!(parent: &span, %error, retry_in = ?delay, "sending failed; will retry");
                Mark::Retry(error, delay)
            }
            Attempt::Transient(error) | Attempt::Permanent(error) => {
                span.record("otel.status_code", "ERROR");
                tracing::error!(parent: &span, %error, attempts, "sending failed for good; giving the mail up");
                Mark::GiveUp(error)
            }
        };
        store::mark(&mut tx, mail.id, attempts, mark).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn send(&self, mail: &Unsent) -> Attempt {
        let message = match self.message(mail) {
            Ok(message) => message,
            Err(error) => return Attempt::Permanent(error),
        };
        if self.faults.strikes(Switch::SmtpRefuse) {
            // What a server answering 421 (service not available) looks like.
            return Attempt::Transient("421 refused by the fault switch smtp_refuse".to_owned());
        }
        match self.transport.send(message).await {
            Ok(_) => Attempt::Sent,
            Err(error) if error.is_permanent() => Attempt::Permanent(error.to_string()),
            // 4xx replies, connection and timeout errors: the server or the
            // network may recover.
            Err(error) => Attempt::Transient(error.to_string()),
        }
    }

    fn message(&self, mail: &Unsent) -> Result<Message, String> {
        let to: Mailbox = mail
            .recipient
            .parse()
            .map_err(|e| format!("recipient {:?} is not an address: {e}", mail.recipient))?;
        Message::builder()
            .from(self.config.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            // The same id on every attempt: a duplicate after a crash is
            // recognisable (and dropped by many mail systems).
            .message_id(Some(format!(
                "<{}@{}>",
                mail.id,
                self.config.from.email.domain()
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// `retry_delay` doubled per attempt already made, capped.
    fn retry_delay(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(16);
        (self.config.retry_delay * 2u32.pow(doublings)).min(self.config.max_retry_delay)
    }
}
