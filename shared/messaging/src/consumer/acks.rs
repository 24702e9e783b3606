//! Positive acks sent as few as is safe: one `ack(multiple = true)` for a
//! run of settled deliveries instead of one ack each, which costs the
//! broker less per message (a quorum queue appends one settle command to
//! its log per ack frame).
//!
//! A multiple ack acks *every* unacked delivery with a lower tag on the
//! channel, so it goes only up to the highest tag below which every
//! delivery is settled. Deliveries are registered as they arrive, in tag
//! order ([`Acks::open`]), and stay *open* until their verdict has been
//! carried out: their batch committed and the ack decided, or their retry
//! or dead letter confirmed. An open delivery — a batch still committing
//! while the next one settles, a delivery waiting out an outage, a forward
//! awaiting its confirm — holds back the multiple ack of every delivery
//! behind it; nothing uncommitted is ever acked. A nack or reject is sent
//! on its own while its delivery is still open ([`Acks::alone`]), so no
//! multiple ack can swallow it. Deliveries ready behind an open one are
//! acked one by one once `hold_at_most` of them wait, so one slow forward
//! never stalls the prefetch window.

use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::DeliveryTag;
use std::collections::BTreeMap;
use tokio::sync::Mutex;

/// The unsettled deliveries of one consumer's channel.
#[derive(Debug)]
pub(super) struct Acks {
    /// Held while an ack, nack or reject is sent, so frames leave in the
    /// order the ledger decided them.
    unsettled: Mutex<BTreeMap<DeliveryTag, Slot>>,
    hold_at_most: usize,
}

/// One unsettled delivery.
#[derive(Debug)]
enum Slot {
    /// Its verdict is not carried out yet.
    Open,
    /// To be acked, by the multiple ack of a later tag or on its own.
    Ready(Acker),
}

impl Acks {
    /// Acks for a channel with prefetch `prefetch`: ready deliveries wait
    /// behind an open one until half the prefetch of them do.
    pub(super) fn new(prefetch: u16) -> Self {
        Self {
            unsettled: Mutex::default(),
            hold_at_most: usize::from(prefetch / 2).max(1),
        }
    }

    /// Registers deliveries as they arrive (in tag order), before any of
    /// them can be settled.
    pub(super) async fn open(&self, deliveries: &[Delivery]) {
        let mut unsettled = self.unsettled.lock().await;
        for delivery in deliveries {
            unsettled.insert(delivery.delivery_tag, Slot::Open);
        }
    }

    /// Acks `delivery`: with every ready delivery before and after it in
    /// one multiple ack once nothing before it is open, else later.
    pub(super) async fn ack(&self, delivery: &Delivery) -> Result<(), lapin::Error> {
        let mut unsettled = self.unsettled.lock().await;
        match unsettled.get_mut(&delivery.delivery_tag) {
            Some(slot) => *slot = Slot::Ready(delivery.acker.clone()),
            // Not registered: it can only go alone.
            None => return ack_alone(&delivery.acker).await,
        }
        flush(&mut unsettled, self.hold_at_most).await
    }

    /// Sends `refusal` of `delivery` on its own while it still holds back
    /// every multiple ack past it, then lets what was ready behind it go.
    pub(super) async fn alone(
        &self,
        delivery: &Delivery,
        refusal: Refusal,
    ) -> Result<(), lapin::Error> {
        let mut unsettled = self.unsettled.lock().await;
        let acker = &delivery.acker;
        let sent = match refusal {
            Refusal::Requeue => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                acker.nack(requeue).await
            }
            Refusal::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
        };
        unsettled.remove(&delivery.delivery_tag);
        let flushed = flush(&mut unsettled, self.hold_at_most).await;
        sent.map(drop).and(flushed)
    }
}

/// A delivery not acked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    /// Back to its queue, to be handled again.
    Requeue,
    /// To the queue's dead-letter exchange.
    Reject,
}

/// Acks the run of ready deliveries at the front with one multiple ack of
/// its last, and the ready ones behind an open delivery one by one once
/// `hold_at_most` of them wait.
async fn flush(
    unsettled: &mut BTreeMap<DeliveryTag, Slot>,
    hold_at_most: usize,
) -> Result<(), lapin::Error> {
    let mut last = None;
    while let Some(entry) = unsettled.first_entry() {
        if matches!(entry.get(), Slot::Open) {
            break;
        }
        last = Some(entry.remove());
    }
    let mut result = Ok(());
    if let Some(Slot::Ready(acker)) = last {
        result = acker
            .ack(BasicAckOptions { multiple: true })
            .await
            .map(drop);
    }
    let ready = |slot: &Slot| matches!(slot, Slot::Ready(_));
    // Counted first: this runs at every ack, and the list is rarely needed.
    if unsettled.values().filter(|slot| ready(slot)).count() >= hold_at_most {
        let held: Vec<DeliveryTag> = unsettled
            .iter()
            .filter(|(_, slot)| ready(slot))
            .map(|(tag, _)| *tag)
            .collect();
        for tag in held {
            if let Some(Slot::Ready(acker)) = unsettled.remove(&tag) {
                result = result.and(ack_alone(&acker).await);
            }
        }
    }
    result
}

async fn ack_alone(acker: &Acker) -> Result<(), lapin::Error> {
    acker.ack(BasicAckOptions::default()).await.map(drop)
}
