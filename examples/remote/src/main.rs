//! `example-remote`: serves the backend on `LISTEN` (default 127.0.0.1:3001) against the
//! sessiond server at `SESSIOND_URL` (default http://127.0.0.1:7400) with the API key
//! `SESSIOND_API_KEY`. `COOKIE_SECURE=false` for plain-HTTP development.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let api_key = std::env::var("SESSIOND_API_KEY").map_err(|_| "SESSIOND_API_KEY is not set")?;
    let secure = env("COOKIE_SECURE", "true") != "false";
    let sessiond = example_remote::sessiond(
        &env("SESSIOND_URL", "http://127.0.0.1:7400"),
        &api_key,
        secure,
    )?;
    let listener = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:3001")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, example_remote::app(&sessiond))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
