// Reads a /api/chat response body (server-sent events) from stdin and runs
// it through the `ai` package's own client-side pipeline, as `useChat` does:
// the DefaultChatTransport's parsing (each event validated against the
// package's UI-message-chunk schema; an invalid one throws) followed by
// readUIMessageStream, which assembles the assistant message.
// Prints {"message": <final UIMessage>, "errors": [<error texts>]}.
// Exits 1 when a chunk is rejected or the stream is malformed.
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

async function stdinBytes() {
  const parts = [];
  for await (const part of process.stdin) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

const bytes = await stdinBytes();
// Deliver the body in small pieces, as a network would.
const body = new ReadableStream({
  start(controller) {
    for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
    controller.close();
  },
});

const chunks = parseJsonEventStream({ stream: body, schema: uiMessageChunkSchema }).pipeThrough(
  new TransformStream({
    transform(result, controller) {
      if (!result.success) throw result.error;
      controller.enqueue(result.value);
    },
  }),
);

const errors = [];
let message = null;
try {
  for await (const snapshot of readUIMessageStream({
    stream: chunks,
    onError: (e) => errors.push(String(e && e.message ? e.message : e)),
  })) {
    message = snapshot;
  }
} catch (e) {
  console.error(`stream rejected: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
process.stdout.write(JSON.stringify({ message, errors }));
