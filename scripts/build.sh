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
worker-build --release
