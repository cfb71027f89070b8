/** SHA-256 of the concatenation of `parts`. */
export declare function sha256(...parts: Uint8Array[]): Uint8Array<ArrayBuffer>;
/** HMAC-SHA256(key, concatenation of `parts`); `key` at most 64 bytes (ours are 32). */
export declare function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer>;
/** Encrypts `plain` for `slot`: ciphertext followed by the 32-byte tag. */
export declare function sealHmac(key: Uint8Array, slot: string, iv: Uint8Array, plain: Uint8Array): Uint8Array<ArrayBuffer>;
/** Opens what `sealHmac` made for the same slot; throws on any change. */
export declare function openHmac(key: Uint8Array, slot: string, iv: Uint8Array, sealed: Uint8Array): Uint8Array<ArrayBuffer>;
