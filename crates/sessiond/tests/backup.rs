//! `sessiond backup` against a running server: sessions are created while the backup
//! runs, and a second server started on the backup directory knows every session (and
//! the draft attachment) that existed before the backup began, and none made after it
//! ended. Also the refusals: an existing target, a memory or Redis store.

use reqwest::Method;
use serde_json::{json, Value};
use sessiond_testkit::inproc::{base_toml, Endpoint, Sess};
use sessiond_testkit::server::SpawnedServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sessions that exist before the backup starts.
const BEFORE: usize = 25;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

fn backup_cmd(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("backup")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sessiond backup")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

async fn session_status(url: &str, s: &Sess) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/v1/session"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("get session")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_an_online_backup_has_the_sessions_made_before_it() {
    let config = base_toml("sqlite");
    let server = SpawnedServer::start(&bin(), &config, &[]);
    let ep = Endpoint::new(server.addr());

    let mut before = Vec::new();
    for _ in 0..BEFORE {
        before.push(ep.bearer_session().await);
    }
    // A signed-in browser with a draft and an attachment (bytes live in blobs/).
    let browser = ep.browser().await;
    browser
        .sign_in_with(&ep.signed_ticket("bea", None), "bea")
        .await;
    let r = browser
        .json_req(
            Method::PUT,
            "/v1/drafts/c1",
            json!({"text": "kept in the backup", "seq": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "draft: {}", r.json());
    let seq = r.json()["seq"].as_u64().expect("seq");
    let voice: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let r = browser
        .send(
            Method::PUT,
            &format!("/v1/drafts/c1/attachments/voice.webm?seq={seq}"),
            Some(("audio/webm", voice.clone())),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "attachment: {}", r.json());
    let cookie = browser.cookie_header();

    // Writes in flight during the backup: sessions created in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (ep, stop, during) = (ep.clone(), stop.clone(), during.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                ep.bearer_session().await;
                during.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the write stream get going before the backup starts.
    while during.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out_dir = tempfile::tempdir().expect("temp dir");
    let target = out_dir.path().join("backup-1");
    let args = [
        "--config".to_owned(),
        path_str(server.config_path()).to_owned(),
        "--data-dir".to_owned(),
        path_str(server.data_dir()).to_owned(),
        "--to".to_owned(),
        path_str(&target).to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        backup_cmd(&args)
    })
    .await
    .expect("backup task");
    let written_during = during.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "backup failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    assert!(stdout.contains("integrity ok"), "{stdout}");
    assert!(
        stdout.contains("attachments: 1 files, 50000 bytes"),
        "{stdout}"
    );
    assert!(stdout.contains("server-secret: copied"), "{stdout}");
    assert!(
        written_during > 5,
        "the server kept writing during the backup"
    );
    // Only the finished backup is in the target's directory (no partial leftovers).
    let names: Vec<String> = std::fs::read_dir(out_dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["backup-1"]);
    // Made after the backup finished: must not be in it.
    let after = ep.bearer_session().await;
    assert_eq!(session_status(&ep.url, &after).await, 200);

    // A backup never overwrites.
    let again = backup_cmd(&[
        "--config",
        path_str(server.config_path()),
        "--data-dir",
        path_str(server.data_dir()),
        "--to",
        path_str(&target),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let restored = SpawnedServer::start_in(&bin(), &config, Some(&target), &[]);
    let url = restored.url();
    for s in &before {
        assert_eq!(
            session_status(&url, s).await,
            200,
            "session {} lost",
            s.handle
        );
    }
    assert_eq!(
        session_status(&url, &after).await,
        401,
        "made after the backup"
    );
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{url}/v1/drafts/c1"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("draft");
    assert_eq!(r.status(), 200);
    let draft: Value = r.json().await.expect("draft json");
    assert_eq!(draft["text"], "kept in the backup");
    let r = http
        .get(format!("{url}/v1/drafts/c1/attachments/voice.webm"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("attachment");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), voice);
}

#[test]
fn stores_without_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let to = dir.path().join("b");
    for (store, says) in [
        ("memory", "nothing to back up"),
        ("redis://127.0.0.1:1/0", "Redis' own persistence"),
    ] {
        let config = dir.path().join("c.toml");
        std::fs::write(&config, format!("store = \"{store}\"\n")).expect("config");
        let out = backup_cmd(&["--config", path_str(&config), "--to", path_str(&to)]);
        assert!(!out.status.success(), "{store}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{store}: {stderr}");
        assert!(!to.exists());
    }
    // SQLite, but no database yet: refused, and no empty database is made up.
    let config = dir.path().join("c.toml");
    let data = dir.path().join("data");
    std::fs::write(&config, "store = \"sqlite\"\n").expect("config");
    let out = backup_cmd(&[
        "--config",
        path_str(&config),
        "--data-dir",
        path_str(&data),
        "--to",
        path_str(&to),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
    assert!(!data.exists() && !to.exists());
}
