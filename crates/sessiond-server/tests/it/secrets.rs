//! No session token (nor idempotency key) is ever written to the data directory, the
//! logs or the audit trail.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use std::path::Path;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_the_data_directory_logs_or_audit() {
    let s = start().await;
    let c = Client::new();
    let mut secrets = Vec::new();
    let mut handles = Vec::new();
    // Cookie, bearer, idempotent and signed-in (rotated) tokens.
    let (t1, v1) = s.new_session().await;
    secrets.push(t1.clone());
    handles.push(v1["handle"].as_str().unwrap().to_owned());
    let v: Value = c
        .post(s.u("/v1/session"))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    secrets.push(v["token"].as_str().unwrap().to_owned());
    let key = "idem-key-that-is-a-secret-too";
    secrets.push(key.to_owned());
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    secrets.push(token_of(r.headers()).unwrap());
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.put(s.u("/v1/session/data/k"))
        .header("cookie", cookie(&t1))
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    post(&s.u("/v1/session/activity"), &t1).await;
    let r = c
        .post(s.u("/v1/session/signin"))
        .header("cookie", cookie(&t1))
        .json(&json!({"ticket": s.ticket("erin", "editor").await}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2 = token_of(r.headers()).unwrap();
    secrets.push(t2.clone());
    post(&s.u("/v1/session/renew"), &t2).await;
    get(&s.u("/v1/auth/verify"), &t2).await;
    c.delete(s.u("/v1/session"))
        .header("cookie", cookie(&t2))
        .send()
        .await
        .unwrap();
    let audit = s.admin_get("/v1/admin/audit?limit=1000").await;
    let dir = s.dir.clone();
    let _keep = s.stop().await;

    for t in &secrets {
        assert!(t.len() >= 20, "a real secret: {}", t.len());
    }
    let audit_text = audit.to_string();
    assert!(
        audit_text.contains(&handles[0]),
        "the audit names the handle"
    );
    let mut all = Vec::new();
    files(&dir, &mut all);
    assert!(!all.is_empty(), "the data directory has files");
    let logs = logs().lock().unwrap().clone();
    assert!(
        contains(&logs, &handles[0]),
        "the captured logs name the handle"
    );
    for t in &secrets {
        assert!(
            !audit_text.contains(t.as_str()),
            "a secret in the audit trail"
        );
        assert!(!contains(&logs, t), "a secret in the logs");
        for f in &all {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(!contains(&bytes, t), "a secret in {}", f.display());
        }
    }
}
