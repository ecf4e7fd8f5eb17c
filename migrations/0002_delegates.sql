-- Delegates (delegates.md): machine identities a user creates, with their
-- own revocable secrets and explicit grants on instances. Also: what a
-- one-time WebSocket token's access rests on (protocol.md §8), so a socket
-- opened with it can be re-evaluated when that credential changes.

CREATE TABLE delegates (
  delegate_id TEXT PRIMARY KEY,                 -- del_ + 32 hex
  created_by_user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  can_read INTEGER NOT NULL DEFAULT 0,
  can_write INTEGER NOT NULL DEFAULT 0,
  can_system INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  expires_at INTEGER                            -- unix seconds; NULL = never
);
CREATE INDEX idx_delegates_creator ON delegates(created_by_user_id, created_at);

CREATE TABLE delegate_secrets (
  secret_id TEXT PRIMARY KEY,                   -- sec_ + 32 hex
  delegate_id TEXT NOT NULL REFERENCES delegates(delegate_id) ON DELETE CASCADE,
  secret_hash TEXT NOT NULL UNIQUE,             -- SHA-256 hex; the secret is never stored
  name TEXT,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX idx_delegate_secrets_delegate ON delegate_secrets(delegate_id, created_at);

CREATE TABLE delegate_grants (
  delegate_id TEXT NOT NULL REFERENCES delegates(delegate_id) ON DELETE CASCADE,
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
  granted_by_user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
  granted_at INTEGER NOT NULL,
  expires_at INTEGER,
  PRIMARY KEY (delegate_id, instance_id)
);
CREATE INDEX idx_delegate_grants_instance ON delegate_grants(instance_id);

ALTER TABLE ws_tokens ADD COLUMN api_key_id TEXT;
ALTER TABLE ws_tokens ADD COLUMN delegate_id TEXT;
ALTER TABLE ws_tokens ADD COLUMN secret_id TEXT;

-- D1 is the authority on `is_readonly` (protocol.md §8): every change of
-- the flag gets a larger version (ms), and an object keeps the flag of the
-- newest version it was told, so a request that read the flag earlier can
-- never overwrite a newer value.
ALTER TABLE instances ADD COLUMN readonly_version INTEGER NOT NULL DEFAULT 0;
-- Existing rows: a version above what objects stored before this change (0),
-- so the flag D1 holds wins the next time it is passed on.
UPDATE instances SET readonly_version = updated_at * 1000 + 1;

-- The instances an API key or a delegate has opened sockets on, so that
-- revoking it re-evaluates exactly those objects (an account-wide key may
-- reach many instances, public ones included, and a delegate many grants;
-- only the instances it used can hold its sockets). `credential_id` is an
-- API key id or a delegate id; rows go when the credential is deleted.
CREATE TABLE credential_instances (
  credential_id TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  first_used_at INTEGER NOT NULL,
  PRIMARY KEY (credential_id, instance_id)
);
