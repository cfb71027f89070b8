//! The same-origin rule for requests that carry the browser's ambient session cookie:
//! sessiond's own state-changing routes, WebSocket upgrades, and the unsafe requests a
//! reverse proxy asks forward-auth about (CSRF protection for the proxied app).
//!
//! An origin is (scheme, host, port): an `http://` page is not the `https://` server,
//! and `https://app.example` is `https://app.example:443`. What the rule cannot read — a
//! `null` or malformed `Origin`, a header sent twice, a non-UTF-8 value — is refused:
//! an attacker controls what a browser sends in odd cases (sandboxed frames, redirects,
//! `Referrer-Policy`), never the well-formed same-origin case.
//!
//! A leaf: it knows headers and strings, not the application state.

use axum::http::{header, HeaderMap, HeaderName, Method};

/// A web origin's scheme; sessiond's cookies only travel over these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A tuple origin: scheme, lower-cased host, port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl WebOrigin {
    /// An origin as browsers serialize it in `Origin`: `scheme://host[:port]` and nothing
    /// more (no path, user info or query). `null` and anything else → `None`.
    pub fn parse(s: &str) -> Option<WebOrigin> {
        let (scheme, authority) = s.split_once("://")?;
        WebOrigin::from_parts(Scheme::parse(scheme)?, authority)
    }

    /// A configured origin (`allowed_origins`): as [`WebOrigin::parse`], tolerating one
    /// trailing `/` that people copy from the address bar.
    pub fn parse_configured(s: &str) -> Option<WebOrigin> {
        WebOrigin::parse(s.strip_suffix('/').unwrap_or(s))
    }

    /// The origin of an absolute URL (a `Referer`): its scheme and authority.
    pub fn of_url(s: &str) -> Option<WebOrigin> {
        let (scheme, rest) = s.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        WebOrigin::from_parts(Scheme::parse(scheme)?, &rest[..end])
    }

    /// The origin made of a scheme and a `Host`-style authority (`host[:port]`).
    pub fn from_parts(scheme: Scheme, authority: &str) -> Option<WebOrigin> {
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            if ip.is_empty()
                || !ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{}]", ip.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            // Registered names and IPv4 as browsers serialize them (IDNs in punycode).
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => scheme.default_port(),
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok()?
            }
            Some(_) => return None,
        };
        Some(WebOrigin { scheme, host, port })
    }
}

/// Whether a method may change state: everything but GET, HEAD and OPTIONS (unknown
/// methods included, so a new verb is never waved through).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A header that must appear at most once to be believed.
enum One<'a> {
    Absent,
    Value(&'a str),
    /// Sent twice, or not visible ASCII.
    Unreadable,
}

