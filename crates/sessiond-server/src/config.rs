//! The one typed configuration: embedded commented defaults, then a TOML file, then
//! `SESSIOND_*` environment variables, then flags (applied by the binary), then validation.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sessiond_core::policy::{Policies, Policy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The commented defaults, shipped as `sessiond.example.toml` at the repository root.
pub const DEFAULTS_TOML: &str = include_str!("../../../sessiond.example.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: String,
    pub dev: bool,
    pub api_keys: Vec<String>,
    pub default_role: String,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub server_secret: String,
    pub cookie: CookieConfig,
    pub tickets: TicketConfig,
    pub hot_path: HotPathConfig,
    pub ws: WsConfig,
    pub drafts: DraftsConfig,
    pub snapshots: SnapshotsConfig,
    pub audit: AuditConfig,
    pub redis: RedisSettings,
    pub roles: BTreeMap<String, RoleConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    pub name: String,
    pub secure: bool,
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    pub hs256_secret: String,
    pub ed25519_public_key: String,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
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
    pub encryption_key: String,
    pub decryption_keys: Vec<String>,
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
        // SESSIOND_SERVER, SESSIOND_API_KEY (the CLI's) and SESSIOND_LOG_FORMAT are not keys.
        f.merge(
            Env::prefixed("SESSIOND_")
                .ignore(&["server", "api_key", "log_format"])
                .split("__"),
        )
    }

    /// Loads and validates (flags are applied by the caller, then [`Config::validate`] again).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let c: Config = Config::figment(file).extract().map_err(Box::new)?;
        c.validate()?;
        Ok(c)
    }

    /// Parses a TOML string over the defaults (tests and embedding).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let c: Config = Figment::from(Toml::string(DEFAULTS_TOML))
            .merge(Toml::string(s))
            .extract()
            .map_err(Box::new)?;
        c.validate()?;
        Ok(c)
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
                };
                (name.clone(), p)
            })
            .collect();
        Policies {
            roles,
            default_role: self.default_role.clone(),
        }
    }

    /// Whether cookies carry `Secure` (always, unless dev mode or explicitly disabled).
    pub fn cookie_secure(&self) -> bool {
        self.cookie.secure && !self.dev
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let inv = |m: String| Err(ConfigError::Invalid(m));
        self.policies().validate().map_err(ConfigError::Invalid)?;
        if self.cookie.name.is_empty()
            || !self
                .cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return inv("cookie.name must be a non-empty token of A-Z a-z 0-9 _ -".into());
        }
        if self.api_keys.iter().any(|k| k.len() < 8) && !self.dev {
            return inv("api_keys must be at least 8 characters".into());
        }
        if !self.tickets.hs256_secret.is_empty() && self.tickets.hs256_secret.len() < 32 {
            return inv("tickets.hs256_secret must be at least 32 bytes".into());
        }
        for p in &self.trusted_proxies {
            if p.parse::<ipnet::IpNet>().is_err() && p.parse::<std::net::IpAddr>().is_err() {
                return inv(format!("trusted_proxies: {p:?} is not an IP or CIDR"));
            }
        }
        if self.hot_path.flush_interval.is_zero() {
            return inv("hot_path.flush_interval must be positive".into());
        }
        if self.ws.max_message_size < 1024 || self.ws.outbound_queue == 0 {
            return inv("ws.max_message_size must be >= 1024 and ws.outbound_queue >= 1".into());
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
        let s = self.store.as_str();
        if !(s == "sqlite" || s == "memory" || s.starts_with("redis")) {
            return inv(format!(
                "store {s:?}: expected sqlite, memory or a redis URL"
            ));
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
        assert_eq!(c.cookie.name, "sessiond");
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
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(Config::from_toml("store = \"mongo\"").is_err());
        assert!(Config::from_toml("unknown_key = 1").is_err());
        assert!(Config::from_toml("default_role = \"nobody\"").is_err());
        assert!(Config::from_toml("trusted_proxies = [\"not-an-ip\"]").is_err());
    }
}
