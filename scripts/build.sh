#!/usr/bin/env bash
# Builds the Worker into build/ with the locally installed tools (the
# wrangler.toml build command). MINDCACHE_SKIP_BUILD=1 skips it when the
# caller has just built, as the integration tests do for each server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "${MINDCACHE_SKIP_BUILD:-}" = "1" ] && [ -f build/index.js ]; then
  exit 0
fi

# Point worker-build at installed binaries so it never tries to download them.
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" || { echo "wasm-bindgen is missing: run scripts/setup.sh" >&2; exit 1; }
ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
export WASM_BINDGEN_BIN ESBUILD_BIN
# --no-panic-recovery: worker-build's panic-recovery shim wraps every call
# into the module in a Proxy and a termination check, which costs 15-25 %
# of the CPU per WebSocket message (docs/performance.md). The code keeps
# panics out of request paths (no unwrap/expect on input or I/O) instead.
rm -rf build   # no stale artifacts of an earlier layout
worker-build --release --no-panic-recovery
