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
gzip_bytes=$(gzip -9 -c build/index_bg.wasm | wc -c)
echo "build/index_bg.wasm: $(wc -c < build/index_bg.wasm) bytes, $gzip_bytes bytes gzip"

# Integration tests start their own servers from the build above.
cargo test --lib --tests -- "$@"
