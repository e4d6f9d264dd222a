// SFrame, RFC 9605 (https://www.rfc-editor.org/rfc/rfc9605), with WebCrypto only: no dependencies.
// Browser (page or worker) and Node.js >= 20 (globalThis.crypto.subtle). Same wire format as media/sframe.py.
//
// KIDs and CTRs are 0..2^64-1: pass a number (safe integer) or a BigInt; parseHeader returns BigInts.
// Byte strings are Uint8Array (any ArrayBuffer view or ArrayBuffer is accepted as input).
//
// Nonce reuse: SFrameSender counts CTR 0, 1, 2, ... in memory and persists nothing. A (key, KID) pair must
// therefore never be given to a second sender: after a page reload, a new call or a crash, use a NEW random
// base key (see randomKey()) or a NEW KID. create() refuses a (suite, key, KID) already used in this JS realm.

const SUBTLE = globalThis.crypto.subtle;
const MAX_VALUE = (1n << 64n) - 1n; // KID and CTR fit in 8 bytes on the wire (RFC 9605 section 4.3)
const ENCODER = new TextEncoder();

// RFC 9605 section 4.5 / 8.1 registry. nka: AES key length inside the AEAD key (CTR suites), 0 for GCM.
export const CipherSuite = Object.freeze({
  AES_128_CTR_HMAC_SHA256_80: 1,
  AES_128_CTR_HMAC_SHA256_64: 2,
  AES_128_CTR_HMAC_SHA256_32: 3,
  AES_128_GCM_SHA256_128: 4,
  AES_256_GCM_SHA512_128: 5,
});

const SUITES = new Map([
  [1, { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nt: 10, nn: 12 }],
  [2, { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nt: 8, nn: 12 }],
  [3, { hash: "SHA-256", nh: 32, nka: 16, nk: 48, nt: 4, nn: 12 }],
  [4, { hash: "SHA-256", nh: 32, nka: 0, nk: 16, nt: 16, nn: 12 }],
  [5, { hash: "SHA-512", nh: 64, nka: 0, nk: 32, nt: 16, nn: 12 }],
]);

export class SFrameError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}
/** The frame failed authentication (wrong key, tampered bytes or metadata). */
export class SFrameAuthError extends SFrameError {}
/** The SFrame header cannot be decoded, or a KID/CTR cannot be encoded. */
export class MalformedHeaderError extends SFrameError {}
/** The sender's CTR space for this key and KID is used up. */
export class CounterExhaustedError extends SFrameError {}

export function suiteParams(suite) {
  const p = SUITES.get(Number(suite));
  if (!p) throw new SFrameError(`unknown SFrame cipher suite ${suite}`);
  return p;
}

function bytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data === undefined || data === null) return new Uint8Array(0);
  throw new TypeError("expected bytes (Uint8Array, ArrayBuffer view or ArrayBuffer)");
}

function u64(value, what) {
  let v;
  try {
    v = BigInt(value);
  } catch {
    throw new MalformedHeaderError(`SFrame ${what} is not an integer`);
  }
  if (v < 0n) throw new MalformedHeaderError(`SFrame ${what} must be non-negative`);
  if (v > MAX_VALUE) throw new MalformedHeaderError(`SFrame ${what} does not fit in 8 bytes`);
  return v;
}

