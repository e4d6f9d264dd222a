// Runs requests against worker/static/sframe.js and returns plain JSON results; Python compares them with
// the RFC 9605 vectors and media.sframe. Shared by the Node runner (sframe_runner.mjs) and the browser page
// (sframe_browser.html). KIDs/CTRs travel as decimal strings (they reach 2^64-1), bytes as lowercase hex.

export function hex(data) {
  return Array.from(new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}

export function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

async function outcome(fn) {
  try {
    return { ok: await fn() };
  } catch (err) {
    return { error: err.name, message: err.message };
  }
}

const OPS = {
  async header(m, { kid, ctr }) {
    return hex(m.encodeHeader(BigInt(kid), BigInt(ctr)));
  },
  async parse(m, { data }) {
    const { kid, ctr, length } = m.parseHeader(unhex(data));
    return { kid: String(kid), ctr: String(ctr), length };
  },
  async derive(m, { suite, base_key, kid, ctr }) {
    const { key, salt } = await m.deriveKeySalt(suite, unhex(base_key), BigInt(kid));
    return {
      sframe_key_label: hex(m.keyLabel(BigInt(kid), suite)),
      sframe_salt_label: hex(m.saltLabel(BigInt(kid), suite)),
      sframe_key: hex(key),
      sframe_salt: hex(salt),
      nonce: hex(m.makeNonce(salt, BigInt(ctr))),
    };
  },
  async aead_encrypt(m, { suite, key, nonce, aad, pt }) {
    return hex(await (await m.aead(suite, unhex(key))).encrypt(unhex(nonce), unhex(pt), unhex(aad)));
  },
  async aead_decrypt(m, { suite, key, nonce, aad, ct }) {
    const pt = await (await m.aead(suite, unhex(key))).decrypt(unhex(nonce), unhex(ct), unhex(aad));
    return pt === null ? null : hex(pt);
  },
  async protect(m, { suite, key, kid, ctr, pt, metadata }) {
    return hex(await m.protect(suite, unhex(key), BigInt(kid), BigInt(ctr), unhex(pt), unhex(metadata ?? "")));
  },
  async unprotect(m, { suite, key, ct, metadata }) {
    return hex(await m.unprotect(suite, unhex(key), unhex(ct), unhex(metadata ?? "")));
  },
  async sender(m, { suite, key, kid, frames }) {
    const s = await m.SFrameSender.create(suite, unhex(key), BigInt(kid));
    const out = [];
    for (const pt of frames) out.push(hex(await s.protect(unhex(pt))));
    return out;
  },
};

/** requests: [{op, ...args}] -> [{ok: result} | {error: name, message}], in order. */
export async function run(sframe, requests) {
  const results = [];
  for (const { op, ...args } of requests) {
    const fn = OPS[op];
    results.push(fn ? await outcome(() => fn(sframe, args)) : { error: "UnknownOp", message: op });
  }
  return results;
}
