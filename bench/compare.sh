#!/usr/bin/env bash
# Benchmarks the floor (the least a Worker + SQLite Durable Object can do,
# from ../shared/bench/floor) and then our server, one after the other on
# this machine, each under `wrangler dev` with a fresh state directory, and
# prints their headline figures side by side with the ratio ours / floor.
#
#   bench/compare.sh [mcbench options]      e.g.  bench/compare.sh --quick
#
# Options are passed to both mcbench runs (--quick, --scenarios a,b, ...);
# the floor's run also gets `--skip httpput` (it has no HTTP data API, so the
# comparison shows "-" for the floor there). Functions: bench/lib.sh.
# Results: bench/results/<stamp>-floor.json, <stamp>-ours.json and
# <stamp>-compare.json (the comparison, its table included).
# Environment: MINDCACHE_SKIP_BUILD=1 uses the existing build/ instead of
# running scripts/build.sh; FLOOR_DIR overrides where the floor is copied
# from; FLOOR_PORT / OURS_PORT (default 8788 / 8789).
set -euo pipefail

me=compare.sh
floor_port="${FLOOR_PORT:-8788}"
ours_port="${OURS_PORT:-8789}"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
floor_src="${FLOOR_DIR:-$root/../shared/bench/floor}"
stamp="$(date -u +%Y%m%d-%H%M%S)"

[ -f "$floor_src/wrangler.toml" ] || { echo "compare.sh: no floor at $floor_src" >&2; exit 2; }

build_mcbench

# The floor (scenarios that need our HTTP data API left out).
cp -r "$floor_src" "$tmp/floor"
chmod -R u+w "$tmp/floor"
start_server floor "$tmp/floor" "$floor_port" "$tmp/floor-state"
floor_rc=0
run_bench --url "http://localhost:$floor_port" --server-pid "$server_pid" --label floor \
  --out "$results/$stamp-floor.json" "$@" --skip httpput || floor_rc=$?
stop_server
check_log floor "$floor_rc"

# Ours: build once (unless MINDCACHE_SKIP_BUILD=1), fresh state, migrations.
echo "compare.sh: building the server (scripts/build.sh)" >&2
(cd "$root" && bash scripts/build.sh)
start_ours "$ours_port"
ours_rc=0
run_bench --url "http://localhost:$ours_port" --server-pid "$server_pid" --label ours \
  --out "$results/$stamp-ours.json" "$@" || ours_rc=$?
stop_server
check_log ours "$ours_rc"

echo
echo "floor: $results/$stamp-floor.json (exit $floor_rc)"
echo "ours:  $results/$stamp-ours.json (exit $ours_rc)"
echo
"$mcbench" --compare "$results/$stamp-floor.json" "$results/$stamp-ours.json" \
  --labels floor,ours --out "$results/$stamp-compare.json"
echo
echo "comparison: $results/$stamp-compare.json"
if [ "$floor_rc" -ne 0 ] || [ "$ours_rc" -ne 0 ]; then
  exit 1
fi
