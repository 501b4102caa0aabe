//! The door: what happens to a connection between `accept` and its task. The per-address
//! limits of [`chat_core::Admission`] (too many connections, or too many new ones, from one
//! address; both listeners together), their refusals, and the descriptor kept in reserve to
//! refuse a newcomer politely when the process has run out of them.
//!
//! A connection from a trusted proxy (`--trusted-proxy`) is let in uncounted: it speaks for
//! its clients, and each client is counted instead, once the proxy has said who it is
//! ([`Door::admit_client`] after the PROXY header, [`Door::check`] for each HTTP request).
//!
//! A refusal costs little: no connection task, no room input, only a short write bounded in
//! time and a moment of draining so that the peer reads it rather than a reset. At most
//! [`REFUSALS_AT_ONCE`] such refusals run at once; past that, and when out of descriptors, the
//! refusal is one non-blocking write and the socket is closed at once.
//!
//! Connections that have not begun (a TLS handshake in progress; on the HTTP listener, until
//! its first request head is in) wait in a [`Lobby`] of their listener, [`PENDING`]: a share
//! per address, and room made by the address with the most waiting, so that silent peers
//! cannot hold the places that users need ([`Door::pending`], [`Door::make_room`]).

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chat_core::proxy::TrustedProxies;
use chat_core::{
    AddrKey, Admission, AdmissionConfig, Admitted, Event, Lobby, LobbyConfig, Refusal,
    TOO_MANY_CONNECTIONS, Ticket, Timestamp,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::http::response;
use crate::listener::Listener;
use crate::metrics::{Metrics, Refused};

/// Refusals being written and drained at once; past this, refused sockets are closed at once.
pub const REFUSALS_AT_ONCE: usize = 64;
/// How long a refusal may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// How long what a refused peer sends is drained before its socket is closed (so that the
/// close is a FIN the peer reads after the refusal, not a reset that may destroy it).
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);
/// The drain ends early once the peer has been silent this long.
const REFUSAL_QUIET: Duration = Duration::from_millis(250);
/// At most one info line per this period sums up the refusals.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Each listener's connections that have not begun: 8 per address (while the per-address
/// limits are on; exempt addresses have no share), and room made past 64, as many as the line
/// listener's places beyond `--max-users`, so that pending TLS handshakes never take a user's
/// place. A newcomer puts a connection out only once that one has waited a second (a person's
/// client is done with its handshake and its request in a moment); a listener with no place
/// left puts out those beyond 64 at once.
pub const PENDING: LobbyConfig = LobbyConfig {
    share: Some(8),
    capacity: 64,
    grace: Duration::from_secs(1),
};

/// The per-address counts, shared by both accept loops and every connection's [`Pass`].
pub struct Door {
    state: Mutex<State>,
    clock: Clock,
    refusing: Arc<Semaphore>,
    metrics: Metrics,
    /// `--trusted-proxy`: peers whose own connections are not counted.
    trusted: Arc<TrustedProxies>,
}

struct State {
    admission: Admission,
    /// Refusals for being over a per-address limit since the last info line about them.
    over_limit: Report,
    /// Refusals for want of file descriptors since the last warning about them.
    out_of_fds: Report,
    /// The connections not begun yet, of the line and the HTTP listener; each one's token
    /// closes it.
    pending: [Lobby<CancellationToken>; 2],
}

impl State {
    fn pending(&mut self, listener: Listener) -> &mut Lobby<CancellationToken> {
        match listener {
            Listener::Line => &mut self.pending[0],
            Listener::Http => &mut self.pending[1],
        }
    }
}

/// Counts refusals between two log lines, so that a flood of them logs one line a minute.
#[derive(Default)]
struct Report {
    last: Option<Timestamp>,
    since: u64,
}

impl Report {
    /// Counts one; `Some(number refused since the last line)` when a line is due now.
    fn count(&mut self, now: Timestamp) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.since))
        } else {
            self.since += 1;
            None
        }
    }
}

/// A connection's place among those of its address; given back when dropped.
pub struct Pass {
    door: Arc<Door>,
    admitted: Option<Admitted>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let Some(admitted) = self.admitted.take() else {
            return;
        };
        if admitted.key().is_none() {
            return; // Exempt: never counted.
        }
        let now = self.door.clock.now();
        if let Ok(mut state) = self.door.state.lock() {
            state.admission.release(now, admitted);
        }
    }
}

/// A connection's place among its listener's connections that have not begun (see
/// [`PENDING`]); given back when dropped.
pub struct Pending {
    door: Arc<Door>,
    listener: Listener,
    /// `None` for an exempt address, which is not counted.
    ticket: Option<Ticket>,
    cancel: CancellationToken,
}

impl Pending {
    /// Cancelled when the server stops, or when this connection is put out to make room.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take()
            && let Ok(mut state) = self.door.state.lock()
        {
            state.pending(self.listener).leave(ticket);
        }
    }
}

