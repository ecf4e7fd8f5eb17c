#!/usr/bin/env bash
# Benchmarks the floor (the least a Worker + SQLite Durable Object can do,
# from ../shared/bench/floor) and then our server, one after the other on
# this machine, each under `wrangler dev` with a fresh state directory, and
# prints their headline figures side by side with the ratio ours / floor.
#
#   bench/compare.sh [mcbench options]      e.g.  bench/compare.sh --quick
#
# Options are passed to both mcbench runs (--quick, --scenarios a,b, ...).
# Results: bench/results/<stamp>-floor.json, <stamp>-ours.json and
# <stamp>-compare.json (the comparison, its table included).
# Environment: MINDCACHE_SKIP_BUILD=1 uses the existing build/ instead of
# running scripts/build.sh; FLOOR_DIR overrides where the floor is copied
# from; FLOOR_PORT / OURS_PORT (default 8788 / 8789).
set -euo pipefail

bench="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$bench")"
wrangler="$root/node_modules/.bin/wrangler"
floor_src="${FLOOR_DIR:-$root/../shared/bench/floor}"
floor_port="${FLOOR_PORT:-8788}"
ours_port="${OURS_PORT:-8789}"
results="$bench/results"
stamp="$(date -u +%Y%m%d-%H%M%S)"

[ -x "$wrangler" ] || { echo "compare.sh: $wrangler is missing (npm install in $root)" >&2; exit 2; }
[ -f "$floor_src/wrangler.toml" ] || { echo "compare.sh: no floor at $floor_src" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mcbench-compare.XXXXXX")"
server_pid=""

# check_log NAME RC: say so when wrangler rebuilt or reloaded the server
# during the run (someone rebuilt build/ or edited a watched file), and show
# the end of its log when the run failed.
check_log() {
  local log="$tmp/$1.log" since
  since="$(cat "$tmp/$1.mark" 2>/dev/null || echo 0)"
  if tail -n "+$((since + 1))" "$log" | grep -qiE "changed, restarting|reloading|restarted"; then
    echo "compare.sh: WARNING: wrangler reloaded $1 during the run; its figures are suspect:" >&2
    tail -n "+$((since + 1))" "$log" | grep -iE "changed, restarting|reloading|restarted" | head -5 >&2
  fi
  if [ "$2" -ne 0 ]; then
    echo "compare.sh: $1 run failed (exit $2); end of its server log:" >&2
    tail -20 "$log" >&2
  fi
}

stop_server() {
  if [ -n "$server_pid" ]; then
    # The server was started in its own session: end its whole process
    # group (wrangler's node, esbuild, workerd), politely first.
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

bench_pid=""

# run_bench ARGS...: mcbench in the background, so that a signal to this
# script is handled at once (bash defers traps until a foreground child ends).
run_bench() {
  local rc=0
  "$mcbench" "$@" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=""
  return "$rc"
}

cleanup() {
  if [ -n "$bench_pid" ]; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  stop_server
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
  ! curl -s -o /dev/null --max-time 2 "http://localhost:$1/health"
}

# start_server NAME DIR PORT STATE [ENV=VALUE...]: wrangler dev in DIR.
start_server() {
  local name="$1" dir="$2" port="$3" state="$4"
  shift 4
  port_free "$port" || { echo "compare.sh: something already answers on port $port" >&2; exit 2; }
  (cd "$dir" && exec env "$@" setsid "$wrangler" dev --port "$port" --persist-to "$state" \
      >"$tmp/$name.log" 2>&1) &
  server_pid=$!
  for _ in $(seq 1 120); do
    # wrangler may rebuild once while starting (a watched directory
    # "changed"): wait for its "Ready on" line as well as for /health.
    if grep -q "Ready on" "$tmp/$name.log" &&
      curl -s -o /dev/null --max-time 2 "http://localhost:$port/health"; then
      echo "compare.sh: $name is up on port $port (pid $server_pid)" >&2
      sleep 2 # let start-up work finish before the idle CPU sample
      wc -l <"$tmp/$name.log" >"$tmp/$name.mark"
      return 0
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "compare.sh: $name exited; its log:" >&2
      tail -30 "$tmp/$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "compare.sh: $name did not answer /health within 60 s; its log:" >&2
  tail -30 "$tmp/$name.log" >&2
  exit 1
}

echo "compare.sh: building mcbench" >&2
cargo build --release --quiet --manifest-path "$bench/Cargo.toml"
mcbench="$bench/target/release/mcbench"
mkdir -p "$results"

# The floor.
cp -r "$floor_src" "$tmp/floor"
chmod -R u+w "$tmp/floor"
start_server floor "$tmp/floor" "$floor_port" "$tmp/floor-state"
floor_rc=0
run_bench --url "http://localhost:$floor_port" --server-pid "$server_pid" --label floor \
  --out "$results/$stamp-floor.json" "$@" || floor_rc=$?
stop_server
check_log floor "$floor_rc"

# Ours: build once (unless MINDCACHE_SKIP_BUILD=1), fresh state, migrations.
echo "compare.sh: building the server (scripts/build.sh)" >&2
(cd "$root" && bash scripts/build.sh)
mkdir -p "$tmp/ours-state"
(cd "$root" && CI=1 "$wrangler" d1 migrations apply DB --local --persist-to "$tmp/ours-state" \
  >"$tmp/migrations.log" 2>&1) || { cat "$tmp/migrations.log" >&2; exit 1; }
start_server ours "$root" "$ours_port" "$tmp/ours-state" MINDCACHE_SKIP_BUILD=1
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
