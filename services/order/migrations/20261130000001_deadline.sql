-- The order deadline (ORDER_DEADLINE): the sweeper finds PENDING orders by
-- age, and continues the order's trace when it cancels one, so a timed-out
-- order is still one trace in Jaeger.

-- The W3C trace context (traceparent, tracestate) of the request that
-- placed the order.
ALTER TABLE orders ADD COLUMN trace_context JSONB NOT NULL DEFAULT '{}';

-- Only pending orders, oldest first: small, and what the sweeper scans.
CREATE INDEX orders_pending_by_age ON orders (created_at) WHERE status = 'PENDING';
