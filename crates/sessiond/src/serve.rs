//! `sessiond serve`: configuration from file, env and flags, logging, the listener, the
//! announcement on stdout, and signals turned into the library's shutdown future.

use crate::cli::ServeArgs;
use crate::error::CliError;
use rand::distributions::{Alphanumeric, DistString};
use sessiond_server::config::Config;
use std::io::Write;
use std::path::Path;

/// Loads the configuration (defaults < file < `SESSIOND_*` env < flags) and validates it.
pub fn load_config(args: &ServeArgs) -> Result<Config, CliError> {
    let mut config: Config = Config::figment(args.config.as_deref()).extract().map_err(|e| {
        sessiond_server::config::ConfigError::Parse(Box::new(e))
    })?;
    if args.dev {
        config.dev = true;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(store) = &args.store {
        config.store = store.clone();
    }
    config.validate()?;
    Ok(config)
}

/// In dev mode, fills in what a local demo needs and the config left empty: an admin API
/// key (kept in the data directory so it survives restarts) and a ticket secret. Returns
/// the API key to announce.
pub fn apply_dev_defaults(config: &mut Config) -> Result<Option<String>, CliError> {
    if !config.dev {
        return Ok(None);
    }
    if config.api_keys.is_empty() {
        let key = if config.store == "sqlite" { persistent_dev_key(&config.data_dir)? } else { random_secret("dev_") };
        config.api_keys.push(key);
    }
    if config.tickets.hs256_secret.is_empty() && config.tickets.ed25519_public_key.is_empty() {
        config.tickets.hs256_secret = random_secret("dev-ticket-secret-");
    }
    Ok(config.api_keys.first().cloned())
}

fn random_secret(prefix: &str) -> String {
    // 32 alphanumerics from the OS CSPRNG: about 190 bits.
    format!("{prefix}{}", Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32))
}

fn persistent_dev_key(data_dir: &Path) -> Result<String, CliError> {
    let path = data_dir.join("dev-api-key");
    let err = |source| CliError::DevKey { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() >= 16 => return Ok(k.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let key = random_secret("dev_");
    let tmp = data_dir.join("dev-api-key.tmp");
    std::fs::write(&tmp, format!("{key}\n")).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(key)
}

/// Structured logs on stderr (stdout carries only the announcement): JSON when
/// `SESSIOND_LOG_FORMAT=json`, level from `RUST_LOG` (default `info`).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SESSIOND_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
    } else {
        builder.init();
    }
}

/// The shutdown future for the library: the first SIGINT or SIGTERM starts a graceful
/// shutdown; a second one exits at once (an operator who insists is not kept waiting).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, CliError> {
    let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
    // Handlers are installed now, before the announcement, so an early SIGTERM is never
    // met by the default action (which would kill the process without flushing).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(name);
                    }
                    None => {
                        tracing::warn!(signal = name, "second signal: exiting without waiting");
                        std::process::exit(130);
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send("Ctrl-C");
        }
    });
    Ok(async move {
        if let Ok(name) = rx.await {
            tracing::info!(signal = name, "shutting down: closing connections, flushing pending writes");
        }
    })
}

pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_logging();
    let mut config = load_config(&args)?;
    let api_key = apply_dev_defaults(&mut config)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| CliError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr()?;
    let mut text = format!("sessiond listening on http://{addr}\n");
    if let Some(key) = &api_key {
        text.push_str(&format!("demo: http://{addr}/demo/\nadmin: http://{addr}/admin/ (API key: {key})\n"));
    }
    {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    tracing::info!(%addr, store = %config.store, dev = config.dev, "listening");
    sessiond_server::run(config, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_dev_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nstore = \"memory\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            dev: true,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().join("data")),
            store: Some("sqlite".into()),
        };
        let mut c = load_config(&args).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.store, "sqlite");
        assert!(c.dev);
        let key = apply_dev_defaults(&mut c).unwrap().unwrap();
        assert!(key.starts_with("dev_") && key.len() == 36);
        assert!(c.tickets.hs256_secret.len() >= 32);
        // The generated key is kept, so a restart announces the same one.
        let mut again = load_config(&args).unwrap();
        assert_eq!(apply_dev_defaults(&mut again).unwrap().unwrap(), key);
    }

    #[test]
    fn configured_keys_are_kept_and_production_gets_nothing() {
        let mut c = Config::from_toml("dev = true\napi_keys = [\"configured-key\"]").unwrap();
        assert_eq!(apply_dev_defaults(&mut c).unwrap().as_deref(), Some("configured-key"));
        let mut p = Config::default();
        assert_eq!(apply_dev_defaults(&mut p).unwrap(), None);
        assert!(p.api_keys.is_empty() && p.tickets.hs256_secret.is_empty());
    }

    #[test]
    fn bad_config_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        let args = ServeArgs { config: Some(file), ..ServeArgs::default() };
        assert!(load_config(&args).is_err());
        let args = ServeArgs { config: Some(dir.path().join("missing.toml")), ..ServeArgs::default() };
        assert!(load_config(&args).is_err());
    }
}
