//! The local-copy cipher for pages that are not a secure context (plain-HTTP intranet):
//! there the browser withholds `crypto.subtle`, but `getRandomValues` stays. SHA-256
//! (FIPS 180-4) and HMAC (RFC 2104) in plain code, used as a PRF: HMAC-SHA256 in counter
//! mode as the keystream, then HMAC-SHA256 over the slot, the IV and the ciphertext as the
//! tag (encrypt-then-MAC, separate derived keys). The same server-issued per-principal key
//! as AES-GCM, so the shared-browser rule holds: without that principal's key, read only
//! while their session is live, a copy cannot be read or forged.

// The round constants and initial state: the first 32 bits of the fractional parts of the
// cube roots of the first 64 primes and the square roots of the first 8 (FIPS 180-4, 4.2.2
// and 5.3.3), computed rather than listed to keep the SDK small; doubles hold them exactly
// (checked against known digests in sdk/test/insecure.test.js).
const K = new Uint32Array(64);
const H0 = new Uint32Array(8);
for (let n = 2, i = 0; i < 64; n++) {
  let prime = true;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) prime = false;
  if (!prime) continue;
  if (i < 8) H0[i] = (Math.sqrt(n) % 1) * 2 ** 32;
  K[i++] = (Math.cbrt(n) % 1) * 2 ** 32;
}

/** SHA-256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const total = Math.ceil((len + 9) / 64) * 64;
  const m = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    m.set(p, o);
    o += p.length;
  }
  m[len] = 0x80;
  const dv = new DataView(m.buffer);
  dv.setUint32(total - 8, Math.floor(len / 0x20000000));
  dv.setUint32(total - 4, (len * 8) >>> 0);
  const h = H0.slice();
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let b = 0; b < total; b += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(b + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, bb, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = bb;
      bb = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(4 * i, h[i]);
  return out;
}

/** HMAC-SHA256(key, concatenation of `parts`); `key` at most 64 bytes (ours are 32). */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const k = new Uint8Array(64);
  k.set(key.length > 64 ? sha256(key) : key);
  const pad = (x: number) => k.map((b) => b ^ x);
  return sha256(pad(0x5c), sha256(pad(0x36), ...parts));
}

const te = new TextEncoder();
const u32 = (n: number) => new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

/** The tag over slot, IV and ciphertext, each length-prefixed so no two inputs collide. */
function tag(key: Uint8Array, slot: string, iv: Uint8Array, ct: Uint8Array): Uint8Array {
  const s = te.encode(slot);
  return hmac(hmac(key, te.encode("sessiond-local-mac")), u32(s.length), s, u32(iv.length), iv, ct);
}

function xorStream(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array<ArrayBuffer> {
  const ek = hmac(key, te.encode("sessiond-local-enc"));
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i += 32) {
    const ks = hmac(ek, iv, u32(i / 32));
    for (let j = 0; j < 32 && i + j < data.length; j++) out[i + j] = data[i + j] ^ ks[j];
  }
  return out;
}

/** Encrypts `plain` for `slot`: ciphertext followed by the 32-byte tag. */
export function sealHmac(key: Uint8Array, slot: string, iv: Uint8Array, plain: Uint8Array): Uint8Array<ArrayBuffer> {
  const ct = xorStream(key, iv, plain);
  const out = new Uint8Array(ct.length + 32);
  out.set(ct);
  out.set(tag(key, slot, iv, ct), ct.length);
  return out;
}

/** Opens what `sealHmac` made for the same slot; throws on any change. */
export function openHmac(key: Uint8Array, slot: string, iv: Uint8Array, sealed: Uint8Array): Uint8Array<ArrayBuffer> {
  if (sealed.length < 32) throw new Error("sealed copy too short");
  const ct = sealed.subarray(0, sealed.length - 32);
  const want = tag(key, slot, iv, ct);
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= want[i] ^ sealed[ct.length + i];
  if (diff !== 0) throw new Error("local copy failed authentication");
  return xorStream(key, iv, ct);
}