impl Door {
    /// A door with these limits, that lets the connections of `trusted` proxies in uncounted.
    pub fn new(
        config: AdmissionConfig,
        trusted: Arc<TrustedProxies>,
        clock: Clock,
        metrics: Metrics,
    ) -> Arc<Door> {
        let share = config.max_open.and(PENDING.share);
        let pending = LobbyConfig { share, ..PENDING };
        Arc::new(Door {
            state: Mutex::new(State {
                pending: [Lobby::new(pending), Lobby::new(pending)],
                admission: Admission::new(config),
                over_limit: Report::default(),
                out_of_fds: Report::default(),
            }),
            clock,
            refusing: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
            metrics,
            trusted,
        })
    }

    /// Whether `ip` is a trusted proxy's: its connections say who their clients are.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// Lets a connection from `peer` in, with its [`Pass`]; or refuses it: the refusal is sent
    /// and the socket closed in the background, and `None` returned. A trusted proxy's
    /// connection is let in uncounted.
    pub fn admit(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        listener: Listener,
    ) -> Option<(TcpStream, Pass)> {
        if self.trusts(peer.ip()) {
            self.metrics.accepted(listener);
            return Some((stream, self.exempt()));
        }
        let admitted = self.admit_client(stream, peer, listener)?;
        self.metrics.accepted(listener);
        Some(admitted)
    }

    /// Lets in the connection of `client`, as a trusted proxy named it in its PROXY header,
    /// as if `client` had connected itself; or refuses it as [`Door::admit`] does.
    pub fn admit_client(
        self: &Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        listener: Listener,
    ) -> Option<(TcpStream, Pass)> {
        match self.check(client, listener) {
            Ok(pass) => Some((stream, pass)),
            Err(refusal) => {
                self.refuse(stream, refusal_message(refusal, listener));
                None
            }
        }
    }

    /// Decides on a connection from `peer` without touching it: its [`Pass`], or the refusal
    /// (logged and counted) for the caller to send. For a client that a trusted proxy's HTTP
    /// request names, whose answer is the request's.
    pub fn check(self: &Arc<Self>, peer: SocketAddr, listener: Listener) -> Result<Pass, Refusal> {
        let now = self.clock.now();
        let (decision, report) = {
            let Ok(mut state) = self.state.lock() else {
                // A panic while holding the lock: let everyone in rather than no one.
                return Ok(self.exempt());
            };
            match state.admission.admit(now, peer.ip()) {
                Ok(admitted) => (Ok(admitted), None),
                Err(refusal) => (Err(refusal), state.over_limit.count(now)),
            }
        };
        let refusal = match decision {
            Ok(admitted) => {
                return Ok(Pass {
                    door: self.clone(),
                    admitted: Some(admitted),
                });
            }
            Err(refusal) => refusal,
        };
        self.metrics.refused(Refused::from(&refusal));
        let key = chat_core::AddrKey::of(peer.ip());
        tracing::debug!(listener = listener.name(), %peer, %key, ?refusal, "connection refused");
        if let Some(earlier) = report {
            let why = match refusal {
                Refusal::TooManyOpen => "too many connections open",
                Refusal::TooFast { .. } => "too many new connections a minute",
            };
            tracing::info!(listener = listener.name(), %peer, %key, earlier,
                "refused a connection: {why} from one address (`earlier`: refusals since the \
                 last such line; at most one a minute)");
        }
        Err(refusal)
    }

    /// Lets the connection from `peer`, holding `pass`, which has not begun (its TLS
    /// handshake, its first HTTP request), wait among `listener`'s such connections until the
    /// returned [`Pending`] is dropped. When its address already has its share waiting it is
    /// refused as holding too many connections (in the clear: nothing has begun), and `None`
    /// returned; an exempt address (its pass counts nothing) has no share. When more than the
    /// lobby's capacity wait, the oldest of the address with the most waiting is closed to
    /// make room.
    pub fn pending(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: IpAddr,
        pass: &Pass,
        listener: Listener,
        stop: &CancellationToken,
    ) -> Option<(TcpStream, Pending)> {
        let cancel = stop.child_token();
        let mut pending = Pending {
            door: self.clone(),
            listener,
            ticket: None,
            cancel: cancel.clone(),
        };
        let key = AddrKey::of(peer);
        let exempt = pass.admitted.as_ref().and_then(Admitted::key).is_none();
        let now = self.clock.now();
        let entered = match self.state.lock() {
            Ok(mut state) => state
                .pending(listener)
                .enter(now, key, exempt, cancel, false),
            Err(_) => return Some((stream, pending)),
        };
        match entered {
            Ok(entered) => {
                pending.ticket = Some(entered.ticket);
                if let Some(put_out) = entered.put_out {
                    let why = "closing a connection that has not begun, of the address with \
                               the most such, to make room";
                    tracing::debug!(listener = listener.name(), "{why}");
                    put_out.cancel();
                }
                Some((stream, pending))
            }
            Err(_) => {
                tracing::debug!(listener = listener.name(), %key,
                    "refused: too many connections that have not begun from one address");
                let refusal = Refusal::TooManyOpen;
                self.metrics.refused(Refused::from(&refusal));
                self.refuse(stream, refusal_message(refusal, listener));
                None
            }
        }
    }

