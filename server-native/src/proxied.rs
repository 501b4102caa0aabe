//! Connections from a trusted proxy (`--trusted-proxy`): who their client is. On the line
//! listener the proxy says it first, in a PROXY protocol header (v1 or v2, before TLS when TLS
//! is on); on the HTTP listener each request says it in `X-Forwarded-For` or `Forwarded`. The
//! parsing is `chat_core::proxy`'s; this reads the header off the socket, within the handshake
//! timeout, and never a byte past it.

use std::net::SocketAddr;
use std::time::Duration;

use chat_core::proxy::{HeaderError, NO_HEADER, Parsed, TrustedProxies, header};
use hyper::HeaderMap;
use hyper::header::FORWARDED;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::stream::linger;

/// How long the refusal of a connection without a header may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Why no client came out of a connection's first bytes.
#[derive(Debug)]
enum Failure {
    /// The proxy closed (or reset) first: a health check that only connects, say.
    Closed { read: usize },
    /// The bytes are not a PROXY header.
    Header(HeaderError),
    /// No whole header within the time allowed.
    TimedOut { read: usize },
    /// The server is stopping.
    Stopped,
}

/// Reads the PROXY header that a connection from the trusted proxy `proxy` must begin with,
/// within `timeout`, and returns the client it names: the header's source address, or the
/// proxy's own when it names none (v1 `UNKNOWN`, v2 `LOCAL`: the proxy's health checks).
///
/// Without one (other bytes, nothing in time, or a header that cannot be read), the
/// connection is told [`NO_HEADER`] and closed, and `None` returned: a proxy that speaks for
/// its clients must always do so, or any client could write the header itself.
pub async fn read_header<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: SocketAddr,
    timeout: Duration,
    stop: &CancellationToken,
) -> Option<SocketAddr> {
    let mut buf = Vec::new();
    let read = tokio::select! {
        () = stop.cancelled() => Err(Failure::Stopped),
        read = tokio::time::timeout(timeout, read_into(stream, &mut buf)) => match read {
            Ok(read) => read,
            Err(_) => Err(Failure::TimedOut { read: buf.len() }),
        },
    };
    let failure = match read {
        Ok(Some(client)) => {
            tracing::debug!(%proxy, %client, "a trusted proxy's connection, for its client");
            return Some(client);
        }
        Ok(None) => {
            tracing::debug!(%proxy, "a trusted proxy's own connection (PROXY UNKNOWN or LOCAL)");
            return Some(proxy);
        }
        Err(failure) => failure,
    };
    match failure {
        Failure::Stopped => return None,
        Failure::Closed { read: 0 } => {
            tracing::debug!(%proxy, "a trusted proxy's connection closed before its PROXY header");
            return None;
        }
        Failure::Closed { read } => {
            tracing::warn!(%proxy, read, "a trusted proxy's connection closed in its PROXY header");
            return None;
        }
        Failure::Header(err) => {
            tracing::warn!(%proxy, %err, "a trusted proxy's connection did not begin with a \
                PROXY protocol header (is the proxy told to send one: HAProxy's send-proxy?)");
        }
        Failure::TimedOut { read } => {
            tracing::warn!(%proxy, read, ?timeout, "a trusted proxy's connection sent no whole \
                PROXY protocol header in time (is the proxy told to send one: HAProxy's \
                send-proxy?)");
        }
    }
    let refusal = format!("{NO_HEADER}\n");
    let sent = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(refusal.as_bytes()).await?;
        stream.shutdown().await
    });
    if matches!(sent.await, Ok(Ok(()))) {
        linger(stream).await;
    }
    None
}

/// Reads into `buf` no more than the header asks for at a time, until it is whole; the client
/// it names, if any.
async fn read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<SocketAddr>, Failure> {
    loop {
        match header::parse(buf) {
            Ok(Parsed::Incomplete { needed }) => {
                let start = buf.len();
                buf.resize(start + needed, 0);
                let n = stream.read(&mut buf[start..]).await.unwrap_or(0);
                buf.truncate(start + n);
                if n == 0 {
                    return Err(Failure::Closed { read: start });
                }
            }
            Ok(Parsed::Complete { header, .. }) => {
                return Ok(header.addresses.map(|a| canonical(a.source)));
            }
            Err(err) => return Err(Failure::Header(err)),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The client of an HTTP request that came from the trusted proxy `proxy`, by its
/// `X-Forwarded-For` (or, without one, `Forwarded`) lines: the rightmost entry that is not a
/// trusted proxy; the proxy itself when there is none (its own request: a health check).
pub fn client_of(trusted: &TrustedProxies, proxy: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    let values = |name| headers.get_all(name).into_iter().map(|v| v.as_bytes());
    chat_core::proxy::client_address(
        trusted,
        proxy,
        values(FORWARDED),
        values(hyper::header::HeaderName::from_static("x-forwarded-for")),
    )
}
