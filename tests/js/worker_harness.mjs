// Drives worker/static/e2ee-worker.js under Node.js as Chromium would: a fake worker scope (EventTarget with
// postMessage), an `rtctransform` event whose transformer has a readable of fake RTCEncodedAudioFrames and
// a writable that collects them, and `rotate` messages between frames.
//
// stdin: {options: {suite, kid, key}, frames: [hex], rotations: [{before: index, kid, key}], second: bool}
// stdout: {frames: [hex], fresh_buffers: bool, replies: [...], stats: {...}}
import { hex, unhex } from "./sframe_checks.mjs";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const scope = new EventTarget();
const replies = [];
const waiters = [];
scope.postMessage = (message) => {
  replies.push(message);
  for (const w of waiters.splice(0)) w(message);
};
globalThis.self = scope;
await import("../../worker/static/e2ee-worker.js");

const post = (data) => scope.dispatchEvent(Object.assign(new Event("message"), { data }));
const nextReply = (type) =>
  new Promise((resolve) => {
    const check = (m) => (m.type === type ? resolve(m) : waiters.push(check));
    waiters.push(check);
  });

function transformer(frames, options, written, closed) {
  const inputs = frames.map((f, i) => ({ timestamp: 960 * i, data: unhex(f).buffer }));
  let index = 0;
  const readable = new ReadableStream({
    async pull(controller) {
      if (index >= inputs.length) return controller.close();
      const rotation = (spec.rotations ?? []).find((r) => r.before === index);
      if (rotation) {
        // A mid-call rotation: the page posts it while earlier frames may still be in flight.
        const rotated = nextReply("rotated");
        post({ type: "rotate", kid: rotation.kid, key: rotation.key });
        if (rotation.wait) await rotated;
      }
      controller.enqueue(inputs[index++]);
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream({ write: (frame) => written.push(frame), close: closed });
  return { readable, writable, options };
}

const written = [];
let closed;
const finished = new Promise((resolve) => (closed = resolve));
const t = transformer(spec.frames, spec.options, written, closed);
const originals = new Set(); // the input ArrayBuffers, before the transform replaced them
t.readable = t.readable.pipeThrough(
  new TransformStream({ transform: (frame, c) => (originals.add(frame.data), c.enqueue(frame)) }),
);
scope.dispatchEvent(Object.assign(new Event("rtctransform"), { transformer: t }));
await finished; // the pipe closes the writable once the readable is done
const buffers = new Set(written.map((f) => f.data));
const fresh =
  buffers.size === written.length &&
  written.every((f) => f.data instanceof ArrayBuffer && !originals.has(f.data));
const stats = nextReply("stats");
post({ type: "stats" });
process.stdout.write(
  JSON.stringify({
    frames: written.map((f) => hex(new Uint8Array(f.data))),
    timestamps: written.map((f) => f.timestamp),
    fresh_buffers: fresh,
    replies,
    stats: await stats,
  }),
);
