// Test-only receive-side transform: forwards each encoded frame unchanged and posts a copy of its bytes
// (the SFrame ciphertext as it arrived over RTP) to the page, up to `options.limit` frames.
let seen = 0;
self.addEventListener("rtctransform", (event) => {
  const { readable, writable, options } = event.transformer;
  const limit = options?.limit ?? 100;
  readable
    .pipeThrough(
      new TransformStream({
        transform(frame, controller) {
          if (seen++ < limit) self.postMessage({ type: "frame", data: frame.data.slice(0) });
          controller.enqueue(frame);
        },
      }),
    )
    .pipeTo(writable);
});
