//! The counter app as a binary: `tower-sessions-switch [LISTEN_ADDR] [DATA_DIR]`
//! (defaults `127.0.0.1:3000` and `./data`). Prints `listening on http://ADDR` once
//! ready.

use tower_sessions_sessiond_store::SessiondStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let data_dir = args.next().unwrap_or_else(|| "data".into());

    // Before: let store = tower_sessions::MemoryStore::default();
    let store = SessiondStore::sqlite(&data_dir).await?;

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, tower_sessions_switch::app(store)).await?;
    Ok(())
}
