//! The HTTP listener. Until the browser client lands it serves a page that says how to join
//! with nc; every request is answered and closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request head read; a longer one gets 431.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request on `stream` and closes it. `tcp_addr` is where nc users connect.
pub async fn serve(mut stream: TcpStream, tcp_addr: String) {
    let response = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => return, // Too slow to say anything: no answer.
        Ok(Err(status)) => simple(status, "text/plain; charset=utf-8", status_text(status)),
        Ok(Ok((method, path))) => respond(&method, &path, &tcp_addr),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the end of the request head and returns its method and path, or the status
/// that says why not.
async fn read_head(stream: &mut TcpStream) -> Result<(String, String), u16> {
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
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default().to_owned();
                let path = request.path.unwrap_or_default().to_owned();
                return Ok((method, path));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(431),
            Err(httparse::Error::TooManyHeaders) => return Err(431),
            Err(_) => return Err(400),
        }
    }
}

fn respond(method: &str, path: &str, tcp_addr: &str) -> String {
    if method != "GET" && method != "HEAD" {
        return simple(405, "text/plain; charset=utf-8", status_text(405));
    }
    let path = path.split('?').next().unwrap_or_default();
    let mut response = match path {
        "/" | "/index.html" => simple(200, "text/html; charset=utf-8", &placeholder(tcp_addr)),
        "/healthz" => simple(200, "text/plain; charset=utf-8", "ok\n"),
        _ => simple(404, "text/plain; charset=utf-8", status_text(404)),
    };
    if method == "HEAD" {
        if let Some(end) = response.find("\r\n\r\n") {
            response.truncate(end + 4);
        }
    }
    response
}

fn placeholder(tcp_addr: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>chat-server</title></head>\n<body><h1>chat-server</h1>\
         <p>The browser client is not part of this build yet. Join the room from a terminal:</p>\
         <pre>nc {tcp_addr}</pre></body></html>\n",
        tcp_addr = tcp_addr.replacen(':', " ", 1)
    )
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

fn simple(status: u16, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n{body}",
        status_text(status),
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_page_health_and_errors() {
        let page = respond("GET", "/?x=1", "127.0.0.1:8888");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(page.contains("nc 127.0.0.1 8888"));
        assert!(respond("GET", "/healthz", "a:1").ends_with("\r\n\r\nok\n"));
        assert!(respond("GET", "/nope", "a:1").starts_with("HTTP/1.1 404"));
        assert!(respond("POST", "/", "a:1").starts_with("HTTP/1.1 405"));
        assert!(respond("HEAD", "/", "a:1").ends_with("\r\n\r\n"));
    }
}
