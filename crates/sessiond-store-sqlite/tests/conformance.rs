//! The shared backend conformance suite, run against a fresh SQLite store per check.

use sessiond_core::Store;
use sessiond_store_sqlite::SqliteStore;
use std::sync::Arc;

sessiond_testkit::conformance_suite!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .unwrap()
        .expect("open store");
    (Arc::new(store) as Arc<dyn Store>, dir)
});
