//! Dead letters as the console shows them: one [`Letter`] per message, card
//! tokens already masked, and [`groups`] of letters that failed for the
//! same reason with the same error — the unit an operator fixes and
//! replays together (ServicePulse calls them failure groups).
//!
//! Pure: the broker side is [`crate::dlq`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One dead letter, ready to show: nothing in it holds a card token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Letter {
    pub(crate) message_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) reason: Option<String>,
    /// The last error, masked.
    pub(crate) error: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) attempts: Option<i64>,
    /// When it was dead-lettered, as the header says (RFC 3339).
    pub(crate) failed_at: Option<String>,
    /// The routing key it was first published with.
    pub(crate) routing_key: Option<String>,
    /// The order it is about: the envelope's `data.order_id`, else its
    /// `correlation_id` (every event of an order's saga carries the order's id).
    pub(crate) order_id: Option<Uuid>,
    /// The trace it belongs to, from its `traceparent` header.
    pub(crate) trace_id: Option<String>,
    /// Every header as text, masked.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, pretty JSON where it is JSON, masked.
    pub(crate) body: String,
}

impl Letter {
    /// When it was dead-lettered, if the header parses.
    pub(crate) fn failed_time(&self) -> Option<DateTime<Utc>> {
        let raw = self.failed_at.as_deref()?;
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// What groups it: the reason and the error text.
    pub(crate) fn key(&self) -> GroupKey {
        GroupKey {
            reason: self.reason.clone().unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
        }
    }
}

/// The reason and error text that letters of one group share (empty when
/// a letter has none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupKey {
    pub(crate) reason: String,
    pub(crate) error: String,
}

/// Dead letters that failed the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) key: GroupKey,
    pub(crate) count: usize,
    pub(crate) first_seen: Option<DateTime<Utc>>,
    pub(crate) last_seen: Option<DateTime<Utc>>,
    /// The letters' event types, each once, in the order first met.
    pub(crate) event_types: Vec<String>,
}

/// The letters grouped by [`Letter::key`], the largest group first (ties:
/// the most recently seen first).
pub(crate) fn groups(letters: &[Letter]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for letter in letters {
        let key = letter.key();
        let at = letter.failed_time();
        let group = match groups.iter_mut().position(|g| g.key == key) {
            Some(index) => &mut groups[index],
            None => {
                groups.push(Group {
                    key,
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    event_types: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.count += 1;
        group.first_seen = earliest(group.first_seen, at);
        group.last_seen = group.last_seen.max(at);
        if let Some(kind) = &letter.event_type
            && !group.event_types.contains(kind)
        {
            group.event_types.push(kind.clone());
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(a.key.cmp(&b.key))
    });
    groups
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Which dead letters of a service a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The one with this message id.
    One(String),
    /// Every one of this group.
    Group(GroupKey),
    /// All of them.
    All,
}

impl Selection {
    /// Whether `letter` is selected.
    pub(crate) fn picks(&self, letter: &Letter) -> bool {
        match self {
            Selection::One(id) => letter.message_id.as_deref() == Some(id.as_str()),
            Selection::Group(key) => &letter.key() == key,
            Selection::All => true,
        }
    }
}

/// The order a dead letter's body is about: `data.order_id`, else the
/// envelope's `correlation_id`.
pub(crate) fn order_of(body: &[u8]) -> Option<Uuid> {
    let envelope: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |value: Option<&serde_json::Value>| {
        value
            .and_then(serde_json::Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    field(envelope.pointer("/data/order_id")).or_else(|| field(envelope.get("correlation_id")))
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub(crate) fn trace_of(traceparent: &str) -> Option<String> {
    let trace = traceparent.split('-').nth(1)?;
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: &str, error: &str, kind: &str, failed_at: &str) -> Letter {
        Letter {
            message_id: Some(Uuid::now_v7().to_string()),
            event_type: Some(kind.to_owned()),
            reason: Some(reason.to_owned()),
            error: Some(error.to_owned()),
            handler: None,
            attempts: Some(1),
            failed_at: Some(failed_at.to_owned()),
            routing_key: None,
            order_id: None,
            trace_id: None,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    #[test]
    fn letters_group_by_reason_and_error_largest_group_first() {
        let letters = [
            letter(
                "rejected",
                "card refused",
                "PaymentRequested",
                "2026-01-01T10:00:02Z",
            ),
            letter(
                "exhausted",
                "timeout",
                "OrderCreated",
                "2026-01-01T10:00:05Z",
            ),
            letter(
                "rejected",
                "card refused",
                "OrderCancelled",
                "2026-01-01T10:00:01Z",
            ),
            letter(
                "rejected",
                "other",
                "PaymentRequested",
                "2026-01-01T10:00:09Z",
            ),
            letter(
                "rejected",
                "card refused",
                "PaymentRequested",
                "2026-01-01T10:00:03Z",
            ),
        ];
        let groups = groups(&letters);
        assert_eq!(groups.len(), 3);
        let first = &groups[0];
        assert_eq!(
            (first.key.reason.as_str(), first.key.error.as_str()),
            ("rejected", "card refused")
        );
        assert_eq!(first.count, 3);
        assert_eq!(
            first.first_seen.map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:00:01+00:00".into())
        );
        assert_eq!(
            first.last_seen.map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:00:03+00:00".into())
        );
        assert_eq!(first.event_types, ["PaymentRequested", "OrderCancelled"]);
        // Ties on count: the most recently seen first.
        assert_eq!(groups[1].key.error, "other");
        assert_eq!(groups[2].key.error, "timeout");
    }

    #[test]
    fn a_letter_without_a_time_still_counts() {
        let mut undated = letter("poison", "not JSON", "?", "");
        undated.failed_at = None;
        let groups = groups(&[undated]);
        assert_eq!((groups[0].count, groups[0].first_seen), (1, None));
    }

    #[test]
    fn a_selection_picks_one_a_group_or_all() {
        let a = letter("rejected", "card refused", "PaymentRequested", "");
        let b = letter("exhausted", "timeout", "OrderCreated", "");
        let one = Selection::One(a.message_id.clone().expect("an id"));
        assert!(one.picks(&a) && !one.picks(&b));
        let group = Selection::Group(b.key());
        assert!(!group.picks(&a) && group.picks(&b));
        assert!(Selection::All.picks(&a) && Selection::All.picks(&b));
    }

    #[test]
    fn the_order_comes_from_the_data_else_the_correlation_id() {
        let order = Uuid::now_v7();
        let body =
            serde_json::json!({"correlation_id": Uuid::now_v7(), "data": {"order_id": order}});
        assert_eq!(order_of(body.to_string().as_bytes()), Some(order));
        let body = serde_json::json!({"correlation_id": order, "data": {"sku": "KB-001"}});
        assert_eq!(order_of(body.to_string().as_bytes()), Some(order));
        assert_eq!(order_of(b"not json"), None);
    }

    #[test]
    fn the_trace_comes_from_the_traceparent() {
        assert_eq!(
            trace_of("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(
            trace_of("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            None
        );
        assert_eq!(trace_of("garbage"), None);
    }
}
