//! `Idempotency-Key` on `POST /orders`: a client that retries a request it
//! never saw the answer to gets the order it already created, not a second
//! one.
//!
//! A key belongs to the customer that sent it: the row's primary key is
//! `(customer_id, key)`, so two customers whose clients pick the same key
//! get an order each, and neither learns that the other used it.
//! (`customer_id` is what the request says; customers are not
//! authenticated, so this scoping separates honest clients, it does not
//! stop one who knows another's customer id and key.)
//!
//! The key is claimed by inserting its row in the transaction that creates
//! the order; the primary key, not a look-up before the insert, decides the
//! race between concurrent duplicates (the second waits for the first to
//! commit, then sees its row). Keys are kept for [`RETENTION`]: each claim
//! prunes a bounded batch of expired rows, and an expired key is treated
//! as new, so nothing needs a background task and replicas need no
//! coordination.

use checkout_events::OrderId;
use checkout_runtime::http::FieldError;
use sqlx::PgConnection;
use uuid::Uuid;

/// The header's name.
pub(crate) const HEADER: &str = "idempotency-key";

/// How long a key is remembered, as a PostgreSQL interval.
pub(crate) const RETENTION: &str = "24 hours";

/// Expired keys deleted per claim at most, so pruning stays cheap per
/// request and still outpaces any rate of new keys.
const PRUNE_BATCH: i64 = 100;

/// A client's idempotency key: 1–255 visible ASCII characters (a UUID is
/// the usual choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key(String);

impl Key {
    /// Reads the header's value.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, FieldError> {
        let visible =
            (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        match std::str::from_utf8(raw) {
            Ok(key) if visible => Ok(Self(key.to_owned())),
            _ => Err(FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters, e.g. a UUID",
            )),
        }
    }
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The key is new (or expired): create the order with the id given.
    New,
    /// The key was used for this very request: here is its order.
    Replay(OrderId),
    /// The key was used for a different request.
    Mismatch,
}

/// Claims `customer_id`'s `key` for the request whose canonical form is
/// `request` and the order `order_id`, inside the transaction that will
/// create that order.
pub(crate) async fn claim(
    tx: &mut PgConnection,
    customer_id: &str,
    key: &Key,
    request: &str,
    order_id: OrderId,
) -> Result<Claim, sqlx::Error> {
    // Twice at most: a live row can expire and be pruned (by another
    // claim) between the two statements, and then the key is free again.
    for _ in 0..2 {
        // Prunes a batch of other expired keys, and inserts this one or
        // takes over its expired row; on a live row it does nothing and
        // returns nothing (after waiting for a concurrent claimer's
        // commit). The prune leaves this key to the `ON CONFLICT`: a row
        // deleted and inserted again by one statement would be an error.
        let claimed: Option<Uuid> = sqlx::query_scalar(
            "WITH pruned AS ( \
                 DELETE FROM idempotency_keys WHERE (customer_id, key) IN ( \
                     SELECT customer_id, key FROM idempotency_keys \
                     WHERE created_at < now() - $4::interval \
                       AND (customer_id, key) <> ($5, $1) \
                     ORDER BY created_at LIMIT $6 FOR UPDATE SKIP LOCKED)) \
             INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id) \
             VALUES ($5, $1, sha256(convert_to($2, 'UTF8')), $3) \
             ON CONFLICT (customer_id, key) DO UPDATE \
                 SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, \
                     created_at = now() \
                 WHERE idempotency_keys.created_at < now() - $4::interval \
             RETURNING order_id",
        )
        .bind(&key.0)
        .bind(request)
        .bind(order_id.as_uuid())
        .bind(RETENTION)
        .bind(customer_id)
        .bind(PRUNE_BATCH)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::New);
        }
        let existing: Option<(Uuid, bool)> = sqlx::query_as(
            "SELECT order_id, request_hash = sha256(convert_to($2, 'UTF8')) \
             FROM idempotency_keys WHERE customer_id = $3 AND key = $1",
        )
        .bind(&key.0)
        .bind(request)
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        match existing {
            Some((original, true)) => return Ok(Claim::Replay(OrderId::from(original))),
            Some((_, false)) => return Ok(Claim::Mismatch),
            None => continue,
        }
    }
    Err(sqlx::Error::RowNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(Key::parse(b"0194f0c2-0000-7000-8000-000000000000").is_ok());
        for bad in [&b""[..], b"with space", b"tab\t", b"\xff\xfe", &[b'k'; 256]] {
            assert!(Key::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
