//! A readable browser and OS for "my devices", from a `User-Agent` header.
//!
//! Hand-written on purpose: the full parsers (uap-core's regex list via `uaparser`,
//! `woothee`) carry hundreds of patterns and a data file to name thousands of clients,
//! while a devices list only needs the family of the common browsers and systems. A
//! short ordered table of substring checks covers them, costs no start-up time, and an
//! unknown client reads as `None` (shown as "Unknown"), which is honest.

/// Browser and OS families, `None` when not recognised.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Described {
    pub browser: Option<String>,
    pub os: Option<String>,
}

/// Browsers, first match wins: order matters because most browsers also claim to be
/// Chrome, Safari and Mozilla (Edge says "Chrome" and "Safari", Chrome says "Safari").
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("Opera/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("YaBrowser/", "Yandex Browser"),
    ("Vivaldi/", "Vivaldi"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-requests/", "Python requests"),
    ("node-fetch", "Node.js"),
    ("undici", "Node.js"),
];

/// Systems, first match wins: iOS and Android before macOS and Linux (iPads and phones
/// also say "like Mac OS X" or "Linux").
const SYSTEMS: &[(&str, &str)] = &[
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
    ("FreeBSD", "FreeBSD"),
];

/// The browser and OS family a user agent names.
pub fn describe(user_agent: &str) -> Described {
    let find = |table: &[(&str, &str)]| {
        table
            .iter()
            .find(|(needle, _)| user_agent.contains(needle))
            .map(|(_, name)| (*name).to_owned())
    };
    let browser = find(BROWSERS).map(|name| match major_version(user_agent, &name) {
        Some(v) => format!("{name} {v}"),
        None => name,
    });
    Described {
        browser,
        os: find(SYSTEMS),
    }
}

/// The major version after the token that named `browser`, when it has one.
fn major_version(ua: &str, browser: &str) -> Option<String> {
    let token = BROWSERS
        .iter()
        .filter(|(_, name)| *name == browser)
        .find(|(needle, _)| ua.contains(needle) && needle.ends_with('/'))?
        .0;
    // Safari's own version is in `Version/`, not in `Safari/` (a WebKit build number).
    let token = if token == "Safari/" && ua.contains("Version/") {
        "Version/"
    } else if token == "Safari/" {
        return None;
    } else {
        token
    };
    let rest = &ua[ua.find(token)? + token.len()..];
    let v: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!v.is_empty() && v.len() <= 6).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ua: &str) -> (Option<String>, Option<String>) {
        let x = describe(ua);
        (x.browser, x.os)
    }

    fn some(b: &str, o: &str) -> (Option<String>, Option<String>) {
        (Some(b.into()), Some(o.into()))
    }

    #[test]
    fn common_browsers_and_systems() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", some("Chrome 131", "Windows")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70", some("Edge 131", "Windows")),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", some("Safari 18", "macOS")),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", some("Firefox 133", "Linux")),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", some("Safari 18", "iOS")),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", some("Chrome 131", "iOS")),
            ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", some("Samsung Internet 26", "Android")),
            ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", some("Chrome 131", "Android")),
            ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", some("Chrome 131", "ChromeOS")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", some("Opera 115", "Windows")),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.33 Safari/537.36", some("Headless Chrome 131", "Linux")),
        ];
        for (ua, want) in cases {
            assert_eq!(d(ua), want, "{ua}");
        }
    }

    #[test]
    fn tools_have_no_os_and_unknowns_are_none() {
        assert_eq!(d("curl/8.5.0"), (Some("curl 8".into()), None));
        assert_eq!(d("something/1.0"), (None, None));
        assert_eq!(d(""), (None, None));
        // Safari without a Version/ token: no version rather than the WebKit build.
        assert_eq!(
            d("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Safari/605.1.15"),
            some("Safari", "macOS")
        );
    }
}
