-- MindCache accounts schema (see spec/storage.md). Append-only: never edit a
-- released migration; add a new file instead. Timestamps are Unix seconds.

CREATE TABLE users (
  id TEXT PRIMARY KEY,                 -- Clerk user id
  clerk_id TEXT NOT NULL UNIQUE,       -- same value as id
  email TEXT,
  name TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_users_email ON users(email);

CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX idx_projects_owner ON projects(owner_id, updated_at);

CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  parent_instance_id TEXT REFERENCES instances(id) ON DELETE SET NULL,
  is_readonly INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX idx_instances_project ON instances(project_id, updated_at);
CREATE INDEX idx_instances_owner ON instances(owner_id);
CREATE INDEX idx_instances_parent ON instances(parent_instance_id);

CREATE TABLE groups (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_groups_owner ON groups(owner_id);

CREATE TABLE group_members (
  group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX idx_group_members_user ON group_members(user_id);

-- resource_id points at a project or an instance (no FK: polymorphic);
-- rows are removed explicitly when their resource goes.
CREATE TABLE shares (
  id TEXT PRIMARY KEY,
  resource_type TEXT NOT NULL CHECK (resource_type IN ('project', 'instance')),
  resource_id TEXT NOT NULL,
  target_type TEXT NOT NULL CHECK (target_type IN ('user', 'group', 'api_key', 'public')),
  target_id TEXT,                      -- NULL for public
  permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
  created_by TEXT REFERENCES users(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL
);
-- One share per (resource, target); public shares have no target id.
CREATE UNIQUE INDEX idx_shares_unique
  ON shares(resource_type, resource_id, target_type, COALESCE(target_id, ''));
CREATE INDEX idx_shares_target ON shares(target_type, target_id);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,       -- SHA-256 hex of the whole key
  key_prefix TEXT NOT NULL,            -- first 12 characters
  scope_type TEXT NOT NULL CHECK (scope_type IN ('account', 'project', 'instance')),
  scope_id TEXT,
  permissions TEXT NOT NULL,           -- JSON array of read|write|admin
  created_at INTEGER NOT NULL,
  last_used_at INTEGER
);
CREATE INDEX idx_api_keys_user ON api_keys(user_id);

CREATE TABLE webhooks (
  id TEXT PRIMARY KEY,
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  url TEXT NOT NULL,
  events TEXT NOT NULL DEFAULT '[]',   -- JSON array of event names
  secret TEXT,
  is_active INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX idx_webhooks_instance ON webhooks(instance_id);

CREATE TABLE usage_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT,
  api_key_id TEXT,
  endpoint TEXT NOT NULL,
  instance_id TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_usage_logs_user ON usage_logs(user_id, created_at);

CREATE TABLE ws_tokens (
  token_hash TEXT PRIMARY KEY,         -- SHA-256 hex; the token itself is never stored
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  instance_id TEXT NOT NULL,
  permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX idx_ws_tokens_expires ON ws_tokens(expires_at);
