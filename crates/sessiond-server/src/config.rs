//! The one typed configuration: embedded commented defaults, then a TOML file, then
//! `SESSIOND_*` environment variables, then flags (applied by the binary), then validation.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sessiond_core::policy::{Policies, Policy};
use sessiond_core::quota::Quotas;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The commented defaults, shipped as `sessiond.example.toml` at the repository root
/// (read through the link `assets/sessiond.example.toml`, so a packaged crate has it).
pub const DEFAULTS_TOML: &str = include_str!("../assets/sessiond.example.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// When set, the admin API, the admin page, metrics and readiness are served here
    /// only, and the public `listen` answers 404 for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub dev: bool,
    pub api_keys: Vec<Secret>,
    /// API keys with an id and a scope (`[[keys]]`); `api_keys` are admin keys.
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
    pub default_role: String,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub server_secret: Secret,
    pub cookie: CookieConfig,
    pub tickets: TicketConfig,
    pub idempotency: IdempotencyConfig,
    pub hot_path: HotPathConfig,
    pub ws: WsConfig,
    pub drafts: DraftsConfig,
    pub snapshots: SnapshotsConfig,
    pub audit: AuditConfig,
    pub rooms: RoomsConfig,
    pub redis: RedisSettings,
    pub store_queue: StoreQueueConfig,
    pub http: HttpConfig,
    /// HTTPS on `listen` (off while `cert` is empty).
    #[serde(default)]
    pub tls: TlsConfig,
    /// HTTPS on `internal_listen`, configured on its own (off while `cert` is empty).
    #[serde(default)]
    pub internal_tls: TlsConfig,
    pub rate_limits: RateLimitsConfig,
    pub quotas: QuotasConfig,
    pub roles: BTreeMap<String, RoleConfig>,
    pub tracing: TracingConfig,
    /// How lifecycle webhooks are delivered (lease, polling, retries, timeouts).
    pub webhook_delivery: WebhookDelivery,
    /// Lifecycle webhook endpoints (`[[webhooks]]`); none by default.
    #[serde(default)]
    pub webhooks: Vec<WebhookEndpoint>,
}

/// One `[[webhooks]]` entry: where audit events are sent, signed as the Standard
/// Webhooks specification describes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Names the endpoint in the admin API, metrics and logs; its cursor and dead letters
    /// are kept under it, so renaming an endpoint starts it afresh.
    pub id: String,
    /// `http://` or `https://`; redirects are not followed.
    pub url: String,
    /// `whsec_` followed by the standard base64 of 24 to 64 random bytes.
    pub secret: Secret,
    /// Event types sent (`session.ended`, …; see docs/protocol.md); empty sends every
    /// `session.*` type (`webhook.*` types only when listed).
    #[serde(default)]
    pub events: Vec<String>,
    /// Total time one attempt may take; `webhook_delivery.timeout` when unset.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// `[webhook_delivery]`: shared by every endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    /// How often the deliverer reads the audit trail for new events when it is idle.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Time to live of the deliverer's lease (renewed every third of it); after a
    /// delivering node dies another takes over within about this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Connecting to an endpoint.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// One whole attempt (connect, send, status), unless the endpoint sets its own.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per event before it is dead-lettered.
    pub max_attempts: u32,
    /// An event still failing this long after its first attempt is dead-lettered, even
    /// with attempts left.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Backoff before the second attempt; it doubles per attempt up to `backoff_max`,
    /// and each wait is drawn uniformly from zero to that (full jitter).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Events read from the trail per round.
    pub batch: usize,
}

/// The bytes of a Standard Webhooks secret (`whsec_<base64>`, 24 to 64 bytes).
pub fn webhook_secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("secret must start with whsec_")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "secret after whsec_ must be standard base64")?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(format!(
            "secret must hold 24 to 64 bytes (has {})",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// OpenTelemetry traces exported over OTLP/HTTP (protobuf): off unless `otlp_endpoint`
/// is set. Only this section configures them; the `OTEL_*` environment variables are
/// not read for the endpoint, sampling, batching, resource or propagation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP URL (`http://host:4318`, or with a path, used as is);
    /// unset or empty: no traces, no exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every span.
    pub service_name: String,
    /// Share of new traces (requests without a caller's `traceparent`) recorded, 0.0..=1.0;
    /// a request with a `traceparent` follows the caller's sampling decision.
    pub sample_ratio: f64,
    /// Longest time a finished span waits before it is sent.
    #[serde(with = "humantime_serde")]
    pub batch_delay: Duration,
    /// Longest time one export request may take.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// Finished spans waiting for export; more are dropped (never blocking a request).
    pub max_queue_size: usize,
    /// Spans sent in one export request.
    pub max_batch_size: usize,
}

impl TracingConfig {
    /// Whether traces are exported (an endpoint is set and not empty).
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty())
    }

    /// The URL spans are POSTed to: the endpoint, with `/v1/traces` added when it has no
    /// path (the OTLP/HTTP convention for a collector's base URL).
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref().filter(|e| !e.is_empty())?;
        let uri: axum::http::Uri = endpoint.parse().ok()?;
        Some(match uri.path() {
            "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            _ => endpoint.to_owned(),
        })
    }

    /// Checks the section alone (part of [`Config::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = self.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            let uri: axum::http::Uri = endpoint.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "tracing.otlp_endpoint: {:?} is not a URL",
                    redact_url(endpoint)
                ))
            })?;
            // Export errors quote the URL: it must hold no credentials.
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return invalid(
                    "tracing.otlp_endpoint must not hold credentials (user:password@)".into(),
                );
            }
            match uri.scheme_str() {
                Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => {}
                // The exporter is built without a TLS client (see docs/operations.md).
                Some("https") => {
                    return invalid(
                        "tracing.otlp_endpoint: https is not supported; send to a local \
                         collector over http (it can forward over TLS)"
                            .into(),
                    )
                }
                _ => {
                    return invalid(format!(
                        "tracing.otlp_endpoint: {:?} must be an http://host[:port][/path] URL",
                        redact_url(endpoint)
                    ))
                }
            }
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 255 {
            return invalid("tracing.service_name must be 1 to 255 characters".into());
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return invalid(format!(
                "tracing.sample_ratio must be between 0.0 and 1.0 (is {})",
                self.sample_ratio
            ));
        }
        check_duration("tracing.batch_delay", self.batch_delay, true)?;
        check_duration("tracing.export_timeout", self.export_timeout, true)?;
        check_min("tracing.max_queue_size", self.max_queue_size as u64, 1)?;
        check_min("tracing.max_batch_size", self.max_batch_size as u64, 1)?;
        if self.max_batch_size > self.max_queue_size {
            return invalid(format!(
                "tracing.max_batch_size ({}) must not exceed tracing.max_queue_size ({})",
                self.max_batch_size, self.max_queue_size
            ));
        }
        Ok(())
    }
}

/// Storage quotas (see [`sessiond_core::quota`]): the limits of signed-in sessions, and
/// `anonymous` overrides for sessions not signed in. A role may override either under
/// `[roles.<name>.quotas]` (and `[roles.<name>.quotas.anonymous]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasConfig {
    pub data_keys_per_session: u64,
    pub data_bytes_per_session: u64,
    pub drafts_per_principal: u64,
    pub draft_text_bytes_per_principal: u64,
    pub attachments_per_draft: u64,
    pub snapshot_bytes_per_principal: u64,
    #[serde(default)]
    pub anonymous: QuotaOverrides,
}

/// Some quota limits; the unset ones come from the level below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_keys_per_session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes_per_session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drafts_per_principal: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_text_bytes_per_principal: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_per_draft: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_bytes_per_principal: Option<u64>,
}

/// A role's quota overrides: for its signed-in sessions, and `anonymous` for its
/// sessions not signed in (anonymous sessions have the default role).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleQuotas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_keys_per_session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes_per_session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drafts_per_principal: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_text_bytes_per_principal: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_per_draft: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_bytes_per_principal: Option<u64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub anonymous: QuotaOverrides,
}

