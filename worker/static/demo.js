// Converse worker demo: browser microphone -> WHIP (RFC 9725) -> live transcript (SSE over fetch).
// `?loopback` keeps only 127.0.0.1 host candidates (tests, single-machine demos).
// State for tests and debugging: window.converseDemo = {state, callId, error, events}.

const params = new URLSearchParams(window.location.search);
const LOOPBACK = params.has("loopback");
const ICE_GATHERING_TIMEOUT_MS = 5000;

const demo = { state: "idle", callId: null, error: null, events: [] };
window.converseDemo = demo;

const form = document.getElementById("call-form");
const hangupButton = document.getElementById("hangup");
const callButton = document.getElementById("call");
const statusLine = document.getElementById("status");
const transcript = document.getElementById("transcript");

let current = null; // {pc, stream, location, token, abort}

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

function preferOpus(transceiver) {
  const caps = RTCRtpSender.getCapabilities ? RTCRtpSender.getCapabilities("audio") : null;
  if (!caps || !transceiver.setCodecPreferences) return;
  const opus = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "audio/opus");
  if (opus.length) transceiver.setCodecPreferences(opus);
}

async function startCall(token) {
  setStatus("starting", "Opening the microphone…");
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    video: false,
  });
  const pc = new RTCPeerConnection({ iceServers: [] });
  current = { pc, stream, location: null, token, abort: new AbortController() };
  const transceiver = pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly", streams: [stream] });
  preferOpus(transceiver);
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") setStatus("connected", `In call ${demo.callId}.`);
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
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: sdp,
  });
  const body = await response.text();
  if (response.status !== 201) throw new Error(`worker refused the call (${response.status}): ${body.trim()}`);
  current.location = response.headers.get("Location");
  demo.callId = current.location.split("/").pop();
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  setStatus("answered", `Call ${demo.callId} answered, connecting…`);
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
