//! Forward-auth behind a real nginx (Debian's `nginx-light`, `auth_request`), configured
//! with the very configuration docs/operations.md documents (read from the page, so the
//! two cannot drift), in front of sessiond and a backend that echoes what it receives:
//! a spoofed `X-Session-*` header never reaches the backend, a cross-site POST is
//! refused, a live session passes with its headers, an ended one gets 401.
//!
//! nginx runs in the foreground as one process (`master_process off`), on a free port,
//! with its pid, logs and temp files in a temp directory; it is killed on drop.

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sessiond_testkit::http::{hs256_ticket, Browser};
use sessiond_testkit::inproc::{base_toml, TestServer, TICKET_SECRET};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NGINX: &str = "/usr/sbin/nginx";

/// The nginx block of docs/operations.md's "nginx `auth_request`" section.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let section = &doc[doc
        .find("### nginx `auth_request`")
        .expect("the nginx section")..];
    let start = section.find("```nginx\n").expect("an nginx block") + "```nginx\n".len();
    let len = section[start..].find("\n```").expect("the block's end");
    section[start..start + len].to_owned()
}

/// `text` with `from` replaced by `to`, which must occur (a changed doc fails loudly).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the documented config lost {from:?}");
    text.replace(from, to)
}

/// A running nginx, killed (and reaped) on drop.
struct Nginx {
    child: Child,
    url: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on a free port, with the documented server in front of `sessiond` and
    /// `backend` (both `127.0.0.1:PORT`).
    async fn start(sessiond: &str, backend: &str) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install -y nginx-light (scripts/test installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("sessiond-nginx-")
            .tempdir()
            .expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = documented_config();
        server = substitute(
            &server,
            "listen      80;",
            &format!("listen 127.0.0.1:{port};"),
        );
        server = substitute(&server, "127.0.0.1:7878", sessiond);
        server = substitute(&server, "127.0.0.1:8080", backend);
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log stderr warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{server}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr,
            _dir: dir,
        };
        let addr = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = n.child.try_wait().expect("nginx status") {
                panic!("nginx exited ({status}): {}", n.log());
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen: {}",
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The application behind the proxy: echoes the method, path and headers it received,
/// and counts the requests that reached it.
struct Backend {
    addr: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn echo(
    State(hits): State<Arc<AtomicUsize>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut h = serde_json::Map::new();
    for (k, v) in &headers {
        let v = Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
        match h.get_mut(k.as_str()) {
            // A repeated header shows as a list, so a smuggled second copy is visible.
            Some(Value::Array(all)) => all.push(v),
            Some(first) => *first = Value::Array(vec![first.clone(), v]),
            None => {
                h.insert(k.as_str().to_owned(), v);
            }
        }
    }
    Json(json!({"method": method.as_str(), "path": uri.path(), "headers": h}))
}

impl Backend {
    async fn start() -> Backend {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback(echo).with_state(hits.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = l.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            axum::serve(l, app).await.expect("backend");
        });
        Backend { addr, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every identity header, as a client would forge them.
const SPOOFED: [(&str, &str); 4] = [
    ("x-session-user", "admin"),
    ("x-session-role", "admin"),
    ("x-session-principal", "user:admin"),
    ("x-session-handle", "forged"),
];

/// A GET through nginx with the forged identity headers; the backend's echo.
async fn spoofed_get(c: &Client, nginx: &Nginx, path: &str, cookie: &str) -> Value {
    let mut rb = c.get(nginx.u(path)).header("cookie", cookie);
    for (k, v) in SPOOFED {
        rb = rb.header(k, v);
    }
    let r = rb.send().await.expect("request through nginx");
    assert_eq!(r.status(), StatusCode::OK, "{path}: {}", nginx.log());
    r.json().await.expect("backend echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forward_auth_cannot_be_spoofed() {
    let s = TestServer::start(&base_toml("memory")).await;
    let backend = Backend::start().await;
    let sessiond = s.url.strip_prefix("http://").expect("http url").to_owned();
    let nginx = Nginx::start(&sessiond, &backend.addr).await;
    let c = Client::new();

    // No session: 401, and the backend never sees the request.
    let r = c.get(nginx.u("/app/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(backend.hits(), 0);

    // An anonymous session: its identity, never the forged one; no user at all.
    let b = Browser::new(&s.url);
    b.new_session().await;
    let principal = b.principal().await;
    let cookie = b.cookie_header();
    for path in ["/app/x", "/assets/app.js"] {
        let echo = spoofed_get(&c, &nginx, path, &cookie).await;
        let h = &echo["headers"];
        assert_eq!(h["x-session-principal"], principal.as_str(), "{path}: {h}");
        assert_eq!(h["x-session-role"], "editor", "{path}");
        assert_ne!(h["x-session-handle"], "forged", "{path}");
        assert!(h["x-session-handle"]
            .as_str()
            .is_some_and(|v| !v.is_empty()));
        assert!(
            h.get("x-session-user").is_none(),
            "{path}: a forged user reached the backend: {h}"
        );
    }

    // Cross-site unsafe requests are refused before the backend; forged forwarded
    // headers cannot hide the method or claim the origin.
    let hits = backend.hits();
    let own = nginx.url.clone();
    let https_twin = own.replace("http://", "https://");
    let forged_host: &[(&str, &str)] = &[
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    for (origin, extra) in [
        ("https://evil.example", &[][..]),
        ("null", &[]),
        (https_twin.as_str(), &[]),
        ("https://evil.example", &[("x-forwarded-method", "GET")]),
        ("https://evil.example", forged_host),
    ] {
        let mut rb = c
            .post(nginx.u("/app/transfer"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .body("amount=100");
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin} {extra:?}");
    }
    for m in [Method::PUT, Method::DELETE, Method::PATCH] {
        let r = c
            .request(m.clone(), nginx.u("/app/x"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{m}");
    }
    assert_eq!(
        backend.hits(),
        hits,
        "a refused request reached the backend"
    );

    // The same POST from the application's own page passes, with the session's headers.
    let r = c
        .post(nginx.u("/app/transfer"))
        .header("cookie", &cookie)
        .header("origin", &own)
        .header("x-session-user", "admin")
        .body("amount=100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.log());
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["x-session-principal"], principal.as_str());
    assert!(echo["headers"].get("x-session-user").is_none());

    // sessiond's own API through the same server: a same-origin write passes (Host is
    // passed on), an https page on the same host does not.
    for (origin, status) in [(own.as_str(), 200), (https_twin.as_str(), 403)] {
        let r = c
            .post(nginx.u("/v1/session/activity"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{origin}");
    }

    // Signed in: the real user, never the forged one.
    b.sign_in_with(
        &hs256_ticket(TICKET_SECRET, "alice", "editor", None),
        "alice",
    )
    .await;
    let cookie = b.cookie_header();
    let echo = spoofed_get(&c, &nginx, "/app/x", &cookie).await;
    let h = &echo["headers"];
    assert_eq!(h["x-session-user"], "alice", "{h}");
    assert_eq!(h["x-session-principal"], "user:alice");
    assert_eq!(h["x-session-role"], "editor");

    // Ended: 401 through nginx, the backend untouched.
    b.sign_out().await;
    let hits = backend.hits();
    let r = c
        .get(nginx.u("/app/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(backend.hits(), hits);
    drop(nginx);
    s.stop().await;
}
