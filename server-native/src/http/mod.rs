//! The HTTP listener's connections, served by hyper: HTTP/1.1 with keep-alive, each request
//! answered by the [`Site`], every wait bounded in time, and a WebSocket upgrade on `/ws`
//! handed back with its stream.
//!
//! # Layout
//!
//! - this file: one connection's life, and its time bounds: a request head must come whole
//!   within `--handshake-timeout` of the connection opening or of its first byte (else `408`),
//!   an answer must be taken within [`RESPONSE_TIMEOUT`], and a kept-alive connection waits at
//!   most [`KEEP_ALIVE_IDLE`] for its next request, less when the listener is full. Over a
//!   trusted proxy's connection ([`Forwarding`]), each request's client is let in by the
//!   per-address limits before it is answered.
//! - `site`: which answer a request gets.
//! - `admin`: the admin API under `/admin/` (with `--op-token-file`).
//! - `hosts`: the names the server goes by; a request for another is refused (DNS rebinding).
//! - `upgrade`: the WebSocket upgrade's checks (RFC 6455, the origin policy).
//! - `files`: the static files of `--web-root`.
//! - `headers`: reading request headers.
//! - `response`: bodies and plain-text answers, and the few written as bytes.

pub mod admin;
mod files;
mod headers;
pub mod hosts;
pub mod response;
mod site;
pub mod upgrade;

use std::convert::Infallible;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chat_core::proxy::TrustedProxies;
use chat_core::{Refusal, TOO_MANY_CONNECTIONS};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, HeaderValue, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use site::{Readiness, Site};

use crate::proxied;
use crate::stream::linger;
use response::Body;
use site::Answer;
use upgrade::Upgraded;

/// How long an answer may take to be sent before the connection is dropped: a client that
/// stops reading cannot hold its HTTP slot for longer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a kept-alive connection may wait for its next request to begin before it is closed
/// (at most `--handshake-timeout`): long enough for a page's next file, short enough that idle
/// connections do not hold the places of their address and of the listener for long.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// The largest request head read; a longer one gets `431`.
const MAX_HEAD: usize = 8 * 1024;
/// The most header lines in a request head; more get `431`.
const MAX_HEADERS: usize = 64;
/// The most hyper buffers for a connection, each way: a whole head, or a few chunks of a file.
const MAX_BUFFER: usize = 16 * 1024;

/// A connection from a trusted proxy (`--trusted-proxy`): each of its requests names its
/// client in `X-Forwarded-For` or `Forwarded`, and that client is let in by `admit` (the
/// door's per-address limits) before the request is answered, as if it had connected itself.
pub struct Forwarding {
    /// The proxy: the connection's peer.
    pub proxy: SocketAddr,
    /// Which entries of the headers were written by trusted proxies.
    pub trusted: Arc<TrustedProxies>,
    /// Lets a client in, with its place among its address's connections, or refuses it.
    pub admit: Box<dyn Fn(SocketAddr) -> Result<Held, Refusal> + Send + Sync>,
}

/// A client's place among its address's connections; given back when dropped.
pub type Held = Box<dyn Send + Sync>;

/// The client of a WebSocket upgraded over a trusted proxy's connection, and its place among
/// its address's connections, for the WebSocket to hold.
pub struct Client {
    pub addr: SocketAddr,
    pub place: Held,
}

/// A connection's place among those that have not begun (the door's), which it holds until
/// its first request head is in.
pub struct NotBegun {
    /// The place, given back when dropped: held, never read.
    #[allow(dead_code)]
    pub held: Held,
    /// Cancelled when the place is taken back to make room: the connection is then closed
    /// without a word.
    pub put_out: CancellationToken,
}

