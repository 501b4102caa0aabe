//! A TCP proxy in front of the server that can cut every connection through it, for a page
//! that loses its connection for a moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy in front of `upstream`. [`Proxy::cut`] closes every connection through it and
/// refuses new ones (accepts and closes them at once) until [`Proxy::restore`].
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicU64::new(0));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let open = open.clone();
            let accepted = accepted.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let mut cut_rx = cut.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut up) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                            _ = cut_rx.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            open,
            cut,
            accepted,
            task,
        }
    }

    /// `http://ADDR/`, the page through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// How many connections were let through so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Ends the connection tasks too.
        self.cut.send_modify(|n| *n += 1);
    }
}
