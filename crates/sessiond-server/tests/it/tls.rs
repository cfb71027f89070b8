//! TLS on the public listener with certificates the test issues (rcgen: a CA and a leaf
//! for 127.0.0.1 and localhost): HTTPS with HTTP/2 when the client offers it, Secure
//! cookies, a WebSocket over wss, and certificate reloads (on demand, as SIGHUP does, and
//! on a file change) that new handshakes see while open connections keep working, a
//! broken replacement leaving the certificate in use.

use crate::common::*;
use futures::{SinkExt, StreamExt};
use reqwest::{Client, Version};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use sessiond_server::config::Config;
use sessiond_server::tls::TlsReload;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A CA and a leaf certificate it signed for 127.0.0.1 and localhost.
struct Issued {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn issue(name: &str) -> Issued {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("sessiond test CA {name}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    Issued {
        ca_pem: ca_cert.pem(),
        // The chain as operators deploy it: leaf, then the CA.
        cert_pem: format!("{}{}", leaf.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    }
}

struct TlsServer {
    url: String,
    reload: TlsReload,
    cert: PathBuf,
    key: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: DataDir,
}

impl TlsServer {
    fn install(&self, issued: &Issued) {
        // Key first: a poll between the two writes sees a mismatch and keeps the old pair.
        std::fs::write(&self.key, &issued.key_pem).unwrap();
        std::fs::write(&self.cert, &issued.cert_pem).unwrap();
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("stops in time")
            .unwrap();
    }
}

/// Not dev mode, so cookies are Secure as in production.
async fn start(issued: &Issued, reload_interval: &str) -> TlsServer {
    let dir = DataDir::new();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let mut config = Config::from_toml(&format!(
        "store = \"memory\"\napi_keys = [\"{ADMIN_KEY}\"]\n\
         [tls]\ncert = {cert:?}\nkey = {key:?}\nreload_interval = \"{reload_interval}\"\n"
    ))
    .unwrap();
    config.data_dir = dir.path().join("data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = sessiond_server::ServerBuilder::new(config)
        .build()
        .await
        .unwrap();
    let reload = server.tls_reload();
    assert!(reload.is_enabled());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve_split(listener, None, async move {
                let _ = rx.await;
            })
            .await
            .unwrap()
    });
    let c = trusting(&issued.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server answers over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    TlsServer {
        url,
        reload,
        cert,
        key,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

/// An HTTPS client that trusts `ca_pem` only (it offers h2 and http/1.1 by ALPN).
fn trusting(ca_pem: &str) -> Client {
    Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .cookie_store(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A fresh client's handshake result: `Ok` when it trusts the certificate served now.
async fn handshake(ca_pem: &str, url: &str) -> Result<reqwest::Response, reqwest::Error> {
    trusting(ca_pem).get(format!("{url}/healthz")).send().await
}

fn rustls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bearer session and a `wss://` socket for it, past its `hello`.
async fn wss(server: &TlsServer, ca_pem: &str) -> Wss {
    let r = trusting(ca_pem)
        .post(format!("{}/v1/session", server.url))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut req = format!("{}/v1/ws", server.url.replacen("https", "wss", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("sessiond.v1, bearer.{token}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(rustls_client(ca_pem))),
    )
    .await
    .expect("wss upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    ws
}

async fn next_json(ws: &mut Wss) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// An application ping over the socket comes back as a pong with its id.
async fn ping(ws: &mut Wss, id: u64) {
    ws.send(Message::Text(json!({"type": "ping", "id": id}).to_string()))
        .await
        .unwrap();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "pong" {
            assert_eq!(v["id"], id);
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_http2_when_offered_secure_cookies_and_wss() {
    let a = issue("a");
    let server = start(&a, "1h").await;

    // ALPN: h2 for a client that offers it, HTTP/1.1 for one that does not.
    let c = trusting(&a.ca_pem);
    let r = c
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    let h1 = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(a.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_11));

    // No plain-HTTP fallback on the TLS port, and no trust without the CA.
    let plain = server.url.replacen("https", "http", 1);
    assert!(Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_err());
    let other = issue("other");
    assert!(handshake(&other.ca_pem, &server.url).await.is_err());

    // The session cookie is Secure (__Host-) and the client sends it back over HTTPS.
    let r = c
        .post(format!("{}/v1/session", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Host-sessiond=") && set_cookie.contains("; Secure"),
        "{set_cookie}"
    );
    let handle = r.json::<Value>().await.unwrap()["handle"].clone();
    let r = c
        .get(format!("{}/v1/session", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["handle"], handle);

    let mut ws = wss(&server, &a.ca_pem).await;
    ping(&mut ws, 1).await;
    ws.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_the_new_certificate_keeps_open_connections_and_refuses_broken_files() {
    let (a, b) = (issue("a"), issue("b"));
    // Polling is off in effect: the reloads here are the on-demand ones SIGHUP makes.
    let server = start(&a, "1h").await;
    let old_client = trusting(&a.ca_pem);
    let r = old_client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    let mut ws = wss(&server, &a.ca_pem).await;

    server.install(&b);
    server.reload.reload().expect("the new pair loads");
    // New handshakes get B: a client trusting only A is refused, one trusting B gets in.
    assert!(handshake(&a.ca_pem, &server.url).await.is_err());
    assert_eq!(
        handshake(&b.ca_pem, &server.url).await.unwrap().status(),
        200
    );
    // The connections opened under A go on: the pooled HTTP/2 connection (a new one
    // would be refused, since this client trusts only A) and the WebSocket.
    for _ in 0..3 {
        let r = old_client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .expect("the open connection still serves");
        assert_eq!(r.status(), 200);
    }
    ping(&mut ws, 2).await;

    // Broken replacements: not PEM, an empty chain, a key of another certificate, a
    // missing file. Each reload fails naming the problem, and B stays.
    let c = issue("c");
    std::fs::write(&server.cert, "not a certificate").unwrap();
    let e = server.reload.reload().unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE block"), "{e}");
    std::fs::write(&server.cert, &c.cert_pem).unwrap();
    let e = server.reload.reload().unwrap_err().to_string();
    assert!(e.contains("does not belong to the certificate"), "{e}");
    std::fs::write(
        &server.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = server.reload.reload().unwrap_err().to_string();
    assert!(e.contains("not a usable PEM private key"), "{e}");
    std::fs::remove_file(&server.key).unwrap();
    let e = server.reload.reload().unwrap_err().to_string();
    assert!(e.contains("cannot read"), "{e}");
    assert_eq!(
        handshake(&b.ca_pem, &server.url).await.unwrap().status(),
        200
    );
    assert!(handshake(&c.ca_pem, &server.url).await.is_err());
    ping(&mut ws, 3).await;

    // A good pair again is taken.
    server.install(&c);
    server.reload.reload().unwrap();
    assert_eq!(
        handshake(&c.ca_pem, &server.url).await.unwrap().status(),
        200
    );
    ws.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_picked_up_by_polling_and_a_broken_change_is_ignored() {
    let (a, b) = (issue("a"), issue("b"));
    let server = start(&a, "200ms").await;
    server.install(&b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(&b.ca_pem, &server.url).await.is_err() {
        assert!(Instant::now() < deadline, "the changed files are loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handshake(&a.ca_pem, &server.url).await.is_err());

    // A half-written certificate: noticed, refused, B kept.
    std::fs::write(&server.cert, &b.cert_pem[..b.cert_pem.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        handshake(&b.ca_pem, &server.url).await.unwrap().status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_fails_the_start_naming_the_file() {
    let dir = DataDir::new();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let a = issue("a");
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, issue("b").key_pem).unwrap();
    let mut config = Config::from_toml(&format!(
        "store = \"memory\"\napi_keys = [\"{ADMIN_KEY}\"]\n[tls]\ncert = {cert:?}\nkey = {key:?}\n"
    ))
    .unwrap();
    config.data_dir = dir.path().join("data");
    let err = sessiond_server::ServerBuilder::new(config.clone())
        .build()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("tls:") && err.contains("does not belong") && err.contains("key.pem"),
        "{err}"
    );
    // A key without a certificate is a configuration error, before any file is read.
    config.tls.cert = PathBuf::new();
    let err = sessiond_server::ServerBuilder::new(config)
        .build()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("tls.cert and tls.key go together"), "{err}");
}