impl RoleQuotas {
    /// The overrides for the role's signed-in sessions.
    pub fn signed_in(&self) -> QuotaOverrides {
        QuotaOverrides {
            data_keys_per_session: self.data_keys_per_session,
            data_bytes_per_session: self.data_bytes_per_session,
            drafts_per_principal: self.drafts_per_principal,
            draft_text_bytes_per_principal: self.draft_text_bytes_per_principal,
            attachments_per_draft: self.attachments_per_draft,
            snapshot_bytes_per_principal: self.snapshot_bytes_per_principal,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl QuotaOverrides {
    /// `base` with the limits set here replaced.
    pub fn apply(&self, base: Quotas) -> Quotas {
        Quotas {
            data_keys_per_session: self
                .data_keys_per_session
                .unwrap_or(base.data_keys_per_session),
            data_bytes_per_session: self
                .data_bytes_per_session
                .unwrap_or(base.data_bytes_per_session),
            drafts_per_principal: self
                .drafts_per_principal
                .unwrap_or(base.drafts_per_principal),
            draft_text_bytes_per_principal: self
                .draft_text_bytes_per_principal
                .unwrap_or(base.draft_text_bytes_per_principal),
            attachments_per_draft: self
                .attachments_per_draft
                .unwrap_or(base.attachments_per_draft),
            snapshot_bytes_per_principal: self
                .snapshot_bytes_per_principal
                .unwrap_or(base.snapshot_bytes_per_principal),
        }
    }
}

impl QuotasConfig {
    /// The `[quotas]` limits themselves (signed-in sessions).
    pub fn base(&self) -> Quotas {
        Quotas {
            data_keys_per_session: self.data_keys_per_session,
            data_bytes_per_session: self.data_bytes_per_session,
            drafts_per_principal: self.drafts_per_principal,
            draft_text_bytes_per_principal: self.draft_text_bytes_per_principal,
            attachments_per_draft: self.attachments_per_draft,
            snapshot_bytes_per_principal: self.snapshot_bytes_per_principal,
        }
    }
}

/// GCRA rate limits per client IP and per session (see [`crate::ratelimit`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// `false` turns every limit off.
    pub enabled: bool,
    /// `POST /v1/session` that creates a session (per IP only: there is no session yet).
    pub create: ScopeLimits,
    pub signin: ScopeLimits,
    pub renew: ScopeLimits,
    /// Session data, drafts, attachments and snapshots (PUT/DELETE).
    pub write: ScopeLimits,
    /// The WebSocket upgrade.
    pub ws: ScopeLimits,
}

/// One scope's limits; a `burst` of 0 turns that key off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeLimits {
    #[serde(default = "Rate::off")]
    pub per_ip: Rate,
    #[serde(default = "Rate::off")]
    pub per_session: Rate,
}

/// `burst` requests at once, refilled evenly over `period` (GCRA: one request every
/// `period / burst`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Rate {
    pub fn off() -> Rate {
        Rate {
            burst: 0,
            period: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// Empty: `__Host-sessiond` when the cookie is Secure and host-only (so a sibling
    /// subdomain cannot set one of the same name), `sessiond` otherwise.
    pub name: String,
    pub secure: bool,
    pub domain: String,
    /// Max-Age up to the absolute deadline; `false` (default): a browser-session cookie.
    pub persistent: bool,
    pub same_site: SameSite,
}

/// The cookie's `SameSite` attribute. `none` (embedded widgets on other sites) requires
/// a Secure cookie: browsers refuse `SameSite=None` without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// The cookie name used when `cookie.name` is empty and the `__Host-` prefix does not apply.
pub const DEFAULT_COOKIE_NAME: &str = "sessiond";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    pub hs256_secret: Secret,
    pub ed25519_public_key: String,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Required `aud` claim (a ticket must name it, alone or in a list).
    pub audience: String,
    /// Required `iss` claim when non-empty.
    pub issuer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long after a create its `Idempotency-Key` still returns the token; later
    /// replays are 409 `idempotency_expired`.
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
}

/// The bound in front of the store: a call that cannot start within `deadline` is
/// answered 503 `store_unavailable` at once instead of waiting (SQLite: the writer
/// queue and the readers; Redis: `redis.command_timeout` bounds each call as a whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreQueueConfig {
    /// Longest wait for a store connection before the call fails with 503.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Store calls that may wait at once (per queue); one more fails with 503 at once.
    pub max_waiting: usize,
}

/// Bounds on HTTP connections, enforced by the serving loop ([`crate::serve`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Time a client has to send a request's whole head; the same timer runs while a
    /// kept-alive connection waits for its next request, so it is the idle timeout too.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body (uploads included): 408.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Open connections in all; a new one over the cap is closed at once.
    pub max_connections: usize,
    /// Open connections from one peer IP (the TCP peer, not a forwarded address).
    pub max_connections_per_ip: usize,
    /// Requests being handled at once (up to their response head); one more is answered
    /// 503 `overloaded` at once, so an overload queues no work it cannot serve in time.
    pub max_in_flight: usize,
    /// How long a browser may cache a CORS preflight answer (`Access-Control-Max-Age`).
    #[serde(with = "humantime_serde")]
    pub cors_max_age: Duration,
}

/// A listener's certificate (see [`crate::tls`]): PEM files, polled for changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; empty turns TLS off for the listener.
    #[serde(default)]
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    #[serde(default)]
    pub key: PathBuf,
    /// How often the files' modification time and size are checked; a change reloads.
    #[serde(
        with = "humantime_serde",
        default = "TlsConfig::default_reload_interval"
    )]
    pub reload_interval: Duration,
}

impl TlsConfig {
    fn default_reload_interval() -> Duration {
        Duration::from_secs(5)
    }

    /// Whether the listener serves TLS.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            reload_interval: TlsConfig::default_reload_interval(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotPathConfig {
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub cache_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsConfig {
    pub max_message_size: usize,
    pub outbound_queue: usize,
    pub max_rooms_per_connection: usize,
    pub max_connections_per_session: usize,
    pub read_buffer: usize,
    /// Inbound messages per second one connection may sustain (token bucket refill).
    pub message_rate: u32,
    /// Inbound messages one connection may send in a burst (token bucket size).
    pub message_burst: u32,
    /// Members one room may have on this node; a join over it is refused `room_full`.
    pub max_room_members: usize,
    /// Bytes queued for one connection before it is closed as a slow consumer (one
    /// message larger than this is still delivered when nothing else is queued).
    pub max_outbound_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftsConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub max_text_bytes: usize,
    pub max_attachment_size: u64,
    pub quota_per_principal: u64,
    pub allowed_content_types: Vec<String>,
    pub encryption_key: Secret,
    pub decryption_keys: Vec<Secret>,
    pub encryption_mode: EncryptionMode,
}

/// What the at-rest encryption accepts when it reads (`drafts.encryption_mode`).
/// Everything it writes is sealed and bound to its owner in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptionMode {
    /// Plaintext (written before encryption was on) and unbound values of the first
    /// format are read, and rewritten in the bound format when next saved.
    Compatible,
    /// Plaintext is refused as a store integrity error; unbound encrypted values are read.
    RequireEncrypted,
    /// Only bound values are read: plaintext and the unbound format are refused.
    RequireBound,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub max_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often each `GET /v1/admin/audit/stream` reads the trail for new events (the
    /// store is the source, so events of every node arrive, in id order).
    #[serde(with = "humantime_serde")]
    pub stream_poll_interval: Duration,
    /// Comment lines sent on an idle stream so proxies keep it open.
    #[serde(with = "humantime_serde")]
    pub stream_keep_alive: Duration,
    /// Events queued per stream; a client that leaves it full for
    /// `stream_send_timeout` is disconnected (it resumes with `Last-Event-ID`).
    pub stream_buffer: usize,
    #[serde(with = "humantime_serde")]
    pub stream_send_timeout: Duration,
    /// Concurrent streams per node; more are refused with 429.
    pub max_streams: usize,
}

/// Room access (see [`sessiond_core::rooms`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// Longest lifetime of a room token; tokens living longer are refused.
    #[serde(with = "humantime_serde")]
    pub token_max_age: Duration,
}

