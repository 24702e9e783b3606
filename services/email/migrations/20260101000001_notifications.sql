-- One notification per order and kind: the unique key makes a redelivered
-- or replayed event (with a new envelope id) still send only one mail.
CREATE TABLE notifications (
    id          UUID        PRIMARY KEY,
    order_id    UUID        NOT NULL,
    kind        TEXT        NOT NULL CHECK (kind IN ('confirmation', 'cancellation')),
    recipient   TEXT        NOT NULL,
    subject     TEXT        NOT NULL,
    body        TEXT        NOT NULL,
    event_id    UUID        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
