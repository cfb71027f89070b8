//! Optional at-rest encryption of draft text, attachments and snapshots (AES-256-GCM),
//! with every value bound to its owner.
//!
//! [`encrypting`] wraps any backend's drafts ([`EncryptingDrafts`]) and snapshots
//! ([`EncryptingSnapshots`]) and leaves its sessions and audit as they are: values are
//! sealed before they reach the backend and opened on the way out, so every backend gets
//! the feature unchanged. Someone with write access to the store (an unauthenticated
//! Redis on the network) must not be able to move a sealed value somewhere else and have
//! the server open it there, so each value's associated data names where it belongs:
//!
//! - **Draft text** (format 2): `"\0e2." + base64url(key id ‖ nonce ‖ ciphertext+tag)`,
//!   AAD = (principal, conversation, seq). The seq is the one of the write that stores
//!   the value: text writes seal for `expected_seq + 1`, and attachment writes (which
//!   also bump the seq) re-seal the text in the same commit ([`AttachmentPut::text`]).
//!   A value copied under another principal or conversation, or put back at another
//!   seq, does not open.
//! - **Attachments** (format 2, streamed): a random per-file key seals the body in
//!   chunks of [`CHUNK`] plaintext bytes (nonce = chunk index; AAD = blob nonce ‖ index ‖
//!   final flag, so truncation, reordering and splicing are detected). The stored body
//!   starts with `"SDA2" ‖ key id ‖ blob nonce`. The file key is wrapped under the
//!   master key with AAD = (principal, conversation, name, blob nonce) and kept in the
//!   metadata, as the content type parameter `;sessiond-enc=a2.<base64url(blob nonce ‖
//!   wrapped key)>`; so the sign-in merge re-wraps 80 bytes instead of re-encrypting the
//!   file, and metadata or bytes copied elsewhere do not open. The recorded `sha256` is
//!   the plaintext's ([`AttachmentPut::content_sha256`]); sizes and the quota are
//!   plaintext bytes.
//! - **Snapshots** (format 2): `"SDS2" ‖ key id ‖ nonce ‖ ciphertext+tag`, AAD = (room,
//!   version, content type). The stored content type gets `;sessiond-enc=<sha256 of the
//!   plaintext>` so metadata-only answers (conflicts) report the plaintext's hash.
//!
//! Format 1 values (draft text `"\0e1."` bound to the conversation only, possibly several
//! joined by the old merge; snapshots `"SDS1"` bound to the room; attachments
//! `;sessiond-enc=a1` with a per-file key derived from the master key) and plaintext
//! from before encryption was switched on are read in the default
//! [`EncryptionMode::Compatible`] and rewritten in format 2 when next saved. The strict
//! modes refuse them. Anything refused, or failing authentication, is a
//! [`StoreError::Integrity`]: logged with the ids (never the content) and never served.
//!
//! Key ids are the first 4 bytes of SHA-256 of the key, so rotation works by putting the
//! new key in `drafts.encryption_key` and the old ones in `drafts.decryption_keys`.

use crate::config::{Config, EncryptionMode};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::quota::SnapshotUsage;
use sessiond_core::snapshot::{content_hash, Snapshot, SnapshotWrite};
use sessiond_core::store::{
    AttachmentPut, ByteStream, DraftStore, MergeRule, Result, SnapshotPut, SnapshotStore, Store,
};
use sessiond_core::{Principal, StoreError, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

/// Plaintext bytes per attachment chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const NONCE: usize = 12;
const KEY_ID: usize = 4;
/// The format 1 per-file salt and the format 2 blob nonce.
const SALT: usize = 16;
const FILE_KEY: usize = 32;
const TEXT_V1: &str = "\0e1.";
const TEXT_V2: &str = "\0e2.";
const SNAP_V1: &[u8; 4] = b"SDS1";
const SNAP_V2: &[u8; 4] = b"SDS2";
const ATT_V1: &[u8; 4] = b"SDA1";
const ATT_V2: &[u8; 4] = b"SDA2";
/// Both attachment formats: magic ‖ key id ‖ salt or blob nonce.
const ATT_HEADER: usize = 4 + KEY_ID + SALT;
const SNAP_OVERHEAD: usize = 4 + KEY_ID + NONCE + TAG;
const ENC_PARAM: &str = ";sessiond-enc=";
const ATT_MARK_V1: &str = ";sessiond-enc=a1";
const ATT_MARK_V2: &str = ";sessiond-enc=a2.";
/// blob nonce ‖ key id ‖ nonce ‖ wrapped file key + tag.
const ATT_PARAM_LEN: usize = SALT + KEY_ID + NONCE + FILE_KEY + TAG;

/// The configured keys could not be used.
#[derive(Debug, thiserror::Error)]
#[error("drafts encryption key: {0}")]
pub struct KeyError(String);

type KeyId = [u8; KEY_ID];

/// The current key (encrypts), every key that may still decrypt, and what is accepted
/// when reading.
pub struct Keyring {
    current: KeyId,
    keys: Vec<(KeyId, [u8; 32])>,
    mode: EncryptionMode,
}

fn key_id(key: &[u8; 32]) -> KeyId {
    let d = Sha256::digest(key);
    [d[0], d[1], d[2], d[3]]
}

fn parse_key(b64: &str) -> std::result::Result<[u8; 32], KeyError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| KeyError(format!("not base64: {e}")))?;
    raw.try_into()
        .map_err(|v: Vec<u8>| KeyError(format!("must be 32 bytes, got {}", v.len())))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut b[..]);
    b
}

/// The one way a refused value leaves this module: counted, logged with `ids` (which
/// name where it was found, never what it holds) and returned as an integrity error.
fn integrity(ids: String, why: &str) -> StoreError {
    metrics::counter!("sessiond_store_integrity_errors_total").increment(1);
    tracing::error!(value = %ids, why, "stored value refused: integrity check failed");
    StoreError::Integrity(format!("{ids}: {why}"))
}

