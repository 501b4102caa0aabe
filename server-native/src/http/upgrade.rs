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
use super::hosts::Hosts;

/// A connection (TCP, or TLS over TCP) that has been answered `101 Switching Protocols`.
pub struct Upgraded<S> {
    pub stream: S,
    /// Bytes the client sent after its request head, already read: the start of its frames.
    pub leftover: Vec<u8>,
    /// Its place among the connections admitted at once (`--max-users` and some slack).
    pub permit: OwnedSemaphorePermit,
}

/// The origin policy: a handshake without `Origin` (not a browser) or from the server's own
/// page (`http://`, or `https://` over TLS, + the request's `Host`, when that is one of the
/// server's names: [`Hosts`]) is accepted, and so is one from an origin given with
/// `--allow-origin` (`*`: any). Compared without regard to case.
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
    /// says why not. A page whose origin is `Host`'s is the server's own only if `Host` is one
    /// of the server's names: otherwise it is a page of another site whose name now points
    /// here (DNS rebinding).
    pub fn check(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
        hosts: &Hosts,
    ) -> Result<(), String> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = origin.trim();
        if self.any
            || self
                .allowed
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        let scheme = if self.https { "https" } else { "http" };
        let own = host.map(|host| format!("{scheme}://{}", host.trim()));
        let own_host = hosts.check(host);
        if own
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(origin))
        {
            return own_host.map_err(|foreign| {
                format!(
                    "WebSocket connections from pages of origin {origin:?} are not allowed: \
                     {foreign}."
                )
            });
        }
        let own = own
            .filter(|_| own_host.is_ok())
            .unwrap_or_else(|| "this server's own page".to_owned());
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
pub fn check_upgrade(head: &Parts, origins: &Origins, hosts: &Hosts) -> Result<String, Refusal> {
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
        .check(text(headers, ORIGIN), text(headers, HOST), hosts)
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

    /// The server as it goes by the name of [`GOOD`]'s `Host`.
    fn chat_example() -> Hosts {
        Hosts::new(&["chat.example".into()], &[], "127.0.0.1:8080")
    }

    #[test]
    fn a_good_upgrade_gets_the_accept_key_of_the_rfc() {
        let accept =
            check_upgrade(&head("GET", &GOOD), &Origins::default(), &chat_example()).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_upgrades_are_refused_with_a_status_and_a_reason() {
        let (origins, hosts) = (Origins::default(), chat_example());
        let status = |head: &Parts| check_upgrade(head, &origins, &hosts).unwrap_err().status;
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
        // The own page's origin, under a name the server does not go by.
        let rebound = with("Origin", Some("http://chat.example:8080"));
        let unnamed = Hosts::new(&[], &[], "127.0.0.1:8080");
        let refusal = check_upgrade(&rebound, &origins, &unnamed).unwrap_err();
        assert_eq!(refusal.status, 403);
    }

    #[test]
    fn the_own_origin_and_allowed_ones_pass() {
        let host = Some("Chat.Example:8080");
        let hosts = chat_example();
        let none = Origins::default();
        assert!(none.check(None, host, &hosts).is_ok());
        assert!(
            none.check(Some("http://chat.example:8080"), host, &hosts)
                .is_ok()
        );
        assert!(
            none.check(Some("https://chat.example:8080"), host, &hosts)
                .is_err()
        );
        assert!(
            none.check(Some("http://evil.example"), host, &hosts)
                .is_err()
        );
        assert!(none.check(Some("null"), host, &hosts).is_err());
        assert!(
            none.check(Some("http://chat.example:8080"), None, &hosts)
                .is_err()
        );
        let some = Origins::new(&["https://Chat.Example/".into()]);
        assert!(
            some.check(Some("https://chat.example"), host, &hosts)
                .is_ok()
        );
        assert!(
            some.check(Some("http://evil.example"), host, &hosts)
                .is_err()
        );
        let any = Origins::new(&["*".into()]);
        assert!(any.check(Some("http://evil.example"), host, &hosts).is_ok());
        let tls = Origins::default().own_page_over_https(true);
        assert!(
            tls.check(Some("https://chat.example:8080"), host, &hosts)
                .is_ok()
        );
        assert!(
            tls.check(Some("http://chat.example:8080"), host, &hosts)
                .is_err()
        );
        let why = none
            .check(Some("http://evil.example"), host, &hosts)
            .unwrap_err();
        assert!(!why.contains('\n'), "{why}");
        assert!(why.contains("--allow-origin"), "{why}");
        assert!(why.contains("only from http://Chat.Example:8080;"), "{why}");
    }

    #[test]
    fn a_page_whose_name_points_here_is_not_the_own_page_unless_the_name_is_the_servers() {
        let hosts = Hosts::new(&[], &[], "127.0.0.1:8080");
        let none = Origins::default();
        let rebound = Some("evil.example:8080");
        let why = none
            .check(Some("http://evil.example:8080"), rebound, &hosts)
            .unwrap_err();
        assert!(why.contains("\"evil.example\""), "{why}");
        assert!(why.contains("--allow-host evil.example"), "{why}");
        assert!(!why.contains('\n'), "{why}");
        // Another origin on a foreign Host: not told that the foreign name is the own page.
        let why = none
            .check(Some("http://other.example"), rebound, &hosts)
            .unwrap_err();
        assert!(why.contains("only from this server's own page;"), "{why}");
        for own in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
            let origin = format!("http://{own}");
            assert!(
                none.check(Some(&origin), Some(own), &hosts).is_ok(),
                "{own}"
            );
        }
        let named = Hosts::new(&["evil.example".into()], &[], "127.0.0.1:8080");
        assert!(
            none.check(Some("http://evil.example:8080"), rebound, &named)
                .is_ok()
        );
        let allowed = Origins::new(&["http://evil.example:8080".into()]);
        assert!(
            allowed
                .check(Some("http://evil.example:8080"), rebound, &hosts)
                .is_ok()
        );
    }
}
