#!/usr/bin/env bash
# Builds the Worker into build/ with the locally installed tools (the
# wrangler.toml build command). MINDCACHE_SKIP_BUILD=1 skips it when the
# caller has just built, as the integration tests do for each server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# A deployment never carries fault injection (docs/faults.md): wrangler runs
# this script with WRANGLER_COMMAND=deploy (also for --dry-run), and then
# neither a fault build nor skipping over one already in build/ is allowed.
if [ "${WRANGLER_COMMAND:-}" = "deploy" ]; then
  if [ "${MINDCACHE_FAULTS:-}" = "1" ]; then
    echo "refusing to deploy a fault-injection build (MINDCACHE_FAULTS=1)" >&2
    exit 1
  fi
  if [ "${MINDCACHE_SKIP_BUILD:-}" = "1" ] && [ -f build/FAULT_INJECTION ]; then
    echo "build/ is a fault-injection test build: refusing to deploy it (build without MINDCACHE_SKIP_BUILD)" >&2
    exit 1
  fi
fi

if [ "${MINDCACHE_SKIP_BUILD:-}" = "1" ] && [ -f build/index.js ]; then
  exit 0
fi

# Point worker-build at installed binaries so it never tries to download them.
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" || { echo "wasm-bindgen is missing: run scripts/setup.sh" >&2; exit 1; }
ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
export WASM_BINDGEN_BIN ESBUILD_BIN
# --no-panic-recovery: worker-build's panic-recovery shim wraps every call
# into the module in a Proxy and a termination check, which costs 15-25 %
# of the CPU per WebSocket message (docs/performance.md). A panic is still
# recovered (docs/faults.md): src/entry.js, the entry module, re-instantiates
# the module after one at a cost of one check per call; and the code keeps
# panics out of request paths (no unwrap/expect on input or I/O).
export CUSTOM_SHIM="$PWD/src/entry.js"
# MINDCACHE_FAULTS=1 (scripts/test.sh, the integration tests): compile in the
# fault injection of src/panic.rs. Never set by `npm run deploy` or dev.sh.
features=()
if [ "${MINDCACHE_FAULTS:-}" = "1" ]; then
  features=(--features fault-injection)
fi
rm -rf build   # no stale artifacts of an earlier layout
worker-build --release --no-panic-recovery "${features[@]}"
if [ "${MINDCACHE_FAULTS:-}" = "1" ]; then
  echo "built with fault injection (test build: never deploy it)"
  touch build/FAULT_INJECTION
fi
