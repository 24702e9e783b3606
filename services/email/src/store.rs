//! The `notifications` table, all of its SQL: the handler records one
//! mail per order and kind, the sender claims, sends and marks them, the
//! API reads them.

use crate::notification::{Kind, Notification};
use checkout_events::OrderId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// Records `mail` for `order_id` unless the order already has one of its
/// kind; returns whether it was recorded. (The handler wakes the sender
/// once the transaction has committed.)
pub(crate) async fn record(
    tx: &mut PgConnection,
    order_id: OrderId,
    mail: &Notification,
    event_id: Uuid,
    trace_context: &HashMap<String, String>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO notifications \
         (id, order_id, kind, recipient, subject, body, event_id, trace_context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id, kind) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(order_id.as_uuid())
    .bind(mail.kind)
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(event_id)
    .bind(Json(trace_context))
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A recorded mail not yet sent or given up.
#[derive(Debug, FromRow)]
pub(crate) struct Unsent {
    pub(crate) id: Uuid,
    pub(crate) kind: Kind,
    pub(crate) recipient: String,
    pub(crate) subject: String,
    pub(crate) body: String,
    pub(crate) attempts: i32,
    pub(crate) trace_context: Json<HashMap<String, String>>,
}

/// Claims the next due mail, skipping any another sender holds.
pub(crate) async fn next_unsent(tx: &mut PgConnection) -> Result<Option<Unsent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, recipient, subject, body, attempts, trace_context \
         FROM notifications \
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() \
         ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await
}

/// How an attempt to send a claimed mail ended, as recorded.
#[derive(Debug)]
pub(crate) enum Mark<'a> {
    /// Sent.
    Sent,
    /// Failed; try again after the delay.
    Retry(&'a str, Duration),
    /// Failed for good.
    GiveUp(&'a str),
}

/// Records the end of attempt number `attempts` of the claimed mail `id`.
pub(crate) async fn mark(
    tx: &mut PgConnection,
    id: Uuid,
    attempts: i32,
    mark: Mark<'_>,
) -> Result<(), sqlx::Error> {
    let query = match mark {
        Mark::Sent => sqlx::query(
            "UPDATE notifications SET sent_at = now(), attempts = $2, last_error = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempts),
        Mark::Retry(error, delay) => sqlx::query(
            "UPDATE notifications SET attempts = $2, last_error = $3, \
             next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(error)
        .bind(delay.as_secs_f64()),
        Mark::GiveUp(error) => sqlx::query(
            "UPDATE notifications SET failed_at = now(), attempts = $2, last_error = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(error),
    };
    query.execute(&mut *tx).await?;
    Ok(())
}

/// How far sending a mail got: the API's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub(crate) enum Delivery {
    /// The server accepted it.
    Sent,
    /// Given up; see `last_error`.
    Failed,
    /// Not yet sent, or never: without SMTP_URL mails are only recorded.
    Pending,
}

/// One mail sent about an order.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub(crate) struct Email {
    /// The notification's id.
    id: Uuid,
    /// The order it is about.
    order_id: Uuid,
    /// `confirmation` or `cancellation`.
    kind: Kind,
    /// Where it went.
    recipient: String,
    /// Its subject line.
    subject: String,
    /// Its text.
    body: String,
    /// When it was recorded.
    created_at: DateTime<Utc>,
    /// `sent`, `failed` (given up; see `last_error`) or `pending` (not yet
    /// sent, or never: without SMTP_URL mails are only recorded).
    status: Delivery,
    sent_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
}

/// The mails recorded for `order_id`, oldest first.
pub(crate) async fn of_order(pool: &PgPool, order_id: Uuid) -> Result<Vec<Email>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, order_id, kind, recipient, subject, body, created_at, \
                CASE WHEN sent_at IS NOT NULL THEN 'sent' \
                     WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END AS status, \
                sent_at, attempts, last_error \
         FROM notifications WHERE order_id = $1 ORDER BY created_at",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
