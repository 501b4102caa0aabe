//! The WebSocket upgrade on `/ws`: the checks RFC 6455 asks of a server, the origin policy,
//! and the connection that passed them, handed from the HTTP listener to the WebSocket one.
//! Pure, but for the connection it carries.

use hyper::header::{
    ALLOW, CONNECTION, HOST, HeaderName, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::http::request::Parts;
use hyper::{Method, Version};
use tokio::sync::OwnedSemaphorePermit;

use super::headers::{has_token, text};

/// A connection (TCP, or TLS over TCP) that has been answered `101 Switching Protocols`.
pub struct Upgraded<S> {
    pub stream: S,
    /// Bytes the client sent after its request head, already read: the start of its frames.
    pub leftover: Vec<u8>,
    /// Its place among the connections admitted at once (`--max-users` and some slack).
    pub permit: OwnedSemaphorePermit,
}

/// The origin policy: a handshake without `Origin` (not a browser) or from the server's own
/// page (`http://`, or `https://` over TLS, + the request's `Host`) is accepted, and so is one
/// from an origin given with `--allow-origin` (`*`: any). Compared without regard to case.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    allowed: Vec<String>,
    /// The server's own page is served over TLS: its origin is `https://`.
    https: bool,
}

impl Origins {
    pub fn new(allowed: &[String]) -> Origins {
        let mut origins = Origins::default();
        for origin in allowed {
            let origin = origin.trim().trim_end_matches('/');
            if origin == "*" {
                origins.any = true;
            } else if !origin.is_empty() {
                origins.allowed.push(origin.to_ascii_lowercase());
            }
        }
        origins
    }

    /// Says whether the server's own page is served over TLS (`https://`) or not.
    pub fn own_page_over_https(mut self, https: bool) -> Origins {
        self.https = https;
        self
    }

    /// `Ok` when a handshake with this `Origin` and `Host` may proceed; otherwise one line that
    /// says why not.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), String> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = origin.trim();
        let scheme = if self.https { "https" } else { "http" };
        let own = host.map(|host| format!("{scheme}://{}", host.trim()));
        if self.any
            || own
                .as_deref()
                .is_some_and(|own| own.eq_ignore_ascii_case(origin))
            || self
                .allowed
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        let own = own.unwrap_or_else(|| "this server's own page".to_owned());
        Err(format!(
            "WebSocket connections from pages of origin {origin:?} are not allowed, only from \
             {own}; start the server with --allow-origin {origin:?} to accept them."
        ))
    }
}

/// A refused upgrade: the status, an extra header if any, and a one-line reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub header: Option<(HeaderName, &'static str)>,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        header: None,
        reason: reason.into(),
    }
}

/// Checks a request for `/ws` as RFC 6455 says a server must and returns the
/// `Sec-WebSocket-Accept` value, or why it is refused.
pub fn check_upgrade(head: &Parts, origins: &Origins) -> Result<String, Refusal> {
    let headers = &head.headers;
    if head.method != Method::GET {
        return Err(Refusal {
            status: 405,
            header: Some((ALLOW, "GET")),
            reason: "The WebSocket endpoint takes only GET with an Upgrade.".into(),
        });
    }
    if !has_token(headers, UPGRADE, "websocket") {
        return Err(Refusal {
            status: 426,
            header: Some((UPGRADE, "websocket")),
            reason: "This is the chat's WebSocket endpoint: connect with a WebSocket client \
                     (the header Upgrade: websocket is missing)."
                .into(),
        });
    }
    if head.version != Version::HTTP_11 {
        return Err(refuse(400, "A WebSocket upgrade needs HTTP/1.1."));
    }
    if !has_token(headers, CONNECTION, "upgrade") {
        return Err(refuse(
            400,
            "A WebSocket upgrade needs the header Connection: Upgrade.",
        ));
    }
    match text(headers, SEC_WEBSOCKET_VERSION) {
        None => {
            return Err(refuse(
                400,
                "A WebSocket upgrade needs the header Sec-WebSocket-Version: 13.",
            ));
        }
        Some(version) if version.trim() == "13" => {}
        Some(_) => {
            // RFC 6455, 4.4: name the versions this server speaks.
            return Err(Refusal {
                status: 426,
                header: Some((SEC_WEBSOCKET_VERSION, "13")),
                reason: "Only WebSocket version 13 is supported.".into(),
            });
        }
    }
    let key = match text(headers, SEC_WEBSOCKET_KEY).map(str::trim) {
        Some(key) if is_valid_key(key) => key,
        _ => {
            return Err(refuse(
                400,
                "A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64.",
            ));
        }
    };
    origins
        .check(text(headers, ORIGIN), text(headers, HOST))
        .map_err(|reason| refuse(403, reason))?;
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// A nonce of 16 bytes in base64: 22 characters of the alphabet, then `==`.
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key.as_bytes()[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;

    fn head(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().method(method).uri("/ws");
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    const GOOD: [(&str, &str); 5] = [
        ("Host", "Chat.Example:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn with(replace: &str, value: Option<&str>) -> Parts {
        let mut headers: Vec<(&str, &str)> = GOOD
            .iter()
            .copied()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(replace))
            .collect();
        if let Some(value) = value {
            headers.push((replace, value));
        }
        head("GET", &headers)
    }

    #[test]
    fn a_good_upgrade_gets_the_accept_key_of_the_rfc() {
        let accept = check_upgrade(&head("GET", &GOOD), &Origins::default()).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_upgrades_are_refused_with_a_status_and_a_reason() {
        let origins = Origins::default();
        let status = |head: &Parts| check_upgrade(head, &origins).unwrap_err().status;
        assert_eq!(status(&head("POST", &GOOD)), 405);
        assert_eq!(status(&with("Upgrade", None)), 426);
        assert_eq!(status(&with("Upgrade", Some("h2c"))), 426);
        assert_eq!(status(&with("Connection", Some("keep-alive"))), 400);
        assert_eq!(status(&with("Sec-WebSocket-Version", None)), 400);
        assert_eq!(status(&with("Sec-WebSocket-Version", Some("8"))), 426);
        assert_eq!(status(&with("Sec-WebSocket-Key", None)), 400);
        assert_eq!(status(&with("Sec-WebSocket-Key", Some("short=="))), 400);
        let mut old = head("GET", &GOOD);
        old.version = Version::HTTP_10;
        assert_eq!(status(&old), 400);
    }

    #[test]
    fn the_own_origin_and_allowed_ones_pass() {
        let host = Some("Chat.Example:8080");
        let none = Origins::default();
        assert!(none.check(None, host).is_ok());
        assert!(none.check(Some("http://chat.example:8080"), host).is_ok());
        assert!(none.check(Some("https://chat.example:8080"), host).is_err());
        assert!(none.check(Some("http://evil.example"), host).is_err());
        assert!(none.check(Some("null"), host).is_err());
        assert!(none.check(Some("http://chat.example:8080"), None).is_err());
        let some = Origins::new(&["https://Chat.Example/".into()]);
        assert!(some.check(Some("https://chat.example"), host).is_ok());
        assert!(some.check(Some("http://evil.example"), host).is_err());
        let any = Origins::new(&["*".into()]);
        assert!(any.check(Some("http://evil.example"), host).is_ok());
        let tls = Origins::default().own_page_over_https(true);
        assert!(tls.check(Some("https://chat.example:8080"), host).is_ok());
        assert!(tls.check(Some("http://chat.example:8080"), host).is_err());
        let why = none.check(Some("http://evil.example"), host).unwrap_err();
        assert!(!why.contains('\n'), "{why}");
        assert!(why.contains("--allow-origin"), "{why}");
    }
}
