//! The real binary end to end: `sessiond serve` announces itself and stops cleanly on
//! SIGTERM; the `sessions` and `audit` subcommands drive its admin API.

use serde_json::Value;
use sessiond_testkit::server::SpawnedServer;
use sessiond_testkit::wait;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEY: &str = "cli-test-admin-key";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

fn start() -> SpawnedServer {
    SpawnedServer::start(&bin(), &format!("api_keys = [\"{KEY}\"]\n"), &["--dev"])
}

fn cli(server: &SpawnedServer, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("SESSIOND_SERVER", server.url())
        .env("SESSIOND_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run sessiond")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "errors go to stderr only");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No pooled connections: after a SIGKILL and restart, a kept-alive socket to the dead
/// process would fail the next request.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .cookie_store(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn new_session(http: &reqwest::Client, server: &SpawnedServer) -> Value {
    let r = http
        .post(format!("{}/v1/session", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// The announcement lines after the first arrive a moment later than the address.
fn announcement(server: &SpawnedServer, lines: usize) -> Vec<String> {
    wait::until_some_blocking(
        Duration::from_secs(10),
        &format!("{lines} announcement lines"),
        || {
            let got = server.stdout_lines();
            (got.len() >= lines).then_some(got)
        },
    )
}

#[tokio::test]
async fn serve_announces_sessions_commands_work_and_sigterm_stops_cleanly() {
    let mut server = start();
    let url = server.url();
    let lines = announcement(&server, 3);
    assert_eq!(lines[0], format!("sessiond listening on {url}"));
    assert_eq!(lines[1], format!("demo: {url}/demo/"));
    assert_eq!(lines[2], format!("admin: {url}/admin/ (API key: {KEY})"));

    let http = client();
    let s = new_session(&http, &server).await;
    let handle = s["handle"].as_str().unwrap().to_owned();
    let principal = s["principal"].as_str().unwrap().to_owned();

    let ls = ok(&cli(&server, &["sessions", "ls"]));
    assert!(ls.starts_with("HANDLE"), "{ls}");
    let row = ls
        .lines()
        .find(|l| l.starts_with(&handle))
        .unwrap_or_else(|| panic!("{handle} not listed:\n{ls}"));
    assert!(
        row.contains(&principal) && row.contains("editor") && row.contains("active"),
        "{row}"
    );

    let json: Value = serde_json::from_str(&ok(&cli(
        &server,
        &["sessions", "ls", "--json", "--principal", &principal],
    )))
    .unwrap();
    let listed = json["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["handle"], handle.as_str());
    let other: Value = serde_json::from_str(&ok(&cli(
        &server,
        &["sessions", "ls", "--json", "--principal", "user:nobody"],
    )))
    .unwrap();
    assert_eq!(other["sessions"].as_array().unwrap().len(), 0);

    let show = ok(&cli(&server, &["sessions", "show", &handle]));
    assert!(
        show.lines()
            .any(|l| l.starts_with("handle") && l.ends_with(&handle)),
        "{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.starts_with("state") && l.contains("active")),
        "{show}"
    );
    let missing = failed(&cli(&server, &["sessions", "show", "s_doesnotexist"]));
    assert!(missing.contains("404 not_found"), "{missing}");

    assert_eq!(
        ok(&cli(&server, &["sessions", "revoke", &handle])),
        format!("revoked {handle}\n")
    );
    let r = http.get(format!("{url}/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["reason"], "revoked");
    let active = ok(&cli(&server, &["sessions", "ls"]));
    assert!(
        !active.contains(&handle),
        "revoked session still listed as active:\n{active}"
    );
    assert!(ok(&cli(&server, &["sessions", "ls", "--all"])).contains(&handle));

    // Sign out everywhere: both sessions of one principal end.
    let s2 = new_session(&client(), &server).await;
    let p2 = s2["principal"].as_str().unwrap().to_owned();
    let out = ok(&cli(&server, &["sessions", "revoke-principal", &p2]));
    assert_eq!(out, format!("ended 1 session of {p2}\n"));

    let audit = ok(&cli(&server, &["audit", "--handle", &handle]));
    assert!(audit.starts_with("ID"), "{audit}");
    assert!(
        audit
            .lines()
            .any(|l| l.contains(" created ") && l.contains(&handle)),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains(" ended ") && l.contains("revoked")),
        "{audit}"
    );
    let events: Value = serde_json::from_str(&ok(&cli(
        &server,
        &["audit", "--json", "--reason", "revoked", "--since", "10m"],
    )))
    .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["reason"] == "revoked" && e["kind"] == "ended"));

    let denied = Command::new(bin())
        .args(["audit", "--server", &url, "--api-key", "wrong-key-123"])
        .output()
        .unwrap();
    let denied = failed(&denied);
    assert!(denied.contains("403 forbidden"), "{denied}");

    let t0 = Instant::now();
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log_tail()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "graceful stop took {:?}",
        t0.elapsed()
    );
    assert!(
        server.log().contains("shutting down"),
        "{}",
        server.log_tail()
    );
}

#[tokio::test]
async fn audit_follow_prints_new_events_as_they_happen() {
    let server = start();
    // A session before the follower starts: its line shows the follower's first look is done.
    let first = new_session(&client(), &server).await;
    let first = first["handle"].as_str().unwrap().to_owned();
    let mut child = Command::new(bin())
        .args(["audit", "--follow", "--kind", "created"])
        .env("SESSIOND_SERVER", server.url())
        .env("SESSIOND_API_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Once the follower has printed what existed, create a session it has not seen.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(&first) => break,
            Ok(_) => {}
            Err(e) => panic!("the follower did not print the existing {first}: {e}"),
        }
    }
    let s = new_session(&client(), &server).await;
    let handle = s["handle"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(handle) => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("{handle} not followed; saw {seen:?}"));
    assert!(
        line.contains(" created ") && line.contains(&format!("handle={handle}")),
        "{line}"
    );
}

