-- What the HTTP API needs beyond the saga: idempotent order placement, the
-- timeline of each order, and keyset pagination by status.

-- One row per Idempotency-Key of POST /orders, written in the same
-- transaction as the order it created. The primary key is what makes two
-- concurrent requests with one key race safely: the second waits for the
-- first to commit, then finds its row. `request_hash` is the SHA-256 of the
-- request as parsed, so the same key with another body can be refused.
-- Rows are kept 24 hours (see src/idempotency.rs), then pruned.
CREATE TABLE idempotency_keys (
    key          TEXT        PRIMARY KEY,
    request_hash BYTEA       NOT NULL,
    -- Deferred: the key is claimed before the order row exists, so that a
    -- concurrent duplicate waits before doing any work.
    order_id     UUID        NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- The events that moved an order, in the order they were applied: what it
-- emitted (OrderCreated, OrderConfirmed, OrderCancelled) and the replies it
-- consumed, each written in the transaction that emitted or applied it.
-- Replies for one order are applied under its row lock, so `seq` orders an
-- order's entries as they happened.
CREATE TABLE order_events (
    seq          BIGSERIAL   PRIMARY KEY,
    order_id     UUID        NOT NULL REFERENCES orders (id),
    event_id     UUID        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    source       TEXT        NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    -- The W3C trace id of the span that emitted or applied it.
    trace_id     TEXT
);
CREATE INDEX order_events_by_order ON order_events (order_id, seq);

-- GET /orders?status=: newest first within one status.
CREATE INDEX orders_by_status ON orders (status, id);
