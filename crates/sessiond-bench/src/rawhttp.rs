//! A minimal HTTP/1.1 keep-alive client for the load loops: one connection, one request
//! at a time, a request head built once per session, the answer read to its end
//! (`Content-Length` or chunked). It exists because a general client (reqwest over hyper)
//! costs the machine more CPU per request than the cheapest target under test, and on two
//! shared cores the load generator's CPU is taken from the servers it measures.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head read (the targets answer with a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read.
const MAX_BODY: usize = 1024 * 1024;

/// One kept-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The head of a request without a body: `METHOD path HTTP/1.1`, `Host`, and the cookie.
pub fn head(method: &str, host: &str, path: &str, cookie: Option<&str>) -> Vec<u8> {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(c) = cookie {
        h.push_str("Cookie: ");
        h.push_str(c);
        h.push_str("\r\n");
    }
    if method != "GET" {
        h.push_str("Content-Length: 0\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

impl Conn {
    pub async fn connect(host: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` (a full request) and reads the answer; its status.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("response head too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("head"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().map_err(|_| bad("length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
        self.buf.drain(..head_end);
        if chunked {
            self.skip_chunks().await?;
        } else {
            let n = length.unwrap_or(0);
            if n > MAX_BODY {
                return Err(bad("body too large"));
            }
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.drain(..n);
        }
        Ok(status)
    }

    /// Reads past a chunked body (size lines, data, the final empty chunk and trailer).
    async fn skip_chunks(&mut self) -> io::Result<()> {
        let mut total = 0usize;
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| bad("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            total += size;
            if total > MAX_BODY {
                return Err(bad("body too large"));
            }
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer lines, then the empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break i;
                        }
                        self.fill().await?;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(());
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            self.buf.drain(..size + 2);
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two answers on one connection, one chunked (with a trailer) and one by length,
    /// each read to its end so the next starts where it should.
    #[tokio::test]
    async fn reads_chunked_and_sized_answers_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let mut answers = [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\n!!!\r\n0\r\nX-T: 1\r\n\r\n"[..],
                &b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabc"[..],
            ]
            .into_iter();
            // One answer per request head received.
            let mut seen = Vec::new();
            while let Ok(n) = s.read(&mut req).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&req[..n]);
                while let Some(i) = find(&seen, b"\r\n\r\n") {
                    seen.drain(..i + 4);
                    s.write_all(answers.next().unwrap()).await.unwrap();
                }
            }
        });
        let mut c = Conn::connect(&host).await.unwrap();
        let h = head("GET", &host, "/v1/auth/verify", Some("sid=abc"));
        assert_eq!(c.send(&h).await.unwrap(), 200);
        assert_eq!(c.send(&h).await.unwrap(), 404);
        assert!(c.buf.is_empty(), "bytes left over: {:?}", c.buf);
        drop(c);
        server.await.unwrap();
    }

    #[test]
    fn head_names_the_cookie_and_an_empty_body_for_post() {
        let h = String::from_utf8(head("POST", "127.0.0.1:9", "/v1/session", None)).unwrap();
        assert_eq!(
            h,
            "POST /v1/session HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 0\r\n\r\n"
        );
        let h = String::from_utf8(head("GET", "h:1", "/p", Some("a=b"))).unwrap();
        assert_eq!(h, "GET /p HTTP/1.1\r\nHost: h:1\r\nCookie: a=b\r\n\r\n");
    }
}
