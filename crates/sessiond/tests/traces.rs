//! OpenTelemetry traces end to end: the real `sessiond serve` exports to a small OTLP/HTTP
//! receiver started here (axum on 127.0.0.1:0, protobuf decoded with
//! `opentelemetry-proto`). Requests carrying a W3C `traceparent` (a session creation and
//! a forward-auth check) must come back as server spans of the caller's trace, with a
//! store-call child span, and no exported byte may hold the session token. Without an
//! endpoint nothing is exported, whatever `OTEL_*` variables say.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use sessiond_testkit::server::SpawnedServer;
use sessiond_testkit::wait;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_A: &str = "00f067aa0ba902b7";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_B: &str = "b7ad6b7169203331";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

/// What the receiver got: every request body as sent, and the spans decoded from them
/// with their resource's `service.name`.
#[derive(Default)]
struct Received {
    bodies: Vec<Vec<u8>>,
    spans: Vec<(String, Span)>,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(
    State(got): State<Shared>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let req = match ExportTraceServiceRequest::decode(body.clone()) {
        Ok(r) => r,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain")],
                b"not an ExportTraceServiceRequest".to_vec(),
            )
        }
    };
    let mut got = got.lock().unwrap();
    got.bodies.push(body.to_vec());
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| string_attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                got.spans.push((service.clone(), span));
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Starts the receiver; it runs until the test's runtime ends.
async fn receiver() -> (SocketAddr, Shared) {
    let got = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Creates a session (asking for the token in the body too) with `traceparent` A, then
/// checks it through forward auth with `traceparent` B. Returns the token.
async fn create_and_verify(url: &str) -> String {
    let http = client();
    let r = http
        .post(format!("{url}/v1/session"))
        .header("traceparent", traceparent(TRACE_A, PARENT_A))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().expect("token").to_owned();
    let r = http
        .get(format!("{url}/v1/auth/verify"))
        .header("traceparent", traceparent(TRACE_B, PARENT_B))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    token
}

fn server_span<'a>(got: &'a Received, trace: &str) -> Option<&'a Span> {
    got.spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| hex::encode(&s.trace_id) == trace && s.kind == SpanKind::Server as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_store_spans_join_the_callers_trace_without_the_token() {
    let (addr, got) = receiver().await;
    let config = format!(
        "[tracing]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"sessiond-it\"\n\
         batch_delay = \"200ms\"\nsample_ratio = 0.0\n"
    );
    let mut server = SpawnedServer::start(&bin(), &config, &[]);
    let token = create_and_verify(&server.url()).await;

    // Sample ratio 0 keeps no new trace, but the callers' sampled traces are followed.
    wait::until(Duration::from_secs(8), "both server spans exported", || {
        let got = got.clone();
        async move {
            let got = got.lock().unwrap();
            server_span(&got, TRACE_A).is_some() && server_span(&got, TRACE_B).is_some()
        }
    })
    .await;
    tokio::task::block_in_place(|| server.terminate());

    let got = got.lock().unwrap();
    let create = server_span(&got, TRACE_A).unwrap();
    assert_eq!(create.name, "POST /v1/session");
    assert_eq!(hex::encode(&create.parent_span_id), PARENT_A);
    assert_eq!(
        string_attr(&create.attributes, "route").as_deref(),
        Some("/v1/session")
    );
    let verify = server_span(&got, TRACE_B).unwrap();
    assert_eq!(verify.name, "GET /v1/auth/verify");
    assert_eq!(hex::encode(&verify.parent_span_id), PARENT_B);

    // The creation's store call is a child of its server span.
    let store = got
        .spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.parent_span_id == create.span_id && s.name == "store create_session")
        .unwrap_or_else(|| {
            let names: Vec<_> = got.spans.iter().map(|(_, s)| &s.name).collect();
            panic!("no store span under the request; spans: {names:?}")
        });
    assert_eq!(store.trace_id, create.trace_id);
    assert_eq!(store.kind, SpanKind::Client as i32);
    assert_eq!(
        string_attr(&store.attributes, "db.system.name").as_deref(),
        Some("sqlite")
    );
    assert_eq!(
        string_attr(&store.attributes, "db.operation.name").as_deref(),
        Some("create_session")
    );
    assert!(got
        .spans
        .iter()
        .all(|(service, _)| service == "sessiond-it"));
    // Every exported span belongs to one of the two callers' traces (ratio 0: nothing else).
    for (_, s) in &got.spans {
        let trace = hex::encode(&s.trace_id);
        assert!(
            trace == TRACE_A || trace == TRACE_B,
            "unexpected trace of {}",
            s.name
        );
    }
    // Neither the token nor any part of it long enough to matter is in what was sent.
    assert!(token.len() >= 20);
    for body in &got.bodies {
        assert!(
            !body
                .windows(16)
                .any(|w| token.as_bytes().windows(16).any(|t| t == w)),
            "an export holds (part of) the session token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_are_flushed_at_shutdown() {
    let (addr, got) = receiver().await;
    // A batch delay far longer than the test: only the shutdown flush can send them.
    let config =
        format!("[tracing]\notlp_endpoint = \"http://{addr}/v1/traces\"\nbatch_delay = \"1h\"\n");
    let mut server = SpawnedServer::start(&bin(), &config, &[]);
    create_and_verify(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        got.lock().unwrap().spans.is_empty(),
        "nothing sent before the delay"
    );
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "{status:?}");
    let got = got.lock().unwrap();
    assert!(server_span(&got, TRACE_A).is_some() && server_span(&got, TRACE_B).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_whatever_otel_variables_say() {
    let (addr, got) = receiver().await;
    // The standard variables would point an SDK's default set-up at the receiver; sessiond
    // takes its endpoint from its own configuration only. (Each test runs in its own
    // process under nextest; these variables mean nothing to the other tests anyway.)
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        format!("http://{addr}/v1/traces"),
    );
    std::env::set_var("OTEL_TRACES_EXPORTER", "otlp");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "10");
    let mut server = SpawnedServer::start(&bin(), "", &[]);
    create_and_verify(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "{status:?}");
    let got = got.lock().unwrap();
    assert!(
        got.bodies.is_empty(),
        "{} exports arrived",
        got.bodies.len()
    );
    assert!(
        !server.log().contains("exporting traces"),
        "no exporter announced: {}",
        server.log_tail()
    );
}
