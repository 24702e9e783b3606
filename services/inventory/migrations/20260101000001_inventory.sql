-- The catalog and its stock, owned here. The Order service never reads this
-- table: it keeps its own copy from the ProductUpdated events.
CREATE TABLE products (
    sku         TEXT        PRIMARY KEY CHECK (sku ~ '^[A-Z0-9-]{1,64}$'),
    name        TEXT        NOT NULL,
    -- Integer minor units of `currency`; no floats near money.
    unit_price  BIGINT      NOT NULL CHECK (unit_price >= 0),
    currency    TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Units in the warehouse, and how many of them are held for orders that
    -- are not final yet; what can be sold is the difference.
    on_hand     BIGINT      NOT NULL CHECK (on_hand >= 0),
    reserved    BIGINT      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Grows by one on every change to what ProductUpdated carries (name,
    -- price), so the Order service can discard stale updates. Stock moves
    -- are not announced, so they leave it alone.
    revision    BIGINT      NOT NULL DEFAULT 1 CHECK (revision >= 1),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (reserved <= on_hand)
);

-- One reservation per order: the primary key makes a redelivered or
-- replayed OrderCreated (even with a new envelope id) hold stock at most
-- once, and lets OrderCreated and OrderCancelled for one order race safely.
CREATE TABLE reservations (
    order_id    UUID        PRIMARY KEY,
    -- VOIDED is the tombstone of an order cancelled before its OrderCreated
    -- arrived here: the late OrderCreated finds the row and holds nothing.
    status      TEXT        NOT NULL CHECK (status IN ('RESERVED', 'FAILED', 'RELEASED', 'COMMITTED', 'VOIDED')),
    -- Why nothing is (or no longer) held: the shortage for FAILED, the
    -- order's cancellation reason for RELEASED and VOIDED.
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What a RESERVED order holds, one row per SKU; kept after release or
-- commit as the record of what moved.
CREATE TABLE reservation_lines (
    order_id    UUID        NOT NULL REFERENCES reservations (order_id),
    sku         TEXT        NOT NULL REFERENCES products (sku),
    quantity    BIGINT      NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
