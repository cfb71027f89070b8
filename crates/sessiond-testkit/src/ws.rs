//! WebSocket side of the integration harness: a client whose socket is read all the time
//! by a task (so protocol pings are answered even while the test waits on something
//! else), handing the test typed frames, each read with a timeout.

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use sessiond_server::ws::protocol::ServerMsg;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client socket as tokio-tungstenite gives it.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any single expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the reader task saw.
#[derive(Debug)]
pub enum Frame {
    /// A text message (the server only sends JSON text).
    Json(Value),
    /// The close frame and its code.
    Close(Option<u16>),
    Binary,
    /// The stream ended or failed without (more) frames.
    End(String),
}

/// Opens a socket to `url` with extra request headers; the HTTP refusal is the `Err`.
pub async fn connect(url: &str, headers: &[(&str, String)]) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        let name: tungstenite::http::HeaderName = k.parse().expect("header name");
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    let (ws, _resp) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

/// Opens a socket authenticated by the `bearer.<token>` subprotocol entry.
pub async fn connect_bearer(url: &str, token: &str) -> Ws {
    connect(
        url,
        &[(
            "sec-websocket-protocol",
            format!("sessiond.v1, bearer.{token}"),
        )],
    )
    .await
    .expect("websocket upgrade")
}

/// Reads a raw socket's next JSON message (for clients the test keeps silent on purpose:
/// nobody answers their pings unless the test reads).
pub async fn raw_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("server sends JSON");
        }
    }
}

/// A connected client read continuously by a task.
pub struct WsClient {
    frames: mpsc::UnboundedReceiver<Frame>,
    sink: SplitSink<Ws, Message>,
}

impl WsClient {
    /// Starts reading `ws` in a task.
    pub fn spawn(ws: Ws) -> WsClient {
        let (sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let f = match m {
                    Ok(Message::Text(t)) => {
                        Frame::Json(serde_json::from_str(&t).expect("server sends JSON"))
                    }
                    Ok(Message::Close(c)) => Frame::Close(c.map(|c| u16::from(c.code))),
                    Ok(Message::Binary(_)) => Frame::Binary,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Frame::End(e.to_string()));
                        return;
                    }
                };
                if tx.send(f).is_err() {
                    return;
                }
            }
            let _ = tx.send(Frame::End("stream ended".into()));
        });
        WsClient { frames, sink }
    }

    /// The next frame, waiting without bound (for `select!` loops with their own bound).
    pub async fn recv(&mut self) -> Option<Frame> {
        self.frames.recv().await
    }

    /// A frame already received, if any (does not wait).
    pub fn try_next(&mut self) -> Option<Frame> {
        self.frames.try_recv().ok()
    }

    /// The next frame within [`WAIT`].
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("a frame in time")
            .expect("reader alive")
    }

    /// The next frame, which must be a JSON message.
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next message of type `ty`, skipping others (heartbeat-driven messages may
    /// interleave); a close or the end of the stream first fails the test.
    pub async fn expect(&mut self, ty: &str) -> Value {
        self.expect_at(ty).await.0
    }

    /// [`WsClient::expect`], with when the message was read.
    pub async fn expect_at(&mut self, ty: &str) -> (Value, Instant) {
        loop {
            match self.next().await {
                Frame::Json(v) if v["type"] == ty => return (v, Instant::now()),
                Frame::Json(_) => continue,
                other => panic!("expected {ty}, got {other:?}"),
            }
        }
    }

    /// [`WsClient::expect`] parsed as the server's typed message.
    pub async fn expect_msg(&mut self, ty: &str) -> ServerMsg {
        let v = self.expect(ty).await;
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{v} is not a server message: {e}"))
    }

    /// Skips messages until the close frame; its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Frame::Close(c) => return c,
                Frame::End(e) => panic!("connection ended without a close frame: {e}"),
                _ => continue,
            }
        }
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, v: Value) {
        self.sink
            .send(Message::Text(v.to_string()))
            .await
            .expect("send");
    }

    /// Sends a JSON message unless the connection is already closing; whether it went out
    /// (for messages racing a close the server may send at any moment).
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.sink.send(Message::Text(v.to_string())).await.is_ok()
    }

    /// Sends any frame (malformed text, binary, oversized).
    pub async fn send_raw(&mut self, m: Message) {
        self.sink.send(m).await.expect("send");
    }
}
