#!/usr/bin/env bash
# Sets up what is missing and runs the whole test suite: formatting, lints,
# native unit tests, then the integration tests against `wrangler dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown -- -D warnings
bash scripts/build.sh
# The module worker-build emits (build/worker/index.wasm without the
# panic-recovery shim; build/index_bg.wasm with it).
for wasm in build/worker/index.wasm build/index_bg.wasm; do
  if [ -f "$wasm" ]; then
    echo "$wasm: $(wc -c < "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzip"
    break
  fi
done

# Integration tests start their own servers from the build above.
cargo test --lib --tests -- "$@"
