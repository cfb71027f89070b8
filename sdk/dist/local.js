//! Local draft copies: encrypted with a per-principal key (AES-GCM; where the page is not
//! a secure context and WebCrypto is withheld, HMAC-SHA256 in counter mode with an HMAC
//! tag, see `hmac.ts`), text in a key-value store (localStorage), attachment bytes in a
//! blob store (IndexedDB). Used when the server cannot be reached or the session has
//! ended; expire `ttl` after the server confirmed them.
import { openHmac, sealHmac, sha256 } from "./hmac.js";
const NS = "sessiond:d:";
const te = new TextEncoder();
const td = new TextDecoder();
export function toB64(b) {
    let s = "";
    for (let i = 0; i < b.length; i += 0x8000)
        s += String.fromCharCode(...b.subarray(i, i + 0x8000));
    return btoa(s);
}
export function fromB64(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++)
        out[i] = bin.charCodeAt(i);
    return out;
}
/** Imports the server-issued key; the slot prefix is a hash of the key, so storage keys
 * reveal neither the principal nor anything that links two principals. Without `subtle`
 * (a page that is not a secure context) the key is kept raw for the HMAC cipher. */
export async function importLocalKey(subtle, principal, b64) {
    const raw = fromB64(b64);
    if (raw.length !== 32)
        throw new Error("local key must be 32 bytes");
    const digest = subtle ? new Uint8Array(await subtle.digest("SHA-256", raw)) : sha256(raw);
    const prefix = Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
    const key = subtle ? await subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]) : raw;
    return { principal, key, prefix };
}
export class LocalStore {
    constructor(kv, blobs, crypto, clock, 
    /** How long a confirmed copy is kept (ms). */
    ttl) {
        this.kv = kv;
        this.blobs = blobs;
        this.crypto = crypto;
        this.clock = clock;
        this.ttl = ttl;
    }
    get enabled() {
        return this.kv !== null;
    }
    slot(lk, conversation) {
        return `${NS}${lk.prefix}/${conversation}`;
    }
    async seal(lk, slot, plain) {
        const iv = this.crypto.getRandomValues(new Uint8Array(12));
        if (lk.key instanceof Uint8Array)
            return { iv, data: sealHmac(lk.key, slot, iv, plain).buffer };
        // The slot name is authenticated data, so a record moved to another slot fails to open.
        const data = await this.crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: te.encode(slot) }, lk.key, plain);
        return { iv, data };
    }
    async open(lk, slot, b) {
        if (lk.key instanceof Uint8Array)
            return openHmac(lk.key, slot, b.iv, new Uint8Array(b.data)).buffer;
        return this.crypto.subtle.decrypt({ name: "AES-GCM", iv: b.iv, additionalData: te.encode(slot) }, lk.key, b.data);
    }
    rec(slot) {
        try {
            return JSON.parse(this.kv?.getItem(slot) ?? "null");
        }
        catch {
            return null;
        }
    }
    expired(r) {
        return r.at > 0 && this.clock.now() - r.at > this.ttl;
    }
    /** The principal's copy for a conversation, or null (none, expired, or not theirs). */
    async read(lk, conversation) {
        const slot = this.slot(lk, conversation);
        const r = this.rec(slot);
        if (!r)
            return null;
        if (this.expired(r)) {
            await this.remove(lk, conversation);
            return null;
        }
        try {
            const plain = await this.open(lk, slot, { iv: fromB64(r.iv), data: fromB64(r.ct).buffer });
            const d = JSON.parse(td.decode(plain));
            return d.who === lk.principal ? { text: d.text, seq: d.seq, p: d.p, atts: d.atts } : null;
        }
        catch {
            return null;
        }
    }
    /** Stores a copy; a copy with nothing pending counts as confirmed now. Resolves to
     * whether it was stored (false: no storage); rejects if storing failed (quota). */
    async write(lk, conversation, d) {
        if (!this.kv)
            return false;
        const slot = this.slot(lk, conversation);
        const pending = d.p || d.atts.some((a) => a.p);
        const sealed = await this.seal(lk, slot, te.encode(JSON.stringify({ ...d, who: lk.principal })));
        const rec = { iv: toB64(sealed.iv), ct: toB64(new Uint8Array(sealed.data)), at: pending ? 0 : this.clock.now() };
        this.kv.setItem(slot, JSON.stringify(rec));
        return true;
    }
    /** Conversations with a copy of this principal; `pendingOnly` keeps those not yet confirmed. */
    conversations(lk, pendingOnly = false) {
        const out = [];
        const head = `${NS}${lk.prefix}/`;
        for (const k of this.slots()) {
            const r = k.startsWith(head) ? this.rec(k) : null;
            if (r && !this.expired(r) && (!pendingOnly || r.at === 0))
                out.push(k.slice(head.length));
        }
        return out;
    }
    slots() {
        const out = [];
        for (let i = 0; this.kv && i < this.kv.length; i++) {
            const k = this.kv.key(i);
            if (k?.startsWith(NS))
                out.push(k);
        }
        return out;
    }
    async putBlob(lk, conversation, name, blob) {
        if (!this.blobs)
            return;
        const slot = `${lk.prefix}/${conversation}/${name}`;
        const plain = new Uint8Array(await blob.arrayBuffer());
        const header = te.encode(JSON.stringify({ who: lk.principal, type: blob.type }) + "\n");
        const all = new Uint8Array(header.length + plain.length);
        all.set(header);
        all.set(plain, header.length);
        await this.blobs.put(slot, await this.seal(lk, slot, all));
    }
    async getBlob(lk, conversation, name) {
        const slot = `${lk.prefix}/${conversation}/${name}`;
        try {
            const b = await this.blobs?.get(slot);
            if (!b)
                return null;
            const all = new Uint8Array(await this.open(lk, slot, b));
            const nl = all.indexOf(10);
            const head = JSON.parse(td.decode(all.subarray(0, nl)));
            return head.who === lk.principal ? new Blob([all.subarray(nl + 1)], { type: head.type }) : null;
        }
        catch {
            return null;
        }
    }
    async delBlob(lk, conversation, name) {
        await this.blobs?.del(`${lk.prefix}/${conversation}/${name}`);
    }
    /** Removes a conversation's copy and its attachments. */
    async remove(lk, conversation) {
        this.kv?.removeItem(this.slot(lk, conversation));
        await this.dropBlobs((k) => k.startsWith(`${lk.prefix}/${conversation}/`));
    }
    /** Removes every copy of the principal (their sign-out). */
    async removeAll(lk) {
        for (const k of this.slots())
            if (k.startsWith(`${NS}${lk.prefix}/`))
                this.kv?.removeItem(k);
        await this.dropBlobs((k) => k.startsWith(`${lk.prefix}/`));
    }
    /** Removes expired copies of every principal (readable without their keys) and
     * attachments whose copy is gone. */
    async sweep() {
        for (const k of this.slots()) {
            const r = this.rec(k);
            if (!r || this.expired(r))
                this.kv?.removeItem(k);
        }
        const live = new Set(this.slots().map((k) => k.slice(NS.length)));
        await this.dropBlobs((k) => !live.has(k.slice(0, k.lastIndexOf("/"))));
    }
    async dropBlobs(pred) {
        if (!this.blobs)
            return;
        for (const k of await this.blobs.keys())
            if (pred(k))
                await this.blobs.del(k);
    }
}
/** A BlobStore on IndexedDB, or null where IndexedDB is missing. */
export function idbBlobs(name = "sessiond") {
    const idb = globalThis.indexedDB;
    if (!idb)
        return null;
    let db = null;
    const run = (mode, f) => (db ?? (db = new Promise((res, rej) => {
        const r = idb.open(name, 1);
        r.onupgradeneeded = () => r.result.createObjectStore("b");
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
    }))).then((d) => new Promise((res, rej) => {
        const q = f(d.transaction("b", mode).objectStore("b"));
        q.onsuccess = () => res(q.result);
        q.onerror = () => rej(q.error);
    }));
    return {
        get: (k) => run("readonly", (s) => s.get(k)),
        put: (k, v) => run("readwrite", (s) => s.put(v, k)).then(() => undefined),
        del: (k) => run("readwrite", (s) => s.delete(k)).then(() => undefined),
        keys: () => run("readonly", (s) => s.getAllKeys()).then((ks) => ks.map(String)),
    };
}