/// Associated data: a purpose label, then each field length-prefixed, so no two
/// different (principal, conversation, ...) tuples encode alike.
fn aad(purpose: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut a =
        Vec::with_capacity(purpose.len() + 1 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    a.extend_from_slice(purpose.as_bytes());
    a.push(0);
    for f in fields {
        a.extend_from_slice(&(f.len() as u32).to_be_bytes());
        a.extend_from_slice(f);
    }
    a
}

fn text_aad(p: &Principal, conversation: &str, seq: u64) -> Vec<u8> {
    aad(
        "sessiond-draft-text/2",
        &[
            p.as_str().as_bytes(),
            conversation.as_bytes(),
            &seq.to_be_bytes(),
        ],
    )
}

fn text_aad_v1(conversation: &str) -> Vec<u8> {
    [b"sessiond-draft-text\0".as_slice(), conversation.as_bytes()].concat()
}

fn attachment_aad(p: &Principal, conversation: &str, name: &str, blob: &[u8]) -> Vec<u8> {
    aad(
        "sessiond-attachment-key/2",
        &[
            p.as_str().as_bytes(),
            conversation.as_bytes(),
            name.as_bytes(),
            blob,
        ],
    )
}

fn snapshot_aad(room: &str, version: u64, content_type: &str) -> Vec<u8> {
    aad(
        "sessiond-snapshot/2",
        &[
            room.as_bytes(),
            &version.to_be_bytes(),
            content_type.as_bytes(),
        ],
    )
}

fn snapshot_aad_v1(room: &str) -> Vec<u8> {
    [b"sessiond-snapshot\0".as_slice(), room.as_bytes()].concat()
}

fn text_ids(p: &Principal, conversation: &str, seq: u64) -> String {
    format!("draft text of principal {p} conversation {conversation} seq {seq}")
}

fn attachment_ids(p: &Principal, conversation: &str, name: &str) -> String {
    format!("attachment {name} of principal {p} conversation {conversation}")
}

fn snapshot_ids(room: &str, version: u64) -> String {
    format!("snapshot of room {room} version {version}")
}

impl Keyring {
    /// The keyring the configuration asks for; `None` when encryption is off.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Keyring>, KeyError> {
        let d = &config.drafts;
        if d.encryption_key.trim().is_empty() {
            if d.decryption_keys.iter().any(|k| !k.trim().is_empty()) {
                return Err(KeyError(
                    "decryption_keys are set but encryption_key is empty".into(),
                ));
            }
            if d.encryption_mode != EncryptionMode::Compatible {
                return Err(KeyError(
                    "a strict encryption_mode needs encryption_key to be set".into(),
                ));
            }
            return Ok(None);
        }
        let current = parse_key(&d.encryption_key)?;
        let mut keys = vec![(key_id(&current), current)];
        for k in &d.decryption_keys {
            let k = parse_key(k)?;
            let id = key_id(&k);
            if !keys.iter().any(|(i, _)| *i == id) {
                keys.push((id, k));
            }
        }
        Ok(Some(Keyring {
            current: key_id(&current),
            keys,
            mode: d.encryption_mode,
        }))
    }

    /// A keyring from raw keys (tests, embedding): the first encrypts; compatible mode.
    pub fn new(current: [u8; 32], old: &[[u8; 32]]) -> Keyring {
        let mut keys = vec![(key_id(&current), current)];
        keys.extend(old.iter().map(|k| (key_id(k), *k)));
        Keyring {
            current: key_id(&current),
            keys,
            mode: EncryptionMode::Compatible,
        }
    }

    /// The same keys with another reading mode.
    pub fn with_mode(mut self, mode: EncryptionMode) -> Keyring {
        self.mode = mode;
        self
    }

    fn accepts_plaintext(&self) -> bool {
        self.mode == EncryptionMode::Compatible
    }

    fn accepts_unbound(&self) -> bool {
        self.mode != EncryptionMode::RequireBound
    }

    fn key(&self, id: &[u8]) -> std::result::Result<&[u8; 32], &'static str> {
        self.keys
            .iter()
            .find(|(i, _)| i.as_slice() == id)
            .map(|(_, k)| k)
            .ok_or("sealed with a key that is not configured")
    }

    fn current_key(&self) -> &[u8; 32] {
        &self.keys[0].1
    }

    /// Seals `msg` as `key id ‖ nonce ‖ ciphertext+tag`.
    fn seal(&self, msg: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(self.current_key().into());
        let nonce: [u8; NONCE] = random();
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(KEY_ID + NONCE + ct.len());
        out.extend_from_slice(&self.current);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
        if sealed.len() < KEY_ID + NONCE + TAG {
            return Err("sealed value is truncated");
        }
        let (id, rest) = sealed.split_at(KEY_ID);
        let (nonce, ct) = rest.split_at(NONCE);
        let cipher = Aes256Gcm::new(self.key(id)?.into());
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| "sealed value does not open here (tampered, or copied from elsewhere)")
    }

    // ---- draft text

    /// Seals draft text for (principal, conversation, the seq the write will create).
    /// Empty stays empty: an empty text holds nothing and an empty draft is a delete.
    pub fn encrypt_text(&self, p: &Principal, conversation: &str, seq: u64, text: &str) -> String {
        if text.is_empty() {
            return String::new();
        }
        let sealed = self.seal(text.as_bytes(), &text_aad(p, conversation, seq));
        format!("{TEXT_V2}{}", B64.encode(sealed))
    }

    /// Opens stored text found at (principal, conversation, seq).
    pub fn decrypt_text(
        &self,
        p: &Principal,
        conversation: &str,
        seq: u64,
        stored: &str,
    ) -> Result<String> {
        let fail = |why: &str| integrity(text_ids(p, conversation, seq), why);
        if stored.is_empty() {
            return Ok(String::new());
        }
        if let Some(b64) = stored.strip_prefix(TEXT_V2) {
            let sealed = B64
                .decode(b64)
                .map_err(|_| fail("sealed text is not base64"))?;
            let plain = self
                .open(&sealed, &text_aad(p, conversation, seq))
                .map_err(fail)?;
            return String::from_utf8(plain).map_err(|_| fail("opened text is not UTF-8"));
        }
        // Format 1 or plaintext. The old merge joined texts with a blank line and base64
        // has no newlines, so each blank-line separated segment is opened on its own;
        // client text may not contain NUL, so plaintext never looks like a segment.
        let mut parts = Vec::new();
        for seg in stored.split("\n\n") {
            if let Some(b64) = seg.strip_prefix(TEXT_V1) {
                if !self.accepts_unbound() {
                    return Err(fail("unbound (format 1) text refused by encryption_mode"));
                }
                let sealed = B64
                    .decode(b64)
                    .map_err(|_| fail("sealed text is not base64"))?;
                let plain = self
                    .open(&sealed, &text_aad_v1(conversation))
                    .map_err(fail)?;
                parts.push(String::from_utf8(plain).map_err(|_| fail("opened text is not UTF-8"))?);
            } else if seg.starts_with('\0') {
                return Err(fail("unknown sealed text format"));
            } else if !self.accepts_plaintext() {
                return Err(fail("unencrypted text refused by encryption_mode"));
            } else {
                parts.push(seg.to_owned());
            }
        }
        Ok(parts.join("\n\n"))
    }

    // ---- snapshots

    /// Seals snapshot bytes for (room, the version the write will create); returns the
    /// stored bytes and the stored content type.
    pub fn encrypt_snapshot(
        &self,
        room: &str,
        version: u64,
        data: &[u8],
        content_type: &str,
    ) -> (Vec<u8>, String) {
        let mut out = SNAP_V2.to_vec();
        out.extend_from_slice(&self.seal(data, &snapshot_aad(room, version, content_type)));
        (
            out,
            format!("{content_type}{ENC_PARAM}{}", content_hash(data)),
        )
    }

    /// Restores a stored snapshot's plaintext fields (and its data, when it was loaded:
    /// only then can the value be checked and refused).
    pub fn decrypt_snapshot(&self, mut s: Snapshot, with_data: bool) -> Result<Snapshot> {
        let fail = |s: &Snapshot, why: &str| integrity(snapshot_ids(&s.room, s.version), why);
        let Some(i) = s.content_type.find(ENC_PARAM) else {
            if with_data && !self.accepts_plaintext() {
                return Err(fail(&s, "unencrypted snapshot refused by encryption_mode"));
            }
            return Ok(s);
        };
        let hash = s.content_type[i + ENC_PARAM.len()..].to_owned();
        s.content_type.truncate(i);
        s.hash = hash;
        s.size = s.size.saturating_sub(SNAP_OVERHEAD as u64);
        if with_data {
            let plain = if let Some(body) = s.data.strip_prefix(SNAP_V2.as_slice()) {
                self.open(body, &snapshot_aad(&s.room, s.version, &s.content_type))
            } else if let Some(body) = s.data.strip_prefix(SNAP_V1.as_slice()) {
                if !self.accepts_unbound() {
                    return Err(fail(
                        &s,
                        "unbound (format 1) snapshot refused by encryption_mode",
                    ));
                }
                self.open(body, &snapshot_aad_v1(&s.room))
            } else {
                Err("sealed snapshot has no header")
            };
            s.data = plain.map_err(|why| fail(&s, why))?;
            // The hash reported is recomputed, so a stored hash parameter cannot lie.
            s.hash = content_hash(&s.data);
            s.size = s.data.len() as u64;
        }
        Ok(s)
    }

    // ---- attachments

    /// A format 1 file's cipher: HKDF of the master key and the file's salt.
    fn file_cipher_v1(
        &self,
        id: &[u8],
        salt: &[u8],
    ) -> std::result::Result<Aes256Gcm, &'static str> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), self.key(id)?);
        let mut okm = [0u8; 32];
        hk.expand(b"sessiond attachment v1", &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Ok(Aes256Gcm::new((&okm).into()))
    }

    /// The content type parameter holding a file key wrapped for (principal,
    /// conversation, name, blob nonce).
    fn wrap_file_key(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
        blob: &[u8; SALT],
        key: &[u8; FILE_KEY],
    ) -> String {
        let mut param = blob.to_vec();
        param.extend_from_slice(&self.seal(key, &attachment_aad(p, conversation, name, blob)));
        format!("{ATT_MARK_V2}{}", B64.encode(param))
    }

    /// The blob nonce and file key of a format 2 attachment's metadata found at
    /// (principal, conversation, name).
    fn unwrap_file_key(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
        param_b64: &str,
    ) -> Result<([u8; SALT], [u8; FILE_KEY])> {
        let fail = |why: &str| integrity(attachment_ids(p, conversation, name), why);
        let param = B64
            .decode(param_b64)
            .ok()
            .filter(|b| b.len() == ATT_PARAM_LEN)
            .ok_or_else(|| fail("wrapped file key is malformed"))?;
        let (blob, wrapped) = param.split_at(SALT);
        let key = self
            .open(wrapped, &attachment_aad(p, conversation, name, blob))
            .map_err(fail)?;
        let blob: [u8; SALT] = blob.try_into().expect("split at SALT");
        let key: [u8; FILE_KEY] = key
            .try_into()
            .map_err(|_| fail("file key has a bad length"))?;
        Ok((blob, key))
    }
}

