//! A small client of the admin API (`/v1/admin/*`) for the CLI subcommands.

use crate::cli::Remote;
use crate::error::CliError;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// Bounds every request so a hung server never hangs the CLI.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Error bodies are only shown, so a misbehaving server cannot flood the terminal.
const MAX_ERROR_BODY: usize = 4096;

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    api_key: String,
}

impl AdminClient {
    pub fn new(remote: &Remote) -> Result<Self, CliError> {
        let api_key = remote
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or(CliError::NoApiKey)?;
        let mut base =
            Url::parse(&remote.server).map_err(|_| CliError::BadUrl(remote.server.clone()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::BadUrl(remote.server.clone()));
        }
        // A trailing slash keeps a path prefix (sessiond behind /sessiond/) when joining.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        if let Some(path) = &remote.ca_cert {
            let pem = std::fs::read(path).map_err(|e| CliError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| CliError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| CliError::Unreachable {
            url: remote.server.clone(),
            source: e,
        })?;
        Ok(AdminClient {
            http,
            base,
            api_key,
        })
    }

    /// The URL of `segments` below the base; each segment is percent-encoded on its own,
    /// so principals like `anon:abc` or `user/42` stay one path segment.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("base checked to be a base URL");
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Sends a request and returns the JSON body (`Value::Null` for 204).
    pub async fn call(&self, method: Method, url: Url) -> Result<Value, CliError> {
        let shown = url.to_string();
        let resp = self
            .http
            .request(method, url)
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| CliError::Unreachable {
                url: shown.clone(),
                source: e,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CliError::Unreachable {
            url: shown.clone(),
            source: e,
        })?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Protocol(format!("{shown}: invalid JSON: {e}")))
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.call(Method::GET, self.url(segments, query)).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::DELETE, self.url(segments, &[])).await
    }
}

/// Turns an error answer into `status code: detail`, from problem+json when possible.
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let code = field("code").unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
            .replace(' ', "_")
    });
    let mut detail = field("detail")
        .or_else(|| field("title"))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)])
                .trim()
                .to_owned();
            if text.is_empty() {
                "no details".to_owned()
            } else {
                text
            }
        });
    if let Some(reason) = field("reason") {
        detail = format!("{detail} (reason: {reason})");
    }
    CliError::Api {
        status: status.as_u16(),
        code,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(server: &str) -> AdminClient {
        AdminClient::new(&Remote {
            server: server.into(),
            api_key: Some("k".into()),
            ca_cert: None,
            json: false,
        })
        .unwrap()
    }

    #[test]
    fn segments_are_encoded_and_prefix_kept() {
        let c = client("http://127.0.0.1:7878/prefix");
        let u = c.url(
            &["v1", "admin", "principals", "user/42 x", "sessions"],
            &[("state", "all".into())],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:7878/prefix/v1/admin/principals/user%2F42%20x/sessions?state=all"
        );
        let c = client("http://h:1/");
        assert_eq!(
            c.url(&["v1", "admin", "sessions", "s_1"], &[]).as_str(),
            "http://h:1/v1/admin/sessions/s_1"
        );
    }

    #[test]
    fn problem_json_gives_code_detail_and_reason() {
        let body = br#"{"type":"about:blank","title":"Session expired","status":401,"code":"session_expired","reason":"revoked","detail":"gone"}"#;
        let e = api_error(StatusCode::UNAUTHORIZED, body).to_string();
        assert_eq!(e, "401 session_expired: gone (reason: revoked)");
        let e = api_error(StatusCode::BAD_GATEWAY, b"").to_string();
        assert_eq!(e, "502 bad_gateway: no details");
    }

    #[test]
    fn missing_key_and_bad_url_are_refused() {
        let r = Remote {
            server: "http://h".into(),
            api_key: None,
            ca_cert: None,
            json: false,
        };
        assert!(matches!(AdminClient::new(&r), Err(CliError::NoApiKey)));
        let r = Remote {
            server: "ftp://h".into(),
            api_key: Some("k".into()),
            ca_cert: None,
            json: false,
        };
        assert!(matches!(AdminClient::new(&r), Err(CliError::BadUrl(_))));
    }
}
