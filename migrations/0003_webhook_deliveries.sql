-- Clerk webhook deliveries already received, by their `svix-id` (or
-- `webhook-id`), so that a replayed delivery is acknowledged without being
-- applied again (a replayed `user.updated` must not revert a newer one).
-- A row is needed only while a delivery with that id can still pass the
-- signature's timestamp check; older rows are purged as deliveries arrive.

CREATE TABLE received_webhooks (
  id TEXT PRIMARY KEY,                 -- the delivery's svix-id / webhook-id
  received_at INTEGER NOT NULL         -- unix seconds
);
CREATE INDEX idx_received_webhooks_received ON received_webhooks(received_at);
