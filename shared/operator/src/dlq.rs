//! A service's dead-letter queue, as a person works on it: list, show,
//! replay, purge (the `checkoutctl dlq` commands, and the console's
//! dead-letter pages).
//!
//! Looking at a queue over AMQP means taking messages and giving them back
//! (nack with requeue). That is safe only because every dead-letter queue
//! has a delivery limit that is never reached (see
//! `checkout_messaging::topology`); messages looked at are held, not
//! requeued one by one, so a look never sees one twice, and given back
//! together at the end.
//!
//! Card tokens never reach a terminal: [`DeadLetter::masked_body`] and
//! [`mask_card_tokens`] hide them in what is shown, never in the stored
//! message, which a replay sends on unchanged.
//!
//! The headers read here are the consumer's vocabulary,
//! [`checkout_messaging::dead_letter`].

mod browse;
mod letter;
mod mask;
mod replay;

pub use browse::{find, peek, purge};
pub use letter::{DeadLetter, Route, header_text};
pub use mask::mask_card_tokens;
pub use replay::{NotReplayed, Replayed, replay};