#[tokio::test]
async fn restart_after_kill9_keeps_the_address_and_the_session() {
    let mut server = start();
    let url = server.url();
    let http = client();
    let s = new_session(&http, &server).await;
    server.kill9();
    assert!(!server.is_running());
    server.restart();
    assert_eq!(
        server.url(),
        url,
        "restart must reuse the address so cookie jars still match"
    );
    let r = http.get(format!("{url}/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["handle"], s["handle"]);
    assert_eq!(
        announcement(&server, 3).len(),
        3,
        "the restarted server announced itself again"
    );
}

#[test]
fn dev_mode_without_keys_announces_a_key_that_works() {
    let server = SpawnedServer::start(&bin(), "", &["--dev"]);
    let lines = announcement(&server, 3);
    let key = lines[2]
        .strip_suffix(')')
        .and_then(|l| l.split_once("(API key: "))
        .map(|(_, k)| k.to_owned())
        .unwrap_or_else(|| panic!("no key in {lines:?}"));
    let out = Command::new(bin())
        .args([
            "sessions",
            "ls",
            "--server",
            &server.url(),
            "--api-key",
            &key,
        ])
        .output()
        .unwrap();
    assert!(ok(&out).starts_with("HANDLE"));
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let no_key = Command::new(bin())
        .args(["sessions", "ls"])
        .env_remove("SESSIOND_API_KEY")
        .output()
        .unwrap();
    assert!(failed(&no_key).contains("no API key"));
    let down = Command::new(bin())
        .args([
            "sessions",
            "ls",
            "--server",
            "http://127.0.0.1:1",
            "--api-key",
            "whatever-key",
        ])
        .output()
        .unwrap();
    assert!(failed(&down).contains("cannot reach sessiond at http://127.0.0.1:1/"));
    let bad = Command::new(bin())
        .args(["serve", "--store", "mongo://x"])
        .output()
        .unwrap();
    assert!(failed(&bad).contains("store"));
}

#[test]
fn dev_mode_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let mut child = Command::new(bin())
            .args(["serve", "--dev", "--store", "memory", "--listen", listen])
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sessiond serve --dev --listen {listen} kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        assert!(!status.success(), "{listen}: exit {status:?}");
        assert!(out.stdout.is_empty(), "nothing announced");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("dev mode") && stderr.contains("loopback"),
            "{stderr}"
        );
    }
}

