//! `serve`: one target of the tool, started as the scenarios start it, left running for a
//! fixed time under an outside load generator (`wrk`), with the cookies of sessions made
//! for it written one a line; this is how the tool's own client is checked against `wrk`
//! (bench/wrk-verify.lua spreads wrk's requests over those cookies).

use crate::targets::{self, Kind};
use crate::{load, BenchError};
use std::path::Path;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Starts `kind`, writes `sessions` session cookies to `cookies` (if given), prints the
/// base URL on standard output, and serves for `duration`.
pub fn run(
    servers: &Runtime,
    clients: &Runtime,
    kind: Kind,
    sessions: usize,
    cookies: Option<&Path>,
    duration: Duration,
) -> Result<(), BenchError> {
    let r = servers.block_on(targets::start(kind))?;
    if let Some(path) = cookies {
        let list = clients.block_on(load::new_sessions(&r.url("/v1/session"), sessions))?;
        std::fs::write(path, list.join("\n") + "\n")?;
    }
    println!("{}", r.url(""));
    eprintln!(
        "serving {} for {}",
        kind.label(),
        humantime::format_duration(duration)
    );
    servers.block_on(async { tokio::time::sleep(duration).await });
    servers.block_on(r.stop());
    Ok(())
}
