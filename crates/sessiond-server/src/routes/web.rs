//! The browser files, embedded at compile time so the binary serves them from anywhere:
//! `web/demo/` at `/demo/`, `web/admin/` at `/admin/`, the SDK's `sdk/dist/` at `/sdk/`.

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};

// Through `assets/`, links into the repository's `web/` and `sdk/dist/`: inside the
// crate, so a packaged (published) crate carries the files too.
static DEMO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/demo");
static ADMIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/admin");
static SDK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/sdk");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| async { serve(&DEMO, "index.html") }))
        .route(
            "/demo/{*path}",
            get(|Path(p): Path<String>| async move { serve(&DEMO, &p) }),
        )
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(|| async { serve(&ADMIN, "index.html") }))
        .route(
            "/admin/{*path}",
            get(|Path(p): Path<String>| async move { serve(&ADMIN, &p) }),
        )
        .route(
            "/sdk/{*path}",
            get(|Path(p): Path<String>| async move { serve(&SDK, &p) }),
        )
}

/// In dev mode the root leads to the demo; otherwise there is nothing at `/`.
async fn root(State(state): State<AppState>) -> Response {
    if state.config.dev {
        Redirect::temporary("/demo/").into_response()
    } else {
        crate::error::ApiError::NotFound.into_response()
    }
}

/// The content type of an embedded file (JavaScript as `text/javascript`, as module
/// scripts require; text types in UTF-8).
pub fn content_type(path: &str) -> String {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "js" | "mjs" => "text/javascript; charset=utf-8".into(),
        "map" => "application/json".into(),
        "ts" => "text/plain; charset=utf-8".into(),
        _ => {
            let m = mime_guess::from_path(path).first_or_octet_stream();
            if m.type_() == mime_guess::mime::TEXT {
                format!("{m}; charset=utf-8")
            } else {
                m.to_string()
            }
        }
    }
}

fn serve(dir: &'static Dir<'static>, path: &str) -> Response {
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let Some(file) = dir.get_file(&path) else {
        return crate::error::ApiError::NotFound.into_response();
    };
    let mut r = (StatusCode::OK, file.contents()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type(&path))
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        crate::routes::listeners::html_headers(h);
    }
    // Embedded per build: revalidate so an upgraded server's files are picked up.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("sessiond.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x.png"), "image/png");
    }

    #[test]
    fn embedded_files_exist() {
        assert!(DEMO.get_file("index.html").is_some());
        assert!(ADMIN.get_file("index.html").is_some());
        assert!(SDK.get_file("sessiond.js").is_some());
    }
}
