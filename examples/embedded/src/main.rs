//! `example-embedded [config.toml]`: serves the example on the configured `listen`
//! address (`SESSIOND_*` environment variables apply too) until ctrl-c.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).map(std::path::PathBuf::from);
    let config: sessiond_server::config::Config =
        sessiond_server::config::Config::figment(file.as_deref()).extract()?;
    let listen = config.listen;
    let app = example_embedded::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Pending activity is written before the process ends.
    app.guard.shutdown().await;
    Ok(())
}
