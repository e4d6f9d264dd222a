// Page-side test (headless Chromium): two RTCPeerConnections on loopback; the sender's audio goes through
// worker/static/e2ee-worker.js (RTCRtpScriptTransform), the receiver's through capture-worker.js, which hands
// back the encoded frames as received. After `rotateAfter` frames the sender rotates to a new KID and key.
export async function loopback({ suite, kid, key, rotate, rotateAfter, total }) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  const a = new RTCPeerConnection({ iceServers: [] });
  const b = new RTCPeerConnection({ iceServers: [] });
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);

  const e2ee = new Worker("/static/e2ee-worker.js", { type: "module" });
  const replies = [];
  e2ee.onmessage = (e) => replies.push(e.data);
  const sender = a.addTrack(stream.getAudioTracks()[0], stream);
  sender.transform = new RTCRtpScriptTransform(e2ee, { suite, kid, key });

  const capture = new Worker("/js/capture-worker.js");
  const frames = [];
  let rotated = false;
  const done = new Promise((resolve) => {
    capture.onmessage = (e) => {
      frames.push(new Uint8Array(e.data.data));
      if (!rotated && frames.length >= rotateAfter) {
        rotated = true;
        e2ee.postMessage({ type: "rotate", kid: rotate.kid, key: rotate.key });
      }
      if (frames.length >= total) resolve();
    };
  });
  b.ontrack = (e) => {
    e.receiver.transform = new RTCRtpScriptTransform(capture, { limit: total });
  };

  await a.setLocalDescription();
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  await done;

  const stats = new Promise((resolve) => {
    e2ee.addEventListener("message", (e) => e.data.type === "stats" && resolve(e.data));
  });
  e2ee.postMessage({ type: "stats" });
  const result = { frames: frames.map((f) => Array.from(f, (x) => x.toString(16).padStart(2, "0")).join("")) };
  result.stats = await stats;
  result.replies = replies;
  a.close();
  b.close();
  stream.getTracks().forEach((t) => t.stop());
  return result;
}
