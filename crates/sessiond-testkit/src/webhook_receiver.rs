//! A webhook receiver for tests: an axum server on 127.0.0.1:0 that records every
//! request (headers and body), answers 500 while told to fail (the next `n` requests, or
//! all of them), optionally takes a while to answer, and checks Standard Webhooks
//! signatures with its own HMAC (not the server's signer).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A Standard Webhooks secret for tests (`whsec_` + base64 of 32 bytes).
pub const SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5YWI=";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
    pub json: Value,
    /// Whether the receiver answered 2xx.
    pub accepted: bool,
}

impl Delivery {
    /// The audit event id (`data.id`).
    pub fn event_id(&self) -> i64 {
        self.json["data"]["id"].as_i64().expect("data.id")
    }
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Delivery>>,
    fail_next: AtomicUsize,
    fail_all: AtomicBool,
    delay_ms: AtomicU64,
}

/// The running receiver; stopped on drop.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

async fn hook(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fail = s.fail_all.load(Ordering::SeqCst)
        || s.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let d = Delivery {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body,
        accepted: !fail,
    };
    s.got.lock().unwrap().push(d);
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner, task }
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers 500 to every request while `on`.
    pub fn fail_all(&self, on: bool) {
        self.inner.fail_all.store(on, Ordering::SeqCst);
    }

    /// Waits this long before answering each request.
    pub fn delay(&self, d: Duration) {
        self.inner
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.got.lock().unwrap().clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.accepted)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `d` carries a valid Standard Webhooks signature for `secret`: HMAC-SHA256 of
/// `"{id}.{timestamp}.{body}"` with the secret's bytes, base64, among the `v1,` entries.
pub fn verify(secret: &str, d: &Delivery) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.body);
    let want = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    d.signature.split(' ').any(|s| s == want)
}
