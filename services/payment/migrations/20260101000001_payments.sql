-- One payment per order: the primary key on order_id is what makes a
-- redelivered or replayed OrderCreated (even with a new envelope id) charge
-- at most once, and what lets OrderCreated and OrderCancelled for the same
-- order race safely (both claim the row with INSERT … ON CONFLICT).
--
-- The card token is never stored: it is used for the one charge and dropped.
CREATE TABLE payments (
    order_id    UUID        PRIMARY KEY,
    id          UUID        NOT NULL UNIQUE,
    -- VOIDED is the tombstone of an order cancelled before its OrderCreated
    -- arrived here: nothing was ever charged, and the late OrderCreated finds
    -- the row and does nothing.
    status      TEXT        NOT NULL CHECK (status IN ('CAPTURED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    -- Integer minor units. A tombstone knows no amount: it holds 0 in 'XXX',
    -- the ISO 4217 code for "no currency", so the columns stay NOT NULL.
    amount      BIGINT      NOT NULL CHECK (amount >= 0),
    currency    TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Why the money is not (or no longer) taken: the decline reason, or the
    -- order's cancellation reason for REFUNDED and VOIDED. NULL when CAPTURED.
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
