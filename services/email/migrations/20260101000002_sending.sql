-- Sending over SMTP. The handler records a notification in its transaction
-- (as before); a sender task delivers unsent rows and marks them. So the
-- table is the mail outbox: a row is sent at least once, and the unique
-- (order_id, kind) key keeps redelivered events from making a second row.
ALTER TABLE notifications
    -- The span that recorded the mail (traceparent, tracestate), so the
    -- SMTP send shows in the order's trace.
    ADD COLUMN trace_context   JSONB       NOT NULL DEFAULT '{}',
    ADD COLUMN attempts        INT         NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN sent_at         TIMESTAMPTZ,
    -- Set when the server refused the mail for good (5xx) or the attempts
    -- ran out; the row then stays as the record of why.
    ADD COLUMN failed_at       TIMESTAMPTZ,
    ADD COLUMN last_error      TEXT;

-- The sender only ever looks for rows still to send, soonest first.
CREATE INDEX notifications_unsent ON notifications (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