    /// `listener` has no place left for a newcomer: closes those of its connections not begun
    /// yet that wait beyond the lobby's capacity (or one), the oldest of the address with the
    /// most of them first, as [`Lobby::crowded`] says.
    pub fn make_room(&self, listener: Listener) {
        let now = self.clock.now();
        let put_out = match self.state.lock() {
            Ok(mut state) => state.pending(listener).crowded(now),
            Err(_) => return,
        };
        if !put_out.is_empty() {
            let (n, why) = (
                put_out.len(),
                "no place left: closing connections that have not \
                begun, of the addresses with the most such",
            );
            tracing::debug!(listener = listener.name(), n, "{why}");
        }
        for put_out in put_out {
            put_out.cancel();
        }
    }

    /// A pass that counts nothing.
    fn exempt(self: &Arc<Self>) -> Pass {
        Pass {
            door: self.clone(),
            admitted: None,
        }
    }

    /// Sends `message` and closes: in a small task if one of [`REFUSALS_AT_ONCE`] is free,
    /// otherwise at once with one non-blocking write.
    fn refuse(&self, stream: TcpStream, message: Bytes) {
        match self.refusing.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    send_and_close(stream, &message).await;
                    drop(permit);
                });
            }
            Err(_) => refuse_now(stream, &message),
        }
    }

    /// Refuses a connection accepted when every place among the admitted connections is taken
    /// (a WebSocket upgrade took the last one while the accept loop waited): it is told the
    /// server is full, as the room would have told it.
    pub fn refuse_full(&self, stream: TcpStream, peer: SocketAddr, listener: Listener) {
        tracing::debug!(listener = listener.name(), %peer, "no place left: refused as full");
        self.metrics.refused(Refused::Full);
        self.refuse(stream, full(listener));
    }

    /// Refuses a connection accepted with the reserve descriptor: the process is out of them,
    /// so this writes what fits at once and closes, freeing the descriptor for the reserve.
    pub fn refuse_out_of_fds(&self, stream: TcpStream, peer: SocketAddr, listener: Listener) {
        let now = self.clock.now();
        let report = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.out_of_fds.count(now));
        tracing::debug!(listener = listener.name(), %peer, "out of file descriptors: refused");
        self.metrics.refused(Refused::OutOfFds);
        if let Some(earlier) = report {
            tracing::warn!(
                listener = listener.name(),
                earlier,
                "out of file descriptors: refusing newcomers until connections close \
                 (`earlier`: refusals since the last such line; at most one a minute)"
            );
        }
        refuse_now(stream, &full(listener));
    }
}

/// What a connection over its address's limits is told: one line, or `429`.
fn refusal_message(refusal: Refusal, listener: Listener) -> Bytes {
    match listener {
        Listener::Line => Bytes::from(format!("{TOO_MANY_CONNECTIONS}\n")),
        Listener::Http => response::refusal(
            429,
            response::retry_after_secs(refusal.retry_after()),
            TOO_MANY_CONNECTIONS,
        ),
    }
}

/// What a newcomer is told when the server is full: the room's own line, or `503`.
fn full(listener: Listener) -> Bytes {
    match listener {
        Listener::Line => chat_core::codec::line::encode(&Event::Full),
        Listener::Http => response::refusal(503, 5, response::FULL),
    }
}

/// Writes `message` within [`REFUSAL_WRITE`], sends FIN, and drains what the peer sends for
/// at most [`REFUSAL_DRAIN`], so that it reads the refusal and then the end.
async fn send_and_close(mut stream: TcpStream, message: &[u8]) {
    let sent = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(message).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return; // A peer that does not even take a few hundred bytes: just close.
    }
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        while let Ok(Ok(n)) = tokio::time::timeout(REFUSAL_QUIET, stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Reads what the peer has already sent (so that closing sends FIN, not a reset), writes what
/// fits of `message` without waiting, and closes. No task, no timer: for when there is no room
/// for more.
fn refuse_now(stream: TcpStream, message: &[u8]) {
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    // The socket is non-blocking: each call returns at once.
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = stream.write(message);
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_reported_once_a_minute() {
        let mut report = Report::default();
        let t = |secs| Timestamp::from_secs(secs);
        assert_eq!(report.count(t(0)), Some(0));
        for s in 1..60 {
            assert_eq!(report.count(t(s)), None);
        }
        assert_eq!(report.count(t(60)), Some(59));
        assert_eq!(report.count(t(61)), None);
        assert_eq!(report.count(t(500)), Some(1));
    }
}