function bigEndian(value, length) {
  const out = new Uint8Array(length);
  let v = BigInt(value);
  for (let i = length - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

// --- Header: RFC 9605 section 4.3 -------------------------------------------------------------------------

function field(value) {
  // Values 0-7 sit in the 3 config bits with X/Y = 0; larger ones set X/Y and the 3 bits hold
  // (length - 1) of the minimal big-endian encoding that follows.
  if (value < 8n) return [Number(value), new Uint8Array(0)];
  let n = 0;
  for (let v = value; v > 0n; v >>= 8n) n++;
  return [0x8 | (n - 1), bigEndian(value, n)];
}

/** The SFrame header for (kid, ctr): config byte X|K(3)|Y|C(3), then KID bytes, then CTR bytes. */
export function encodeHeader(kid, ctr) {
  const [k, kidBytes] = field(u64(kid, "KID"));
  const [c, ctrBytes] = field(u64(ctr, "CTR"));
  return concat(Uint8Array.of((k << 4) | c), kidBytes, ctrBytes);
}

function readField(data, pos, n, what) {
  if (data.length < pos + n) {
    throw new MalformedHeaderError(`SFrame header: ${what} needs ${n} bytes, ${data.length - pos} present`);
  }
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(data[pos + i]);
  return v;
}

/** Decode a header: {kid: bigint, ctr: bigint, length}. Non-minimal encodings are accepted (the AAD covers
 * the header bytes as sent). */
export function parseHeader(data) {
  data = bytes(data);
  if (data.length === 0) throw new MalformedHeaderError("SFrame header: empty frame");
  const config = data[0];
  let pos = 1;
  let kid;
  let ctr;
  if (config & 0x80) {
    const n = ((config >> 4) & 0x7) + 1;
    kid = readField(data, pos, n, "KID");
    pos += n;
  } else {
    kid = BigInt((config >> 4) & 0x7);
  }
  if (config & 0x08) {
    const n = (config & 0x7) + 1;
    ctr = readField(data, pos, n, "CTR");
    pos += n;
  } else {
    ctr = BigInt(config & 0x7);
  }
  return { kid, ctr, length: pos };
}

// --- Key schedule: RFC 9605 section 4.4.2 (HKDF, RFC 5869) ---------------------------------------------

export function keyLabel(kid, suite) {
  return concat(ENCODER.encode("SFrame 1.0 Secret key "), bigEndian(u64(kid, "KID"), 8), bigEndian(suite, 2));
}

export function saltLabel(kid, suite) {
  return concat(ENCODER.encode("SFrame 1.0 Secret salt "), bigEndian(u64(kid, "KID"), 8), bigEndian(suite, 2));
}

/** {key, salt} (raw bytes) for one KID: HKDF-Extract with an empty salt, then two Expands. WebCrypto's
 * HKDF with an empty salt is RFC 5869's default (HashLen zero bytes: the same HMAC key). */
export async function deriveKeySalt(suite, baseKey, kid) {
  const p = suiteParams(suite);
  const ikm = await SUBTLE.importKey("raw", bytes(baseKey), "HKDF", false, ["deriveBits"]);
  const hkdf = (info, n) =>
    SUBTLE.deriveBits({ name: "HKDF", hash: p.hash, salt: new Uint8Array(0), info }, ikm, 8 * n);
  const [key, salt] = await Promise.all([hkdf(keyLabel(kid, suite), p.nk), hkdf(saltLabel(kid, suite), p.nn)]);
  return { key: new Uint8Array(key), salt: new Uint8Array(salt) };
}

/** RFC 9605 section 4.4.3 with errata 8321: nonce = salt XOR encode_big_endian(CTR, Nn). */
export function makeNonce(salt, ctr) {
  const nonce = Uint8Array.from(bytes(salt));
  const c = bigEndian(u64(ctr, "CTR"), 8);
  for (let i = 0; i < 8; i++) nonce[nonce.length - 8 + i] ^= c[i];
  return nonce;
}

// --- AEAD: RFC 9605 section 4.5 --------------------------------------------------------------------------

function timingSafeEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

class AesGcm {
  static async create(p, key) {
    return new AesGcm(await SUBTLE.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]), p.nt);
  }

  constructor(key, nt) {
    this.key = key;
    this.nt = nt;
  }

  async encrypt(nonce, plaintext, aad) {
    const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 8 * this.nt };
    return new Uint8Array(await SUBTLE.encrypt(params, this.key, plaintext));
  }

  async decrypt(nonce, data, aad) {
    const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 8 * this.nt };
    try {
      return new Uint8Array(await SUBTLE.decrypt(params, this.key, data));
    } catch {
      return null; // OperationError: authentication failed
    }
  }
}

/** AES-CTR + truncated HMAC (RFC 9605 section 4.5.1): key = enc_key (Nka) || auth_key. */
export class CtrHmac {
  static async create(p, key) {
    key = bytes(key);
    const [enc, auth] = await Promise.all([
      SUBTLE.importKey("raw", key.subarray(0, p.nka), "AES-CTR", false, ["encrypt"]),
      SUBTLE.importKey("raw", key.subarray(p.nka), { name: "HMAC", hash: p.hash }, false, ["sign"]),
    ]);
    return new CtrHmac(enc, auth, p.nt);
  }

  constructor(encKey, authKey, nt) {
    this.encKey = encKey;
    this.authKey = authKey;
    this.nt = nt;
  }

  async ctr(nonce, data) {
    // Counter blocks: nonce || 32-bit big-endian block counter from 0.
    const counter = concat(nonce, new Uint8Array(4));
    return new Uint8Array(await SUBTLE.encrypt({ name: "AES-CTR", counter, length: 32 }, this.encKey, data));
  }

  async tag(nonce, aad, ct) {
    // HMAC(auth_key, len(aad) || len(ct) || Nt (8 bytes each, big-endian) || nonce || aad || ct)[:Nt]
    const lengths = concat(bigEndian(aad.length, 8), bigEndian(ct.length, 8), bigEndian(this.nt, 8));
    const mac = await SUBTLE.sign("HMAC", this.authKey, concat(lengths, nonce, aad, ct));
    return new Uint8Array(mac, 0, this.nt);
  }

  async encrypt(nonce, plaintext, aad) {
    const ct = await this.ctr(nonce, plaintext);
    return concat(ct, await this.tag(nonce, aad, ct));
  }

  async decrypt(nonce, data, aad) {
    if (data.length < this.nt) return null;
    const ct = data.subarray(0, data.length - this.nt);
    if (!timingSafeEqual(data.subarray(data.length - this.nt), await this.tag(nonce, aad, ct))) return null;
    return this.ctr(nonce, ct);
  }
}

