// The floor (../shared/bench/floor) plus the one thing every request of
// ours does that the floor does not: a structured request line through
// console.log (docs/operations.md), the same shape and about the same
// length as ours. Under `wrangler dev` each console call travels through
// wrangler's inspector proxy to its node process, which costs more CPU than
// the floor's whole `GET /health`; this variant shows what our HTTP figures
// would be against a floor that logs as we must (docs/performance.md).
// bench/paired.sh builds it from a copy of the floor (`floor-logged=floor-logged`).
import floor from "./index.js";
export * from "./index.js";

function requestId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export default {
  async fetch(request, env, ctx) {
    const started = Date.now();
    const response = await floor.fetch(request, env, ctx);
    const path = new URL(request.url).pathname;
    console.log(
      JSON.stringify({
        ts: new Date().toISOString(),
        level: "info",
        event: "request",
        requestId: requestId(),
        method: request.method,
        route: path,
        status: response.status,
        durationMs: Date.now() - started,
        userId: "dev-user",
      }),
    );
    return response;
  },
};