#[test]
fn the_startup_log_redacts_the_redis_password() {
    let redis = sessiond_testkit::redis_guard::RedisServer::start();
    // A Redis without a password accepts any for the `default` user.
    let url = format!(
        "redis://default:hunter2-redis-pass@127.0.0.1:{}",
        redis.port()
    );
    let config = format!(
        "store = \"{url}\"\nserver_secret = \"cli-redaction-secret-0123456789\"\n\
         [redis]\nkey_prefix = \"cli-redact\"\n"
    );
    let mut server = SpawnedServer::start(&bin(), &config, &[]);
    let log = server.log();
    assert!(
        log.contains("redis://default:[redacted]@127.0.0.1:"),
        "the store is named, redacted:\n{log}"
    );
    assert!(!log.contains("hunter2"), "password in the log:\n{log}");
    server.terminate();
}

/// `sessiond` with these arguments, config file and environment, without the test's
/// own `SESSIOND_*` variables; killed (and the test failed) if it does not exit in 10 s.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SESSIOND_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run sessiond");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sessiond {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn no_subcommand_prints_help_and_starts_nothing() {
    let out = run(&[], &[]);
    assert!(!out.status.success());
    let help = String::from_utf8_lossy(&out.stderr);
    for want in [
        "Usage: sessiond <COMMAND>",
        "serve",
        "config",
        "sessiond serve --dev",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}

#[test]
fn config_check_accepts_a_good_file_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "internal_listen = \"127.0.0.1:7879\"\n[[keys]]\nid = \"dash\"\nscope = \"read\"\nkey = \"dashboard-key-1\"\n",
    )
    .unwrap();
    let good = good.to_str().unwrap();
    let out = run(&["config", "check", "--config", good], &[]);
    let text = ok(&out);
    assert!(text.contains("configuration OK"), "{text}");
    assert!(text.contains("internal_listen: 127.0.0.1:7879"), "{text}");
    assert!(text.contains("dash (read)"), "{text}");
    assert!(
        !text.contains("dashboard-key-1"),
        "a check never prints a key: {text}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "api_keys = [\"short\"]\n").unwrap();
    let err = failed(&run(&["config", "check", "-c", bad.to_str().unwrap()], &[]));
    assert!(err.contains("api_keys must be at least 8"), "{err}");
    assert!(!err.contains("short\""), "the key is not echoed: {err}");

    // The environment is checked too, over the file.
    let err = failed(&run(
        &["config", "check", "-c", good],
        &[("SESSIOND_LISTEN", "not-an-address")],
    ));
    assert!(err.contains("LISTEN"), "{err}");
    let err = failed(&run(&["config", "check"], &[("SESSIOND_NO_SUCH_KEY", "1")]));
    assert!(err.contains("no_such_key"), "{err}");
    let err = failed(&run(
        &["config", "check", "-c", "/nonexistent/sessiond.toml"],
        &[],
    ));
    assert!(err.contains("/nonexistent/sessiond.toml"), "{err}");
}

#[test]
fn config_print_shows_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let digest = format!("sha256:{}", "0f".repeat(32));
    std::fs::write(
        &file,
        format!(
            "api_keys = [\"SECRET-admin-key\"]\nserver_secret = \"SECRET-server-secret-0123\"\n\
             [[keys]]\nid = \"dash\"\nscope = \"read\"\nkey = \"{digest}\"\n\
             [tickets]\nhs256_secret = \"SECRET-ticket-secret-0123456789abcdef\"\n"
        ),
    )
    .unwrap();
    let out = run(
        &[
            "config",
            "print",
            "-c",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9000",
        ],
        &[("SESSIOND_STORE", "redis://app:SECRET-pw@127.0.0.1:6379/0")],
    );
    let text = ok(&out);
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.contains(&digest), "a digest is shown: {text}");
    assert!(
        text.contains("listen = \"127.0.0.1:9000\""),
        "flags apply: {text}"
    );
    assert!(
        text.contains("redis://app:[redacted]@127.0.0.1:6379/0"),
        "{text}"
    );
    assert!(
        text.contains("[roles.editor]"),
        "defaults are shown: {text}"
    );
}

