//! The accept loops: each takes connections off one listener, at most as many at once as its
//! places allow, and hands each to the door, then to a task of its own. Accept errors never end
//! the server; running out of file descriptors is met with a descriptor kept in reserve.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::door::{Door, Pass};
use crate::listener::Listener;

/// How often a loop with every place taken asks again for room to be made.
const MAKE_ROOM_AGAIN: Duration = Duration::from_millis(250);
/// The longest pause after an accept error (out of file descriptors, say).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections from `listener` until `stop`, giving each one place of `places` and, at
/// the door, one among those of its address, then `spawn`s it: a connection over its
/// address's limits is refused at the door, before anything is spawned for it.
///
/// While every place is taken the loop does not accept, so newcomers wait in the kernel's
/// queue, and it calls `make_room` (the HTTP listener's idle kept-alive connections then
/// close), again every [`MAKE_ROOM_AGAIN`] while it stays so. It waits for a place to be free without holding one while `accept` waits, because
/// another holder may take the last place meanwhile (a WebSocket upgrade shares `places` with
/// the line listener): a connection accepted with no place left is told the server is full.
///
/// When `accept` fails for want of file descriptors, the one kept in [`Reserve`] is given up
/// to accept the waiting connection, refuse it (`Server is full`, or 503) and close it, so that
/// newcomers are told at once rather than left waiting in the kernel's queue; connected users
/// go on chatting, and newcomers are let in again as soon as descriptors are free. Other errors
/// (and running out while no reserve could be kept) are logged and retried after a pause that
/// grows up to [`MAX_ACCEPT_BACKOFF`]; they never end the server.
pub async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    places: Arc<Semaphore>,
    door: Arc<Door>,
    stop: &CancellationToken,
    make_room: impl Fn(),
    mut spawn: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit, Pass),
) {
    let name = kind.name();
    let mut reserve = Reserve::open();
    let mut backoff = Duration::from_millis(5);
    loop {
        if places.available_permits() == 0 {
            make_room();
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            free = places.acquire() => drop(free.expect("the semaphore is never closed")),
            // Still full: ask again, for connections that have become idle since.
            () = tokio::time::sleep(MAKE_ROOM_AGAIN) => continue,
        }
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                reserve.restore();
                let Ok(place) = places.clone().try_acquire_owned() else {
                    door.refuse_full(stream, peer, kind);
                    continue;
                };
                if let Some((stream, pass)) = door.admit(stream, peer, kind) {
                    let _ = stream.set_nodelay(true);
                    spawn(stream, peer, place, pass);
                }
            }
            Err(err) if out_of_fds(&err) && reserve.release() => {
                // The reserve's descriptor is free now: take the waiting connection with it.
                match futures_util::FutureExt::now_or_never(listener.accept()) {
                    Some(Ok((stream, peer))) => door.refuse_out_of_fds(stream, peer, kind),
                    Some(Err(err)) => tracing::debug!(listener = name, %err, "accept failed"),
                    None => {} // It went away meanwhile.
                }
                if !reserve.restore() {
                    tracing::warn!(listener = name, "out of file descriptors, none in reserve");
                    pause(stop, &mut backoff).await;
                }
            }
            Err(err) => {
                tracing::warn!(listener = name, %err, ?backoff, "accept failed; retrying");
                pause(stop, &mut backoff).await;
            }
        }
    }
}

/// Waits `backoff`, or until `stop`, and doubles it up to [`MAX_ACCEPT_BACKOFF`].
async fn pause(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_ACCEPT_BACKOFF);
}

/// One file descriptor held in reserve (`/dev/null`): when `accept` fails for want of
/// descriptors, it is given up so that the pending connection can be accepted, told, and
/// closed, instead of waiting in the kernel's queue until it gives up.
struct Reserve(Option<File>);

impl Reserve {
    fn open() -> Reserve {
        let mut reserve = Reserve(None);
        reserve.restore();
        reserve
    }

    /// Gives the descriptor up; `false` if there was none to give.
    fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Takes a descriptor again, if there is none held and one is free.
    fn restore(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
}

/// Whether `err`, from `accept`, means the process or the system is out of file descriptors.
fn out_of_fds(err: &io::Error) -> bool {
    // EMFILE and ENFILE on Linux and the BSDs alike.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(err.raw_os_error(), Some(EMFILE | ENFILE))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chat_core::AdmissionConfig;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::clock::Clock;
    use crate::metrics::Metrics;

    /// Reads until the peer closes, within ten seconds.
    async fn read_all(stream: &mut TcpStream) -> String {
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all));
        read.await.expect("closed in time").expect("read");
        String::from_utf8_lossy(&all).into_owned()
    }

    #[tokio::test]
    async fn the_loop_holds_no_place_while_it_waits_and_refuses_one_accepted_without() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let places = Arc::new(Semaphore::new(2));
        let door = Door::new(
            AdmissionConfig::default(),
            Arc::default(),
            Clock::start(),
            Metrics::default(),
        );
        let stop = CancellationToken::new();
        let served = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (places, served, stop) = (places.clone(), served.clone(), stop.clone());
            async move {
                accept_loop(
                    listener,
                    Listener::Line,
                    places,
                    door,
                    &stop,
                    || {},
                    |s, _, place, pass| {
                        served.lock().unwrap().push((s, place, pass));
                    },
                )
                .await;
            }
        });
        let settled = || async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };
        settled().await;
        // Waiting in accept, the loop holds neither place: both are free for others.
        assert_eq!(places.available_permits(), 2);
        let _first = TcpStream::connect(addr).await.unwrap();
        while served.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(places.available_permits(), 1);
        // The last place goes elsewhere (an upgrade on /ws) while the loop waits in accept.
        let upgrade = places.clone().try_acquire_owned().unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            read_all(&mut second).await,
            "Server is full, please try again later.\n"
        );
        assert_eq!(
            served.lock().unwrap().len(),
            1,
            "nothing was spawned for it"
        );
        drop(upgrade);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn out_of_fds_is_emfile_or_enfile() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(24)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(103))); // ECONNABORTED
        assert!(!out_of_fds(&io::Error::other("no")));
    }

    #[test]
    fn the_reserve_is_given_up_and_taken_again() {
        let mut reserve = Reserve::open();
        assert!(reserve.release());
        assert!(!reserve.release());
        assert!(reserve.restore());
        assert!(reserve.release());
    }
}
