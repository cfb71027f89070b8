//! Log capture for in-process servers: everything they log at debug level and up goes to
//! one buffer per test binary, so a test can assert what was (never) logged.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Most log bytes kept (tests stay far below; the bound guards a runaway logger).
const MAX_LOG: usize = 256 * 1024 * 1024;

/// Everything every in-process server of this test binary logged so far.
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut l = logs().lock().unwrap_or_else(|e| e.into_inner());
        if l.len() + buf.len() <= MAX_LOG {
            l.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per process (later calls do nothing).
pub fn capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}
