#!/usr/bin/env bash
# Installs whatever the build and tests need and is missing; quick when all
# is there. Everything comes from crates.io, the npm registry and Debian's
# packages: no step downloads a prebuilt binary from anywhere else.
#
#   bash scripts/setup.sh        everything (build, tests, browser test)
#   bash scripts/setup.sh npm    only the npm packages (wrangler), which is
#                                all the D1 migration scripts need
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

WORKER_BUILD_VERSION=0.8.7

log() { printf '[setup] %s\n' "$*" >&2; }

# npm packages (wrangler, esbuild, playwright-core), reinstalled only when
# the lockfile changed.
npm_packages() {
  if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing npm packages"
    npm ci --no-audit --no-fund
  fi
}

if [ "${1:-}" = "npm" ]; then
  npm_packages
  exit 0
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
  log "installing wasm-bindgen-cli $wb_version (a few minutes, once)"
  # Not --locked: its lockfile pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi

# Headless Chromium for the inspector page's browser test (tests/inspector.rs),
# from Debian's packages: the npm driver (playwright-core) downloads no browser.
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium and a font (Debian packages, once)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi

npm_packages
