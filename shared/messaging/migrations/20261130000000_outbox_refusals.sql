-- A row the broker refuses (nacks, or returns as unroutable) gets its own
-- retry schedule instead of holding up the rows behind it, and is parked
-- (no longer claimed) after the relay's maximum number of attempts; an
-- operator unparks it (`checkout_messaging::outbox::unpark`).
--
-- Constant defaults, so adding the columns rewrites nothing.
ALTER TABLE outbox
    -- Refusals so far; reset by an unpark.
    ADD COLUMN attempts        INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Not claimed before this time. A new row is due at once: '-infinity'
    -- rather than now(), because a writer's now() is its transaction's
    -- start, which may be later than the start of a relay transaction that
    -- already sees the committed row.
    ADD COLUMN next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    -- Why the broker refused the row the last time.
    ADD COLUMN last_error      TEXT,
    -- Set when the relay gave up on the row; parked rows are never claimed.
    ADD COLUMN parked_at       TIMESTAMPTZ;

-- The claim reads this index in id order and checks next_attempt_at inside
-- it (an index condition on the second column), so rows waiting out a
-- backoff cost no heap visit, and parked rows are not in it at all.
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_claimable ON outbox (id, next_attempt_at)
    WHERE published_at IS NULL AND parked_at IS NULL;
-- The operator's list of parked rows, and the parked-rows gauge.
CREATE INDEX outbox_parked ON outbox (id)
    WHERE published_at IS NULL AND parked_at IS NOT NULL;

-- Pruning the inbox (checkout_messaging::retention) needs no index of its
-- own: event ids are UUID v7, which begin with their creation time, so the
-- primary key (event_id, handler) already keeps the rows in time order. An
-- index on processed_at would cost every consumer's insert.
