#!/usr/bin/env bash
# Sets up what is missing, builds, applies the D1 migrations locally and
# starts the server in development mode at http://localhost:8787.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx wrangler d1 migrations apply mindcache-db --local
# wrangler runs the build (wrangler.toml [build]); restart this script to
# pick up code changes (a running server is not rebuilt under its clients).
# Port 8787 unless the arguments name one (wrangler refuses two --port).
for arg in "$@"; do
  case "$arg" in --port | --port=*) exec npx wrangler dev "$@" ;; esac
done
exec npx wrangler dev --port 8787 "$@"
