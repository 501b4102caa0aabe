//! What the HTTP listener answers, request by request: `/healthz`, `/metrics`, the files of
//! `--web-root` (or a page that says how to get them), the WebSocket upgrade on `/ws`, and with
//! `--op-token-file` the admin API under `/admin/`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{
    ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, HeaderValue, RETRY_AFTER,
    SEC_WEBSOCKET_ACCEPT, UPGRADE, VARY,
};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::io::ReaderStream;

use super::admin::Admin;
use super::files;
use super::headers::{accepts_gzip, text};
use super::hosts::Hosts;
use super::response::{self, Body};
use super::upgrade::{Origins, check_upgrade};
use crate::metrics::{self, Metrics, Refused};

/// What the HTTP listener serves, the same for every connection.
pub struct Site {
    /// Where nc users connect, for the placeholder page.
    pub tcp_addr: String,
    /// Whether both listeners speak TLS (`--tls-cert`): the placeholder page then tells nc
    /// users to use `openssl s_client`.
    pub tls: bool,
    /// `--web-root`.
    pub web_root: Option<PathBuf>,
    /// The names the server goes by: a request for another gets `403` (DNS rebinding).
    pub hosts: Hosts,
    /// Who may open a WebSocket from a browser page.
    pub origins: Origins,
    /// Connections admitted at once, TCP and WebSocket together: an upgrade takes one.
    pub admitted: Arc<Semaphore>,
    /// `--handshake-timeout`: how long a client may take to send a request head.
    pub handshake_timeout: Duration,
    /// What `/metrics` shows; with `--metrics off` it is empty and `/metrics` is 404.
    pub metrics: Metrics,
    /// Wakes the kept-alive connections waiting for a next request, to close.
    pub wanted: Notify,
    /// What `/readyz` says.
    pub readiness: Readiness,
    /// With `--op-token-file`: the admin API; without, `/admin/` is as any unknown path.
    pub admin: Option<Admin>,
}

/// Whether this node is part of the room, for `/readyz`: always alone; with `--redis`, while
/// in contact with the room through Redis.
#[derive(Debug, Default)]
pub struct Readiness {
    /// This node's name.
    pub node: String,
    /// The link to Redis, with `--redis`.
    pub link: Option<Arc<crate::cluster::Link>>,
}

impl Readiness {
    fn answer(&self) -> Response<Body> {
        let node = &self.node;
        match &self.link {
            Some(link) if !link.up.load(std::sync::atomic::Ordering::Acquire) => response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: node {node} is out of contact with the other servers"),
            ),
            Some(_) => response::text(
                StatusCode::OK,
                &format!("ready: node {node} is in the room"),
            ),
            None => response::text(StatusCode::OK, &format!("ready: node {node} (alone)")),
        }
    }
}

/// How a request was answered.
pub enum Answer {
    /// An answer to send, after which the connection may serve the next request.
    Plain(Response<Body>),
    /// `101 Switching Protocols` for `/ws`, with the place among the admitted connections that
    /// the WebSocket takes once the answer is out.
    Upgrade(Response<Body>, OwnedSemaphorePermit),
}

impl Site {
    /// The listener has no place left for a newcomer: every kept-alive connection that is
    /// waiting for a next request closes, giving its place (and its address's) back.
    pub fn make_room(&self) {
        self.wanted.notify_waiters();
    }