/// Settings of the Redis backend (used only when `store` is a Redis URL).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Prefix of every key (and pub/sub channel); separate deployments sharing one Redis
    /// use different prefixes.
    pub key_prefix: String,
    /// Multiplexed connections per node (requests are pipelined over them).
    pub connections: usize,
    /// Every Redis call fails with 503 `store_unavailable` after this long.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Replicas that must acknowledge endings, rotations, draft and snapshot writes
    /// (`WAIT`) before they are answered; fewer within `replica_timeout`: 503. 0: none.
    pub min_replicas: u32,
    /// How long a write waits for `min_replicas` acknowledgements.
    #[serde(with = "humantime_serde")]
    pub replica_timeout: Duration,
    /// Buckets each global index is split into (1-1024), so that on Redis Cluster the
    /// indexes spread over the masters; the same on every node.
    pub buckets: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub warn_before: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub heartbeat_misses: u32,
    /// Room patterns of the role; unset: none (dev mode fills in `["*"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// Overrides of `[quotas]` for this role.
    #[serde(default, skip_serializing_if = "is_default")]
    pub quotas: RoleQuotas,
}

/// Which backend holds the sessions: `memory`, `sqlite` (in `data_dir`) or a Redis URL
/// (`redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://`, each also with
/// `rediss+`), which makes the node part of a cluster. Written as that string in files,
/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// Everything in the admin API.
    Admin,
    /// Reading only: sessions, the audit trail, rooms and connections.
    Read,
    /// Minting sign-in tickets only (`POST /v1/admin/tickets`).
    Tickets,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Admin => "admin",
            KeyScope::Read => "read",
            KeyScope::Tickets => "tickets",
        }
    }
}

/// One `[[keys]]` entry: `key` is the key itself or `sha256:<64 hex digits>`, the
/// SHA-256 of it (so the configuration need not hold the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the key in the audit trail and in logs.
    pub id: String,
    pub key: Secret,
    pub scope: KeyScope,
}

/// A configured key ready for comparison: its id, its scope and the SHA-256 of the key.
#[derive(Clone)]
pub struct ResolvedKey {
    pub id: String,
    pub scope: KeyScope,
    pub digest: [u8; 32],
}

/// The SHA-256 of `sha256:<hex>`, or `None` when `key` is not written that way.
fn hashed_key(key: &str) -> Option<Result<[u8; 32], ()>> {
    let hex_digits = key.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    Some(
        hex::decode_to_slice(hex_digits.to_ascii_lowercase(), &mut out)
            .map(|()| out)
            .map_err(drop),
    )
}

/// `SESSIOND_STORE` and `--store`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreKind {
    Memory,
    Sqlite,
    /// The URL as written (topology and credentials are parsed by the Redis store).
    Redis(String),
}

/// A configured secret (keys, shared secrets): read from the same strings as a plain
/// string, but its `Debug` and `Display` print `[redacted]`, so logging a `Config` (or
/// an error that carries one) never leaks it. The value is reached through `Deref`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself (only where it is used, never for output).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `url` with its credentials replaced by `[redacted]` (the user name stays, it helps
/// an operator and is not secret): `redis://app:pw@h:6379` → `redis://app:[redacted]@h:6379`.
/// A `password=` query parameter is redacted too. Anything that is no URL is returned as is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(i) => {
            let hosts = &authority[i + 1..];
            match authority[..i].split_once(':') {
                Some((user, _)) => format!("{user}:[redacted]@{hosts}"),
                // A lone userinfo is taken as a password by Redis clients.
                None => format!("[redacted]@{hosts}"),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().contains("pass") => {
                        format!("{k}=[redacted]")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// URL schemes of a Redis deployment.
const REDIS_SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
];

impl StoreKind {
    /// Whether several nodes share this store (a Redis URL).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreKind::Redis(_))
    }

    /// The backend's name, as traces report it (`db.system.name`).
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Redis(_) => "redis",
        }
    }

    /// The store as written, credentials included: only for connecting. `Display` and
    /// `Debug` print it with the credentials redacted.
    pub fn as_config_str(&self) -> &str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Redis(url) => url,
        }
    }
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory => f.write_str("Memory"),
            StoreKind::Sqlite => f.write_str("Sqlite"),
            StoreKind::Redis(url) => f.debug_tuple("Redis").field(&redact_url(url)).finish(),
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "memory" => Ok(StoreKind::Memory),
            "sqlite" => Ok(StoreKind::Sqlite),
            url if REDIS_SCHEMES.iter().any(|p| url.starts_with(p)) => {
                Ok(StoreKind::Redis(url.to_owned()))
            }
            other => Err(ConfigError::Invalid(format!(
                "store {:?}: expected sqlite, memory or a redis URL",
                redact_url(other)
            ))),
        }
    }
}

impl TryFrom<String> for StoreKind {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

impl From<StoreKind> for String {
    /// Serialization writes the configuration back as written.
    fn from(k: StoreKind) -> String {
        k.as_config_str().to_owned()
    }
}

/// For logs and messages: a Redis URL with its credentials redacted.
impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Redis(url) => f.write_str(&redact_url(url)),
            other => f.write_str(other.as_config_str()),
        }
    }
}

/// Configuration could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Config::figment(None)
            .extract()
            .expect("embedded defaults parse")
    }
}

