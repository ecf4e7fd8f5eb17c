-- GET /api/projects (a user's own projects, newest update first) answered
-- from one index: the owner, the listing order and every column the list
-- returns, so neither the table nor a sort is touched. It leads with the
-- two columns of idx_projects_owner, which it replaces.

CREATE INDEX idx_projects_owner_listing
  ON projects(owner_id, updated_at DESC, created_at DESC, id, name, description);
DROP INDEX idx_projects_owner;
