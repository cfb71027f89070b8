import type { Clock } from "./timing.js";
/** The part of `Storage` (localStorage) the SDK uses. */
export interface KV {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    removeItem(key: string): void;
    key(index: number): string | null;
    readonly length: number;
}
/** An encrypted attachment as kept in the blob store. */
export interface StoredBlob {
    iv: Uint8Array<ArrayBuffer>;
    data: ArrayBuffer;
}
/** Where attachment bytes are kept; `idbBlobs()` in browsers, a Map in tests. */
export interface BlobStore {
    get(key: string): Promise<StoredBlob | undefined>;
    put(key: string, value: StoredBlob): Promise<void>;
    del(key: string): Promise<void>;
    keys(): Promise<string[]>;
}
/** An attachment listed in a local copy; `p` while the server has not confirmed it. */
export interface LocalAtt {
    name: string;
    type: string;
    size: number;
    p: boolean;
}
/** The decrypted content of a local draft copy. `seq` is the server seq it was based on. */
export interface LocalDraft {
    text: string;
    seq: number;
    /** true while the text has not been confirmed by the server. */
    p: boolean;
    atts: LocalAtt[];
}
/** A principal's imported key; `prefix` names its storage slots without naming the
 * principal. `key` is raw bytes where WebCrypto is withheld (not a secure context). */
export interface LocalKey {
    principal: string;
    key: CryptoKey | Uint8Array<ArrayBuffer>;
    prefix: string;
}
export declare function toB64(b: Uint8Array): string;
export declare function fromB64(s: string): Uint8Array<ArrayBuffer>;
/** Imports the server-issued key; the slot prefix is a hash of the key, so storage keys
 * reveal neither the principal nor anything that links two principals. Without `subtle`
 * (a page that is not a secure context) the key is kept raw for the HMAC cipher. */
export declare function importLocalKey(subtle: SubtleCrypto | undefined, principal: string, b64: string): Promise<LocalKey>;
export declare class LocalStore {
    private readonly kv;
    private readonly blobs;
    private readonly crypto;
    private readonly clock;
    /** How long a confirmed copy is kept (ms). */
    private readonly ttl;
    constructor(kv: KV | null, blobs: BlobStore | null, crypto: Crypto, clock: Clock, 
    /** How long a confirmed copy is kept (ms). */
    ttl: number);
    get enabled(): boolean;
    private slot;
    private seal;
    private open;
    private rec;
    private expired;
    /** The principal's copy for a conversation, or null (none, expired, or not theirs). */
    read(lk: LocalKey, conversation: string): Promise<LocalDraft | null>;
    /** Stores a copy; a copy with nothing pending counts as confirmed now. Resolves to
     * whether it was stored (false: no storage); rejects if storing failed (quota). */
    write(lk: LocalKey, conversation: string, d: LocalDraft): Promise<boolean>;
    /** Conversations with a copy of this principal; `pendingOnly` keeps those not yet confirmed. */
    conversations(lk: LocalKey, pendingOnly?: boolean): string[];
    private slots;
    putBlob(lk: LocalKey, conversation: string, name: string, blob: Blob): Promise<void>;
    getBlob(lk: LocalKey, conversation: string, name: string): Promise<Blob | null>;
    delBlob(lk: LocalKey, conversation: string, name: string): Promise<void>;
    /** Removes a conversation's copy and its attachments. */
    remove(lk: LocalKey, conversation: string): Promise<void>;
    /** Removes every copy of the principal (their sign-out). */
    removeAll(lk: LocalKey): Promise<void>;
    /** Removes expired copies of every principal (readable without their keys) and
     * attachments whose copy is gone. */
    sweep(): Promise<void>;
    private dropBlobs;
}
/** A BlobStore on IndexedDB, or null where IndexedDB is missing. */
export declare function idbBlobs(name?: string): BlobStore | null;
