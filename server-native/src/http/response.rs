//! HTTP answers: the bodies the listener sends, the plain-text answers, and the few answers
//! written as bytes before or after hyper holds the connection (refusals at the door, `408`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};
use tokio::fs::File;
use tokio::io::Take;
use tokio_util::io::ReaderStream;

/// What a refusal says when every place is taken.
pub const FULL: &str = "The server is full; try again later.";
/// The content type of every plain-text answer.
const TEXT: &str = "text/plain; charset=utf-8";

/// The body of an answer: text made in memory, or a file streamed from disk a few kilobytes at
/// a time (however large the file, a request holds one such buffer).
pub enum Body {
    /// All of it at once; `None` once sent.
    Text(Option<Bytes>),
    /// The file, up to the length announced.
    File {
        stream: ReaderStream<Take<File>>,
        len: u64,
    },
}

impl Body {
    /// The body's length, as `Content-Length` says it.
    fn len(&self) -> u64 {
        match self {
            Body::Text(text) => text.as_ref().map_or(0, |t| t.len() as u64),
            Body::File { len, .. } => *len,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Text(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
            Body::File { stream, .. } => Pin::new(stream)
                .poll_next(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// A whole answer with `body` and its `content_type`; `Content-Length` and `nosniff` always.
pub fn with_body(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let len = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    response
}

/// A plain-text answer; a line end is added to `body` if it has none.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    with_body(status, TEXT, Body::Text(Some(line(body).into())))
}

/// A plain-text answer that is only its status's reason (`Not Found`).
pub fn status(status: StatusCode) -> Response<Body> {
    text(status, status.canonical_reason().unwrap_or("Error"))
}

/// `Retry-After`'s whole seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// A whole plain-text answer with `Retry-After`, as bytes, for a connection refused at the
/// door before any of its request is read; the connection is closed after it.
pub fn refusal(status: u16, retry_after_secs: u64, text: &str) -> Bytes {
    raw(
        status,
        &[("Retry-After", &retry_after_secs.to_string())],
        text,
    )
}

/// A whole plain-text answer, as bytes, for a connection that is closed after it; `headers`
/// besides those every plain-text answer has.
pub fn raw(status: u16, headers: &[(&str, &str)], text: &str) -> Bytes {
    let body = line(text);
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Type: {TEXT}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    Bytes::from(head + &body)
}

fn line(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_refusal_is_a_whole_answer_that_closes() {
        let bytes = refusal(429, 60, "Too many connections from your address.");
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 60\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        assert_eq!(body, "Too many connections from your address.\n");
    }

    #[test]
    fn text_answers_say_their_length_and_type() {
        let response = status(StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_LENGTH], "10");
        assert_eq!(response.headers()[CONTENT_TYPE], TEXT);
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
