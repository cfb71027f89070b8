//! Command-line arguments (clap derive). Kept free of behaviour so `--help` is the spec.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Session-lifecycle server for real-time web apps",
    arg_required_else_help = true,
    after_help = "Try it locally: `sessiond serve --dev` (a demo on 127.0.0.1:7878; never production)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// List, inspect and revoke sessions of a running server.
    Sessions {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// List WebSocket rooms of a running server and their members (cluster-wide).
    Rooms {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: RoomsCommand,
    },
    /// Read the audit trail of a running server.
    Audit(AuditArgs),
    /// Check or show the configuration (file, SESSIOND_* environment and flags).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (e.g. `sessiond completions bash > /etc/bash_completion.d/sessiond`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Copy the embedded SQLite store (database, attachments, server secret) into a new
    /// directory, consistently, while the server runs.
    Backup(BackupArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The server's TOML configuration file (its `store` and `data_dir` are used).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store (overrides the configuration's `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The backup directory to create; it must not exist yet.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// List rooms with members on any node, with their member counts.
    Ls,
    /// Show one room's members (connection, session, principal, role, node).
    Show { room: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration `serve` would use; exit code 1 with the reason if invalid.
    Check(ServeArgs),
    /// Print the effective configuration as TOML, secrets masked.
    Print(ServeArgs),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file (over the built-in defaults; SESSIOND_* env overrides it).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dev mode: cookies without Secure, demo and admin pages, a generated API key.
    #[arg(long)]
    pub dev: bool,
    /// Address to listen on (port 0 picks a free port; the bound one is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store backend: sqlite, memory or a redis URL.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// Base URL of a running sessiond.
    #[arg(
        long,
        global = true,
        env = "SESSIOND_SERVER",
        default_value = "http://127.0.0.1:7878"
    )]
    pub server: String,
    /// Admin API key.
    #[arg(long, global = true, env = "SESSIOND_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM certificate to trust for an https:// server, besides the public roots (a
    /// private CA or a self-signed certificate).
    #[arg(long, global = true, env = "SESSIOND_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print the server's raw JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions (active ones unless --all).
    Ls {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        role: Option<String>,
        /// Include ended sessions.
        #[arg(long)]
        all: bool,
        /// At most this many sessions.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one session.
    Show { handle: String },
    /// End one session with reason `revoked`.
    Revoke { handle: String },
    /// End every session of a principal ("sign out everywhere").
    RevokePrincipal { principal: String },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub principal: Option<String>,
    #[arg(long)]
    pub handle: Option<String>,
    /// Ending reason: signed_out, idle_timeout, absolute_timeout, revoked, heartbeat_lost.
    #[arg(long)]
    pub reason: Option<String>,
    /// Event kind: created, signed_in, token_rotated, renewed, ended, …
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events since this RFC 3339 time, or this long ago ("10m", "2h").
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many events (before following).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Keep polling for new events every second (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
}