/// A bearer session's WebSocket on `server`, joined to `room`; its connection id.
async fn joined(
    server: &SpawnedServer,
    room: &str,
) -> (sessiond_testkit::ws::WsClient, String, String) {
    let r = client()
        .post(format!("{}/v1/session", server.url()))
        .json(&serde_json::json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    let ws_url = format!("{}/v1/ws", server.url().replacen("http", "ws", 1));
    let socket = sessiond_testkit::ws::connect_bearer(&ws_url, s["token"].as_str().unwrap()).await;
    let mut ws = sessiond_testkit::ws::WsClient::spawn(socket);
    let hello = ws.expect("hello").await;
    let id = hello["connection_id"].as_str().unwrap().to_owned();
    ws.send(serde_json::json!({"type": "join", "room": room}))
        .await;
    ws.expect("presence").await;
    (ws, id, s["handle"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_ls_and_show_list_members_and_need_a_reading_key() {
    let server = SpawnedServer::start(
        &bin(),
        &format!(
            "api_keys = [\"{KEY}\"]\n\
             [[keys]]\nid = \"dash\"\nscope = \"read\"\nkey = \"dashboard-read-key\"\n\
             [[keys]]\nid = \"backend\"\nscope = \"tickets\"\nkey = \"backend-ticket-key\"\n"
        ),
        &["--dev"],
    );
    let empty = ok(&cli(&server, &["rooms", "ls"]));
    assert_eq!(empty, "ROOM  MEMBERS\n");
    let (_a, a_id, a_handle) = joined(&server, "lobby").await;
    let (_b, b_id, _) = joined(&server, "lobby").await;
    let (_c, _, _) = joined(&server, "team:7").await;

    let ls = ok(&cli(&server, &["rooms", "ls"]));
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["ROOM", "MEMBERS"],
            vec!["lobby", "2"],
            vec!["team:7", "1"]
        ],
        "{ls}"
    );
    let json: Value = serde_json::from_str(&ok(&cli(&server, &["rooms", "ls", "--json"]))).unwrap();
    assert_eq!(
        json["rooms"],
        serde_json::json!([{"room": "lobby", "members": 2}, {"room": "team:7", "members": 1}])
    );

    let show = ok(&cli(&server, &["rooms", "show", "lobby"]));
    assert!(show.starts_with("CONNECTION"), "{show}");
    let row = show
        .lines()
        .find(|l| l.starts_with(&a_id))
        .unwrap_or_else(|| panic!("{a_id} not shown:\n{show}"));
    assert!(row.contains(&a_handle) && row.contains("editor"), "{row}");
    assert!(show.contains(&b_id), "{show}");
    let json: Value =
        serde_json::from_str(&ok(&cli(&server, &["rooms", "show", "lobby", "--json"]))).unwrap();
    assert_eq!(json["room"], "lobby");
    assert_eq!(json["members"].as_array().unwrap().len(), 2);
    assert!(json["members"][0]["node"].is_string());
    // A room id that needs encoding stays one path segment.
    assert!(
        ok(&cli(&server, &["rooms", "show", "team:7"]))
            .lines()
            .count()
            == 2
    );

    let missing = failed(&cli(&server, &["rooms", "show", "nobody-here"]));
    assert!(missing.contains("404 not_found"), "{missing}");

    // A read-scoped key may list rooms; a tickets-only key and a wrong key may not.
    let with_key = |key: &str, args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env("SESSIOND_SERVER", server.url())
            .env("SESSIOND_API_KEY", key)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(ok(&with_key("dashboard-read-key", &["rooms", "ls"])).contains("lobby"));
    let refused = failed(&with_key("backend-ticket-key", &["rooms", "show", "lobby"]));
    assert!(refused.contains("403"), "{refused}");
    let refused = failed(&with_key("wrong-key-12345", &["rooms", "ls"]));
    assert!(refused.contains("403"), "{refused}");
    let no_key = Command::new(bin())
        .args(["rooms", "ls", "--server", &server.url()])
        .env_remove("SESSIOND_API_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(failed(&no_key).contains("no API key"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _sessiond"),
        ("zsh", "#compdef sessiond"),
        ("fish", "complete -c sessiond"),
    ] {
        let text = ok(&run(&["completions", shell], &[]));
        assert!(text.contains(marker), "{shell}: {text}");
        // Every subcommand is offered, the new ones included.
        for sub in [
            "serve",
            "sessions",
            "rooms",
            "audit",
            "config",
            "completions",
        ] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    // The bash script loads in a real bash and registers the completion.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sessiond.bash");
    std::fs::write(&script, ok(&run(&["completions", "bash"], &[]))).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p sessiond",
            script.display()
        ))
        .output()
        .expect("bash");
    let registered = ok(&out);
    assert!(registered.contains("_sessiond"), "{registered}");
    let err = failed(&run(&["completions", "tcsh"], &[]));
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// A CA and a leaf it signed for 127.0.0.1: (CA PEM, chain PEM, key PEM).
fn issue(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("sessiond CLI test CA {name}"));
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Sends SIGHUP with the shell's builtin `kill` (no procps needed).
fn hangup(pid: &str) {
    let status = Command::new("bash")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP {pid}: {status:?}");
}

fn trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_serve_announces_https_reloads_on_sighup_and_config_check_reads_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca_a, chain_a, key_a) = issue("a");
    let (ca_b, chain_b, key_b) = issue("b");
    std::fs::write(&cert, &chain_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();
    let ca_a_file = dir.path().join("ca-a.pem");
    std::fs::write(&ca_a_file, &ca_a).unwrap();
    let config = format!(
        "api_keys = [\"{KEY}\"]\n[tls]\ncert = {cert:?}\nkey = {key:?}\nreload_interval = \"1h\"\n"
    );

    // `config check` reads the files: fine as they are, and a key of another certificate
    // is named.
    let file = dir.path().join("c.toml");
    std::fs::write(&file, &config).unwrap();
    let text = ok(&run(
        &["config", "check", "-c", file.to_str().unwrap()],
        &[],
    ));
    assert!(text.contains(&format!("tls: {}", cert.display())), "{text}");
    let bad_key = dir.path().join("other-key.pem");
    std::fs::write(&bad_key, &key_b).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        config.replace(key.to_str().unwrap(), bad_key.to_str().unwrap()),
    )
    .unwrap();
    let err = failed(&run(&["config", "check", "-c", bad.to_str().unwrap()], &[]));
    assert!(
        err.contains("does not belong") && err.contains("other-key.pem"),
        "{err}"
    );

    let server = SpawnedServer::start(&bin(), &config, &["--dev"]);
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let lines = announcement(&server, 3);
    assert_eq!(lines[1], format!("demo: {url}/demo/"));
    assert_eq!(lines[2], format!("admin: {url}/admin/ (API key: {KEY})"));
    let r = trusting(&ca_a)
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI reaches an HTTPS server with --ca-cert, and says why it cannot without it.
    assert!(ok(&cli(
        &server,
        &["rooms", "ls", "--ca-cert", ca_a_file.to_str().unwrap()]
    ))
    .starts_with("ROOM"));
    let untrusted = failed(&cli(&server, &["rooms", "ls"]));
    assert!(untrusted.contains("cannot reach sessiond"), "{untrusted}");

    // SIGHUP: the new certificate for new handshakes, the server still running.
    std::fs::write(&key, &key_b).unwrap();
    std::fs::write(&cert, &chain_b).unwrap();
    let pid = server.pid().unwrap().to_string();
    hangup(&pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while trusting(&ca_b)
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "reloaded after SIGHUP; log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trusting(&ca_a)
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_err());

    // A broken replacement and SIGHUP: logged, the server keeps B.
    std::fs::write(&cert, "garbage").unwrap();
    hangup(&pid);
    wait::until_some_blocking(Duration::from_secs(10), "the reload failure logged", || {
        server
            .log()
            .contains("TLS certificate not reloaded")
            .then_some(())
    });
    let r = trusting(&ca_b)
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