/** Raw-key AEAD for a suite (RFC 9605 section 4.5): {encrypt(nonce, pt, aad), decrypt(nonce, ct, aad)}. */
export async function aead(suite, key) {
  const p = suiteParams(suite);
  key = bytes(key);
  if (key.length !== p.nk) throw new SFrameError(`SFrame suite ${suite}: key must be ${p.nk} bytes`);
  return p.nka ? CtrHmac.create(p, key) : AesGcm.create(p, key);
}

/** Derived key material for one (suite, base key, KID), the AEAD keys imported once (non-extractable). */
export class KeyContext {
  static async create(suite, baseKey, kid) {
    kid = u64(kid, "KID");
    baseKey = bytes(baseKey);
    if (baseKey.length === 0) throw new SFrameError("SFrame base key must not be empty");
    const { key, salt } = await deriveKeySalt(suite, baseKey, kid);
    return new KeyContext(Number(suite), kid, salt, await aead(suite, key));
  }

  constructor(suite, kid, salt, cipher) {
    this.suite = suite;
    this.kid = kid;
    this.salt = salt;
    this.cipher = cipher;
  }

  /** RFC 9605 section 4.4.3 encrypt(): header || AEAD.Encrypt(key, nonce, header || metadata, pt). */
  async protect(ctr, plaintext, metadata) {
    try {
      ctr = u64(ctr, "CTR");
    } catch {
      throw new CounterExhaustedError(`SFrame KID ${this.kid}: CTR ${ctr} outside 0..2^64-1`);
    }
    const header = encodeHeader(this.kid, ctr);
    const meta = bytes(metadata);
    const aad = meta.length ? concat(header, meta) : header;
    const sealed = await this.cipher.encrypt(makeNonce(this.salt, ctr), bytes(plaintext), aad);
    return concat(header, sealed);
  }

  /** RFC 9605 section 4.4.4 decrypt() for a frame whose header is already parsed. */
  async unprotectParsed(parsed, data, metadata) {
    const header = data.subarray(0, parsed.length);
    const meta = bytes(metadata);
    const aad = meta.length ? concat(header, meta) : header;
    const pt = await this.cipher.decrypt(makeNonce(this.salt, parsed.ctr), data.subarray(parsed.length), aad);
    if (pt === null) {
      throw new SFrameAuthError(`SFrame KID ${parsed.kid} CTR ${parsed.ctr}: authentication failed`);
    }
    return pt;
  }
}

/** Stateless RFC 9605 encrypt() for one frame: header || ciphertext || tag. */
export async function protect(suite, baseKey, kid, ctr, plaintext, metadata) {
  return (await KeyContext.create(suite, baseKey, kid)).protect(ctr, plaintext, metadata);
}

/** Stateless RFC 9605 decrypt(): parse the header, derive the KID's key from baseKey, open. */
export async function unprotect(suite, baseKey, ciphertext, metadata) {
  const data = bytes(ciphertext);
  const parsed = parseHeader(data);
  const ctx = await KeyContext.create(suite, baseKey, parsed.kid);
  return ctx.unprotectParsed(parsed, data, metadata);
}

// --- Sender ---------------------------------------------------------------------------------------------

const USED = new Set(); // fingerprints of (suite, base key, KID) given to a sender in this realm

async function fingerprint(suite, baseKey, kid) {
  const digest = await SUBTLE.digest(
    "SHA-256",
    concat(ENCODER.encode("converse sframe sender v1"), bigEndian(suite, 2), bigEndian(kid, 8), baseKey),
  );
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Protects frames with CTR 0, 1, 2, ... under one (base key, KID). Persists nothing: see the top note. */
export class SFrameSender {
  static async create(suite, baseKey, kid) {
    const ctx = await KeyContext.create(suite, baseKey, kid);
    const fp = await fingerprint(ctx.suite, bytes(baseKey), ctx.kid);
    if (USED.has(fp)) throw new SFrameError(`SFrame KID ${ctx.kid}: this key and KID already had a sender`);
    USED.add(fp);
    return new SFrameSender(ctx);
  }

  constructor(ctx) {
    this.ctx = ctx;
    this.nextCtr = 0n;
  }

  get kid() {
    return this.ctx.kid;
  }

  get suite() {
    return this.ctx.suite;
  }

  /** Protect one frame. The CTR is consumed before sealing, so it is never retried even on failure. */
  async protect(plaintext, metadata) {
    const ctr = this.nextCtr;
    if (ctr > MAX_VALUE) throw new CounterExhaustedError(`SFrame KID ${this.ctx.kid}: CTR space exhausted`);
    this.nextCtr = ctr + 1n;
    return this.ctx.protect(ctr, plaintext, metadata);
  }
}

// --- Helpers for key provisioning --------------------------------------------------------------------

/** A fresh random base key (16 bytes for suites 1-4, 32 for suite 5 by default). */
export function randomKey(length = 16) {
  return globalThis.crypto.getRandomValues(new Uint8Array(length));
}

/** base64url without padding (the `Converse-SFrame-Keys` header form). */
export function toBase64Url(data) {
  let s = "";
  for (const b of bytes(data)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64Url(text) {
  const s = String(text).replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(s + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