    /// Answers one request from `client`. Its body is read by the admin API only, up to its
    /// bound; elsewhere it is left unread.
    ///
    /// A request for a name the server does not go by gets `403`: a page whose name was made
    /// to point here must not read the server's answers. `/ws` has its own rule (the origin
    /// policy's), since a WebSocket client that is not a browser may send any `Host`.
    pub async fn answer<B>(&self, head: &Parts, body: B, client: IpAddr) -> Answer
    where
        B: hyper::body::Body<Data = bytes::Bytes>,
        B::Error: std::fmt::Display,
    {
        let path = head.uri.path();
        if path == "/ws" {
            return self.upgrade(head);
        }
        if let Err(foreign) = self.hosts.check_request(head) {
            tracing::debug!(host = ?text(&head.headers, "host"), %path,
                "request refused: not one of the server's names");
            return Answer::Plain(response::text(StatusCode::FORBIDDEN, &foreign.answer()));
        }
        if let Some(admin) = self.admin.as_ref().filter(|_| Admin::owns(path)) {
            return Answer::Plain(admin.answer(head, body, client, self.tls).await);
        }
        Answer::Plain(self.respond(head, path).await)
    }

    /// Checks a WebSocket upgrade and takes a place among the admitted connections for it.
    fn upgrade(&self, head: &Parts) -> Answer {
        let accept = match check_upgrade(head, &self.origins, &self.hosts) {
            Ok(accept) => accept,
            Err(refusal) => {
                if refusal.status == 403 {
                    tracing::info!(origin = ?text(&head.headers, "origin"),
                        host = ?text(&head.headers, "host"),
                        "websocket refused: origin not allowed");
                } else {
                    tracing::debug!(status = refusal.status, reason = %refusal.reason,
                        "websocket upgrade refused");
                }
                let status =
                    StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = closing(response::text(status, &refusal.reason));
                if let Some((name, value)) = refusal.header {
                    response
                        .headers_mut()
                        .insert(name, HeaderValue::from_static(value));
                }
                return Answer::Plain(response);
            }
        };
        // Past `--max-users` and the slack in which the room itself says `full`, like the TCP
        // listener when it stops accepting.
        let Ok(permit) = self.admitted.clone().try_acquire_owned() else {
            self.metrics.refused(Refused::Full);
            let mut response = closing(response::text(
                StatusCode::SERVICE_UNAVAILABLE,
                response::FULL,
            ));
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return Answer::Plain(response);
        };
        let mut response = Response::new(Body::Text(None));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        Answer::Upgrade(response, permit)
    }

