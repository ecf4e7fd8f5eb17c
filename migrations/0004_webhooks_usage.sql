-- Outbound webhooks and usage (webhooks-out.md). The instance's object holds
-- the delivery queue; D1 keeps each webhook's configuration and what its
-- last delivery attempt answered.
ALTER TABLE webhooks ADD COLUMN key_prefix TEXT;
ALTER TABLE webhooks ADD COLUMN last_triggered_at INTEGER;   -- unix seconds of the last attempt
ALTER TABLE webhooks ADD COLUMN last_status INTEGER;         -- its HTTP status; NULL: none, or no answer

-- Usage: the model and token counts an upstream reported, and the delegate
-- that made the call (user_id stays the user acted for, so one index
-- answers "my calls, my keys' and my delegates'").
ALTER TABLE usage_logs ADD COLUMN model TEXT;
ALTER TABLE usage_logs ADD COLUMN tokens_in INTEGER;
ALTER TABLE usage_logs ADD COLUMN tokens_out INTEGER;
ALTER TABLE usage_logs ADD COLUMN delegate_id TEXT;
