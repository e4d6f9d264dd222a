// Encoded-transform worker (module): SFrame-protects every outgoing encoded audio frame (RFC 9605).
//
//   const worker = new Worker("/e2ee-worker.js", { type: "module" });
//   sender.transform = new RTCRtpScriptTransform(worker, { suite: 4, kid: 1, key: "<base64url>" });
//   worker.postMessage({ type: "rotate", kid: 2, key: "<base64url>" });  // new KID (and key) mid-call
//   worker.postMessage({ type: "stats" });  // -> {type: "stats", protected, dropped, errors, kid, ctr}
//
// The whole encoded payload (the Opus frame) is protected, metadata empty; each frame gets a NEW
// ArrayBuffer (Chromium stops sending if one is reused). A frame that cannot be protected is dropped, never
// sent in the clear. Every transform this worker serves shares one sender (one CTR sequence), so tracks that
// share a worker never reuse a (key, KID, CTR). KIDs travel as decimal strings or numbers; keys base64url.
// Replies: {type: "ready"|"rotated", kid} once a key is usable, {type: "error", message} (never key bytes).

import { SFrameSender, fromBase64Url } from "./sframe.js";

const scope = globalThis.self ?? globalThis;
const state = {
  suite: null,
  sender: null, // Promise<SFrameSender> | null
  current: null, // the SFrameSender in use (for stats)
  installed: null, // "suite/kid/key" of the last install request, to share one sender between transforms
  protected: 0,
  dropped: 0,
  errors: 0,
};

function reply(message) {
  scope.postMessage(message);
}

// Install a key: frames arriving after this call use it (the transform awaits the latest promise, in order).
function install(config, kind) {
  const previous = state.sender;
  const suite = Number(config.suite ?? state.suite ?? 4); // a rotation keeps the suite unless it names one
  state.suite = suite;
  state.installed = `${suite}/${config.kid}/${config.key}`;
  const next = (async () => {
    const sender = await SFrameSender.create(suite, fromBase64Url(config.key), BigInt(config.kid));
    state.current ??= sender; // for stats before the first frame; protectFrame tracks the one in use
    reply({ type: kind, kid: String(sender.kid), suite: sender.suite });
    return sender;
  })();
  state.sender = next.catch((err) => {
    state.errors++;
    const what = kind === "rotated" ? "rotation" : "key setup";
    reply({ type: "error", message: `SFrame ${what} failed: ${err.name}` }); // never the key or its text
    return previous; // keep the last good key (or none: frames are then dropped)
  });
  return state.sender;
}

async function protectFrame(frame, controller) {
  const sender = state.sender ? await state.sender : null;
  if (!sender) {
    state.dropped++;
    return;
  }
  state.current = sender;
  let out;
  try {
    out = await sender.protect(new Uint8Array(frame.data));
  } catch {
    state.dropped++;
    state.errors++;
    return;
  }
  // `out` owns a fresh ArrayBuffer of exactly its length.
  frame.data = out.byteLength === out.buffer.byteLength ? out.buffer : out.slice().buffer;
  state.protected++;
  controller.enqueue(frame);
}

/** Pipe `transformer.readable` through the protector into `transformer.writable`. */
export function attach(transformer) {
  const options = transformer.options ?? {};
  const wanted = `${Number(options.suite ?? 4)}/${options.kid}/${options.key}`;
  if (options.key !== undefined && options.kid !== undefined && state.installed !== wanted) {
    install(options, "ready");
  }
  return transformer.readable
    .pipeThrough(new TransformStream({ transform: protectFrame }))
    .pipeTo(transformer.writable)
    .catch((err) => reply({ type: "error", message: `SFrame transform stopped: ${err?.name ?? err}` }));
}

function onMessage(event) {
  const msg = event.data ?? {};
  if (msg.type === "rotate" || msg.type === "init") {
    install(msg, msg.type === "rotate" ? "rotated" : "ready");
  } else if (msg.type === "stats") {
    reply({
      type: "stats",
      protected: state.protected,
      dropped: state.dropped,
      errors: state.errors,
      kid: state.current ? String(state.current.kid) : null,
      ctr: state.current ? String(state.current.nextCtr) : null,
    });
  }
}

scope.addEventListener("rtctransform", (event) => attach(event.transformer));
scope.addEventListener("message", onMessage);