    /// The answer to a request for anything but `/ws`.
    async fn respond(&self, head: &Parts, path: &str) -> Response<Body> {
        if head.method != Method::GET && head.method != Method::HEAD {
            let mut response = response::status(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if path == "/healthz" {
            return response::text(StatusCode::OK, "ok");
        }
        if path == "/readyz" {
            return self.readiness.answer();
        }
        if path == "/metrics" {
            return metrics_response(&self.metrics);
        }
        let Some(root) = &self.web_root else {
            return match path {
                "/" | "/index.html" => no_cache(response::with_body(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    Body::Text(Some(placeholder(&self.tcp_addr, self.tls).into())),
                )),
                _ => response::status(StatusCode::NOT_FOUND),
            };
        };
        match files::open(root, path, accepts_gzip(&head.headers)).await {
            Ok(found) => {
                let body = Body::File {
                    // No more than the length announced, should the file grow meanwhile.
                    stream: ReaderStream::new(found.file.take(found.len)),
                    len: found.len,
                };
                let mut response = no_cache(response::with_body(
                    StatusCode::OK,
                    found.content_type,
                    body,
                ));
                let headers = response.headers_mut();
                headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                if found.gzip {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                response
            }
            Err(status) => {
                response::status(StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND))
            }
        }
    }
}

/// A refused upgrade closes its connection: a WebSocket client does not reuse it for HTTP.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn no_cache(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `/metrics`: the OpenMetrics text, never cached; 404 with `--metrics off`.
fn metrics_response(metrics: &Metrics) -> Response<Body> {
    match metrics.encode() {
        Some(Ok(text)) => {
            let mut response = response::with_body(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                Body::Text(Some(text.into())),
            );
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Some(Err(err)) => {
            tracing::warn!(%err, "cannot encode the metrics");
            response::status(StatusCode::INTERNAL_SERVER_ERROR)
        }
        None => response::status(StatusCode::NOT_FOUND),
    }
}

fn placeholder(tcp_addr: &str, tls: bool) -> String {
    let terminal = if tls {
        format!("openssl s_client -quiet -connect {tcp_addr}")
    } else {
        format!("nc {}", tcp_addr.replacen(':', " ", 1))
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>chat-server</title></head>\n<body><h1>chat-server</h1>\
         <p>The web client is not built into this server: it serves the browser page only when \
         started with <code>--web-root DIR</code>. <code>cargo xtask run</code> builds the web \
         client and starts the server with <code>--web-root</code> pointing at it.</p>\
         <p>Meanwhile, join the room from a terminal:</p>\
         <pre>{terminal}</pre>\
         <p>WebSocket clients connect to <code>/ws</code> on this address and speak JSON.</p>\
         </body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;
    use crate::clock::Clock;

    fn head(method: &str, path: &str) -> Parts {
        let request = Request::builder().method(method).uri(path);
        request.body(()).unwrap().into_parts().0
    }

    fn site(web_root: Option<PathBuf>) -> Site {
        Site {
            tcp_addr: "127.0.0.1:8888".into(),
            tls: false,
            web_root,
            hosts: Hosts::default(),
            origins: Origins::default(),
            admitted: Arc::new(Semaphore::new(1)),
            handshake_timeout: Duration::from_secs(10),
            metrics: Metrics::default(),
            wanted: Notify::new(),
            readiness: Readiness {
                node: "n1".into(),
                link: None,
            },
            admin: None,
        }
    }

    /// The answer as it goes on the wire: status line, headers, a blank line, the body.
    async fn wire(site: &Site, method: &str, path: &str) -> String {
        let body = Body::Text(None);
        let client = std::net::Ipv4Addr::LOCALHOST.into();
        let Answer::Plain(response) = site.answer(&head(method, path), body, client).await else {
            panic!("an upgrade for {path}")
        };
        let mut text = format!(
            "HTTP/1.1 {} {}\r\n",
            response.status().as_u16(),
            response.status().canonical_reason().unwrap_or_default()
        );
        for (name, value) in response.headers() {
            text += &format!("{name}: {}\r\n", value.to_str().unwrap());
        }
        text += "\r\n";
        let Body::Text(body) = response.into_body() else {
            panic!("a text answer")
        };
        text + std::str::from_utf8(&body.unwrap_or_default()).unwrap()
    }

    async fn answer(method: &str, path: &str) -> String {
        wire(&site(None), method, path).await
    }

    #[tokio::test]
    async fn without_a_web_root_answers_the_placeholder_health_and_errors() {
        let page = answer("GET", "/").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(page.contains("nc 127.0.0.1 8888"));
        assert!(page.contains("cargo xtask run"));
        assert!(
            placeholder("127.0.0.1:8888", true)
                .contains("<pre>openssl s_client -quiet -connect 127.0.0.1:8888</pre>")
        );
        assert!(answer("GET", "/healthz").await.ends_with("\r\n\r\nok\n"));
        assert!(
            answer("GET", "/readyz")
                .await
                .ends_with("\r\n\r\nready: node n1 (alone)\n")
        );
        assert!(answer("GET", "/nope").await.starts_with("HTTP/1.1 404"));
        assert!(answer("POST", "/").await.starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_or_404_when_off() {
        let mut on = site(None);
        on.metrics = Metrics::new(true, Clock::start());
        on.metrics.refused(Refused::Full);
        let text = wire(&on, "GET", "/metrics").await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("content-type: {}\r\n", metrics::CONTENT_TYPE)));
        assert!(body.contains("\nchat_connections_refused_total{reason=\"full\"} 1\n"));
        assert!(body.ends_with("# EOF\n"));
        assert!(answer("GET", "/metrics").await.starts_with("HTTP/1.1 404"));
    }
}
