//! The HTTP listener: the browser client's files (`--web-root`), or a page that says how to get
//! it; `/healthz`; `/metrics` (unless `--metrics off`); and `/ws`, upgraded to WebSocket. Every plain request is answered and the
//! connection closed; an upgraded one is handed back to the caller.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::connection::linger;
use crate::files;
use crate::metrics::{self, Metrics, Refused};
use crate::websocket::{self, Upgraded};

/// The largest request head read; a longer one gets 431.
const MAX_HEAD: usize = 8 * 1024;
/// How long an answer may take to send before the connection is dropped: a client that stops
/// reading cannot hold its HTTP slot for longer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the HTTP listener serves.
pub struct Site {
    /// Where nc users connect, for the placeholder page.
    pub tcp_addr: String,
    /// Whether both listeners speak TLS (`--tls-cert`): the placeholder page then tells nc
    /// users to use `openssl s_client`.
    pub tls: bool,
    /// `--web-root`.
    pub web_root: Option<PathBuf>,
    /// How WebSocket connections behave, their origin policy among it.
    pub ws: websocket::Settings,
    /// Connections admitted at once, TCP and WebSocket together.
    pub admitted: Arc<Semaphore>,
    /// `--handshake-timeout`: how long a client may take to send its request head and have
    /// its answer (`101` for an upgrade) taken.
    pub handshake_timeout: Duration,
    /// What `/metrics` shows; with `--metrics off` it is empty and `/metrics` is 404.
    pub metrics: Metrics,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// As sent, query included.
    pub path: String,
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (any case), if it is text.
    pub fn get<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the comma-separated header `name`, over all its lines, lists `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether `Accept-Encoding` takes gzip (and not with `q=0`).
    fn accepts_gzip(&self) -> bool {
        self.values("accept-encoding")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or_default().trim();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                coding.eq_ignore_ascii_case("gzip") && !refused
            })
    }
}

/// Answers one request on `stream` (TCP, or TLS over TCP). A WebSocket upgrade that is accepted
/// (and admitted) gets `101` and is returned for [`websocket::serve`]; anything else is
/// answered and closed.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    site: &Site,
) -> Option<Upgraded<S>> {
    let deadline = tokio::time::Instant::now() + site.handshake_timeout;
    let (head, leftover) = match tokio::time::timeout_at(deadline, read_head(&mut stream)).await {
        Ok(Ok(read)) => read,
        Ok(Err(status)) => return bad_head(stream, status, site).await,
        Err(_) => return bad_head(stream, 408, site).await,
    };
    let path = head.path.split('?').next().unwrap_or_default();
    let response = if path == "/ws" {
        match upgrade(&head, site) {
            Ok((accept, permit)) => {
                let switching = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                tokio::time::timeout_at(deadline, async {
                    stream.write_all(switching.as_bytes()).await?;
                    stream.flush().await
                })
                .await
                .ok()?
                .ok()?;
                return Some(Upgraded {
                    stream,
                    leftover,
                    permit,
                });
            }
            Err(response) => *response,
        }
    } else {
        respond(&head, path, site).await
    };
    let head_only = head.method == "HEAD";
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, response.send(&mut stream, head_only)).await;
    None
}

/// A whole plain-text answer with `Retry-After`, for a connection refused at the door.
pub fn refusal(status: u16, retry_after_secs: u64, text: &str) -> bytes::Bytes {
    let body = format!("{text}\n");
    let mut response = Response::text(status, &body);
    response
        .headers
        .push(("Retry-After", retry_after_secs.to_string()));
    bytes::Bytes::from(response.head() + &body)
}

/// Answers a request head that did not come (408), was too long (431) or was not HTTP (400),
/// and closes; what the client still sends is drained a moment first, so that it reads the
/// answer rather than a reset. Within `--handshake-timeout` again.
async fn bad_head<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    status: u16,
    site: &Site,
) -> Option<Upgraded<S>> {
    tracing::debug!(status, "bad or slow request head");
    let response = Response::text(status, status_text(status));
    let _ = tokio::time::timeout(site.handshake_timeout, async {
        if response.send(&mut stream, false).await.is_ok() {
            linger(&mut stream).await;
        }
    })
    .await;
    None
}

/// Checks an upgrade and takes a place among the admitted connections for it.
fn upgrade(
    head: &Head,
    site: &Site,
) -> Result<(String, tokio::sync::OwnedSemaphorePermit), Box<Response>> {
    let accept = websocket::check_upgrade(head, &site.ws.origins).map_err(|refusal| {
        if refusal.status == 403 {
            tracing::info!(origin = ?head.get("origin"), host = ?head.get("host"),
                "websocket refused: origin not allowed");
        } else {
            tracing::debug!(status = refusal.status, reason = %refusal.reason,
                "websocket upgrade refused");
        }
        let mut response = Response::text(refusal.status, &format!("{}\n", refusal.reason));
        response
            .headers
            .extend(refusal.header.map(|(name, value)| (name, value.to_owned())));
        Box::new(response)
    })?;
    // Past `--max-users` and the slack in which the room itself says `full`, like the TCP
    // listener when it stops accepting.
    let permit = site.admitted.clone().try_acquire_owned().map_err(|_| {
        site.metrics.refused(Refused::Full);
        let mut response = Response::text(503, "The server is full; try again later.\n");
        response.headers.push(("Retry-After", "5".to_owned()));
        Box::new(response)
    })?;
    Ok((accept, permit))
}

/// Reads up to the end of the request head; returns it and the bytes read past it, or the
/// status that says why not.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<(Head, Vec<u8>), u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    path: request.path.unwrap_or_default().to_owned(),
                    version: request.version.unwrap_or_default(),
                    headers: request
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), h.value.to_owned()))
                        .collect(),
                };
                return Ok((head, buf.split_off(len)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(431),
            Err(httparse::Error::TooManyHeaders) => return Err(431),
            Err(_) => return Err(400),
        }
    }
}

/// The answer to a request for anything but `/ws`.
async fn respond(head: &Head, path: &str, site: &Site) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        let mut response = Response::text(405, status_text(405));
        response.headers.push(("Allow", "GET, HEAD".to_owned()));
        return response;
    }
    if path == "/healthz" {
        return Response::text(200, "ok\n");
    }
    if path == "/metrics" {
        return metrics_response(&site.metrics);
    }
    let Some(root) = &site.web_root else {
        return match path {
            "/" | "/index.html" => Response {
                status: 200,
                headers: vec![
                    ("Content-Type", "text/html; charset=utf-8".to_owned()),
                    ("Cache-Control", "no-cache".to_owned()),
                ],
                body: Body::Text(placeholder(&site.tcp_addr, site.tls)),
            },
            _ => Response::text(404, status_text(404)),
        };
    };
    match files::open(root, &head.path, head.accepts_gzip()).await {
        Ok(found) => {
            let mut headers = vec![
                ("Content-Type", found.content_type.to_owned()),
                ("Cache-Control", "no-cache".to_owned()),
                ("Vary", "Accept-Encoding".to_owned()),
            ];
            if found.gzip {
                headers.push(("Content-Encoding", "gzip".to_owned()));
            }
            Response {
                status: 200,
                headers,
                body: Body::File(found.file, found.len),
            }
        }
        Err(status) => Response::text(status, status_text(status)),
    }
}

/// `/metrics`: the OpenMetrics text, never cached; 404 with `--metrics off`.
fn metrics_response(metrics: &Metrics) -> Response {
    match metrics.encode() {
        Some(Ok(text)) => Response {
            status: 200,
            headers: vec![
                ("Content-Type", metrics::CONTENT_TYPE.to_owned()),
                ("Cache-Control", "no-store".to_owned()),
            ],
            body: Body::Text(text),
        },
        Some(Err(err)) => {
            tracing::warn!(%err, "cannot encode the metrics");
            Response::text(500, status_text(500))
        }
        None => Response::text(404, status_text(404)),
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

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

struct Response {
    status: u16,
    /// Besides Content-Length, Connection and X-Content-Type-Options, always sent.
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    Text(String),
    File(tokio::fs::File, u64),
}

impl Response {
    /// A plain-text answer; `body` should end with a line end.
    fn text(status: u16, body: &str) -> Response {
        let body = if body.ends_with('\n') {
            body.to_owned()
        } else {
            format!("{body}\n")
        };
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: Body::Text(body),
        }
    }

    fn head(&self) -> String {
        let len = match &self.body {
            Body::Text(text) => text.len() as u64,
            Body::File(_, len) => *len,
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {len}\r\nConnection: close\r\n\
             X-Content-Type-Options: nosniff\r\n",
            self.status,
            status_text(self.status)
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    /// Writes the response (only its head for HEAD) and closes the connection.
    async fn send(
        self,
        stream: &mut (impl AsyncWrite + Unpin),
        head_only: bool,
    ) -> std::io::Result<()> {
        let head = self.head();
        match self.body {
            Body::Text(text) if !head_only => {
                stream.write_all((head + &text).as_bytes()).await?;
            }
            Body::File(file, len) if !head_only => {
                stream.write_all(head.as_bytes()).await?;
                // No more than the length announced, should the file grow meanwhile.
                tokio::io::copy(&mut file.take(len), stream).await?;
            }
            _ => stream.write_all(head.as_bytes()).await?,
        }
        stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            method: method.into(),
            path: path.into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn site(web_root: Option<PathBuf>) -> Site {
        Site {
            tcp_addr: "127.0.0.1:8888".into(),
            tls: false,
            web_root,
            ws: websocket::Settings {
                max_line: 4096,
                ping: None,
                origins: Default::default(),
                max_queue: 1 << 20,
            },
            admitted: Arc::new(Semaphore::new(1)),
            handshake_timeout: Duration::from_secs(10),
            metrics: Metrics::default(),
        }
    }

    async fn answer(method: &str, path: &str) -> String {
        let response = respond(&head(method, path, &[]), path, &site(None)).await;
        let Body::Text(body) = &response.body else {
            panic!("a text answer")
        };
        response.head() + body
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
        assert!(answer("GET", "/nope").await.starts_with("HTTP/1.1 404"));
        assert!(answer("POST", "/").await.starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_or_404_when_off() {
        let mut on = site(None);
        on.metrics = Metrics::new(true);
        on.metrics.refused(Refused::Full);
        let response = respond(&head("GET", "/metrics", &[]), "/metrics", &on).await;
        let Body::Text(body) = &response.body else {
            panic!("a text answer")
        };
        let head = response.head();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {}\r\n", metrics::CONTENT_TYPE)));
        assert!(body.contains("\nchat_connections_refused_total{reason=\"full\"} 1\n"));
        assert!(body.ends_with("# EOF\n"));
        assert!(answer("GET", "/metrics").await.starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn headers_are_read_as_tokens_and_gzip_as_accepted() {
        let h = head(
            "GET",
            "/",
            &[
                ("connection", "keep-alive"),
                ("Connection", " Upgrade "),
                ("Accept-Encoding", "br, GZIP;q=0.5"),
            ],
        );
        assert!(h.has_token("CONNECTION", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert!(h.accepts_gzip());
        let h = head("GET", "/", &[("Accept-Encoding", "deflate, gzip;q=0")]);
        assert!(!h.accepts_gzip());
        assert!(!head("GET", "/", &[]).accepts_gzip());
    }
}
