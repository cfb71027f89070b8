//! `sessiond backup`: an online backup of the embedded SQLite store named by a
//! configuration, without going through a running server (the store does the copying).

use crate::cli::{BackupArgs, ServeArgs};
use crate::error::CliError;
use crate::serve::load_config;
use sessiond_server::config::StoreKind;
use std::io::Write;

pub async fn run(args: BackupArgs) -> Result<(), CliError> {
    let config = load_config(&ServeArgs {
        config: args.config,
        data_dir: args.data_dir,
        ..ServeArgs::default()
    })?;
    match &config.store {
        StoreKind::Sqlite => {}
        StoreKind::Memory => {
            return Err(CliError::NotSqlite(
                "store = \"memory\" keeps nothing on disk: there is nothing to back up".into(),
            ))
        }
        StoreKind::Redis(_) => {
            return Err(CliError::NotSqlite(format!(
                "the store is Redis ({}): back it up with Redis' own persistence (RDB snapshots, \
                 AOF), see docs/operations.md; `sessiond backup` copies the embedded SQLite store only",
                config.store
            )))
        }
    }
    let (from, to) = (config.data_dir.clone(), args.to);
    let report = tokio::task::spawn_blocking(move || sessiond_store_sqlite::backup(&from, &to))
        .await
        .map_err(|e| CliError::Protocol(format!("backup task failed: {e}")))??;
    let text = format!(
        "backup written to {}\n  database: {} bytes, schema version {}, {} sessions, integrity ok\n  attachments: {} files, {} bytes\n  server-secret: {}\n",
        report.path.display(),
        report.db_bytes,
        report.schema_version,
        report.sessions,
        report.blobs,
        report.blob_bytes,
        if report.secret {
            "copied"
        } else {
            "none in data_dir (server_secret is configured, or the server never started)"
        },
    );
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
