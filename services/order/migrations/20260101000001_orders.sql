-- The local catalog: built only from Inventory's ProductUpdated events
-- (event-carried state transfer). A table, not a map in memory, so every
-- replica prices orders the same way.
CREATE TABLE catalog (
    sku         TEXT        PRIMARY KEY,
    name        TEXT        NOT NULL,
    unit_price  BIGINT      NOT NULL CHECK (unit_price >= 0),
    currency    TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    revision    BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id             UUID        PRIMARY KEY,
    customer_id    TEXT        NOT NULL,
    customer_email TEXT,
    status         TEXT        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    payment        TEXT        NOT NULL CHECK (payment IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    inventory      TEXT        NOT NULL CHECK (inventory IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    total_amount   BIGINT      NOT NULL,
    currency       TEXT        NOT NULL,
    cancel_reason  TEXT,
    -- The W3C trace id of the request that placed the order, to find it in Jaeger.
    trace_id       TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE order_lines (
    order_id    UUID   NOT NULL REFERENCES orders (id),
    line_no     INT    NOT NULL,
    sku         TEXT   NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    unit_price  BIGINT NOT NULL,
    currency    TEXT   NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
