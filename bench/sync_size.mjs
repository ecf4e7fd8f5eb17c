// How a full instance syncs under `wrangler dev` (docs/faults.md, "Instance
// size cap"): fills an instance to the 16 MiB cap through the batch API,
// restarts the server (so workerd's peak RSS is the sync's, not the fill's),
// then times fresh connections' `sync` frames and reads workerd's RSS and
// peak RSS. Then the same for an instance built above the cap (~29.5 MiB,
// with the development-only cap override) and one above what a sync may
// carry (~31.5 MiB: `TOO_LARGE` instead of `sync`).
//
//   bash scripts/build.sh && node bench/sync_size.mjs
//
// Uses the build in build/ (MINDCACHE_SKIP_BUILD=1); development mode, so
// no Authorization is needed.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import WebSocket from "ws";

const MIB = 1024 * 1024;
const root = new URL("..", import.meta.url).pathname;
const wrangler = join(root, "node_modules/.bin/wrangler");
const persist = mkdtempSync(join(tmpdir(), "mindcache-sync-size-"));
const env = { ...process.env, MINDCACHE_SKIP_BUILD: "1", WRANGLER_SEND_METRICS: "false", CI: "true" };

const freePort = () =>
  new Promise((ok) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

// Every server we started goes when we do, even after a failure.
const started = [];
process.on("exit", () => started.forEach((s) => { try { process.kill(-s.child.pid, "SIGKILL"); } catch {} }));
process.on("unhandledRejection", (e) => { console.error(e); process.exit(1); });

async function start(vars) {
  const port = await freePort();
  const envFile = join(persist, "vars.env");
  writeFileSync(envFile, Object.entries({ ENVIRONMENT: "development", ...vars }).map(([k, v]) => `${k}=${v}\n`).join(""));
  const child = spawn(
    wrangler,
    ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort()),
      "--persist-to", persist, "--env-file", envFile, "--show-interactive-dev-session=false"],
    { cwd: root, env, stdio: "ignore", detached: true },
  );
  started.push({ child });
  for (let i = 0; i < 900; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).status === 200) return { child, port };
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("server did not start");
}

function stop(server) {
  try { process.kill(-server.child.pid, "SIGTERM"); } catch {}
  return new Promise((r) => setTimeout(r, 1500));
}

// The workerd below our wrangler that runs the Worker (the one with an
// inspector; the other is a proxy): its resident set and peak, MB.
function workerd(server) {
  const procs = new Map();
  for (const line of execFileSync("ps", ["-eo", "pid=,ppid=,args="]).toString().trim().split("\n")) {
    const [pid, ppid, ...args] = line.trim().split(/\s+/);
    procs.set(pid, { ppid, args: args.join(" ") });
  }
  const below = (pid) => {
    for (let p = pid; p && p !== "1"; p = procs.get(p)?.ppid) if (p === String(server.child.pid)) return true;
    return false;
  };
  const pid = [...procs].find(([pid, p]) => /bin\/workerd serve/.test(p.args) && p.args.includes("--inspector-addr") && below(pid))?.[0];
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const mb = (name) => Math.round(Number(status.match(new RegExp(`${name}:\\s+(\\d+)`))[1]) / 1024);
  return { rss: mb("VmRSS"), peak: mb("VmHWM") };
}

// Sets keys of `valueBytes` until the instance holds about `target` bytes;
// a batch refused by the cap (413) is retried in halves, down to one key.
async function fill(server, id, target, valueBytes) {
  let total = 0, n = 0, perBatch = Math.floor((6 * MIB) / (valueBytes + 60)), capped;
  while (total + valueBytes <= target && perBatch > 0) {
    const set = {};
    for (let i = 0; i < perBatch && total + (i + 1) * valueBytes <= target; i++) {
      set[`k${String(n + i).padStart(5, "0")}`] = { value: "x".repeat(valueBytes) };
    }
    const resp = await fetch(`http://127.0.0.1:${server.port}/api/instances/${id}/batch`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ set }),
    });
    if (resp.status === 413) {
      capped = await resp.text();
      perBatch = Object.keys(set).length > 1 ? Math.floor(Object.keys(set).length / 2) : 0;
      continue;
    }
    if (resp.status !== 200) throw new Error(`batch: ${resp.status} ${await resp.text()}`);
    n += Object.keys(set).length;
    total += Object.keys(set).length * valueBytes;
  }
  return { keys: n, capped };
}

// A fresh connection: ms to its first frame after auth_success, its size and type.
function sync(server, id) {
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://localhost:${server.port}/sync/${id}`, { maxPayload: 256 * MIB });
    ws.on("message", (data) => {
      const text = data.toString();
      const ends = text.slice(0, 300) + text.slice(-300);
      const type = (ends.match(/"type":"(\w+)"/) ?? [])[1] ?? "";
      if (type === "auth_success") return;
      const ms = Math.round(performance.now() - t0);
      ws.close();
      ok({ ms, bytes: data.length, type, error: type === "error" ? text.slice(0, 160) : undefined });
    });
    ws.on("error", fail);
  });
}

async function measure(label, vars, id, runs = 3) {
  const server = await start(vars);
  const before = workerd(server);
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await sync(server, id));
  const after = workerd(server);
  console.log(JSON.stringify({ label, before, after, results }));
  await stop(server);
}

const RAISED = { MINDCACHE_TEST_MAX_INSTANCE_BYTES: String(64 * MIB), MINDCACHE_TEST_MAX_SYNC_BYTES: String(64 * MIB) };
const valueBytes = Number(process.env.VALUE_BYTES ?? 100_000);

execFileSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], { cwd: root, env, stdio: "ignore" });
let server = await start({});
console.log(JSON.stringify({ fill: "full", ...(await fill(server, "full", 16 * MIB, valueBytes)) }));
await stop(server);
await measure("16 MiB (full)", {}, "full");

server = await start(RAISED);
console.log(JSON.stringify({ fill: "over", ...(await fill(server, "over", 29.5 * MIB, valueBytes)) }));
await stop(server);
await measure("29.5 MiB (over the cap, under the sync limit)", {}, "over");
await measure("29.5 MiB, sync limit lifted", RAISED, "over", 1);

server = await start(RAISED);
console.log(JSON.stringify({ fill: "beyond", ...(await fill(server, "beyond", 31.5 * MIB, valueBytes)) }));
await stop(server);
await measure("31.5 MiB (over the sync limit)", {}, "beyond", 1);
await measure("31.5 MiB, sync limit lifted", RAISED, "beyond", 1);
rmSync(persist, { recursive: true, force: true });
