//! The binary's one error type: every failure becomes a short message and exit code 1.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Server(#[from] sessiond_server::ServerError),
    #[error(transparent)]
    Config(#[from] sessiond_server::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Backup(#[from] sessiond_store_sqlite::SqliteError),
    #[error("{0}")]
    NotSqlite(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("no API key: pass --api-key or set SESSIOND_API_KEY (in dev mode `sessiond serve --dev` prints one)")]
    NoApiKey,
    #[error("--ca-cert {}: {reason}", path.display())]
    CaCert {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("invalid server URL {0:?}")]
    BadUrl(String),
    #[error("invalid --since {0:?}: expected an RFC 3339 time or a duration such as 10m")]
    BadSince(String),
    #[error("cannot reach sessiond at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// A problem+json (or other error) answer of the admin API.
    #[error("{status} {code}: {detail}")]
    Api {
        status: u16,
        code: String,
        detail: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("cannot set up trace export: {0}")]
    Telemetry(String),
}
