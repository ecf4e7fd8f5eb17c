// The Worker's entry module: worker-build's legacy (bundler) layout with this
// file as its CUSTOM_SHIM (scripts/build.sh). It does what worker-build's
// panic-recovery shim does, without its per-call cost (docs/faults.md):
//
// - A Rust panic (src/panic.rs) marks the module poisoned; nothing else
//   happens at that moment, because callbacks of requests still in flight
//   belong to the old instance and must not run against a new one.
// - The next entry (a request to the Worker or a call into a Durable Object)
//   sees the mark and asks wasm-bindgen's glue to re-instantiate the module
//   (fresh memory, fresh state) before the call goes in. Callbacks and objects
//   of the old instance are refused by the glue from then on.
// - Each Durable Object's Rust half is re-created from its storage on its
//   next call after a re-instantiation (`generation` moved on).
//
// On the hot path this costs one property read and one comparison per call
// (and, for a request, shadowing its `cf`: see `withoutCf`).

import * as glue from "./index_bg.js";
export * from "./index_bg.js";
import wasmModule from "./index.wasm";
import { WorkerEntrypoint } from "cloudflare:workers";
$SNIPPET_JS_IMPORTS

function wasmImports() {
  return {
    "./index_bg.js": glue,
    $SNIPPET_WASM_IMPORTS
  };
}

// wasm-bindgen's re-instantiation reads these names as globals in this
// (bundler) layout, where its own loader does not define them.
globalThis.wasmModule = wasmModule;
globalThis.__wbg_get_imports = wasmImports;
globalThis.wasmInstance = new WebAssembly.Instance(wasmModule, wasmImports());
glue.__wbg_set_wasm(globalThis.wasmInstance.exports);
globalThis.wasmInstance.exports.__wbindgen_start?.();

// Set by the Rust panic hook (src/panic.rs).
const faults = (globalThis.__mindcacheFaults ??= { poisoned: false });
// The glue's `__wbindgen_reinit` import: re-instantiate before the next call.
const reinitName = Object.keys(glue).find((k) => k.startsWith("__wbg___wbindgen_reinit_"));
const scheduleReinit = reinitName ? glue[reinitName] : null;

// A structured line like the Rust side's (src/log.rs).
function problem(level, message) {
  console.error(JSON.stringify({ ts: new Date().toISOString(), level, event: level, message }));
}

if (!scheduleReinit) {
  problem("error", "panic recovery unavailable: the glue has no reinit hook");
}

let generation = 0;

function recover() {
  faults.poisoned = false;
  if (!scheduleReinit) return;
  generation++;
  scheduleReinit();
  problem("warn", `module re-instantiated after a panic (generation ${generation})`);
}

// workers-rs turns every incoming request into its own `Request` type by
// reading `request.cf` at once, which makes the runtime build the whole `cf`
// object (6 % of a `GET /health`'s CPU in a profile under wrangler dev).
// Nothing in the Rust code reads `cf`, so the request goes in with it
// shadowed as undefined; whoever needs it one day should drop this.
function withoutCf(request) {
  Object.defineProperty(request, "cf", { value: undefined });
  return request;
}

class Entrypoint extends WorkerEntrypoint {
  async fetch(request) {
    if (faults.poisoned) recover();
    return await glue.fetch(withoutCf(request), this.env, this.ctx);
  }
}

export default Entrypoint;

// The Durable Object class the runtime instantiates: a thin holder of the
// Rust object, which it re-creates when the module was re-instantiated.
export class MindCacheInstance {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = null;
    this.generation = -1;
    this.live();
  }

  live() {
    if (faults.poisoned) recover();
    if (this.generation !== generation) {
      this.inner = new glue.MindCacheInstance(this.state, this.env);
      this.generation = generation;
    }
    return this.inner;
  }

  fetch(request) {
    return this.live().fetch(withoutCf(request));
  }

  alarm() {
    return this.live().alarm();
  }

  webSocketMessage(ws, message) {
    return this.live().webSocketMessage(ws, message);
  }

  webSocketClose(ws, code, reason, wasClean) {
    return this.live().webSocketClose(ws, code, reason, wasClean);
  }

  webSocketError(ws, error) {
    return this.live().webSocketError(ws, error);
  }
}
