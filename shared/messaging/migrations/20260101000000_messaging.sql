-- The messaging tables every service has: the transactional outbox and the
-- inbox (processed events). Owned by checkout-messaging, applied by
-- `checkout_messaging::migrate` with its own history table, so a service's
-- own migrations never clash with these.

CREATE TABLE outbox (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       UUID        NOT NULL UNIQUE,
    -- AMQP short strings: longer values could never be published.
    event_type     TEXT        NOT NULL CHECK (octet_length(event_type) BETWEEN 1 AND 255),
    routing_key    TEXT        NOT NULL CHECK (octet_length(routing_key) BETWEEN 1 AND 255),
    envelope       JSONB       NOT NULL,
    -- W3C trace context of the span that wrote the row (traceparent, tracestate).
    trace_context  JSONB       NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ
);

-- The relay only ever looks for unpublished rows, in id order.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
-- Pruning looks for old published rows.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE processed_events (
    event_id      UUID        NOT NULL,
    handler       TEXT        NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, handler)
);