/// Serves one HTTP connection (TCP, or TLS over TCP) until the client closes it, a time bound
/// ends it, or a request for `/ws` is upgraded: that connection is returned, with the bytes
/// read past its head and its place among the admitted connections, for `websocket::serve`;
/// over a trusted proxy's connection (`forwarding`), with the client the upgrade came from.
///
/// Until its first request head is in, it holds `not_begun`, and is dropped if that is taken
/// back to make room. Between requests a kept-alive connection is idle: it is closed quietly
/// once its answer is out if no next request begins within [`KEEP_ALIVE_IDLE`], when the
/// listener has no place left for a newcomer ([`Site::make_room`]), and at `stop`. A request
/// begun is due whole within `--handshake-timeout` (else `408`), an answer within
/// [`RESPONSE_TIMEOUT`].
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    site: Arc<Site>,
    stop: &CancellationToken,
    forwarding: Option<Forwarding>,
    not_begun: NotBegun,
) -> Option<(Upgraded<S>, Option<Client>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut not_begun = Some(not_begun);
    let handshake_timeout = site.handshake_timeout;
    let idle_room = site.clone();
    let exchange = Arc::new(Exchange::new(peer, forwarding));
    let service = {
        let exchange = exchange.clone();
        service_fn(move |request| {
            let (site, exchange) = (site.clone(), exchange.clone());
            Box::pin(async move { Ok::<_, Infallible>(exchange.answer(&site, request).await) })
        })
    };
    let stream = Watched {
        stream,
        read: exchange.read.clone(),
    };
    let mut conn = http1::Builder::new()
        .keep_alive(true)
        // A client that sends its request and then shuts its side (`nc -N`, probes) still
        // gets the answer.
        .half_close(true)
        .title_case_headers(true)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_BUFFER)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    // Once set, hyper has been told to close (after the answer in progress, if any, and the
    // bytes it still holds are out), by this deadline.
    let mut closing: Option<Instant> = None;
    let end = loop {
        let phase = exchange.phase();
        if !matches!(phase, Phase::Head { first: true, .. }) {
            not_begun = None; // The first request is in.
        }
        let put_out = async {
            match &not_begun {
                Some(not_begun) => not_begun.put_out.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let idle = exchange.idle(phase);
        let deadline = closing.unwrap_or_else(|| phase.deadline(idle, handshake_timeout));
        let changed = exchange.changed.notified();
        let crowded = idle_room.wanted.notified();
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break End::Done(done),
            () = changed => {}
            () = put_out => {
                tracing::debug!("closing a connection that sent no request, to make room");
                return None;
            }
            () = stop.cancelled(), if closing.is_none() => {
                closing = Some(Instant::now() + RESPONSE_TIMEOUT);
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = crowded, if closing.is_none() && idle => {
                tracing::debug!("closing an idle kept-alive connection to make room");
                closing = Some(Instant::now() + RESPONSE_TIMEOUT);
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {
                if closing.is_some() {
                    break End::TooSlow;
                }
                // The deadline may have moved meanwhile: a request began, or was answered.
                let now = exchange.phase();
                if now.deadline(exchange.idle(now), handshake_timeout) > Instant::now() {
                    continue;
                }
                match now {
                    Phase::Head { .. } if exchange.idle(now) => {
                        closing = Some(Instant::now() + RESPONSE_TIMEOUT);
                        Pin::new(&mut conn).graceful_shutdown();
                    }
                    Phase::Head { .. } => break End::HeadTooSlow,
                    Phase::Answer { .. } => break End::TooSlow,
                }
            }
        }
    };
    let upgrade = exchange.take_upgrade();
    let parts = conn.into_parts();
    let mut stream = parts.io.into_inner().stream;
    match end {
        End::Done(Ok(())) => {
            if let Some(permit) = upgrade {
                let upgraded = Upgraded {
                    stream,
                    leftover: parts.read_buf.to_vec(),
                    permit,
                };
                return Some((upgraded, exchange.take_client()));
            }
        }
        End::Done(Err(err)) => tracing::debug!(%err, "http connection failed"),
        End::HeadTooSlow => {
            tracing::debug!("request head not received in time");
            let timeout = response::raw(408, &[], "Request Timeout");
            let _ = tokio::time::timeout(handshake_timeout, stream.write_all(&timeout)).await;
        }
        End::TooSlow => {
            tracing::debug!("answer not taken in time: dropping the connection");
            return None;
        }
    }
    // Our FIN (after TLS's close_notify), then a moment for the client's, so that it reads the
    // answer rather than a reset.
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
    /// hyper is done with the connection: the client closed it or asked to, it was closed as
    /// idle, the client broke the protocol (hyper has answered `400` or `431`), or it was
    /// answered `101`.
    Done(hyper::Result<()>),
    /// A request began and its head did not come whole in time.
    HeadTooSlow,
    /// An answer, or the last bytes of one before closing, were not taken in time.
    TooSlow,
}

/// Where a connection is between two requests, for its time bounds.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request head since `since`; `first`: no request has been answered yet;
    /// `read`: the bytes read off the connection by then.
    Head {
        since: Instant,
        first: bool,
        read: u64,
    },
    /// Answering a request since `since`.
    Answer { since: Instant },
}

impl Phase {
    /// When this phase has lasted too long; `idle`: it is a kept-alive connection's wait for a
    /// next request that has not begun.
    fn deadline(self, idle: bool, handshake_timeout: Duration) -> Instant {
        match self {
            Phase::Head { since, .. } if idle => since + KEEP_ALIVE_IDLE.min(handshake_timeout),
            Phase::Head { since, .. } => since + handshake_timeout,
            Phase::Answer { since } => since + RESPONSE_TIMEOUT,
        }
    }
}

/// The connection's stream, counting the bytes read off it: whether a next request has begun.
struct Watched<S> {
    stream: S,
    read: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a connection's requests share with the loop that bounds its time: the phase it is in,
/// the bytes read so far, and the place of a WebSocket upgrade it answered with `101`.
struct Exchange {
    phase: Mutex<Phase>,
    /// Told whenever the phase changes, so that the loop sleeps until the new deadline.
    changed: Notify,
    read: Arc<AtomicU64>,
    upgrade: Mutex<Option<OwnedSemaphorePermit>>,
    /// The connection's peer: the client of its requests, unless it is a trusted proxy.
    peer: SocketAddr,
    /// Over a trusted proxy's connection: how its requests' clients are let in.
    forwarding: Option<Forwarding>,
    /// The client of the last request over a trusted proxy's connection, with its place: kept
    /// while the requests come from the same client (one connection of its, as a kept-alive
    /// connection is), given back when another client's request comes or the connection ends.
    client: Mutex<Option<(SocketAddr, Held)>>,
}

impl Exchange {
    fn new(peer: SocketAddr, forwarding: Option<Forwarding>) -> Self {
        Exchange {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
                first: true,
                read: 0,
            }),
            changed: Notify::new(),
            read: Arc::new(AtomicU64::new(0)),
            upgrade: Mutex::new(None),
            peer,
            forwarding,
            client: Mutex::new(None),
        }
    }

    fn take_client(&self) -> Option<Client> {
        let held = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        held.map(|(addr, place)| Client { addr, place })
    }

    /// The client of this request: the peer, or over a trusted proxy's connection the client
    /// it names, let in (a client of the previous request keeps its place). `Err` answer when
    /// the client is refused: `429`, as at the door, and the connection closes after it.
    fn admit_client(&self, head: &Parts) -> Result<SocketAddr, Box<Response<Body>>> {
        let Some(forwarding) = self.forwarding.as_ref() else {
            return Ok(self.peer);
        };
        let client = proxied::client_of(&forwarding.trusted, forwarding.proxy, &head.headers);
        let mut held = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if held
            .as_ref()
            .is_some_and(|(addr, _)| addr.ip() == client.ip())
        {
            return Ok(client);
        }
        // The previous client's place is given back before the next one's is taken.
        *held = None;
        tracing::debug!(proxy = %forwarding.proxy, %client, "a request from a trusted proxy, \
            for its client");
        match (forwarding.admit)(client) {
            Ok(place) => {
                *held = Some((client, place));
                Ok(client)
            }
            Err(refusal) => {
                let mut response =
                    response::text(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_CONNECTIONS);
                let headers = response.headers_mut();
                let retry = response::retry_after_secs(refusal.retry_after());
                headers.insert(RETRY_AFTER, HeaderValue::from(retry));
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
                Err(Box::new(response))
            }
        }
    }

    /// Whether, in `phase`, the connection is kept alive with no next request begun.
    fn idle(&self, phase: Phase) -> bool {
        match phase {
            Phase::Head { first, read, .. } => !first && self.read.load(Ordering::Relaxed) == read,
            Phase::Answer { .. } => false,
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
        // A body the site does not read, hyper reads past to the next request, or closes.
        let (head, body) = request.into_parts();
        let answer = match self.admit_client(&head) {
            Ok(client) => site.answer(&head, body, client.ip()).await,
            Err(refused) => Answer::Plain(*refused),
        };
        let response = match answer {
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
            read: self.exchange.read.load(Ordering::Relaxed),
        });
    }
}
