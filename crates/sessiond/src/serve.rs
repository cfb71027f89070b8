//! `sessiond serve`: configuration from file, env and flags, logging, the listener, the
//! announcement on stdout, and signals turned into the library's shutdown future (SIGINT,
//! SIGTERM) or a certificate reload (SIGHUP).

use crate::cli::ServeArgs;
use crate::error::CliError;
use sessiond_server::config::Config;
use std::io::Write;

/// Loads the configuration (defaults < file < `SESSIOND_*` env < flags); the server
/// builder validates it.
pub fn load_config(args: &ServeArgs) -> Result<Config, CliError> {
    let mut config: Config = Config::figment(args.config.as_deref())
        .extract()
        .map_err(|e| sessiond_server::config::ConfigError::Parse(Box::new(e)))?;
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
        config.store = store.parse()?;
    }
    Ok(config)
}

/// The admin API key to announce in dev mode: the first configured one, or the
/// well-known key the library fills in when none is configured.
pub fn announced_api_key(config: &Config) -> Option<String> {
    if !config.dev {
        return None;
    }
    Some(
        config
            .api_keys
            .first()
            .map(|k| k.expose().to_owned())
            .unwrap_or_else(|| sessiond_server::DEV_API_KEY.to_owned()),
    )
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
            tracing::info!(
                signal = name,
                "shutting down: closing connections, flushing pending writes"
            );
        }
    })
}

/// SIGHUP reads the TLS certificates again (a bad replacement is logged and the one in
/// use kept). The handler is installed even without TLS, so a stray SIGHUP (a closed
/// terminal, a `systemctl reload`) never kills the server.
fn reload_on_hangup(tls: sessiond_server::tls::TlsReload) -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if !tls.is_enabled() {
                    tracing::info!("SIGHUP: no TLS certificate to reload");
                    continue;
                }
                tracing::info!("SIGHUP: reloading the TLS certificates");
                let tls = tls.clone();
                // Reads files: off the async workers. Failures are logged by the reload.
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
    Ok(())
}

pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    // Read first: the trace export it configures is part of the logging set-up.
    let config = load_config(&args)?;
    let telemetry = crate::telemetry::init(&config.tracing)?;
    let result = run(config).await;
    // Spans of the last requests are sent before the process exits, even after a failure.
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    result
}

async fn run(config: Config) -> Result<(), CliError> {
    let api_key = announced_api_key(&config);
    let shutdown = shutdown_signal()?;
    let (listen, store, dev) = (config.listen, config.store.to_string(), config.dev);
    let internal_listen = config.internal_listen;
    let scheme = |on: bool| if on { "https" } else { "http" };
    let (public_scheme, internal_scheme) = (
        scheme(config.tls.enabled()),
        scheme(config.internal_tls.enabled()),
    );
    // Built before binding: an invalid configuration or an unreachable store fails
    // before anything is announced.
    let server = sessiond_server::ServerBuilder::new(config).build().await?;
    reload_on_hangup(server.tls_reload())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CliError::Bind {
            addr: listen,
            source,
        })?;
    let internal = match internal_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| CliError::Bind { addr, source })?,
        ),
        None => None,
    };
    let addr = listener.local_addr()?;
    let mut text = format!("sessiond listening on {public_scheme}://{addr}\n");
    // The admin page lives where the admin API does.
    let admin_addr = match &internal {
        Some(l) => {
            let a = l.local_addr()?;
            text.push_str(&format!(
                "internal (admin, metrics, readiness): {internal_scheme}://{a}\n"
            ));
            a
        }
        None => addr,
    };
    if let Some(key) = &api_key {
        let admin_scheme = if internal.is_some() {
            internal_scheme
        } else {
            public_scheme
        };
        text.push_str(&format!(
            "demo: {public_scheme}://{addr}/demo/\nadmin: {admin_scheme}://{admin_addr}/admin/ (API key: {key})\n"
        ));
    }
    {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    tracing::info!(%addr, store = %store, dev, "listening");
    server.serve_split(listener, internal, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_env() {
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
        let c = load_config(&args).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.store, sessiond_server::config::StoreKind::Sqlite);
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert!(c.dev);
    }

    #[test]
    fn dev_mode_announces_the_key_that_works() {
        let c = Config::from_toml("dev = true").unwrap();
        assert_eq!(
            announced_api_key(&c).as_deref(),
            Some(sessiond_server::DEV_API_KEY)
        );
        let c = Config::from_toml("dev = true\napi_keys = [\"configured-key\"]").unwrap();
        assert_eq!(announced_api_key(&c).as_deref(), Some("configured-key"));
        assert_eq!(announced_api_key(&Config::default()), None);
    }

    #[test]
    fn bad_config_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert!(load_config(&args).is_err());
        let args = ServeArgs {
            config: Some(dir.path().join("missing.toml")),
            ..ServeArgs::default()
        };
        assert!(load_config(&args).is_err());
    }
}
