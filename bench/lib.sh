# Shell functions shared by bench/compare.sh and bench/smoke.sh: build
# mcbench, start a server under `wrangler dev` in its own process group, run
# mcbench against it, stop everything. Sourced, not run. The caller sets `me`
# (its name, for messages) before sourcing; sourcing makes a temporary
# directory `$tmp` and installs the EXIT trap that stops whatever was started
# and removes `$tmp`.

bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$bench")"
wrangler="$root/node_modules/.bin/wrangler"
results="$bench/results"
# How long a server may take to answer /health after it was started.
start_wait_s="${start_wait_s:-60}"

[ -x "$wrangler" ] || { echo "$me: $wrangler is missing (npm install in $root)" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mcbench-${me%.sh}.XXXXXX")"
server_pid=""
bench_pid=""

# check_log NAME RC: say so when wrangler rebuilt or reloaded the server
# during the run (someone rebuilt build/ or edited a watched file), and show
# the end of its log when the run failed.
check_log() {
  local log="$tmp/$1.log" since
  since="$(cat "$tmp/$1.mark" 2>/dev/null || echo 0)"
  if tail -n "+$((since + 1))" "$log" | grep -qiE "changed, restarting|reloading|restarted"; then
    echo "$me: WARNING: wrangler reloaded $1 during the run; its figures are suspect:" >&2
    tail -n "+$((since + 1))" "$log" | grep -iE "changed, restarting|reloading|restarted" | head -5 >&2
  fi
  if [ "$2" -ne 0 ]; then
    echo "$me: $1 run failed (exit $2); end of its server log:" >&2
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

# build_mcbench: a release build of mcbench; sets `mcbench` to its path.
build_mcbench() {
  echo "$me: building mcbench" >&2
  cargo build --release --quiet --manifest-path "$bench/Cargo.toml"
  mcbench="${CARGO_TARGET_DIR:-$bench/target}/release/mcbench"
  mkdir -p "$results"
}

# run_bench ARGS...: mcbench in the background, so that a signal to the
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
  port_free "$port" || { echo "$me: something already answers on port $port" >&2; exit 2; }
  (cd "$dir" && exec env "$@" setsid "$wrangler" dev --port "$port" --persist-to "$state" \
      >"$tmp/$name.log" 2>&1) &
  server_pid=$!
  for _ in $(seq 1 $((start_wait_s * 2))); do
    # wrangler may rebuild once while starting (a watched directory
    # "changed"): wait for its "Ready on" line as well as for /health.
    if grep -q "Ready on" "$tmp/$name.log" &&
      curl -s -o /dev/null --max-time 2 "http://localhost:$port/health"; then
      echo "$me: $name is up on port $port (pid $server_pid)" >&2
      sleep 2 # let start-up work finish before the idle CPU sample
      wc -l <"$tmp/$name.log" >"$tmp/$name.mark"
      return 0
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$me: $name exited; its log:" >&2
      tail -30 "$tmp/$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$me: $name did not answer /health within $start_wait_s s; its log:" >&2
  tail -30 "$tmp/$name.log" >&2
  exit 1
}

# start_ours PORT: this server from the existing build/, on a fresh state
# directory with the D1 migrations applied.
start_ours() {
  mkdir -p "$tmp/ours-state"
  (cd "$root" && CI=1 "$wrangler" d1 migrations apply DB --local --persist-to "$tmp/ours-state" \
    >"$tmp/migrations.log" 2>&1) || { cat "$tmp/migrations.log" >&2; exit 1; }
  start_server ours "$root" "$1" "$tmp/ours-state" MINDCACHE_SKIP_BUILD=1
}