/// How a stored attachment is sealed, read from its content type.
enum AttachmentFormat<'a> {
    Plain,
    V1 {
        content_type: &'a str,
    },
    V2 {
        content_type: &'a str,
        param: &'a str,
    },
}

fn attachment_format(stored_type: &str) -> AttachmentFormat<'_> {
    if let Some(ct) = stored_type.strip_suffix(ATT_MARK_V1) {
        return AttachmentFormat::V1 { content_type: ct };
    }
    match stored_type.find(ATT_MARK_V2) {
        Some(i) => AttachmentFormat::V2 {
            content_type: &stored_type[..i],
            param: &stored_type[i + ATT_MARK_V2.len()..],
        },
        None => AttachmentFormat::Plain,
    }
}

/// Plaintext size of a stored attachment.
fn plain_size(a: &AttachmentMeta) -> u64 {
    match attachment_format(&a.content_type) {
        AttachmentFormat::Plain => a.size,
        _ => attachment_plain_len(a.size),
    }
}

fn chunk_nonce(index: u64) -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

/// A chunk's AAD: the file's prefix (format 2: its blob nonce; format 1: none), the
/// chunk index and whether it is the last.
fn chunk_aad(prefix: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(prefix.len() + 9);
    a.extend_from_slice(prefix);
    a.extend_from_slice(&index.to_be_bytes());
    a.push(u8::from(last));
    a
}

/// Stored size of an attachment of `plain` bytes.
pub fn attachment_stored_len(plain: u64) -> u64 {
    let c = CHUNK as u64;
    (plain / c)
        .saturating_mul(c + TAG as u64)
        .saturating_add(plain % c + TAG as u64 + ATT_HEADER as u64)
}

/// Plaintext size of an attachment stored as `stored` bytes (inverse of
/// [`attachment_stored_len`]).
pub fn attachment_plain_len(stored: u64) -> u64 {
    let c = CHUNK as u64;
    let body = stored.saturating_sub(ATT_HEADER as u64 + TAG as u64);
    let full = body / (c + TAG as u64);
    body - full * TAG as u64
}

/// One attachment body's sealing: its cipher, the header written first, and the
/// prefix of every chunk's AAD.
struct FileSeal {
    cipher: Aes256Gcm,
    header: Vec<u8>,
    aad_prefix: Vec<u8>,
}

/// Why [`encrypt_stream`] stopped a body (it fails the stream, so the backend writes
/// nothing, and records the reason here for the error the caller gets).
const STOP_NONE: u8 = 0;
const STOP_TOO_LARGE: u8 = 1;
const STOP_QUOTA: u8 = 2;

/// Plaintext limits enforced while encrypting: `max_size` per file, `room` left in
/// the principal's quota.
#[derive(Clone, Copy)]
struct PlainLimits {
    max_size: u64,
    room: u64,
}

