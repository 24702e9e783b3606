-- The demo catalog. The e2e tests rely on exactly these SKUs, prices and
-- stock levels; change them together.
INSERT INTO products (sku, name, unit_price, currency, on_hand, reserved, revision) VALUES
    ('KB-001', 'Mechanical keyboard',  4999, 'USD', 100, 0, 1),
    ('MS-001', 'Wireless mouse',       2599, 'USD', 100, 0, 1),
    ('MN-001', '27-inch monitor',     24999, 'USD',  20, 0, 1),
    ('CB-001', 'USB-C cable',           999, 'USD', 500, 0, 1),
    ('LP-001', 'Desk lamp',            3499, 'USD',  50, 0, 1);
