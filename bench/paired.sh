#!/usr/bin/env bash
# Paired runs: start every server once, then alternate mcbench between them
# round by round, so that a slow stretch of a shared machine hits all of
# them alike (sequential runs of one server then the other moved by ±30 %
# here). Prints the median of each headline figure per server.
#
#   bench/paired.sh ROUNDS NAME=DIR [NAME=DIR …] [-- mcbench options]
#
# DIR is `floor` (../shared/bench/floor, copied), `floor-logged` (the floor
# with our request log line, bench/floor-logged/) or a directory holding a
# built snapshot of this server: `build/`, `migrations/` and a
# `wrangler.toml` without `[build]` — `bench/paired.sh --snapshot DIR`
# makes one from the current build/. Defaults: `--scenarios
# latency,throughput`. Results: results/<stamp>-paired-<name>-<round>.json.
set -euo pipefail
me=paired.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${1:-}" = "--snapshot" ]; then
  dir="${2:?usage: $me --snapshot DIR}"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$root/build" "$root/migrations" "$dir/"
  # wrangler.toml minus its [build] section (up to the next section).
  awk '/^\[build\]/{skip=1; next} /^\[/{skip=0} !skip' "$root/wrangler.toml" >"$dir/wrangler.toml"
  echo "$me: snapshot of build/ in $dir" >&2
  exit 0
fi

rounds="${1:?usage: $me ROUNDS NAME=DIR [NAME=DIR …] [-- mcbench options]}"
shift
names=() dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  names+=("${1%%=*}") dirs+=("${1#*=}")
  shift
done
[ "${1:-}" = "--" ] && shift
opts=("$@")
[ ${#opts[@]} -gt 0 ] || opts=(--scenarios latency,throughput)

build_mcbench
stamp="$(date +%Y%m%d-%H%M%S)"
pids=() ports=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
}
trap 'stop_all; cleanup' EXIT

port=8840
for i in "${!names[@]}"; do
  dir="${dirs[$i]}" state="$tmp/state-$i"
  if [ "$dir" = floor ]; then
    dir="$tmp/floor" && cp -r "$root/../shared/bench/floor" "$dir"
  elif [ "$dir" = floor-logged ]; then
    # The floor with our request log line (floor-logged/logged.js).
    dir="$tmp/floor-logged" && cp -r "$root/../shared/bench/floor" "$dir"
    cp "$root/bench/floor-logged/logged.js" "$dir/src/logged.js"
    sed -i 's|^main = .*|main = "src/logged.js"|' "$dir/wrangler.toml"
  else
    (cd "$dir" && CI=1 "$wrangler" d1 migrations apply DB --local --persist-to "$state" \
      >"$tmp/migrations-$i.log" 2>&1) || { cat "$tmp/migrations-$i.log" >&2; exit 1; }
  fi
  port_free "$port" || { echo "$me: port $port is taken" >&2; exit 2; }
  (cd "$dir" && exec setsid "$wrangler" dev --port "$port" --inspector-port "$((port + 1000))" --persist-to "$state" \
    >"$tmp/server-$i.log" 2>&1) &
  pids+=("$!") ports+=("$port")
  port=$((port + 1))
done
for i in "${!names[@]}"; do
  for _ in $(seq 1 120); do
    grep -q "Ready on" "$tmp/server-$i.log" && curl -s -o /dev/null --max-time 2 \
      "http://localhost:${ports[$i]}/health" && break
    sleep 0.5
  done
  # Warm-up (the module's compilation is not part of any figure).
  "$mcbench" --url "http://localhost:${ports[$i]}" --quick --scenarios latency,throughput >/dev/null 2>&1
done

for r in $(seq 1 "$rounds"); do
  for i in "${!names[@]}"; do
    out="$results/$stamp-paired-${names[$i]}-$r.json"
    run_bench --url "http://localhost:${ports[$i]}" --server-pid "${pids[$i]}" "${opts[@]}" \
      --out "$out" >"$tmp/bench.log" 2>&1 || { echo "$me: ${names[$i]} round $r failed:" >&2; tail -5 "$tmp/bench.log" >&2; }
  done
done

python3 - "$results" "$stamp" "${names[@]}" <<'EOF'
import glob, json, statistics, sys
results, stamp, names = sys.argv[1], sys.argv[2], sys.argv[3:]
# `{name}-{round}.json` with a numeric round: a name may be another's prefix.
runs = {n: [json.load(open(f)) for f in sorted(glob.glob(f"{results}/{stamp}-paired-{n}-*.json"))
            if f.rsplit("-", 1)[1][:-5].isdigit() and f.rsplit("-", 1)[0].endswith(f"-paired-{n}")] for n in names}
figures = sorted({k for rs in runs.values() for r in rs for k in r["headline"]})
print("figure".ljust(40) + "".join(n.rjust(14) for n in names))
for k in figures:
    cells = []
    for n in names:
        v = [r["headline"][k]["value"] for r in runs[n] if k in r["headline"]]
        cells.append(f"{statistics.median(v):.1f}".rjust(14) if v else "-".rjust(14))
    print(k.ljust(40) + "".join(cells))
for n in names:
    print(f"{n}: {len(runs[n])} runs, all ok: {all(r['allOk'] for r in runs[n])}")
EOF
