// Converse worker demo: browser microphone -> WHIP (RFC 9725) -> live transcript (SSE over fetch).
// `?loopback` keeps only 127.0.0.1 host candidates (tests, single-machine demos).
// "End-to-end encryption" (or `?e2ee`): every encoded Opus frame is SFrame-protected (RFC 9605, suite 4,
// KID 1, a fresh random key per call) in an RTCRtpScriptTransform worker (/e2ee-worker.js); the key goes to
// the worker only, in the WHIP headers Converse-SFrame-Suite / Converse-SFrame-Keys, and is never shown.
// State for tests and debugging: window.converseDemo = {state, callId, error, events, e2ee}.

const params = new URLSearchParams(window.location.search);
const LOOPBACK = params.has("loopback");
const ICE_GATHERING_TIMEOUT_MS = 5000;

const SFRAME_SUITE = 4; // AES_128_GCM_SHA256_128
const SFRAME_KID = 1;
const E2EE_READY_TIMEOUT_MS = 5000;
const E2EE_CHECK_AFTER_MS = 1500;

// e2ee: null, or {suite, kid, ready, protected, dropped, errors} (counts from the transform worker; no key).
const demo = { state: "idle", callId: null, error: null, events: [], e2ee: null };
window.converseDemo = demo;

const form = document.getElementById("call-form");
const hangupButton = document.getElementById("hangup");
const callButton = document.getElementById("call");
const statusLine = document.getElementById("status");
const transcript = document.getElementById("transcript");
const e2eeBox = document.getElementById("e2ee");
if (params.has("e2ee")) e2eeBox.checked = true;

let current = null; // {pc, stream, location, token, abort, worker}

function setStatus(state, text, isError = false) {
  demo.state = state;
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs); // send what we have rather than hang
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function keepLoopbackCandidates(sdp) {
  return sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || line.split(" ")[4] === "127.0.0.1")
    .join("\r\n");
}

// End-to-end encryption, step 1 (before the peer connection exists): a fresh key and the transform worker.
async function prepareE2ee() {
  if (typeof RTCRtpScriptTransform === "undefined") {
    throw new Error("this browser cannot encrypt end to end (no RTCRtpScriptTransform)");
  }
  const { randomKey, toBase64Url } = await import("/sframe.js");
  const worker = new Worker("/e2ee-worker.js", { type: "module" });
  demo.e2ee = { suite: SFRAME_SUITE, kid: SFRAME_KID, ready: false, protected: 0, dropped: 0, errors: 0 };
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("end-to-end encryption did not start")), E2EE_READY_TIMEOUT_MS);
    worker.addEventListener("message", (event) => {
      const msg = event.data ?? {};
      if (msg.type === "ready") {
        clearTimeout(timer);
        demo.e2ee.ready = true;
        resolve();
      } else if (msg.type === "error") {
        clearTimeout(timer);
        demo.e2ee.errors++;
        reject(new Error(msg.message));
      } else if (msg.type === "stats") {
        Object.assign(demo.e2ee, { protected: msg.protected, dropped: msg.dropped, errors: msg.errors });
      }
    });
  });
  return { worker, key: toBase64Url(randomKey(16)), ready };
}

// Step 2, in the SAME task as addTransceiver: Chromium does not apply a transform set after an `await`
// (the sender then sends clear frames), so nothing may be awaited between the two.
function protectSender(sender, e2ee) {
  sender.transform = new RTCRtpScriptTransform(e2ee.worker, { suite: SFRAME_SUITE, kid: SFRAME_KID, key: e2ee.key });
  current.worker = e2ee.worker;
}

// Step 3: once the key is usable, the WHIP headers; the page forgets the key (the worker holds it).
async function e2eeHeaders(e2ee) {
  await e2ee.ready;
  const headers = {
    "Converse-SFrame-Suite": String(SFRAME_SUITE),
    "Converse-SFrame-Keys": `${SFRAME_KID}=${e2ee.key}`,
  };
  e2ee.key = null;
  return headers;
}

// Belt and braces: if the transform protected nothing a moment after media started, hang up.
function checkProtection(worker) {
  setTimeout(() => {
    if (!current || current.worker !== worker) return;
    const onStats = (event) => {
      if (event.data?.type !== "stats") return;
      worker.removeEventListener("message", onStats);
      if (event.data.protected === 0 && current?.worker === worker) {
        demo.error = "end-to-end encryption is not active in this browser: call ended";
        hangUp().then(() => setStatus("failed", demo.error, true));
      }
    };
    worker.addEventListener("message", onStats);
    worker.postMessage({ type: "stats" });
  }, E2EE_CHECK_AFTER_MS);
}

