//! `sessiond config check|print`: the configuration `serve` would use (defaults, file,
//! `SESSIOND_*` environment, flags), validated as the server validates it, or shown with
//! its secrets masked.

use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::serve::load_config;
use std::io::Write;

/// Loads and validates; prints a summary and any notes on stdout. An invalid
/// configuration is an error (exit code 1) naming the key.
pub fn check(args: &ServeArgs) -> Result<(), CliError> {
    let config = load_config(args)?;
    config.validate()?;
    // The certificate files, read and checked as `serve` would at start.
    sessiond_server::tls::check(&config).map_err(sessiond_server::ServerError::from)?;
    let source = match &args.config {
        Some(f) => f.display().to_string(),
        None => "built-in defaults".to_owned(),
    };
    let mut text = format!("configuration OK ({source}, SESSIOND_* environment, flags)\n");
    text.push_str(&format!("  listen: {}\n", config.listen));
    if let Some(internal) = config.internal_listen {
        text.push_str(&format!(
            "  internal_listen: {internal} (admin API, admin page, metrics, readiness)\n"
        ));
    }
    for (section, t) in [("tls", &config.tls), ("internal_tls", &config.internal_tls)] {
        if t.enabled() {
            text.push_str(&format!(
                "  {section}: {} (key {}, checked every {})\n",
                t.cert.display(),
                t.key.display(),
                humantime::format_duration(t.reload_interval)
            ));
        }
    }
    text.push_str(&format!("  store: {}\n", config.store));
    let keys = config.resolved_keys();
    text.push_str(&format!("  API keys: {}", keys.len()));
    if !keys.is_empty() {
        let named: Vec<String> = keys
            .iter()
            .map(|k| format!("{} ({})", k.id, k.scope.as_str()))
            .collect();
        text.push_str(&format!(": {}", named.join(", ")));
    }
    text.push('\n');
    if config.dev {
        text.push_str("note: dev mode is on: never use it in production\n");
    } else if keys.is_empty() {
        text.push_str("note: no API keys: the admin API refuses every call\n");
    }
    if !config.dev
        && config.tickets.hs256_secret.is_empty()
        && config.tickets.ed25519_public_key.is_empty()
    {
        text.push_str("note: no ticket key (tickets.hs256_secret or tickets.ed25519_public_key): nobody can sign in\n");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Prints the effective configuration as TOML, every secret `[redacted]` (so it is for
/// reading, not for use as a file). An invalid configuration is still printed, then reported.
pub fn print(args: &ServeArgs) -> Result<(), CliError> {
    let config = load_config(args)?;
    let text = toml::to_string(&config.masked())
        .map_err(|e| CliError::Protocol(format!("cannot show the configuration: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    drop(out);
    config.validate()?;
    Ok(())
}