fn one<'a>(headers: &'a HeaderMap, name: &HeaderName) -> One<'a> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => One::Absent,
        (Some(v), None) => v.to_str().map_or(One::Unreadable, |s| One::Value(s.trim())),
        (Some(_), Some(_)) => One::Unreadable,
    }
}

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The scheme browsers reach this deployment with when nothing says otherwise. sessiond
/// speaks plain HTTP itself; with a `Secure` cookie (every non-dev setup) a browser only
/// sends the cookie over HTTPS, so the public origin is `https://` behind the TLS proxy.
pub fn default_scheme(cookie_secure: bool) -> Scheme {
    if cookie_secure {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// sessiond's own origin for a request it serves: the default scheme and the `Host` the
/// browser addressed (a proxy in front must pass `Host` through). `None` if unreadable.
pub fn own_origin(headers: &HeaderMap, scheme: Scheme) -> Option<WebOrigin> {
    match one(headers, &header::HOST) {
        One::Value(h) => WebOrigin::from_parts(scheme, h),
        _ => None,
    }
}

/// The proxied application's origin, for forward-auth: `X-Forwarded-Proto` and
/// `X-Forwarded-Host` as the proxy set them, else the default scheme and `Host` (Envoy
/// passes the original `Host`). A value sent twice or unreadable gives `None`, so only
/// `allowed_origins` can match.
pub fn forwarded_origin(headers: &HeaderMap, default: Scheme) -> Option<WebOrigin> {
    let scheme = match one(headers, &X_FORWARDED_PROTO) {
        One::Absent => default,
        One::Value(p) => Scheme::parse(p)?,
        One::Unreadable => return None,
    };
    match one(headers, &X_FORWARDED_HOST) {
        One::Absent => own_origin(headers, scheme),
        One::Value(h) => WebOrigin::from_parts(scheme, h),
        One::Unreadable => None,
    }
}

/// Whether the request a proxy asks about may change state: its own method (Envoy
/// forwards the original) or `X-Forwarded-Method` (nginx and Traefik) is unsafe, or the
/// latter is unreadable. Either one being unsafe is enough, so neither can hide the other.
pub fn forwarded_unsafe(method: &Method, headers: &HeaderMap) -> bool {
    is_unsafe(method)
        || match one(headers, &X_FORWARDED_METHOD) {
            One::Absent => false,
            One::Value(m) => Method::from_bytes(m.as_bytes()).map_or(true, |m| is_unsafe(&m)),
            One::Unreadable => true,
        }
}

/// Whether the browser context that sent `headers` is `own` or one of `allowed`.
///
/// `Origin` decides when present (browsers send it on every unsafe request and every
/// WebSocket upgrade). Without it, `Sec-Fetch-Site` (`same-origin`/`none` pass,
/// `same-site`/`cross-site` do not), then the `Referer`'s origin. A request with none of
/// them is not a browser acting on a page's behalf (curl, server-to-server) and passes.
pub fn allowed(headers: &HeaderMap, own: Option<&WebOrigin>, allowed: &[String]) -> bool {
    let matches = |o: &WebOrigin| {
        own == Some(o)
            || allowed
                .iter()
                .any(|a| WebOrigin::parse_configured(a).as_ref() == Some(o))
    };
    match one(headers, &header::ORIGIN) {
        One::Value(v) => return WebOrigin::parse(v).is_some_and(|o| matches(&o)),
        One::Unreadable => return false,
        One::Absent => {}
    }
    match one(headers, &SEC_FETCH_SITE) {
        One::Value(s) if s.eq_ignore_ascii_case("same-origin") => return true,
        One::Value(s) if s.eq_ignore_ascii_case("none") => {}
        One::Absent => {}
        One::Value(_) | One::Unreadable => return false,
    }
    match one(headers, &header::REFERER) {
        One::Value(r) => WebOrigin::of_url(r).is_some_and(|o| matches(&o)),
        One::Unreadable => false,
        One::Absent => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn o(s: &str) -> WebOrigin {
        WebOrigin::parse(s).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(o("https://App.Example"), o("https://app.example:443"));
        assert_eq!(o("http://app.example"), o("http://app.example:80"));
        assert_ne!(o("http://app.example"), o("https://app.example"));
        assert_ne!(o("http://app.example:443"), o("https://app.example"));
        assert_ne!(o("https://app.example:8443"), o("https://app.example"));
        assert_ne!(o("https://app.example.evil"), o("https://app.example"));
        assert_eq!(o("http://[::1]:7878"), o("http://[::1]:7878"));
        assert_eq!(
            WebOrigin::of_url("https://app.example/x?y#z"),
            Some(o("https://app.example"))
        );
        assert_eq!(
            WebOrigin::parse_configured("https://app.example/"),
            Some(o("https://app.example"))
        );
    }

    #[test]
    fn malformed_origins_do_not_parse() {
        for bad in [
            "null",
            "",
            "https://",
            "app.example",
            "ftp://app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "https://app.example:",
            "https://app.example:99999",
            "https://app.example:80x",
            "https://a b",
            "https://app.example, https://evil.example",
            "https://[zz]",
        ] {
            assert_eq!(WebOrigin::parse(bad), None, "{bad:?}");
        }
        assert_eq!(WebOrigin::of_url("https://user@app.example/"), None);
    }

    #[test]
    fn the_rule_fails_closed() {
        let own = o("https://app.example");
        let ok = |pairs: &[(&str, &str)]| allowed(&h(pairs), Some(&own), &[]);
        assert!(ok(&[("origin", "https://app.example")]));
        assert!(!ok(&[("origin", "http://app.example")]), "scheme counts");
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[("origin", "garbage")]));
        assert!(!ok(&[
            ("origin", "https://app.example"),
            ("origin", "https://evil.example")
        ]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(!ok(&[("sec-fetch-site", "weird")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("referer", "https://evil.example/page")]));
        assert!(!ok(&[("referer", "http://app.example/page")]));
        assert!(!ok(&[("referer", "about:blank")]));
        assert!(ok(&[("referer", "https://app.example/page")]));
        assert!(ok(&[]), "no browser context at all");
        let mut bin = HeaderMap::new();
        bin.insert(
            header::ORIGIN,
            axum::http::HeaderValue::from_bytes(b"https://app.ex\xffample").unwrap(),
        );
        assert!(!allowed(&bin, Some(&own), &[]));
        // No known own origin: only the configured ones pass.
        assert!(!allowed(
            &h(&[("origin", "https://app.example")]),
            None,
            &[]
        ));
        let list = ["https://app.example/".to_owned()];
        assert!(allowed(
            &h(&[("origin", "https://app.example")]),
            None,
            &list
        ));
        assert!(!allowed(
            &h(&[("origin", "http://app.example")]),
            None,
            &list
        ));
    }

    #[test]
    fn own_and_forwarded_origins() {
        let hm = h(&[("host", "app.example:8443")]);
        assert_eq!(
            own_origin(&hm, Scheme::Https),
            Some(o("https://app.example:8443"))
        );
        assert_eq!(own_origin(&h(&[]), Scheme::Https), None);
        let fw = h(&[
            ("host", "127.0.0.1:7878"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example"),
        ]);
        assert_eq!(
            forwarded_origin(&fw, Scheme::Https),
            Some(o("http://app.example"))
        );
        let envoy = h(&[("host", "app.example")]);
        assert_eq!(
            forwarded_origin(&envoy, Scheme::Https),
            Some(o("https://app.example"))
        );
        for bad in [
            h(&[("x-forwarded-proto", "gopher"), ("host", "a.example")]),
            h(&[("x-forwarded-host", "a.example, b.example")]),
            h(&[
                ("x-forwarded-host", "a.example"),
                ("x-forwarded-host", "b.example"),
            ]),
        ] {
            assert_eq!(forwarded_origin(&bad, Scheme::Https), None);
        }
    }

    #[test]
    fn forwarded_methods() {
        let none = HeaderMap::new();
        assert!(!forwarded_unsafe(&Method::GET, &none));
        assert!(
            forwarded_unsafe(&Method::POST, &none),
            "Envoy: the method itself"
        );
        let post = h(&[("x-forwarded-method", "POST")]);
        assert!(forwarded_unsafe(&Method::GET, &post), "nginx, Traefik");
        let get = h(&[("x-forwarded-method", "GET")]);
        assert!(forwarded_unsafe(&Method::DELETE, &get), "no downgrade");
        assert!(!forwarded_unsafe(&Method::GET, &get));
        for m in ["PROPFIND", "get", "G E T"] {
            let hm = h(&[("x-forwarded-method", m)]);
            assert!(forwarded_unsafe(&Method::GET, &hm), "{m}");
        }
        let twice = h(&[("x-forwarded-method", "GET"), ("x-forwarded-method", "GET")]);
        assert!(forwarded_unsafe(&Method::GET, &twice));
    }
}