function preferOpus(transceiver) {
  const caps = RTCRtpSender.getCapabilities ? RTCRtpSender.getCapabilities("audio") : null;
  if (!caps || !transceiver.setCodecPreferences) return;
  const opus = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "audio/opus");
  if (opus.length) transceiver.setCodecPreferences(opus);
}

async function startCall(token) {
  demo.e2ee = null;
  const e2ee = e2eeBox.checked ? await prepareE2ee() : null;
  setStatus("starting", "Opening the microphone…");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    video: false,
  });
  const pc = new RTCPeerConnection({ iceServers: [] });
  current = { pc, stream, location: null, token, abort: new AbortController(), worker: null };
  const transceiver = pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly", streams: [stream] });
  if (e2ee) protectSender(transceiver.sender, e2ee); // no await before this line (see protectSender)
  preferOpus(transceiver);
  // Before the offer: no frame leaves this browser unprotected (frames before the key is ready are dropped).
  const sframeHeaders = e2ee ? await e2eeHeaders(e2ee) : {};
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") {
      setStatus("connected", `In call ${demo.callId}${demo.e2ee ? " (end-to-end encrypted)" : ""}.`);
      if (current?.worker) checkProtection(current.worker);
    }
    if (pc.connectionState === "failed") setStatus("failed", "Connection failed.", true);
  });

  await pc.setLocalDescription(await pc.createOffer());
  setStatus("gathering", "Gathering ICE candidates…");
  await iceGatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
  let sdp = pc.localDescription.sdp;
  if (LOOPBACK) sdp = keepLoopbackCandidates(sdp);

  setStatus("offering", "Calling the worker…");
  const response = await fetch("/whip", {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}`, ...sframeHeaders },
    body: sdp,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`worker refused the call (${response.status}): ${body.trim()}`);
  current.location = response.headers.get("Location");
  demo.callId = current.location.split("/").pop();
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  setStatus("answered", `Call ${demo.callId} answered${demo.e2ee ? " (end-to-end encrypted)" : ""}, connecting…`);
  watchLive(demo.callId, token, current.abort.signal);
}

async function hangUp() {
  const call = current;
  current = null;
  if (!call) return;
  call.abort.abort();
  if (call.location) {
    try {
      await fetch(call.location, { method: "DELETE", headers: { Authorization: `Bearer ${call.token}` } });
    } catch (err) {
      console.warn("DELETE failed", err);
    }
  }
  call.pc.close();
  call.stream.getTracks().forEach((t) => t.stop());
  if (call.worker) {
    call.worker.postMessage({ type: "stats" });
    await new Promise((resolve) => setTimeout(resolve, 100)); // let the last stats arrive
    call.worker.terminate();
  }
  setStatus("ended", `Call ${demo.callId} ended.`);
}

// -- live transcript: Server-Sent Events read with fetch() (EventSource cannot send Authorization) --

const partialLines = new Map(); // track -> <p class=partial>

function render(event) {
  demo.events.push(event);
  const track = Number(event.track ?? 0);
  if (event.kind === "partial") {
    let line = partialLines.get(track);
    if (!line) {
      line = document.createElement("p");
      line.className = "partial";
      partialLines.set(track, line);
      transcript.append(line);
    }
    line.replaceChildren(label(track), document.createTextNode(event.text ?? ""));
  } else if (event.kind === "final") {
    const line = partialLines.get(track) ?? document.createElement("p");
    partialLines.delete(track);
    line.className = "final";
    line.replaceChildren(label(track), document.createTextNode(event.text ?? ""));
    transcript.append(line);
  } else if (event.kind === "ended") {
    setStatus("ended", `Call ${event.call_id ?? demo.callId} ended.`);
  }
}

function label(track) {
  const span = document.createElement("span");
  span.className = "track";
  span.textContent = `Track ${track}:`;
  return span;
}

function dispatch(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  try {
    const event = JSON.parse(data.join("\n"));
    if (!event.kind && name !== "message") event.kind = name;
    render(event);
  } catch (err) {
    console.warn("unreadable live event", err);
  }
}

async function watchLive(callId, token, signal) {
  try {
    const response = await fetch(`/v1/calls/${encodeURIComponent(callId)}/live`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      signal,
    });
    if (!response.ok || !response.body) {
      demo.liveError = `live view unavailable (${response.status})`;
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (!signal.aborted) demo.liveError = String(err);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  callButton.disabled = true;
  hangupButton.disabled = false;
  demo.error = null;
  try {
    await startCall(form.token.value.trim());
  } catch (err) {
    demo.error = String(err.message ?? err);
    setStatus("failed", demo.error, true);
    await hangUp();
    demo.state = "failed";
    callButton.disabled = false;
    hangupButton.disabled = true;
  }
});

hangupButton.addEventListener("click", async () => {
  hangupButton.disabled = true;
  await hangUp();
  callButton.disabled = false;
});
