-- Idempotency keys are scoped per customer: (customer_id, key) instead of
-- key alone. With one global key space, a customer whose client happened
-- to pick a key another customer had used got a 422 ("key used for
-- another request") instead of their order, and learnt that the key
-- existed; the same key from two customers is now two orders.
--
-- Existing rows take the customer of the order they created (every row
-- has its order: the foreign key is checked at commit).
ALTER TABLE idempotency_keys ADD COLUMN customer_id TEXT;
UPDATE idempotency_keys k SET customer_id = o.customer_id
    FROM orders o WHERE o.id = k.order_id;
ALTER TABLE idempotency_keys ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (customer_id, key);
