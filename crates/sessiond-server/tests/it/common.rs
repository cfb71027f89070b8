//! The `it` binary's use of the shared harness (`sessiond_testkit`): the base config of
//! these tests (SQLite in a temp directory, a 200 ms flush) and log capture.

pub use sessiond_testkit::http::{cookie, get, post, problem, set_cookie, token_of};
use sessiond_testkit::inproc::{base_toml, TestServer};
pub use sessiond_testkit::inproc::{DataDir, ADMIN_KEY};
pub use sessiond_testkit::logs::logs;

/// A server of these tests.
pub type Server = TestServer;

/// Options of [`start_with`].
pub struct Opts<'a> {
    pub store: &'a str,
    pub dev: bool,
    /// Extra TOML appended after the base (top-level keys first, then tables).
    pub extra: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            store: "sqlite",
            dev: true,
            extra: "",
        }
    }
}

fn toml(o: &Opts<'_>) -> String {
    format!(
        "{}dev = {}\nhot_path.flush_interval = \"200ms\"\n{}\n",
        base_toml(o.store).replace("dev = true\n", ""),
        o.dev,
        o.extra
    )
}

/// SQLite in a temp directory, dev mode, defaults.
pub async fn start() -> Server {
    start_with(Opts::default()).await
}

pub async fn start_with(o: Opts<'_>) -> Server {
    start_in(&DataDir::new(), o).await
}

/// A server on a given data directory (restarts).
pub async fn start_in(dir: &DataDir, o: Opts<'_>) -> Server {
    sessiond_testkit::logs::capture();
    TestServer::start_in(&toml(&o), dir).await
}
