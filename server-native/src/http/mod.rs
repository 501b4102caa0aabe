//! The HTTP listener's connections, served by hyper: HTTP/1.1 with keep-alive, each request
//! answered by the [`Site`], every wait bounded in time, and a WebSocket upgrade on `/ws`
//! handed back with its stream.
//!
//! # Layout
//!
//! - this file: one connection's life, and its time bounds: a request head must come within
//!   `--handshake-timeout` of the connection opening or of the previous answer (else `408`, or
//!   a quiet close for an idle keep-alive connection), and an answer must be taken within
//!   [`RESPONSE_TIMEOUT`].
//! - `site`: which answer a request gets.
//! - `upgrade`: the WebSocket upgrade's checks (RFC 6455, the origin policy).
//! - `files`: the static files of `--web-root`.
//! - `headers`: reading request headers.
//! - `response`: bodies and plain-text answers, and the few written as bytes.

mod files;
mod headers;
pub mod response;
mod site;
pub mod upgrade;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use site::Site;

use crate::stream::linger;
use response::Body;
use site::Answer;
use upgrade::Upgraded;

/// How long an answer may take to be sent before the connection is dropped: a client that
/// stops reading cannot hold its HTTP slot for longer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request head read; a longer one gets `431`.
const MAX_HEAD: usize = 8 * 1024;
/// The most header lines in a request head; more get `431`.
const MAX_HEADERS: usize = 64;
/// The most hyper buffers for a connection, each way: a whole head, or a few chunks of a file.
const MAX_BUFFER: usize = 16 * 1024;

/// Serves one HTTP connection (TCP, or TLS over TCP) until the client closes it, a time bound
/// ends it, or a request for `/ws` is upgraded: that connection is returned, with the bytes
/// read past its head and its place among the admitted connections, for
/// `websocket::serve`. On `stop`, a connection waiting for a request closes at once, one
/// answering closes once its answer is out.
pub async fn serve<S>(stream: S, site: Arc<Site>, stop: &CancellationToken) -> Option<Upgraded<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake_timeout = site.handshake_timeout;
    let exchange = Arc::new(Exchange::new());
    let service = {
        let exchange = exchange.clone();
        service_fn(move |request| {
            let (site, exchange) = (site.clone(), exchange.clone());
            Box::pin(async move { Ok::<_, Infallible>(exchange.answer(&site, request).await) })
        })
    };
    let mut conn = http1::Builder::new()
        .keep_alive(true)
        .title_case_headers(true)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_BUFFER)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let mut stopping = false;
    let end = loop {
        let phase = exchange.phase();
        let deadline = phase.deadline(handshake_timeout);
        let changed = exchange.changed.notified();
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break End::Done(done),
            () = changed => {}
            () = stop.cancelled(), if !stopping => {
                if let Phase::Head { .. } = phase {
                    break End::Stopped;
                }
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {
                if exchange.phase().deadline(handshake_timeout) <= Instant::now() {
                    break End::TimedOut(phase);
                }
            }
        }
    };
    let upgrade = exchange.take_upgrade();
    let parts = conn.into_parts();
    let mut stream = parts.io.into_inner();
    match end {
        End::Done(Ok(())) => {
            if let Some(permit) = upgrade {
                return Some(Upgraded {
                    stream,
                    leftover: parts.read_buf.to_vec(),
                    permit,
                });
            }
        }
        End::Done(Err(err)) => tracing::debug!(%err, "http connection failed"),
        End::TimedOut(Phase::Head { first, .. }) => {
            // A client that sent nothing of a next request on a kept-alive connection is
            // simply let go, as every keep-alive connection is at some point.
            if !first && parts.read_buf.is_empty() {
                return None;
            }
            tracing::debug!("request head not received in time");
            let timeout = response::raw(408, &[], "Request Timeout");
            let _ = tokio::time::timeout(handshake_timeout, stream.write_all(&timeout)).await;
        }
        End::TimedOut(Phase::Answer { .. }) => {
            tracing::debug!("answer not taken in time: dropping the connection");
            return None;
        }
        End::Stopped => return None,
    }
    // Our FIN, then a moment for the client's, so that it reads the answer rather than a
    // reset.
    let _ = tokio::time::timeout(handshake_timeout, async {
        if stream.shutdown().await.is_ok() {
            linger(&mut stream).await;
        }
    })
    .await;
    None
}

/// How [`serve`]'s loop ended.
enum End {
    /// hyper is done with the connection: the client closed it, asked to, broke the protocol
    /// (hyper has answered `400` or `431`), or was answered `101`.
    Done(hyper::Result<()>),
    /// A time bound passed in this phase.
    TimedOut(Phase),
    /// The server is stopping and the connection was waiting for a request.
    Stopped,
}

/// Where a connection is between two requests, for its time bounds.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request head since `since`; `first`: no request has been answered yet.
    Head { since: Instant, first: bool },
    /// Answering a request since `since`.
    Answer { since: Instant },
}

impl Phase {
    /// When this phase has lasted too long.
    fn deadline(self, handshake_timeout: Duration) -> Instant {
        match self {
            Phase::Head { since, .. } => since + handshake_timeout,
            Phase::Answer { since } => since + RESPONSE_TIMEOUT,
        }
    }
}

/// What a connection's requests share with the loop that bounds its time: the phase it is in,
/// and the place of a WebSocket upgrade it answered with `101`.
struct Exchange {
    phase: Mutex<Phase>,
    /// Told whenever the phase changes, so that the loop sleeps until the new deadline.
    changed: Notify,
    upgrade: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Exchange {
    fn new() -> Self {
        Exchange {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
                first: true,
            }),
            changed: Notify::new(),
            upgrade: Mutex::new(None),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        self.changed.notify_one();
    }

    fn take_upgrade(&self) -> Option<OwnedSemaphorePermit> {
        self.upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Answers one request; the answer's body, once hyper is done with it, starts the wait for
    /// the next head.
    async fn answer(
        self: Arc<Self>,
        site: &Site,
        request: Request<Incoming>,
    ) -> Response<Answered> {
        self.set(Phase::Answer {
            since: Instant::now(),
        });
        // A body, if any, is not read: hyper reads it past to the next request, or closes.
        let (head, _) = request.into_parts();
        let response = match site.answer(&head).await {
            Answer::Plain(response) => response,
            Answer::Upgrade(response, permit) => {
                *self.upgrade.lock().unwrap_or_else(PoisonError::into_inner) = Some(permit);
                response
            }
        };
        response.map(|body| Answered {
            body,
            exchange: self,
        })
    }
}

/// An answer's body that, when hyper drops it (sent, or given up), puts its connection back to
/// waiting for a request head.
struct Answered {
    body: Body,
    exchange: Arc<Exchange>,
}

impl hyper::body::Body for Answered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.exchange.set(Phase::Head {
            since: Instant::now(),
            first: false,
        });
    }
}
