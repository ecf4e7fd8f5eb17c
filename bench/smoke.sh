#!/usr/bin/env bash
# A benchmark smoke for CI: starts this server from the existing build/
# (development mode, fresh state directory, D1 migrations applied, a free
# port from 8790 up), runs `mcbench --quick --scenarios latency,httpput`
# with --server-pid against it, prints mcbench's table and stops the server.
# About 20 s once mcbench is built (the first run also compiles mcbench in
# release mode, into $CARGO_TARGET_DIR or bench/target).
#
#   bench/smoke.sh [mcbench options]     e.g.  bench/smoke.sh --threads 2
#
# The figures are information: nothing here judges a time. The exit status
# says only whether the smoke ran (0), or failed to start or to finish (non
# zero); scripts/test.sh prints it and carries on either way. The JSON goes
# to $SMOKE_OUT if set, otherwise to a temporary file removed at the end.
# Environment: SMOKE_PORT picks the port.
set -euo pipefail

me=smoke.sh
start_wait_s=45
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

port="${SMOKE_PORT:-}"
if [ -z "$port" ]; then
  for p in $(seq 8790 8799); do
    if port_free "$p"; then port="$p"; break; fi
  done
  [ -n "$port" ] || { echo "smoke.sh: no free port in 8790-8799" >&2; exit 2; }
fi
[ -f "$root/build/index.js" ] || { echo "smoke.sh: no build/ (run scripts/build.sh first)" >&2; exit 2; }

build_mcbench
start_ours "$port"
rc=0
# Budgets cut to a fifth: a stuck scenario ends the smoke within a minute.
run_bench --url "http://localhost:$port" --server-pid "$server_pid" --label smoke \
  --quick --scenarios latency,httpput --timeout-scale 0.2 \
  --out "${SMOKE_OUT:-$tmp/smoke.json}" "$@" || rc=$?
stop_server
check_log ours "$rc"
exit "$rc"