/// Encrypts a plaintext body into the chunked format, enforcing `limits` on plaintext
/// bytes, and puts the plaintext's SHA-256 (hex) into `digest` before the last chunk
/// leaves, so the backend has it when it sees the end of the body.
fn encrypt_stream(
    seal: FileSeal,
    mut body: ByteStream,
    limits: PlainLimits,
    stopped: Arc<AtomicU8>,
    digest: Arc<OnceLock<String>>,
) -> ByteStream {
    async_stream(move |tx| async move {
        let FileSeal {
            cipher,
            header,
            aad_prefix,
        } = seal;
        if tx.send(Ok(Bytes::from(header))).await.is_err() {
            return;
        }
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut index = 0u64;
        let mut total = 0u64;
        let mut hasher = Sha256::new();
        let seal = |index: u64, last: bool, msg: &[u8]| {
            cipher
                .encrypt(
                    Nonce::from_slice(&chunk_nonce(index)),
                    Payload {
                        msg,
                        aad: &chunk_aad(&aad_prefix, index, last),
                    },
                )
                .map(Bytes::from)
                .map_err(|_| std::io::Error::other("attachment encryption failed"))
        };
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            total += chunk.len() as u64;
            let stop = if total > limits.max_size {
                STOP_TOO_LARGE
            } else if total > limits.room {
                STOP_QUOTA
            } else {
                STOP_NONE
            };
            if stop != STOP_NONE {
                stopped.store(stop, Ordering::SeqCst);
                let _ = tx
                    .send(Err(std::io::Error::other("attachment exceeds a limit")))
                    .await;
                return;
            }
            hasher.update(&chunk);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = (CHUNK - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                // A full chunk is never the last: the final chunk is always shorter.
                if buf.len() == CHUNK {
                    let out = seal(index, false, &buf);
                    buf.clear();
                    index += 1;
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = digest.set(hex::encode(hasher.finalize()));
        let _ = tx.send(seal(index, true, &buf)).await;
    })
}

/// Decrypts the chunked format back into plaintext chunks; a tampered, truncated or
/// extended file fails the stream.
fn decrypt_stream(
    cipher: Aes256Gcm,
    aad_prefix: Vec<u8>,
    mut body: ByteStream,
    mut pending: BytesMut,
) -> ByteStream {
    async_stream(move |tx| async move {
        let frame = CHUNK + TAG;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let open = |index: u64, last: bool, ct: &[u8]| {
            cipher
                .decrypt(
                    Nonce::from_slice(&chunk_nonce(index)),
                    Payload {
                        msg: ct,
                        aad: &chunk_aad(&aad_prefix, index, last),
                    },
                )
                .map(Bytes::from)
                .map_err(|_| bad("attachment failed authentication"))
        };
        let mut index = 0u64;
        loop {
            while pending.len() >= frame {
                let ct = pending.split_to(frame);
                let out = open(index, false, &ct);
                index += 1;
                let failed = out.is_err();
                if tx.send(out).await.is_err() || failed {
                    return;
                }
            }
            match body.next().await {
                Some(Ok(c)) => pending.extend_from_slice(&c),
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => break,
            }
        }
        let out = if pending.len() < TAG {
            Err(bad("attachment is truncated"))
        } else {
            open(index, true, &pending)
        };
        if let Ok(b) = &out {
            if b.is_empty() {
                return;
            }
        }
        let _ = tx.send(out).await;
    })
}

/// A stream fed by a task through a bounded channel of one item, so at most one chunk
/// is in flight between producer and consumer.
fn async_stream<F, Fut>(f: F) -> ByteStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(f(tx));
    let guard = AbortOnDrop(task);
    Box::pin(futures::stream::unfold(
        (rx, guard),
        |(mut rx, guard)| async move { rx.recv().await.map(|item| (item, (rx, guard))) },
    ))
}

/// Stops the producer task when the consumer drops the stream (client went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wraps `store` when the configuration names a key.
pub fn wrap_store(
    config: &Config,
    store: Arc<dyn Store>,
) -> std::result::Result<Arc<dyn Store>, KeyError> {
    Ok(match Keyring::from_config(config)? {
        Some(keys) => encrypting(store, keys),
        None => store,
    })
}

/// `store` with its drafts and snapshots encrypted under `keys`; sessions and audit
/// are `store`'s own, untouched.
pub fn encrypting(store: Arc<dyn Store>, keys: Keyring) -> Arc<dyn Store> {
    let keys = Arc::new(keys);
    let parts = store.split();
    let drafts = EncryptingDrafts {
        inner: parts.drafts.clone(),
        keys: keys.clone(),
    };
    let snapshots = EncryptingSnapshots {
        inner: parts.snapshots.clone(),
        keys,
    };
    Arc::new(
        parts
            .with_drafts(Arc::new(drafts))
            .with_snapshots(Arc::new(snapshots)),
    )
}

/// A [`DraftStore`] that seals draft text and attachments on their way into `inner`
/// and opens them on the way out.
pub struct EncryptingDrafts {
    inner: Arc<dyn DraftStore>,
    keys: Arc<Keyring>,
}

/// A [`SnapshotStore`] that seals snapshot data on its way into `inner` and opens it
/// on the way out.
pub struct EncryptingSnapshots {
    inner: Arc<dyn SnapshotStore>,
    keys: Arc<Keyring>,
}

/// A stored draft found under `p` as the client sees it: text opened for (p,
/// conversation, seq), every format 2 attachment's key checked against (p,
/// conversation, name), sizes and content types in plaintext terms.
fn open_draft(keys: &Keyring, p: &Principal, mut d: Draft) -> Result<Draft> {
    d.text = keys.decrypt_text(p, &d.conversation, d.seq, &d.text)?;
    for a in &mut d.attachments {
        let size = plain_size(a);
        let content_type = match attachment_format(&a.content_type) {
            AttachmentFormat::Plain => None,
            AttachmentFormat::V1 { content_type } => Some(content_type.to_owned()),
            AttachmentFormat::V2 {
                content_type,
                param,
            } => {
                keys.unwrap_file_key(p, &d.conversation, &a.name, param)?;
                Some(content_type.to_owned())
            }
        };
        if let Some(ct) = content_type {
            a.content_type = ct;
        }
        a.size = size;
    }
    Ok(d)
}

/// The sign-in merge over sealed rows: opens the user's row under `to` and the
/// anonymous draft under `from`, lets `rule` merge the plaintext, then seals the result
/// for `to`: the text for the merged seq, each format 2 attachment's key re-wrapped for
/// its (possibly renamed) place. The bytes stay where they are.
fn sealed_merge(
    keys: &Keyring,
    rule: &MergeRule,
    from: &Principal,
    user: Option<&Draft>,
    anon: &Draft,
    to: &Principal,
    now: Timestamp,
) -> Result<Draft> {
    // Where each blob came from, to find its wrapped key again after renaming.
    let mut origin: HashMap<&str, (&Principal, &AttachmentMeta)> = HashMap::new();
    for a in user.iter().flat_map(|u| &u.attachments) {
        origin.insert(&a.blob_id, (to, a));
    }
    for a in &anon.attachments {
        origin.insert(&a.blob_id, (from, a));
    }
    let user_plain = user.map(|u| open_draft(keys, to, u.clone())).transpose()?;
    let anon_plain = open_draft(keys, from, anon.clone())?;
    let mut merged = rule(user_plain.as_ref(), &anon_plain, to, now)?;
    let conversation = merged.conversation.clone();
    for a in &mut merged.attachments {
        let Some((owner, raw)) = origin.get(a.blob_id.as_str()) else {
            return Err(StoreError::Corrupt(format!(
                "sign-in merge of conversation {conversation} produced an unknown attachment"
            )));
        };
        let content_type = match attachment_format(&raw.content_type) {
            AttachmentFormat::V2 {
                content_type,
                param,
            } => {
                let (blob, key) =
                    keys.unwrap_file_key(owner, &anon.conversation, &raw.name, param)?;
                format!(
                    "{content_type}{}",
                    keys.wrap_file_key(to, &conversation, &a.name, &blob, &key)
                )
            }
            AttachmentFormat::V1 { .. } | AttachmentFormat::Plain => raw.content_type.clone(),
        };
        *a = AttachmentMeta {
            name: a.name.clone(),
            content_type,
            ..(*raw).clone()
        };
    }
    merged.text = keys.encrypt_text(to, &conversation, merged.seq, &merged.text);
    Ok(merged)
}

impl EncryptingDrafts {
    fn write(&self, p: &Principal, w: DraftWrite) -> Result<DraftWrite> {
        Ok(match w {
            DraftWrite::Written(d) => DraftWrite::Written(open_draft(&self.keys, p, d)?),
            DraftWrite::Conflict(d) => {
                DraftWrite::Conflict(d.map(|d| open_draft(&self.keys, p, d)).transpose()?)
            }
            DraftWrite::NotFound => DraftWrite::NotFound,
        })
    }

    /// The text to commit with a write that bumps the seq of (p, conversation) from
    /// `expected_seq` without the client changing the text: the caller's text if it gave
    /// one, else the current text re-sealed for the new seq (format 1 and plaintext are
    /// rewritten bound on the way). `None` when there is nothing to re-seal or the seq
    /// is stale anyway (the store then answers the conflict).
    async fn text_for_next_seq(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        given: Option<&str>,
    ) -> Result<Option<String>> {
        let next = expected_seq + 1;
        if let Some(t) = given {
            return Ok(Some(self.keys.encrypt_text(p, conversation, next, t)));
        }
        let Some(cur) = self.inner.get_draft(p, conversation).await? else {
            return Ok(None);
        };
        if cur.deleted || cur.seq != expected_seq || cur.text.is_empty() {
            return Ok(None);
        }
        let plain = self
            .keys
            .decrypt_text(p, conversation, cur.seq, &cur.text)?;
        Ok(Some(self.keys.encrypt_text(p, conversation, next, &plain)))
    }

    /// Plaintext bytes `p` holds in attachments other than (conversation, name), and
    /// what they cost in stored bytes beyond that.
    async fn held(&self, p: &Principal, conversation: &str, name: &str) -> Result<(u64, u64)> {
        let mut plain = 0u64;
        let mut overhead = 0u64;
        for d in self.inner.list_drafts(p).await? {
            for a in &d.attachments {
                if d.conversation == conversation && a.name == name {
                    continue;
                }
                let n = plain_size(a);
                plain = plain.saturating_add(n);
                overhead = overhead.saturating_add(a.size.saturating_sub(n));
            }
        }
        Ok((plain, overhead))
    }
}

#[async_trait::async_trait]
impl DraftStore for EncryptingDrafts {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        self.inner
            .get_draft(p, conversation)
            .await?
            .map(|d| open_draft(&self.keys, p, d))
            .transpose()
    }
    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        self.inner
            .list_drafts(p)
            .await?
            .into_iter()
            .map(|d| open_draft(&self.keys, p, d))
            .collect()
    }
    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        // Stored as `expected_seq + 1` if the write applies; otherwise nothing is stored.
        let sealed = self
            .keys
            .encrypt_text(p, conversation, expected_seq + 1, text);
        let w = self
            .inner
            .put_draft_text(p, conversation, expected_seq, &sealed, now)
            .await?;
        self.write(p, w)
    }
    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let w = self
            .inner
            .delete_draft(p, conversation, expected_seq, now)
            .await?;
        self.write(p, w)
    }
    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite> {
        let (p, conversation, limits) = (put.principal, put.conversation, put.limits);
        let text = self
            .text_for_next_seq(p, conversation, put.expected_seq, put.text)
            .await?;
        // The quota is the client's plaintext bytes: this layer refuses past it, and the
        // backend (which counts stored bytes) is given the quota plus exactly the
        // overhead of what is held and of the largest body that still fits, so it
        // agrees instead of refusing earlier.
        let (held_plain, held_overhead) = self.held(p, conversation, put.name).await?;
        let room = limits.quota.saturating_sub(held_plain);
        let fits = room.min(limits.max_size);
        let stored_limits = AttachmentLimits {
            max_size: attachment_stored_len(limits.max_size),
            quota: limits
                .quota
                .saturating_add(held_overhead)
                .saturating_add(attachment_stored_len(fits) - fits),
        };
        let key: [u8; FILE_KEY] = random();
        let blob: [u8; SALT] = random();
        let mut header = ATT_V2.to_vec();
        header.extend_from_slice(&self.keys.current);
        header.extend_from_slice(&blob);
        let seal = FileSeal {
            cipher: Aes256Gcm::new((&key).into()),
            header,
            aad_prefix: blob.to_vec(),
        };
        let stopped = Arc::new(AtomicU8::new(STOP_NONE));
        let digest = Arc::new(OnceLock::new());
        let sealed = encrypt_stream(
            seal,
            body,
            PlainLimits {
                max_size: limits.max_size,
                room,
            },
            stopped.clone(),
            digest.clone(),
        );
        let content_type = format!(
            "{}{}",
            put.content_type,
            self.keys
                .wrap_file_key(p, conversation, put.name, &blob, &key)
        );
        let stored = AttachmentPut {
            content_type: &content_type,
            limits: stored_limits,
            text: text.as_deref(),
            content_sha256: Some(&digest),
            ..put
        };
        let result = self.inner.put_attachment(stored, sealed).await;
        match (result, stopped.load(Ordering::SeqCst)) {
            (Ok(w), _) => self.write(p, w),
            (Err(_), STOP_TOO_LARGE) | (Err(StoreError::TooLarge { .. }), _) => {
                Err(StoreError::TooLarge {
                    limit: limits.max_size,
                })
            }
            (Err(_), STOP_QUOTA) | (Err(StoreError::QuotaExceeded { .. }), _) => {
                Err(StoreError::QuotaExceeded {
                    quota: limits.quota,
                })
            }
            (Err(e), _) => Err(e),
        }
    }
    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        let Some((mut meta, mut body)) = self.inner.get_attachment(p, conversation, name).await?
        else {
            return Ok(None);
        };
        let fail = |why: &str| integrity(attachment_ids(p, conversation, name), why);
        let size = plain_size(&meta);
        let (content_type, expect, v2_key) = match attachment_format(&meta.content_type) {
            AttachmentFormat::Plain => {
                if !self.keys.accepts_plaintext() {
                    return Err(fail("unencrypted attachment refused by encryption_mode"));
                }
                return Ok(Some((meta, body)));
            }
            AttachmentFormat::V1 { content_type } => {
                if !self.keys.accepts_unbound() {
                    return Err(fail(
                        "unbound (format 1) attachment refused by encryption_mode",
                    ));
                }
                (content_type.to_owned(), ATT_V1, None)
            }
            AttachmentFormat::V2 {
                content_type,
                param,
            } => (
                content_type.to_owned(),
                ATT_V2,
                Some(self.keys.unwrap_file_key(p, conversation, name, param)?),
            ),
        };
        meta.content_type = content_type;
        meta.size = size;
        // Read the header first so a wrong key or a swapped body is an error before any
        // byte is sent.
        let mut pending = BytesMut::new();
        while pending.len() < ATT_HEADER {
            match body.next().await {
                Some(Ok(c)) => pending.extend_from_slice(&c),
                Some(Err(e)) => {
                    return Err(StoreError::Unavailable(format!("reading attachment: {e}")))
                }
                None => return Err(fail("sealed attachment has no header")),
            }
        }
        let header = pending.split_to(ATT_HEADER);
        if &header[..4] != expect.as_slice() {
            return Err(fail("sealed attachment has a bad header"));
        }
        let salt = &header[4 + KEY_ID..];
        let (cipher, prefix) = match v2_key {
            Some((blob, key)) => {
                if salt != blob.as_slice() {
                    return Err(fail("attachment body belongs to another attachment"));
                }
                (Aes256Gcm::new((&key).into()), blob.to_vec())
            }
            None => (
                self.keys
                    .file_cipher_v1(&header[4..4 + KEY_ID], salt)
                    .map_err(fail)?,
                Vec::new(),
            ),
        };
        Ok(Some((meta, decrypt_stream(cipher, prefix, body, pending))))
    }
    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let text = self
            .text_for_next_seq(p, conversation, expected_seq, text)
            .await?;
        let w = self
            .inner
            .delete_attachment(p, conversation, expected_seq, name, text.as_deref(), now)
            .await?;
        self.write(p, w)
    }
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>> {
        // The backend's own move stays the one atomic step (its seq rule, renaming and
        // byte handling); only the values are opened and re-sealed inside it.
        let keys = self.keys.clone();
        let rule = merge.clone();
        let owner = from.clone();
        let sealed: MergeRule = Arc::new(move |user, anon, to, now| {
            sealed_merge(&keys, &rule, &owner, user, anon, to, now)
        });
        self.inner.move_drafts(from, to, now, &sealed).await
    }
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.inner.purge_drafts(before, limit).await
    }
}