impl Config {
    /// Defaults, then `file` (if any), then `SESSIOND_*` environment variables.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        // SESSIOND_SERVER, SESSIOND_API_KEY, SESSIOND_CA_CERT (the CLI's) and SESSIOND_LOG_FORMAT are not keys.
        f.merge(
            Env::prefixed("SESSIOND_")
                .ignore(&["server", "api_key", "ca_cert", "log_format"])
                .split("__"),
        )
    }

    /// Loads (flags are applied by the caller); the server builder validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Ok(Config::figment(file).extract().map_err(Box::new)?)
    }

    /// Parses a TOML string over the defaults (tests and embedding); the server builder
    /// validates the result.
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        Ok(Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(Toml::string(s))
            .extract()
            .map_err(Box::new)?)
    }

    pub fn policies(&self) -> Policies {
        let roles = self
            .roles
            .iter()
            .map(|(name, r)| {
                let p = Policy {
                    idle_timeout: r.idle_timeout,
                    absolute_timeout: r.absolute_timeout,
                    warn_before: r.warn_before,
                    heartbeat_interval: r.heartbeat_interval,
                    heartbeat_misses: r.heartbeat_misses,
                    rooms: r.rooms.clone().unwrap_or_default(),
                    // Signed in: [quotas] ← [roles.R.quotas]; anonymous:
                    // [quotas] ← [quotas.anonymous] ← [roles.R.quotas.anonymous].
                    quotas: r.quotas.signed_in().apply(self.quotas.base()),
                    anonymous_quotas: r
                        .quotas
                        .anonymous
                        .apply(self.quotas.anonymous.apply(self.quotas.base())),
                };
                (name.clone(), p)
            })
            .collect();
        Policies {
            roles,
            default_role: self.default_role.clone(),
        }
    }

    /// A copy for showing (`sessiond config print`): every secret replaced by
    /// `[redacted]` when set (left empty when empty, so "not set" stays visible), a Redis
    /// URL's credentials redacted. `sha256:` key digests stay: they are not secrets.
    pub fn masked(&self) -> Config {
        let mask = |s: &Secret| {
            if s.is_empty() {
                Secret::default()
            } else {
                Secret::from("[redacted]")
            }
        };
        let mut c = self.clone();
        c.api_keys = c.api_keys.iter().map(mask).collect();
        for k in &mut c.keys {
            if hashed_key(&k.key).is_none() {
                k.key = mask(&k.key);
            }
        }
        c.server_secret = mask(&c.server_secret);
        c.tickets.hs256_secret = mask(&c.tickets.hs256_secret);
        c.drafts.encryption_key = mask(&c.drafts.encryption_key);
        c.drafts.decryption_keys = c.drafts.decryption_keys.iter().map(mask).collect();
        if let StoreKind::Redis(url) = &c.store {
            c.store = StoreKind::Redis(redact_url(url));
        }
        c.tracing.otlp_endpoint = c.tracing.otlp_endpoint.as_deref().map(redact_url);
        for w in &mut c.webhooks {
            w.secret = mask(&w.secret);
            w.url = redact_url(&w.url);
        }
        c
    }

    /// Every API key as id, scope and SHA-256: `api_keys` entries are admin keys named
    /// `api_keys.<index>`, then the `[[keys]]` entries (validated: hashes are well formed).
    pub fn resolved_keys(&self) -> Vec<ResolvedKey> {
        use sha2::{Digest, Sha256};
        let plain = |k: &str| -> [u8; 32] { Sha256::digest(k.as_bytes()).into() };
        let legacy = self.api_keys.iter().enumerate().map(|(i, k)| ResolvedKey {
            id: format!("api_keys.{i}"),
            scope: KeyScope::Admin,
            digest: plain(k),
        });
        let scoped = self.keys.iter().filter_map(|k| {
            let digest = match hashed_key(&k.key) {
                Some(Ok(d)) => d,
                Some(Err(())) => return None,
                None => plain(&k.key),
            };
            Some(ResolvedKey {
                id: k.id.clone(),
                scope: k.scope,
                digest,
            })
        });
        legacy.chain(scoped).collect()
    }

    /// Whether cookies carry `Secure` (always, unless dev mode or explicitly disabled).
    pub fn cookie_secure(&self) -> bool {
        self.cookie.secure && !self.dev
    }

    /// The session cookie's name: `cookie.name`, or when empty `__Host-sessiond` for a
    /// Secure host-only cookie and `sessiond` otherwise (dev mode is not Secure).
    pub fn cookie_name(&self) -> String {
        if !self.cookie.name.is_empty() {
            self.cookie.name.clone()
        } else if self.cookie_secure() && self.cookie.domain.is_empty() {
            format!("__Host-{DEFAULT_COOKIE_NAME}")
        } else {
            DEFAULT_COOKIE_NAME.to_owned()
        }
    }

    /// Checks what parsing cannot; [`crate::builder::ServerBuilder::build`] calls it once
    /// (after filling in dev-mode defaults).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let inv = |m: String| Err(ConfigError::Invalid(m));
        self.validate_durations()?;
        self.validate_fields()?;
        self.tracing.validate()?;
        self.policies().validate().map_err(ConfigError::Invalid)?;
        let name = self.cookie_name();
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return inv("cookie.name must be a token of A-Z a-z 0-9 _ -".into());
        }
        // Browsers drop prefixed cookies that break the prefix's rules: refuse at start
        // rather than hand out a cookie that is never stored.
        if name.starts_with("__Host-") && (!self.cookie_secure() || !self.cookie.domain.is_empty())
        {
            return inv(
                "cookie.name with __Host- needs a Secure cookie and no cookie.domain".into(),
            );
        }
        if name.starts_with("__Secure-") && !self.cookie_secure() {
            return inv("cookie.name with __Secure- needs a Secure cookie".into());
        }
        if self.cookie.same_site == SameSite::None && !self.cookie_secure() {
            return inv("cookie.same_site = \"none\" needs a Secure cookie (not dev mode, cookie.secure = true)".into());
        }
        if self.tickets.audience.is_empty() {
            return inv("tickets.audience must not be empty".into());
        }
        if self.idempotency.replay_window.is_zero() {
            return inv("idempotency.replay_window must be positive".into());
        }
        if self.api_keys.iter().any(|k| k.len() < 8) && !self.dev {
            return inv("api_keys must be at least 8 characters".into());
        }
        if !self.tickets.hs256_secret.is_empty() && self.tickets.hs256_secret.len() < 32 {
            return inv("tickets.hs256_secret must be at least 32 bytes".into());
        }
        // An entry that is no origin would never match; say so at start instead.
        for o in &self.allowed_origins {
            if crate::origin::WebOrigin::parse_configured(o).is_none() {
                return inv(format!(
                    "allowed_origins: {o:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        for p in &self.trusted_proxies {
            if p.parse::<ipnet::IpNet>().is_err() && p.parse::<std::net::IpAddr>().is_err() {
                return inv(format!("trusted_proxies: {p:?} is not an IP or CIDR"));
            }
        }
        if self.rooms.token_max_age.is_zero() {
            return inv("rooms.token_max_age must be positive".into());
        }
        if self.hot_path.flush_interval.is_zero() {
            return inv("hot_path.flush_interval must be positive".into());
        }
        if self.ws.max_message_size < 1024 || self.ws.outbound_queue == 0 {
            return inv("ws.max_message_size must be >= 1024 and ws.outbound_queue >= 1".into());
        }
        if self.ws.message_rate == 0
            || self.ws.message_burst == 0
            || self.ws.max_room_members == 0
            || self.ws.max_outbound_bytes < 1024
        {
            return inv("ws.message_rate, ws.message_burst and ws.max_room_members must be >= 1 and ws.max_outbound_bytes >= 1024".into());
        }
        if self.redis.key_prefix.is_empty()
            || !self
                .redis
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return inv("redis.key_prefix must be a non-empty token of A-Z a-z 0-9 _ - .".into());
        }
        if self.redis.connections == 0 || self.redis.command_timeout.is_zero() {
            return inv("redis.connections and redis.command_timeout must be positive".into());
        }
        if self.store.is_shared() && self.server_secret.is_empty() {
            // A generated secret would differ per node, and the nodes must derive the
            // same keys.
            return inv(
                "a Redis store is shared by several nodes: set server_secret (the same on every node)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The longest duration any key accepts: longer ones are mistakes, and far longer ones
/// overflow the millisecond arithmetic of deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Most heartbeat misses a role may allow.
pub const MAX_HEARTBEAT_MISSES: u32 = 100;

/// Shortest configured `server_secret`.
pub const MIN_SERVER_SECRET: usize = 16;

fn invalid<T>(m: String) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(m))
}

/// `d` is at most [`MAX_DURATION`] and, when `positive`, not zero; the message names `key`.
fn check_duration(key: &str, d: Duration, positive: bool) -> Result<(), ConfigError> {
    if positive && d.is_zero() {
        return invalid(format!("{key} must be positive"));
    }
    if d > MAX_DURATION {
        return invalid(format!(
            "{key} = {} is too long (at most 10 years)",
            humantime_serde::re::humantime::format_duration(d)
        ));
    }
    Ok(())
}

/// A number that must be at least `min`; the message names `key`.
fn check_min(key: &str, v: u64, min: u64) -> Result<(), ConfigError> {
    if v < min {
        return invalid(format!("{key} must be at least {min} (is {v})"));
    }
    Ok(())
}

/// Most of anything a quota counts (keys, drafts, attachments).
pub const MAX_QUOTA_COUNT: u64 = 1_000_000;
/// Most bytes a quota allows (1 TiB).
pub const MAX_QUOTA_BYTES: u64 = 1 << 40;

/// One level of quota limits: counts at most [`MAX_QUOTA_COUNT`], bytes at most
/// [`MAX_QUOTA_BYTES`]. Zero is allowed: it forbids that kind of write.
fn check_quotas(level: &str, q: &Quotas) -> Result<(), ConfigError> {
    for (key, v, max) in [
        (
            "data_keys_per_session",
            q.data_keys_per_session,
            MAX_QUOTA_COUNT,
        ),
        (
            "data_bytes_per_session",
            q.data_bytes_per_session,
            MAX_QUOTA_BYTES,
        ),
        (
            "drafts_per_principal",
            q.drafts_per_principal,
            MAX_QUOTA_COUNT,
        ),
        (
            "draft_text_bytes_per_principal",
            q.draft_text_bytes_per_principal,
            MAX_QUOTA_BYTES,
        ),
        (
            "attachments_per_draft",
            q.attachments_per_draft,
            MAX_QUOTA_COUNT,
        ),
        (
            "snapshot_bytes_per_principal",
            q.snapshot_bytes_per_principal,
            MAX_QUOTA_BYTES,
        ),
    ] {
        if v > max {
            return invalid(format!("{level}.{key} must be at most {max} (is {v})"));
        }
    }
    Ok(())
}

/// A cookie `Domain` attribute: a host name (an optional leading dot, dot-separated
/// labels of letters, digits and `-`). Anything else would make the `Set-Cookie` header
/// unbuildable or let an attribute be injected (`;`).
fn valid_cookie_domain(d: &str) -> bool {
    let host = d.strip_prefix('.').unwrap_or(d);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A `type/subtype` media type of token characters (RFC 9110).
fn valid_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(t.split_once('/'), Some((a, b)) if token(a) && token(b))
}

impl Config {
    /// Every duration key: at most [`MAX_DURATION`], and positive where zero means nothing.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        check_duration("tickets.max_age", self.tickets.max_age, true)?;
        check_duration("tickets.leeway", self.tickets.leeway, false)?;
        check_duration(
            "idempotency.replay_window",
            self.idempotency.replay_window,
            true,
        )?;
        check_duration(
            "hot_path.flush_interval",
            self.hot_path.flush_interval,
            true,
        )?;
        check_duration("drafts.retention", self.drafts.retention, true)?;
        check_duration("snapshots.retention", self.snapshots.retention, true)?;
        check_duration("audit.retention", self.audit.retention, true)?;
        check_duration(
            "audit.stream_poll_interval",
            self.audit.stream_poll_interval,
            true,
        )?;
        check_duration(
            "audit.stream_keep_alive",
            self.audit.stream_keep_alive,
            true,
        )?;
        check_duration(
            "audit.stream_send_timeout",
            self.audit.stream_send_timeout,
            true,
        )?;
        check_min("audit.stream_buffer", self.audit.stream_buffer as u64, 1)?;
        check_min("audit.max_streams", self.audit.max_streams as u64, 1)?;
        check_duration("rooms.token_max_age", self.rooms.token_max_age, true)?;
        let w = &self.webhook_delivery;
        for (key, d) in [
            ("webhook_delivery.poll_interval", w.poll_interval),
            ("webhook_delivery.lease_ttl", w.lease_ttl),
            ("webhook_delivery.connect_timeout", w.connect_timeout),
            ("webhook_delivery.timeout", w.timeout),
            ("webhook_delivery.max_age", w.max_age),
            ("webhook_delivery.backoff_base", w.backoff_base),
            ("webhook_delivery.backoff_max", w.backoff_max),
        ] {
            check_duration(key, d, true)?;
        }
        check_min("webhook_delivery.max_attempts", w.max_attempts.into(), 1)?;
        check_min("webhook_delivery.batch", w.batch as u64, 1)?;
        if w.batch > 10_000 {
            return invalid("webhook_delivery.batch must be at most 10000".into());
        }
        if w.lease_ttl < Duration::from_millis(300) {
            return invalid("webhook_delivery.lease_ttl must be at least 300ms".into());
        }
        check_duration("redis.command_timeout", self.redis.command_timeout, true)?;
        check_duration("redis.connect_timeout", self.redis.connect_timeout, true)?;
        check_duration("redis.replica_timeout", self.redis.replica_timeout, true)?;
        check_duration("store_queue.deadline", self.store_queue.deadline, true)?;
        if self.redis.min_replicas > 0 && self.redis.replica_timeout >= self.redis.command_timeout {
            // The WAIT is itself a Redis call, cut off at the command timeout.
            return invalid(format!(
                "redis.replica_timeout ({}) must be shorter than redis.command_timeout ({})",
                humantime_serde::re::humantime::format_duration(self.redis.replica_timeout),
                humantime_serde::re::humantime::format_duration(self.redis.command_timeout)
            ));
        }
        check_duration(
            "http.header_read_timeout",
            self.http.header_read_timeout,
            true,
        )?;
        check_duration("http.body_idle_timeout", self.http.body_idle_timeout, true)?;
        check_duration("tls.reload_interval", self.tls.reload_interval, true)?;
        check_duration(
            "internal_tls.reload_interval",
            self.internal_tls.reload_interval,
            true,
        )?;
        // 0 is allowed: no caching, every cross-origin call is preflighted.
        check_duration("http.cors_max_age", self.http.cors_max_age, false)?;
        let rl = &self.rate_limits;
        for (scope, l) in [
            ("create", &rl.create),
            ("signin", &rl.signin),
            ("renew", &rl.renew),
            ("write", &rl.write),
            ("ws", &rl.ws),
        ] {
            for (which, r) in [("per_ip", l.per_ip), ("per_session", l.per_session)] {
                let key = format!("rate_limits.{scope}.{which}.period");
                check_duration(&key, r.period, true)?;
                // GCRA spaces requests `period / burst` apart: below a nanosecond the
                // limiter cannot represent the rate.
                if r.burst > 0 && r.period < Duration::from_nanos(u64::from(r.burst)) {
                    return invalid(format!("{key} must be at least burst nanoseconds"));
                }
            }
        }
        for (name, r) in &self.roles {
            let key = |k: &str| format!("roles.{name}.{k}");
            check_duration(&key("idle_timeout"), r.idle_timeout, true)?;
            check_duration(&key("absolute_timeout"), r.absolute_timeout, true)?;
            check_duration(&key("warn_before"), r.warn_before, false)?;
            check_duration(&key("heartbeat_interval"), r.heartbeat_interval, true)?;
        }
        Ok(())
    }

    /// The keys nothing else checks: each message names its key.
    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let mut ids = std::collections::BTreeSet::new();
        let types: Vec<String> = sessiond_core::audit::AuditKind::ALL
            .iter()
            .map(|k| k.webhook_type())
            .collect();
        for w in &self.webhooks {
            let id = &w.id;
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                return invalid(format!(
                    "webhooks: id {id:?} must be 1 to 64 of A-Z a-z 0-9 _ - ."
                ));
            }
            if !ids.insert(id.as_str()) {
                return invalid(format!("webhooks: id {id:?} is used twice"));
            }
            let ok_url = (w.url.starts_with("http://") || w.url.starts_with("https://"))
                && w.url.len() <= 2048
                && w.url
                    .parse::<axum::http::Uri>()
                    .is_ok_and(|u| u.host().is_some());
            if !ok_url {
                return invalid(format!(
                    "webhooks.{id}: url must be an http:// or https:// URL with a host (is {:?})",
                    redact_url(&w.url)
                ));
            }
            // The message never echoes the secret.
            webhook_secret_bytes(&w.secret)
                .map_err(|why| ConfigError::Invalid(format!("webhooks.{id}: {why}")))?;
            for e in &w.events {
                if !types.contains(e) {
                    return invalid(format!(
                        "webhooks.{id}: unknown event type {e:?} (one of {})",
                        types.join(", ")
                    ));
                }
            }
            if let Some(t) = w.timeout {
                check_duration(&format!("webhooks.{id}.timeout"), t, true)?;
            }
        }
        Ok(())
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        self.validate_webhooks()?;
        // Dev mode hands out a well-known admin key and mints tickets for anyone: only
        // this machine may reach it.
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "dev mode listens only on a loopback address (127.0.0.1 or [::1]), not listen = {}: \
                 it has a well-known admin key and mints sign-in tickets for anyone",
                self.listen
            ));
        }
        if let Some(internal) = self.internal_listen {
            if internal == self.listen && internal.port() != 0 {
                return invalid(format!(
                    "internal_listen must differ from listen (both are {internal})"
                ));
            }
            if self.dev && !internal.ip().is_loopback() {
                return invalid(format!(
                    "dev mode listens only on a loopback address, not internal_listen = {internal}"
                ));
            }
        }
        for (section, t) in [("tls", &self.tls), ("internal_tls", &self.internal_tls)] {
            if t.cert.as_os_str().is_empty() != t.key.as_os_str().is_empty() {
                return invalid(format!(
                    "{section}.cert and {section}.key go together: set both or neither"
                ));
            }
        }
        if self.internal_tls.enabled() && self.internal_listen.is_none() {
            return invalid("internal_tls is set but internal_listen is not".into());
        }
        if self.store == StoreKind::Sqlite && self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must not be empty with store = \"sqlite\"".into());
        }
        for k in &self.api_keys {
            if !k.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(
                    "api_keys: a key must be printable ASCII without spaces (it is sent in a header)"
                        .into(),
                );
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for k in &self.keys {
            let id = &k.id;
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
                || id.starts_with("api_keys.")
            {
                return invalid(format!(
                    "keys: id {id:?} must be 1 to 64 of A-Z a-z 0-9 _ - . : (and not start with api_keys.)"
                ));
            }
            if !ids.insert(id.as_str()) {
                return invalid(format!("keys: id {id:?} is used twice"));
            }
            match hashed_key(&k.key) {
                Some(Ok(_)) => {}
                Some(Err(())) => {
                    return invalid(format!(
                        "keys.{id}: key \"sha256:…\" must be followed by 64 hex digits (the SHA-256 of the key)"
                    ))
                }
                None => {
                    if !k.key.bytes().all(|b| b.is_ascii_graphic()) {
                        return invalid(format!(
                            "keys.{id}: key must be printable ASCII without spaces (it is sent in a header)"
                        ));
                    }
                    if k.key.len() < 8 && !self.dev {
                        return invalid(format!("keys.{id}: key must be at least 8 characters"));
                    }
                }
            }
        }
        if !self.server_secret.is_empty() && self.server_secret.len() < MIN_SERVER_SECRET {
            return invalid(format!(
                "server_secret must be at least {MIN_SERVER_SECRET} bytes (or empty: generated)"
            ));
        }
        if !self.cookie.domain.is_empty() && !valid_cookie_domain(&self.cookie.domain) {
            return invalid(format!(
                "cookie.domain {:?} is not a host name (letters, digits, - and dots; optional leading dot)",
                self.cookie.domain
            ));
        }
        check_min(
            "hot_path.cache_capacity",
            self.hot_path.cache_capacity as u64,
            1,
        )?;
        check_min(
            "ws.max_rooms_per_connection",
            self.ws.max_rooms_per_connection as u64,
            1,
        )?;
        check_min(
            "ws.max_connections_per_session",
            self.ws.max_connections_per_session as u64,
            1,
        )?;
        check_min("ws.read_buffer", self.ws.read_buffer as u64, 1)?;
        check_min(
            "drafts.max_text_bytes",
            self.drafts.max_text_bytes as u64,
            1,
        )?;
        check_min(
            "drafts.max_attachment_size",
            self.drafts.max_attachment_size,
            1,
        )?;
        check_min(
            "drafts.quota_per_principal",
            self.drafts.quota_per_principal,
            1,
        )?;
        check_min("snapshots.max_size", self.snapshots.max_size as u64, 1)?;
        check_min("http.max_connections", self.http.max_connections as u64, 1)?;
        check_min("http.max_in_flight", self.http.max_in_flight as u64, 1)?;
        check_min(
            "store_queue.max_waiting",
            self.store_queue.max_waiting as u64,
            1,
        )?;
        check_min(
            "http.max_connections_per_ip",
            self.http.max_connections_per_ip as u64,
            1,
        )?;
        if self.http.max_connections_per_ip > self.http.max_connections {
            return invalid(format!(
                "http.max_connections_per_ip ({}) must not exceed http.max_connections ({})",
                self.http.max_connections_per_ip, self.http.max_connections
            ));
        }
        if let Some(t) = self
            .drafts
            .allowed_content_types
            .iter()
            .find(|t| !valid_media_type(t))
        {
            return invalid(format!(
                "drafts.allowed_content_types: {t:?} is not a media type (type/subtype)"
            ));
        }
        if self.redis.buckets == 0 || self.redis.buckets > 1024 {
            return invalid(format!(
                "redis.buckets must be 1-1024 (is {})",
                self.redis.buckets
            ));
        }
        if self.redis.connections > 64 {
            return invalid(format!(
                "redis.connections must be 1-64 (is {})",
                self.redis.connections
            ));
        }
        let mut levels = vec![
            ("quotas".to_owned(), self.quotas.base()),
            (
                "quotas.anonymous".to_owned(),
                self.quotas.anonymous.apply(self.quotas.base()),
            ),
        ];
        for (name, p) in self.policies().roles {
            levels.push((format!("roles.{name}.quotas"), p.quotas));
            levels.push((format!("roles.{name}.quotas.anonymous"), p.anonymous_quotas));
        }
        for (level, q) in &levels {
            check_quotas(level, q)?;
        }
        for (name, r) in &self.roles {
            if name.is_empty() {
                return invalid("roles: a role name must not be empty".into());
            }
            if r.heartbeat_misses > MAX_HEARTBEAT_MISSES {
                return invalid(format!(
                    "roles.{name}.heartbeat_misses must be at most {MAX_HEARTBEAT_MISSES}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_spec() {
        let c = Config::default();
        assert_eq!(c.cookie_name(), "__Host-sessiond");
        assert!(!c.cookie.persistent);
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert_eq!(c.tickets.audience, "sessiond");
        assert_eq!(c.idempotency.replay_window, Duration::from_secs(60));
        let p = c.policies();
        assert_eq!(
            p.get("editor").unwrap().idle_timeout,
            Duration::from_secs(900)
        );
        assert_eq!(
            p.get("public").unwrap().absolute_timeout,
            Duration::from_secs(3600)
        );
        assert!(c.cookie_secure());
    }

    #[test]
    fn file_overrides_and_short_durations() {
        let c = Config::from_toml(
            "dev = true\n[roles.editor]\nidle_timeout = \"2s\"\nwarn_before = \"1s\"",
        )
        .unwrap();
        assert_eq!(c.roles["editor"].idle_timeout, Duration::from_secs(2));
        assert_eq!(
            c.roles["editor"].absolute_timeout,
            Duration::from_secs(12 * 3600)
        );
        assert!(!c.cookie_secure());
        // Dev mode is not Secure: the name keeps its plain form.
        assert_eq!(c.cookie_name(), "sessiond");
    }

    #[test]
    fn cookie_names_and_same_site() {
        let checked = |s: &str| Config::from_toml(s).and_then(|c| c.validate());
        let c = Config::from_toml("[cookie]\ndomain = \"example.com\"").unwrap();
        assert_eq!(c.cookie_name(), "sessiond");
        let c = Config::from_toml("[cookie]\nname = \"sid\"").unwrap();
        assert_eq!(c.cookie_name(), "sid");
        assert!(checked("[cookie]\nsame_site = \"strict\"").is_ok());
        assert!(checked("[cookie]\nsame_site = \"none\"").is_ok());
        assert!(checked("dev = true\n[cookie]\nsame_site = \"none\"").is_err());
        assert!(checked("[cookie]\nsecure = false\nsame_site = \"none\"").is_err());
        assert!(checked("[cookie]\nsame_site = \"sideways\"").is_err());
        assert!(checked("[cookie]\nname = \"__Host-x\"\ndomain = \"example.com\"").is_err());
        assert!(checked("dev = true\n[cookie]\nname = \"__Secure-x\"").is_err());
        assert!(checked("[tickets]\naudience = \"\"").is_err());
        assert!(checked("[idempotency]\nreplay_window = \"0s\"").is_err());
    }

    #[test]
    fn invalid_values_are_refused() {
        let checked = |s: &str| Config::from_toml(s).and_then(|c| c.validate());
        assert!(checked("store = \"mongo\"").is_err());
        assert!(checked("unknown_key = 1").is_err());
        assert!(
            checked("[rate_limits]\nrenew = { per_ip = { burst = 5, period = \"0s\" } }").is_err()
        );
        assert!(
            checked("[rate_limits]\nws = { per_ip = { burst = 9, period = \"1ns\" } }").is_err()
        );
        assert!(
            checked("[rate_limits]\nws = { per_session = { burst = 0, period = \"1m\" } }").is_ok()
        );
        assert!(checked("default_role = \"nobody\"").is_err());
        assert!(checked("trusted_proxies = [\"not-an-ip\"]").is_err());
        assert!(checked("allowed_origins = [\"app.example\"]").is_err());
        assert!(checked("allowed_origins = [\"https://app.example/\"]").is_ok());
    }

    #[test]
    fn store_is_typed_from_the_same_strings() {
        for (s, kind) in [
            ("memory", StoreKind::Memory),
            ("sqlite", StoreKind::Sqlite),
            (
                "redis+cluster://a:7000,b:7001",
                StoreKind::Redis("redis+cluster://a:7000,b:7001".into()),
            ),
        ] {
            let c = Config::from_toml(&format!("store = {s:?}")).unwrap();
            assert_eq!(c.store, kind);
            assert_eq!(c.store.to_string(), s);
            assert_eq!(s.parse::<StoreKind>().unwrap(), kind);
        }
        assert!("redisx://h".parse::<StoreKind>().is_err());
        let err = Config::from_toml("store = \"mongo://x\"").unwrap_err();
        assert!(err
            .to_string()
            .contains("expected sqlite, memory or a redis URL"));
        // Shared by several nodes: the secret must be set (the same everywhere).
        let c = Config::from_toml("store = \"redis://127.0.0.1:1\"").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn debug_and_display_never_print_secrets() {
        let c = Config::from_toml(
            "store = \"redis://app:redis-pass-1@127.0.0.1:6379/0\"\n\
             server_secret = \"server-secret-value-1234\"\n\
             api_keys = [\"admin-key-value-1\", \"admin-key-value-2\"]\n\
             [tickets]\nhs256_secret = \"ticket-secret-value-0123456789abcdef\"\n\
             [drafts]\nencryption_key = \"draft-key-value\"\ndecryption_keys = [\"old-draft-key-value\"]",
        )
        .unwrap();
        // Still read from the same strings.
        assert_eq!(c.server_secret.expose(), "server-secret-value-1234");
        assert_eq!(&*c.api_keys[1], "admin-key-value-2");
        assert_eq!(
            c.store.as_config_str(),
            "redis://app:redis-pass-1@127.0.0.1:6379/0"
        );
        let printed = [format!("{c:?}"), format!("{c:#?}"), c.store.to_string()];
        for out in &printed {
            for secret in [
                "redis-pass-1",
                "server-secret-value",
                "admin-key-value",
                "ticket-secret-value",
                "draft-key-value",
            ] {
                assert!(!out.contains(secret), "{secret} printed in {out}");
            }
        }
        assert!(printed[0].contains("[redacted]"));
        assert_eq!(
            c.store.to_string(),
            "redis://app:[redacted]@127.0.0.1:6379/0"
        );
        // An unparseable store echoes no credentials either.
        let err = "mongo://u:mongo-pass@h".parse::<StoreKind>().unwrap_err();
        assert!(!err.to_string().contains("mongo-pass"), "{err}");
    }

    #[test]
    fn redis_urls_are_redacted() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:pw@h:1/2", "redis://:[redacted]@h:1/2"),
            ("redis://pw@h:1", "redis://[redacted]@h:1"),
            ("rediss://u:p@ss@h:1", "rediss://u:[redacted]@h:1"),
            (
                "redis+cluster://u:pw@a:7000,b:7001",
                "redis+cluster://u:[redacted]@a:7000,b:7001",
            ),
            (
                "redis+sentinel://:pw@s1:26379,s2:26379/mymaster",
                "redis+sentinel://:[redacted]@s1:26379,s2:26379/mymaster",
            ),
            (
                "redis://h:1/0?password=pw&x=1",
                "redis://h:1/0?password=[redacted]&x=1",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn huge_and_zero_durations_are_refused_naming_the_key() {
        let err = |s: &str| {
            Config::from_toml(s)
                .and_then(|c| c.validate())
                .expect_err(s)
                .to_string()
        };
        // 300 million years: its milliseconds no longer fit the deadline arithmetic.
        let e = err("[roles.editor]\nidle_timeout = \"300000000y\"");
        assert!(
            e.contains("roles.editor.idle_timeout") && e.contains("10 years"),
            "{e}"
        );
        for (section, key) in [
            ("tickets", "max_age"),
            ("idempotency", "replay_window"),
            ("hot_path", "flush_interval"),
            ("drafts", "retention"),
            ("snapshots", "retention"),
            ("audit", "retention"),
            ("rooms", "token_max_age"),
            ("redis", "command_timeout"),
            ("redis", "connect_timeout"),
            ("redis", "replica_timeout"),
            ("store_queue", "deadline"),
            ("roles.viewer", "absolute_timeout"),
            ("roles.public", "heartbeat_interval"),
        ] {
            let e = err(&format!("[{section}]\n{key} = \"0s\""));
            assert!(
                e.contains(&format!("{section}.{key} must be positive")),
                "{e}"
            );
            let e = err(&format!("[{section}]\n{key} = \"11y\""));
            assert!(e.contains(&format!("{section}.{key} = ")), "{e}");
        }
        assert!(err("[tickets]\nleeway = \"20y\"").contains("tickets.leeway"));
        let ok = Config::from_toml("[audit]\nretention = \"3650d\"").unwrap();
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn other_fields_are_validated_naming_the_key() {
        let err = |s: &str| {
            Config::from_toml(s)
                .and_then(|c| c.validate())
                .expect_err(s)
                .to_string()
        };
        for (toml, key) in [
            ("[hot_path]\ncache_capacity = 0", "hot_path.cache_capacity"),
            (
                "[ws]\nmax_rooms_per_connection = 0",
                "ws.max_rooms_per_connection",
            ),
            (
                "[ws]\nmax_connections_per_session = 0",
                "ws.max_connections_per_session",
            ),
            ("[ws]\nread_buffer = 0", "ws.read_buffer"),
            ("[drafts]\nmax_text_bytes = 0", "drafts.max_text_bytes"),
            (
                "[drafts]\nmax_attachment_size = 0",
                "drafts.max_attachment_size",
            ),
            (
                "[drafts]\nquota_per_principal = 0",
                "drafts.quota_per_principal",
            ),
            (
                "[drafts]\nallowed_content_types = [\"pdf\"]",
                "drafts.allowed_content_types",
            ),
            ("[snapshots]\nmax_size = 0", "snapshots.max_size"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            (
                "[http]\nmax_connections_per_ip = 0",
                "http.max_connections_per_ip",
            ),
            (
                "[http]\nmax_connections = 10\nmax_connections_per_ip = 11",
                "http.max_connections_per_ip",
            ),
            (
                "[http]\nheader_read_timeout = \"0s\"",
                "http.header_read_timeout",
            ),
            (
                "[http]\nbody_idle_timeout = \"0s\"",
                "http.body_idle_timeout",
            ),
            ("[redis]\nconnections = 65", "redis.connections"),
            ("[store_queue]\nmax_waiting = 0", "store_queue.max_waiting"),
            (
                "[redis]\nmin_replicas = 1\ncommand_timeout = \"1s\"\nreplica_timeout = \"1s\"",
                "redis.replica_timeout",
            ),
            (
                "[roles.editor]\nheartbeat_misses = 1000",
                "roles.editor.heartbeat_misses",
            ),
            ("server_secret = \"short\"", "server_secret"),
            ("api_keys = [\"has a space\"]", "api_keys"),
            ("data_dir = \"\"", "data_dir"),
            (
                "[[keys]]\nid = \"k\"\nscope = \"read\"\nkey = \"sha256:abc\"",
                "keys.k: key \"sha256:",
            ),
            (
                "[[keys]]\nid = \"k\"\nscope = \"read\"\nkey = \"short\"",
                "keys.k: key must be at least 8",
            ),
            (
                "[[keys]]\nid = \"k\"\nscope = \"read\"\nkey = \"long-enough-1\"\n\
                 [[keys]]\nid = \"k\"\nscope = \"admin\"\nkey = \"long-enough-2\"",
                "id \"k\" is used twice",
            ),
            (
                "[[keys]]\nid = \"has space\"\nscope = \"read\"\nkey = \"long-enough-1\"",
                "keys: id",
            ),
            ("internal_listen = \"127.0.0.1:7878\"", "internal_listen"),
            (
                "[cookie]\ndomain = \"example.com\\r\\nX: y\"",
                "cookie.domain",
            ),
            (
                "[cookie]\ndomain = \"example.com; Secure\"",
                "cookie.domain",
            ),
        ] {
            let e = err(toml);
            assert!(e.contains(key), "{toml}: {e}");
        }
        for domain in ["example.com", ".example.com", "a-b.example", "localhost"] {
            let c = Config::from_toml(&format!("[cookie]\ndomain = {domain:?}")).unwrap();
            assert!(c.validate().is_ok(), "{domain}");
        }
    }

    #[test]
    fn webhook_endpoints_are_validated_without_echoing_the_secret() {
        let secret = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5YWI=";
        let check = |entry: &str| Config::from_toml(entry).and_then(|c| c.validate());
        let ep = |id: &str, url: &str, secret: &str, extra: &str| {
            format!("[[webhooks]]\nid = \"{id}\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n{extra}")
        };
        let ok = ep(
            "crm",
            "https://crm.example/hooks",
            secret,
            "events = [\"session.ended\"]\ntimeout = \"2s\"",
        );
        check(&ok).unwrap();
        check(&ep("crm", "http://127.0.0.1:9/h", secret, "")).unwrap();
        for (toml, says) in [
            (
                ep("crm", "ftp://crm.example/", secret, ""),
                "webhooks.crm: url",
            ),
            (ep("crm", "https://", secret, ""), "webhooks.crm: url"),
            (
                ep(
                    "crm",
                    "https://crm.example/",
                    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "",
                ),
                "whsec_",
            ),
            (
                ep("crm", "https://crm.example/", "whsec_AAAA", ""),
                "24 to 64 bytes",
            ),
            (
                ep("crm", "https://crm.example/", "whsec_!!!!", ""),
                "base64",
            ),
            (
                ep(
                    "crm",
                    "https://crm.example/",
                    secret,
                    "events = [\"ended\"]",
                ),
                "unknown event type",
            ),
            (
                ep("crm", "https://crm.example/", secret, "timeout = \"0s\""),
                "webhooks.crm.timeout",
            ),
            (
                ep("bad id", "https://crm.example/", secret, ""),
                "webhooks: id",
            ),
            (format!("{ok}\n{ok}"), "used twice"),
            (
                "[webhook_delivery]\nmax_attempts = 0".to_owned(),
                "webhook_delivery.max_attempts",
            ),
            (
                "[webhook_delivery]\nlease_ttl = \"100ms\"".to_owned(),
                "webhook_delivery.lease_ttl",
            ),
            (
                "[webhook_delivery]\nbackoff_base = \"0s\"".to_owned(),
                "webhook_delivery.backoff_base",
            ),
        ] {
            let e = check(&toml).expect_err(&toml).to_string();
            assert!(e.contains(says), "{toml}: {e}");
            assert!(!e.contains("dGVzdC13"), "the secret is never echoed: {e}");
        }
    }

    #[test]
    fn masked_hides_every_secret() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let c = Config::from_toml(&format!(
            "store = \"redis://app:SECRET-redis@h:6379\"\napi_keys = [\"SECRET-api\"]\n\
             server_secret = \"SECRET-server-secret\"\n\
             [[keys]]\nid = \"a\"\nscope = \"read\"\nkey = \"SECRET-plain-key\"\n\
             [[keys]]\nid = \"b\"\nscope = \"read\"\nkey = \"{digest}\"\n\
             [tickets]\nhs256_secret = \"SECRET-hs256-0123456789abcdef0123\"\n\
             [drafts]\nencryption_key = \"SECRET-enc\"\ndecryption_keys = [\"SECRET-dec\"]\n\
             [[webhooks]]\nid = \"crm\"\nurl = \"https://hook:SECRET-url@crm.example/h\"\n\
             secret = \"whsec_U0VDUkVULXdlYmhvb2stMDEyMzQ1Njc4OWFiY2RlZg==\"\n"
        ))
        .unwrap();
        let shown = serde_json::to_string(&c.masked()).unwrap();
        assert!(!shown.contains("whsec_"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains(&digest), "digests are no secrets");
        assert!(shown.contains("[redacted]"));
        let plain = serde_json::to_string(&c).unwrap();
        assert!(
            plain.contains("SECRET-plain-key"),
            "the original is untouched"
        );
    }

    #[test]
    fn keys_resolve_to_digests_with_their_scope() {
        use sha2::{Digest, Sha256};
        let checked = |s: &str| {
            let c = Config::from_toml(s)?;
            c.validate().map(|()| c)
        };
        let hex = hex::encode(Sha256::digest(b"hashed-key-value"));
        let c = checked(&format!(
            "api_keys = [\"legacy-key-value\"]\n[[keys]]\nid = \"dash\"\nscope = \"read\"\n\
             key = \"sha256:{hex}\"\n[[keys]]\nid = \"be\"\nscope = \"tickets\"\nkey = \"plain-key-value\""
        ))
        .unwrap();
        let keys = c.resolved_keys();
        let by = |id: &str| keys.iter().find(|k| k.id == id).unwrap().clone();
        assert_eq!(by("api_keys.0").scope, KeyScope::Admin);
        let d: [u8; 32] = Sha256::digest(b"legacy-key-value").into();
        assert_eq!(by("api_keys.0").digest, d);
        let d: [u8; 32] = Sha256::digest(b"hashed-key-value").into();
        assert_eq!(by("dash").digest, d);
        assert_eq!(by("dash").scope, KeyScope::Read);
        let d: [u8; 32] = Sha256::digest(b"plain-key-value").into();
        assert_eq!(by("be").digest, d);
        assert_eq!(by("be").scope, KeyScope::Tickets);
        assert!(
            checked("[[keys]]\nid = \"x\"\nscope = \"root\"\nkey = \"plain-key-value\"").is_err()
        );
    }

    #[test]
    fn dev_mode_listens_only_on_loopback() {
        let checked = |s: &str| Config::from_toml(s).and_then(|c| c.validate());
        let e = checked("dev = true\nlisten = \"0.0.0.0:7878\"").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(checked("dev = true\nlisten = \"[::]:7878\"").is_err());
        assert!(checked("dev = true\nlisten = \"192.168.1.2:7878\"").is_err());
        assert!(checked("dev = true\nlisten = \"127.0.0.1:7878\"").is_ok());
        assert!(checked("dev = true\nlisten = \"[::1]:7878\"").is_ok());
        assert!(checked("listen = \"0.0.0.0:7878\"").is_ok());
    }

    mod props {
        use super::*;
        use figment::Provider;
        use proptest::prelude::*;

        /// Every leaf key of the defaults, dotted (`roles.editor.idle_timeout`).
        fn keys() -> Vec<String> {
            fn walk(prefix: &str, v: &figment::value::Value, out: &mut Vec<String>) {
                match v.as_dict() {
                    Some(d) => {
                        for (k, v) in d {
                            let key = if prefix.is_empty() {
                                k.clone()
                            } else {
                                format!("{prefix}.{k}")
                            };
                            walk(&key, v, out);
                        }
                    }
                    None => out.push(prefix.to_owned()),
                }
            }
            let data = Figment::from(Toml::string(DEFAULTS_TOML))
                .data()
                .expect("defaults");
            let mut out = Vec::new();
            for dict in data.values() {
                for (k, v) in dict {
                    walk(k, v, &mut out);
                }
            }
            out
        }

        /// A TOML value literal of any shape a key might wrongly or rightly get.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just(u64::MAX.to_string()),
                prop_oneof![Just("true"), Just("false")].prop_map(str::to_owned),
                "[0-9]{1,22}(ns|ms|s|m|h|d|y|years)?".prop_map(|s| format!("{s:?}")),
                "(?s).{0,30}".prop_map(|s| format!("{s:?}")),
                "[a-z0-9:/.*\\[\\]-]{0,30}".prop_map(|s| format!("{s:?}")),
                proptest::collection::vec("[ -~]{0,10}", 0..3).prop_map(|v| format!("{v:?}")),
                Just("{ a = 1 }".to_owned()),
                Just("1.5e300".to_owned()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any override of any key loads to a config or a clear error, and a loaded
            /// one validates or names what is wrong: never a panic.
            #[test]
            fn any_override_loads_or_fails_cleanly(
                picks in proptest::collection::vec((any::<proptest::sample::Index>(), value()), 1..4),
            ) {
                let keys = keys();
                let doc: String = picks
                    .iter()
                    .map(|(i, v)| format!("{} = {v}\n", i.get(&keys)))
                    .collect();
                let Ok(mut c) = Config::from_toml(&doc) else {
                    return Ok(());
                };
                c.cookie.name = c.cookie_name();
                match c.validate() {
                    Ok(()) => prop_assert!(c.policies().validate().is_ok(), "{doc}"),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}
