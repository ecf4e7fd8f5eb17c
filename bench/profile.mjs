// CPU profile of a running `wrangler dev` server while a load runs:
//   node bench/profile.mjs --inspector 9229 --seconds 20 [--out p.cpuprofile]
// Attaches to wrangler's inspector (start the server with
// `--inspector-port 9229`), samples the Worker's isolate (the Durable
// Objects run in it) for the given time, and prints where the samples fell:
// the top functions by self time, and the share of wasm code, of the
// JavaScript glue, of runtime built-ins (SQLite calls, sends, attachment
// reads) and of garbage collection. Start the load yourself at the same time
// (mcbench). Build with `CARGO_PROFILE_RELEASE_STRIP=false bash
// scripts/build.sh` to see wasm function names.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .join(" ")
    .split("--")
    .filter(Boolean)
    .map((a) => a.trim().split(/\s+/)),
);
const port = Number(args.inspector ?? 9229);
const seconds = Number(args.seconds ?? 20);
const top = Number(args.top ?? 40);

const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl);
if (!target) throw new Error(`no inspector target on port ${port}`);
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((ok, fail) => {
  ws.once("open", ok);
  ws.once("error", fail);
});
let next = 1;
const pending = new Map();
ws.on("message", (data) => {
  const msg = JSON.parse(data);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
const call = (method, params = {}) =>
  new Promise((ok, fail) => {
    const id = next++;
    pending.set(id, (m) => (m.error ? fail(new Error(m.error.message)) : ok(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });

await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 100 });
await call("Profiler.start");
await new Promise((r) => setTimeout(r, seconds * 1000));
const { profile } = await call("Profiler.stop");
ws.close();
if (args.out) writeFileSync(args.out, JSON.stringify(profile));

const self = new Map();
const kinds = new Map();
let total = 0;
for (const node of profile.nodes) {
  const hits = node.hitCount ?? 0;
  if (!hits) continue;
  const { functionName, url } = node.callFrame;
  const name = functionName || "(anonymous)";
  const kind = name.startsWith("(")
    ? name
    : url.includes("wasm") || url.startsWith("wasm")
      ? "wasm"
      : url
        ? "javascript"
        : "runtime built-in";
  if (name === "(idle)") continue;
  total += hits;
  const key = `${name}  [${kind === "wasm" ? "wasm" : url.split("/").pop() || kind}]`;
  self.set(key, (self.get(key) ?? 0) + hits);
  kinds.set(kind, (kinds.get(kind) ?? 0) + hits);
}
const pct = (n) => ((100 * n) / total).toFixed(1).padStart(5) + " %";
console.log(`${total} samples (idle left out)`);
for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1])) console.log(`${pct(n)}  ${k}`);
console.log("");
for (const [k, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(n)}  ${k}`);