#[async_trait::async_trait]
impl SnapshotStore for EncryptingSnapshots {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        self.inner
            .get_snapshot(room)
            .await?
            .map(|s| self.keys.decrypt_snapshot(s, true))
            .transpose()
    }
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite> {
        // Stored as `expected_version + 1` if the write applies.
        let (sealed, content_type) = self.keys.encrypt_snapshot(
            put.room,
            put.expected_version + 1,
            put.data,
            put.content_type,
        );
        let stored = SnapshotPut {
            data: &sealed,
            content_type: &content_type,
            ..put
        };
        let w = self.inner.put_snapshot(stored).await?;
        Ok(match w {
            SnapshotWrite::Written(mut s) => {
                // The stored record holds ciphertext; answer with what the caller wrote.
                s = self.keys.decrypt_snapshot(s, false)?;
                s.data = put.data.to_vec();
                s.size = put.data.len() as u64;
                SnapshotWrite::Written(s)
            }
            SnapshotWrite::Conflict(cur) => SnapshotWrite::Conflict(
                cur.map(|s| self.keys.decrypt_snapshot(s, false))
                    .transpose()?,
            ),
        })
    }
    /// Plaintext sizes, as `get_snapshot` reports them: each sealed snapshot's fixed
    /// overhead taken off (a plaintext one from before encryption is undercounted by as
    /// much).
    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        let u = self.inner.snapshot_usage(by, except_room).await?;
        Ok(SnapshotUsage {
            rooms: u.rooms,
            bytes: u
                .bytes
                .saturating_sub(u.rooms.saturating_mul(SNAP_OVERHEAD as u64)),
        })
    }
    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        self.inner.retain_snapshot(room, until).await
    }
    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.inner.purge_snapshots(now, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_core::store::plain_merge;
    use sessiond_store_memory::MemoryStore;
    use sessiond_testkit::conformance::attachment;

    fn keys() -> Keyring {
        Keyring::new([7u8; 32], &[])
    }

    /// The memory store behind the encryption the configuration switches on, as the
    /// server builds it: every store promise must survive the wrapper.
    async fn encrypted_memory_store() -> Arc<dyn Store> {
        let config = Config::from_toml(
            "[drafts]\nencryption_key = \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"",
        )
        .expect("config with an encryption key");
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let store = wrap_store(&config, inner.clone()).expect("valid key");
        assert!(!Arc::ptr_eq(&store, &inner), "encryption is on");
        store
    }

    // Every check (the attachment hash is the plaintext's, the quota counts plaintext
    // bytes to the byte) but `check_attachment_content_hash`: that promise is the hook
    // this wrapper itself uses to record the plaintext hash, so a caller's cell is
    // replaced by the wrapper's own.
    sessiond_testkit::conformance_suite!(encrypted_memory_store();
        sessions,
        audit,
        snapshots,
        drafts: [
            check_draft_text_seq,
            check_concurrent_draft_create,
            check_attachment_roundtrip,
            check_attachment_limits,
            check_attachment_body_error,
            check_delete_attachment,
            check_deleted_draft_hides_attachments,
            check_move_drafts,
            check_purge_drafts,
            check_principal_isolation,
            check_random_draft_isolation,
            check_write_hooks,
        ],
    );

    /// A wrapper over a fresh memory store, and the memory store itself: the attacker
    /// with write access to the store.
    fn wrapped(mode: EncryptionMode) -> (Arc<dyn Store>, Arc<dyn Store>) {
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
        (encrypting(inner.clone(), keys().with_mode(mode)), inner)
    }

    fn limits() -> AttachmentLimits {
        AttachmentLimits {
            max_size: 1_000_000,
            quota: 10_000_000,
        }
    }

    fn body(data: Vec<u8>, piece: usize) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    fn written(w: Result<DraftWrite>) -> Draft {
        match w {
            Ok(DraftWrite::Written(d)) => d,
            other => panic!("not written: {other:?}"),
        }
    }

    fn is_integrity<T: std::fmt::Debug>(r: &Result<T>) -> bool {
        matches!(r, Err(StoreError::Integrity(_)))
    }

    /// Text sealed the way format 1 did: bound to the conversation only.
    fn v1_text(k: &Keyring, conversation: &str, text: &str) -> String {
        format!(
            "{TEXT_V1}{}",
            B64.encode(k.seal(text.as_bytes(), &text_aad_v1(conversation)))
        )
    }

    /// A format 1 attachment body and its stored content type.
    async fn v1_attachment(k: &Keyring, data: &[u8], content_type: &str) -> (Vec<u8>, String) {
        let salt: [u8; SALT] = random();
        let mut header = ATT_V1.to_vec();
        header.extend_from_slice(&k.current);
        header.extend_from_slice(&salt);
        let seal = FileSeal {
            cipher: k.file_cipher_v1(&k.current, &salt).unwrap(),
            header,
            aad_prefix: Vec::new(),
        };
        let unlimited = PlainLimits {
            max_size: u64::MAX,
            room: u64::MAX,
        };
        let s = encrypt_stream(
            seal,
            body(data.to_vec(), 1000),
            unlimited,
            Arc::new(AtomicU8::new(0)),
            Arc::new(OnceLock::new()),
        );
        (
            collect(s).await.unwrap(),
            format!("{content_type}{ATT_MARK_V1}"),
        )
    }

    #[test]
    fn text_is_bound_to_principal_conversation_and_seq() {
        let k = keys();
        let (a, b) = (Principal::user("a"), Principal::user("b"));
        let sealed = k.encrypt_text(&a, "c1", 3, "hello\n\nthere");
        assert!(!sealed.contains("hello"));
        assert_eq!(
            k.decrypt_text(&a, "c1", 3, &sealed).unwrap(),
            "hello\n\nthere"
        );
        assert!(
            is_integrity(&k.decrypt_text(&b, "c1", 3, &sealed)),
            "another principal"
        );
        assert!(
            is_integrity(&k.decrypt_text(&a, "c2", 3, &sealed)),
            "another conversation"
        );
        assert!(
            is_integrity(&k.decrypt_text(&a, "c1", 4, &sealed)),
            "another seq"
        );
        assert_eq!(k.encrypt_text(&a, "c1", 1, ""), "");
        // Format 1, alone or joined by the old merge, with plaintext beside it.
        let merged = format!(
            "{}\n\n{}",
            v1_text(&k, "c1", "one"),
            v1_text(&k, "c1", "two")
        );
        assert_eq!(k.decrypt_text(&a, "c1", 9, &merged).unwrap(), "one\n\ntwo");
        assert_eq!(
            k.decrypt_text(&a, "c1", 9, "plain old").unwrap(),
            "plain old"
        );
    }

    #[test]
    fn rotation_reads_old_keys() {
        let p = Principal::user("a");
        let sealed = keys().encrypt_text(&p, "c", 1, "secret");
        let rotated = Keyring::new([9u8; 32], &[[7u8; 32]]);
        assert_eq!(rotated.decrypt_text(&p, "c", 1, &sealed).unwrap(), "secret");
        let fresh = Keyring::new([9u8; 32], &[]);
        assert!(is_integrity(&fresh.decrypt_text(&p, "c", 1, &sealed)));
    }

    #[test]
    fn modes_decide_what_unsealed_and_unbound_values_get() {
        let p = Principal::user("a");
        let k = keys();
        let v1 = v1_text(&k, "c", "old");
        let compatible = keys();
        let encrypted = keys().with_mode(EncryptionMode::RequireEncrypted);
        let bound = keys().with_mode(EncryptionMode::RequireBound);
        assert_eq!(
            compatible.decrypt_text(&p, "c", 1, "plain").unwrap(),
            "plain"
        );
        assert!(is_integrity(&encrypted.decrypt_text(&p, "c", 1, "plain")));
        assert_eq!(encrypted.decrypt_text(&p, "c", 1, &v1).unwrap(), "old");
        assert!(is_integrity(&bound.decrypt_text(&p, "c", 1, &v1)));
        assert!(is_integrity(&bound.decrypt_text(&p, "c", 1, "plain")));
        assert_eq!(bound.decrypt_text(&p, "c", 1, "").unwrap(), "");
    }

    #[test]
    fn a_strict_mode_needs_a_key() {
        let c = Config::from_toml("[drafts]\nencryption_mode = \"require_encrypted\"").unwrap();
        assert!(Keyring::from_config(&c).is_err());
        let c = Config::default();
        assert!(Keyring::from_config(&c).unwrap().is_none());
    }

    #[test]
    fn stored_length_inverts() {
        for n in [
            0u64,
            1,
            100,
            CHUNK as u64 - 1,
            CHUNK as u64,
            CHUNK as u64 + 1,
            3 * CHUNK as u64,
            200 * 1024,
        ] {
            assert_eq!(attachment_plain_len(attachment_stored_len(n)), n, "{n}");
        }
    }

    #[tokio::test]
    async fn attachment_stream_roundtrip_and_tamper_detection() {
        for len in [0usize, 5, CHUNK, CHUNK * 2 + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let key: [u8; FILE_KEY] = random();
            let blob: [u8; SALT] = random();
            let seal = FileSeal {
                cipher: Aes256Gcm::new((&key).into()),
                header: [ATT_V2.as_slice(), &[0; KEY_ID], &blob].concat(),
                aad_prefix: blob.to_vec(),
            };
            let digest = Arc::new(OnceLock::new());
            let unlimited = PlainLimits {
                max_size: u64::MAX,
                room: u64::MAX,
            };
            let sealed = encrypt_stream(
                seal,
                body(data.clone(), 1000),
                unlimited,
                Arc::new(AtomicU8::new(0)),
                digest.clone(),
            );
            let sealed = collect(sealed).await.unwrap();
            assert_eq!(sealed.len() as u64, attachment_stored_len(len as u64));
            assert_eq!(
                digest.get().unwrap(),
                &content_hash(&data),
                "plaintext hash"
            );
            let open = |bytes: Vec<u8>, prefix: &[u8]| {
                decrypt_stream(
                    Aes256Gcm::new((&key).into()),
                    prefix.to_vec(),
                    body(bytes[ATT_HEADER..].to_vec(), 777),
                    BytesMut::new(),
                )
            };
            assert_eq!(collect(open(sealed.clone(), &blob)).await.unwrap(), data);
            // Chunks are bound to their blob: under another blob nonce they do not open.
            assert!(collect(open(sealed.clone(), &[0; SALT])).await.is_err());
            // Truncation at a chunk boundary and mid-chunk are both caught.
            if len >= CHUNK {
                let cut = sealed[..ATT_HEADER + CHUNK + TAG].to_vec();
                assert!(collect(open(cut, &blob)).await.is_err());
            }
            let mut cut = sealed.clone();
            cut.pop();
            assert!(collect(open(cut, &blob)).await.is_err());
            let mut flipped = sealed.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(collect(open(flipped, &blob)).await.is_err());
        }
    }

    #[tokio::test]
    async fn wrapper_reports_plaintext_and_stores_ciphertext() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let p = Principal::user("a");
        let d = written(s.put_draft_text(&p, "c1", 0, "top secret", 1).await);
        assert_eq!(d.text, "top secret");
        let raw = inner.get_draft(&p, "c1").await.unwrap().unwrap();
        assert!(raw.text.starts_with(TEXT_V2));

        let data = vec![42u8; 70_000];
        let small = AttachmentLimits {
            max_size: 100_000,
            quota: 1_000_000,
        };
        let d = written(
            s.put_attachment(
                attachment(&p, "c1", 1, "a.webm", "audio/webm", small, 2),
                body(data.clone(), 4096),
            )
            .await,
        );
        assert_eq!(
            d.text, "top secret",
            "re-sealed for the new seq, still readable"
        );
        assert_eq!(d.attachments[0].size, 70_000);
        assert_eq!(d.attachments[0].content_type, "audio/webm");
        assert_eq!(d.attachments[0].sha256, content_hash(&data));
        let (meta, stream) = s.get_attachment(&p, "c1", "a.webm").await.unwrap().unwrap();
        assert_eq!(meta.size, 70_000);
        assert_eq!(collect(stream).await.unwrap(), data);
        let (raw_meta, raw) = inner
            .get_attachment(&p, "c1", "a.webm")
            .await
            .unwrap()
            .unwrap();
        assert!(raw_meta.content_type.contains(ATT_MARK_V2));
        assert_ne!(
            collect(raw).await.unwrap()[ATT_HEADER..ATT_HEADER + 100],
            data[..100]
        );

        let tiny = AttachmentLimits {
            max_size: 1000,
            quota: 1_000_000,
        };
        let err = s
            .put_attachment(
                attachment(&p, "c1", 2, "b.webm", "audio/webm", tiny, 3),
                body(data.clone(), 4096),
            )
            .await;
        assert!(
            matches!(err, Err(StoreError::TooLarge { limit: 1000 })),
            "{err:?}"
        );
        // The quota counts plaintext: 70 000 held, 30 000 more fit exactly, one more not.
        let q = AttachmentLimits {
            max_size: 100_000,
            quota: 100_000,
        };
        let err = s
            .put_attachment(
                attachment(&p, "c1", 2, "b.webm", "audio/webm", q, 3),
                body(vec![1; 30_001], 4096),
            )
            .await;
        assert!(
            matches!(err, Err(StoreError::QuotaExceeded { quota: 100_000 })),
            "{err:?}"
        );
        written(
            s.put_attachment(
                attachment(&p, "c1", 2, "b.webm", "audio/webm", q, 3),
                body(vec![1; 30_000], 4096),
            )
            .await,
        );

        let w = s
            .put_snapshot(SnapshotPut {
                room: "r",
                expected_version: 0,
                data: b"{\"x\":1}",
                content_type: "application/json",
                by: None,
                retain_until: None,
                now: 4,
            })
            .await
            .unwrap();
        let SnapshotWrite::Written(snap) = w else {
            panic!()
        };
        assert_eq!(snap.hash, content_hash(b"{\"x\":1}"));
        let got = s.get_snapshot("r").await.unwrap().unwrap();
        assert_eq!(got.data, b"{\"x\":1}");
        assert_eq!(got.content_type, "application/json");
        assert_eq!(got.hash, snap.hash);
        assert_eq!(got.size, 7);
        let raw = inner.get_snapshot("r").await.unwrap().unwrap();
        assert!(raw.data.starts_with(SNAP_V2));
        assert!(!raw.data.windows(5).any(|w| w == b"\"x\":1"));
        let w = s
            .put_snapshot(SnapshotPut {
                room: "r",
                expected_version: 0,
                data: b"stale",
                content_type: "application/json",
                by: None,
                retain_until: None,
                now: 5,
            })
            .await
            .unwrap();
        let SnapshotWrite::Conflict(Some(cur)) = w else {
            panic!()
        };
        assert_eq!(
            (cur.version, cur.hash.as_str(), cur.size),
            (1, snap.hash.as_str(), 7)
        );
    }

    /// Finding 8: the victim's sealed draft, copied by someone with write access to the
    /// store under the attacker's principal (same conversation, same seq), is refused.
    #[tokio::test]
    async fn a_draft_copied_under_another_principal_is_refused() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let victim = Principal::user("victim");
        let attacker = Principal::anonymous();
        written(
            s.put_draft_text(&victim, "support-1", 0, "my card is 4242", 1)
                .await,
        );
        let data = b"voice note of the victim".to_vec();
        written(
            s.put_attachment(
                attachment(
                    &victim,
                    "support-1",
                    1,
                    "note.webm",
                    "audio/webm",
                    limits(),
                    2,
                ),
                body(data.clone(), 7),
            )
            .await,
        );
        let raw = inner
            .get_draft(&victim, "support-1")
            .await
            .unwrap()
            .unwrap();
        let (raw_meta, raw_body) = inner
            .get_attachment(&victim, "support-1", "note.webm")
            .await
            .unwrap()
            .unwrap();
        let raw_body = collect(raw_body).await.unwrap();

        // The text row, at the very same seq (2) under the attacker.
        inner
            .put_draft_text(&attacker, "support-1", 0, "x", 1)
            .await
            .unwrap();
        inner
            .put_draft_text(&attacker, "support-1", 1, &raw.text, 1)
            .await
            .unwrap();
        let got = s.get_draft(&attacker, "support-1").await;
        assert!(is_integrity(&got), "{got:?}");
        assert!(is_integrity(&s.list_drafts(&attacker).await));
        // The attachment (wrapped key and bytes) under the attacker.
        let attacker2 = Principal::anonymous();
        inner
            .put_attachment(
                AttachmentPut {
                    content_type: &raw_meta.content_type,
                    limits: AttachmentLimits {
                        max_size: u64::MAX,
                        quota: u64::MAX,
                    },
                    ..attachment(&attacker2, "support-1", 0, "note.webm", "", limits(), 3)
                },
                body(raw_body.clone(), 100),
            )
            .await
            .unwrap();
        let got = s.get_attachment(&attacker2, "support-1", "note.webm").await;
        assert!(
            matches!(got, Err(StoreError::Integrity(_))),
            "refused before any byte"
        );
        assert!(is_integrity(&s.get_draft(&attacker2, "support-1").await));
        // The victim's own data is untouched and readable.
        let d = s.get_draft(&victim, "support-1").await.unwrap().unwrap();
        assert_eq!(d.text, "my card is 4242");
        let (_, b) = s
            .get_attachment(&victim, "support-1", "note.webm")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(collect(b).await.unwrap(), data);
    }

    /// An attachment's metadata pointing at another attachment's body (same owner) is
    /// refused before any byte is served.
    #[tokio::test]
    async fn a_body_swapped_between_attachments_is_refused() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let p = Principal::user("a");
        for (seq, name) in [(0, "one.webm"), (1, "two.webm")] {
            written(
                s.put_attachment(
                    attachment(&p, "c", seq, name, "audio/webm", limits(), 1),
                    body(name.as_bytes().repeat(10), 9),
                )
                .await,
            );
        }
        let (meta_one, _) = inner
            .get_attachment(&p, "c", "one.webm")
            .await
            .unwrap()
            .unwrap();
        let (_, body_two) = inner
            .get_attachment(&p, "c", "two.webm")
            .await
            .unwrap()
            .unwrap();
        let body_two = collect(body_two).await.unwrap();
        inner
            .put_attachment(
                AttachmentPut {
                    content_type: &meta_one.content_type,
                    limits: AttachmentLimits {
                        max_size: u64::MAX,
                        quota: u64::MAX,
                    },
                    ..attachment(&p, "c", 2, "one.webm", "", limits(), 2)
                },
                body(body_two, 50),
            )
            .await
            .unwrap();
        let got = s.get_attachment(&p, "c", "one.webm").await;
        assert!(
            matches!(got, Err(StoreError::Integrity(_))),
            "refused before any byte"
        );
    }

    /// A sealed text put back at another seq (an older text replayed over a newer row)
    /// is refused.
    #[tokio::test]
    async fn a_text_replayed_at_another_seq_is_refused() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let p = Principal::user("a");
        written(s.put_draft_text(&p, "c", 0, "first", 1).await);
        let first = inner.get_draft(&p, "c").await.unwrap().unwrap().text;
        written(s.put_draft_text(&p, "c", 1, "second", 2).await);
        inner.put_draft_text(&p, "c", 2, &first, 3).await.unwrap();
        let got = s.get_draft(&p, "c").await;
        assert!(is_integrity(&got), "{got:?}");
        // A write naming the current seq replaces it (the store's seq is still the truth).
        let d = written(s.put_draft_text(&p, "c", 3, "third", 4).await);
        assert_eq!(d.text, "third");
        // Attachment writes and deletes keep the text readable at every seq.
        let d = written(
            s.put_attachment(
                attachment(&p, "c", 4, "x.webm", "audio/webm", limits(), 5),
                body(vec![1; 10], 3),
            )
            .await,
        );
        assert_eq!((d.seq, d.text.as_str()), (5, "third"));
        let d = written(s.delete_attachment(&p, "c", 5, "x.webm", None, 6).await);
        assert_eq!((d.seq, d.text.as_str()), (6, "third"));
        assert_eq!(s.get_draft(&p, "c").await.unwrap().unwrap().text, "third");
    }

    /// A room's sealed snapshot copied to another room, or replayed at another version,
    /// is refused.
    #[tokio::test]
    async fn a_snapshot_copied_to_another_room_or_version_is_refused() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let put = |room: &'static str, expected_version: u64, data: &'static [u8]| SnapshotPut {
            room,
            expected_version,
            data,
            content_type: "application/json",
            by: None,
            retain_until: None,
            now: 1,
        };
        s.put_snapshot(put("private", 0, b"{\"secret\":1}"))
            .await
            .unwrap();
        let raw = inner.get_snapshot("private").await.unwrap().unwrap();
        inner
            .put_snapshot(SnapshotPut {
                data: &raw.data,
                content_type: &raw.content_type,
                ..put("public", 0, b"")
            })
            .await
            .unwrap();
        let got = s.get_snapshot("public").await;
        assert!(is_integrity(&got), "{got:?}");
        // Replayed over a later version of its own room.
        s.put_snapshot(put("private", 1, b"{\"secret\":2}"))
            .await
            .unwrap();
        inner
            .put_snapshot(SnapshotPut {
                data: &raw.data,
                content_type: &raw.content_type,
                ..put("private", 2, b"")
            })
            .await
            .unwrap();
        assert!(is_integrity(&s.get_snapshot("private").await));
        // A changed content type does not open either.
        s.put_snapshot(put("other", 0, b"{}")).await.unwrap();
        let raw = inner.get_snapshot("other").await.unwrap().unwrap();
        let swapped = raw
            .content_type
            .replacen("application/json", "text/html", 1);
        inner
            .put_snapshot(SnapshotPut {
                data: &raw.data,
                content_type: &swapped,
                ..put("other", 1, b"")
            })
            .await
            .unwrap();
        let raw = inner.get_snapshot("other").await.unwrap().unwrap();
        assert_eq!(raw.version, 2);
        assert!(is_integrity(&s.get_snapshot("other").await));
    }

    /// Format 1 values (and their merged texts) are read in the default mode and are
    /// rewritten in format 2 on the next save.
    #[tokio::test]
    async fn old_format_values_are_read_and_rewritten_on_save() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let k = keys();
        let p = Principal::user("a");
        inner
            .put_draft_text(&p, "c", 0, &v1_text(&k, "c", "old text"), 1)
            .await
            .unwrap();
        assert_eq!(
            s.get_draft(&p, "c").await.unwrap().unwrap().text,
            "old text"
        );
        // An attachment write (which bumps the seq) rewrites the text bound.
        let (old_body, old_type) = v1_attachment(&k, b"old clip", "audio/webm").await;
        inner
            .put_attachment(
                AttachmentPut {
                    content_type: &old_type,
                    limits: AttachmentLimits {
                        max_size: u64::MAX,
                        quota: u64::MAX,
                    },
                    ..attachment(&p, "c", 1, "old.webm", "", limits(), 2)
                },
                body(old_body, 10),
            )
            .await
            .unwrap();
        let d = s.get_draft(&p, "c").await.unwrap().unwrap();
        assert_eq!(d.attachments[0].content_type, "audio/webm");
        assert_eq!(d.attachments[0].size, 8);
        let (_, b) = s
            .get_attachment(&p, "c", "old.webm")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(collect(b).await.unwrap(), b"old clip");
        written(
            s.put_attachment(
                attachment(&p, "c", 2, "new.webm", "audio/webm", limits(), 3),
                body(b"new clip".to_vec(), 3),
            )
            .await,
        );
        let raw = inner.get_draft(&p, "c").await.unwrap().unwrap();
        assert!(raw.text.starts_with(TEXT_V2), "rewritten in format 2");
        assert_eq!(
            s.get_draft(&p, "c").await.unwrap().unwrap().text,
            "old text"
        );
        // A text write rewrites it too, and plaintext from before encryption.
        inner
            .put_draft_text(&p, "p", 0, "from before", 1)
            .await
            .unwrap();
        assert_eq!(
            s.get_draft(&p, "p").await.unwrap().unwrap().text,
            "from before"
        );
        written(s.put_draft_text(&p, "p", 1, "from before, edited", 2).await);
        assert!(inner
            .get_draft(&p, "p")
            .await
            .unwrap()
            .unwrap()
            .text
            .starts_with(TEXT_V2));

        // Snapshots: format 1 is read, the next write is format 2.
        let mut old = SNAP_V1.to_vec();
        old.extend_from_slice(&k.seal(b"old snap", &snapshot_aad_v1("r")));
        let old_type = format!("text/plain{ENC_PARAM}{}", content_hash(b"old snap"));
        inner
            .put_snapshot(SnapshotPut {
                room: "r",
                expected_version: 0,
                data: &old,
                content_type: &old_type,
                by: None,
                retain_until: None,
                now: 1,
            })
            .await
            .unwrap();
        let got = s.get_snapshot("r").await.unwrap().unwrap();
        assert_eq!(
            (got.data.as_slice(), got.content_type.as_str()),
            (&b"old snap"[..], "text/plain")
        );
        s.put_snapshot(SnapshotPut {
            room: "r",
            expected_version: 1,
            data: b"new snap",
            content_type: "text/plain",
            by: None,
            retain_until: None,
            now: 2,
        })
        .await
        .unwrap();
        assert!(inner
            .get_snapshot("r")
            .await
            .unwrap()
            .unwrap()
            .data
            .starts_with(SNAP_V2));
        assert_eq!(
            s.get_snapshot("r").await.unwrap().unwrap().data,
            b"new snap"
        );
    }

    /// Unencrypted values found in the store: passed through by default, refused in
    /// the strict modes; the unbound format is refused only by `require_bound`.
    #[tokio::test]
    async fn unencrypted_values_are_refused_in_strict_mode_and_passed_by_default() {
        for mode in [
            EncryptionMode::Compatible,
            EncryptionMode::RequireEncrypted,
            EncryptionMode::RequireBound,
        ] {
            let (s, inner) = wrapped(mode);
            let p = Principal::user("a");
            inner
                .put_draft_text(&p, "c", 0, "planted", 1)
                .await
                .unwrap();
            inner
                .put_attachment(
                    attachment(&p, "d", 0, "a.bin", "audio/webm", limits(), 1),
                    body(b"planted".to_vec(), 3),
                )
                .await
                .unwrap();
            inner
                .put_snapshot(SnapshotPut {
                    room: "r",
                    expected_version: 0,
                    data: b"planted",
                    content_type: "text/plain",
                    by: None,
                    retain_until: None,
                    now: 1,
                })
                .await
                .unwrap();
            inner
                .put_draft_text(&p, "v1", 0, &v1_text(&keys(), "v1", "sealed"), 1)
                .await
                .unwrap();
            let text = s.get_draft(&p, "c").await;
            let att = s.get_attachment(&p, "d", "a.bin").await;
            let snap = s.get_snapshot("r").await;
            let unbound = s.get_draft(&p, "v1").await;
            if mode == EncryptionMode::Compatible {
                assert_eq!(text.unwrap().unwrap().text, "planted");
                let (_, b) = att.unwrap().unwrap();
                assert_eq!(collect(b).await.unwrap(), b"planted");
                assert_eq!(snap.unwrap().unwrap().data, b"planted");
            } else {
                assert!(is_integrity(&text), "{mode:?}: {text:?}");
                assert!(matches!(att, Err(StoreError::Integrity(_))), "{mode:?}");
                assert!(is_integrity(&snap), "{mode:?}: {snap:?}");
            }
            if mode == EncryptionMode::RequireBound {
                assert!(is_integrity(&unbound), "{unbound:?}");
            } else {
                assert_eq!(unbound.unwrap().unwrap().text, "sealed", "{mode:?}");
            }
        }
    }

    /// Sign-in: the anonymous drafts move to the user, re-sealed for their new owner,
    /// merged where the user has one (renamed attachments included); the user reads
    /// everything and nothing is left readable under the anonymous principal.
    #[tokio::test]
    async fn sign_in_merge_keeps_drafts_readable_by_the_user() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let anon = Principal::anonymous();
        let user = Principal::user("u");
        written(s.put_draft_text(&user, "both", 0, "user text", 1).await);
        written(
            s.put_attachment(
                attachment(&user, "both", 1, "clip.webm", "audio/webm", limits(), 2),
                body(b"user clip".to_vec(), 4),
            )
            .await,
        );
        for _ in 0..4 {
            // The anonymous seq ends past the user's, so the merged seq is past both.
            let seq = s
                .get_draft(&anon, "both")
                .await
                .unwrap()
                .map_or(0, |d| d.seq);
            written(s.put_draft_text(&anon, "both", seq, "anon text", 3).await);
        }
        written(
            s.put_attachment(
                attachment(&anon, "both", 4, "clip.webm", "audio/webm", limits(), 4),
                body(b"anon clip".to_vec(), 4),
            )
            .await,
        );
        written(s.put_draft_text(&anon, "only-anon", 0, "alone", 5).await);
        written(
            s.put_attachment(
                attachment(&anon, "only-anon", 1, "pic.png", "image/png", limits(), 6),
                body(b"png".to_vec(), 2),
            )
            .await,
        );

        let mut moved = s
            .move_drafts(&anon, &user, 10, &plain_merge())
            .await
            .unwrap();
        moved.sort();
        assert_eq!(moved, ["both", "only-anon"]);

        let d = s.get_draft(&user, "both").await.unwrap().unwrap();
        assert_eq!(d.text, "user text\n\nanon text");
        assert_eq!(d.seq, 6, "one past the larger seq, as without encryption");
        let names: Vec<_> = d.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["clip.webm", "clip-2.webm"]);
        for (name, want) in [
            ("clip.webm", &b"user clip"[..]),
            ("clip-2.webm", b"anon clip"),
        ] {
            let (meta, b) = s
                .get_attachment(&user, "both", name)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(meta.content_type, "audio/webm");
            assert_eq!(collect(b).await.unwrap(), want, "{name}");
        }
        let d = s.get_draft(&user, "only-anon").await.unwrap().unwrap();
        assert_eq!(d.text, "alone");
        let (_, b) = s
            .get_attachment(&user, "only-anon", "pic.png")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(collect(b).await.unwrap(), b"png");
        let raw = inner.get_draft(&user, "both").await.unwrap().unwrap();
        assert!(
            raw.text.starts_with(TEXT_V2) && !raw.text.contains("\n\n"),
            "one value"
        );
        assert!(s.list_drafts(&anon).await.unwrap().is_empty());
        // Later writes by the user keep working on the merged rows.
        let d = written(s.put_draft_text(&user, "both", 6, "edited", 11).await);
        assert_eq!(d.text, "edited");
    }

    /// A tampered anonymous draft makes the merge refuse: nothing moves, nothing is lost.
    #[tokio::test]
    async fn a_merge_that_cannot_open_a_value_moves_nothing() {
        let (s, inner) = wrapped(EncryptionMode::Compatible);
        let anon = Principal::anonymous();
        let user = Principal::user("u");
        written(s.put_draft_text(&user, "c", 0, "theirs", 1).await);
        let foreign = inner.get_draft(&user, "c").await.unwrap().unwrap().text;
        inner
            .put_draft_text(&anon, "c", 0, &foreign, 2)
            .await
            .unwrap();
        let r = s.move_drafts(&anon, &user, 3, &plain_merge()).await;
        assert!(is_integrity(&r), "{r:?}");
        assert_eq!(
            s.get_draft(&user, "c").await.unwrap().unwrap().text,
            "theirs"
        );
        assert!(inner.get_draft(&anon, "c").await.unwrap().is_some());
    }
}
