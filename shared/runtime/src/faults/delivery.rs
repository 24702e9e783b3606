//! The delivery faults, applied around a service's consumer handler (the
//! runtime wraps every handler it consumes with): `delay`,
//! `fail_permanent`, `fail_transient` before the handler runs, inside the
//! delivery's transaction, so a failed delivery leaves nothing behind but
//! its retry or dead letter; `crash_before_ack` after the commit.
//!
//! The failures take the consumer's ordinary paths — a transient error is
//! retried through the delay queues, a permanent one dead-lettered with
//! reason `permanent` — so what an operator sees is what a real failure
//! of that kind looks like.

use super::{CRASH_EXIT_CODE, Faults, Switch};
use checkout_events::Envelope;
use checkout_messaging::{Handler, HandlerError, Outcome};
use sqlx::PgConnection;

/// `inner` with the delivery faults of `faults` in front of it.
#[derive(Debug)]
pub(crate) struct Faulty<H> {
    inner: H,
    faults: Faults,
}

impl<H> Faulty<H> {
    pub(crate) fn new(inner: H, faults: Faults) -> Self {
        Self { inner, faults }
    }
}

impl<H: Handler> Handler for Faulty<H> {
    async fn handle(
        &self,
        envelope: &Envelope,
        tx: &mut PgConnection,
    ) -> Result<Outcome, HandlerError> {
        if let Some(latency) = self.faults.latency() {
            // Inside the transaction, as a slow handler would be: it holds
            // its connection meanwhile.
            tokio::time::sleep(latency).await;
        }
        if let Some(customer) = envelope.data.get("customer_id").and_then(|v| v.as_str())
            && self.faults.strikes_on(Switch::FailPermanent, customer)
        {
            return Err(HandlerError::Permanent(format!(
                "fault switch fail_permanent: customer_id {customer:?} matches its pattern"
            )));
        }
        if self.faults.strikes(Switch::FailTransient) {
            return Err(HandlerError::Transient(
                "fault switch fail_transient: a transient failure on purpose".into(),
            ));
        }
        self.inner.handle(envelope, tx).await
    }

    fn committed(&self, envelope: &Envelope) {
        self.inner.committed(envelope);
        if self.faults.strikes(Switch::CrashBeforeAck) {
            tracing::warn!(
                event_id = %envelope.id,
                event_type = %envelope.event_type,
                "fault switch crash_before_ack: committed, exiting with code {CRASH_EXIT_CODE} before the ack"
            );
            std::process::exit(CRASH_EXIT_CODE);
        }
    }
}
