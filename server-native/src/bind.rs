//! Binding the two listeners: their addresses (port 0 picks a free one), a deep backlog, and
//! the TLS both speak, whose files are read before anything binds.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use crate::config::Config;
use crate::tls::Tls;

/// Connections the kernel may hold completed for each listener until they are accepted (it
/// caps this at `net.core.somaxconn`, 4096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

/// The server's bound listeners, and the TLS both speak, if any.
pub struct Listeners {
    /// The line-protocol listener.
    pub tcp: TcpListener,
    /// The HTTP listener.
    pub http: TcpListener,
    pub(crate) tls: Option<Tls>,
}

impl Listeners {
    /// Reads the certificate and key of `config`, if any, then binds its addresses; the error
    /// names the flag whose file or address failed.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--tls-cert and --tls-key go together: give both or neither",
                ));
            }
        };
        let bind = |flag: &'static str, addr: String| async move {
            listen(&addr).await.map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {addr} (--{flag}): {err}"),
                )
            })
        };
        Ok(Listeners {
            tcp: bind("tcp", config.tcp.clone()).await?,
            http: bind("http", config.http.clone()).await?,
            tls,
        })
    }

    /// Whether both listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.tcp.local_addr()?, self.http.local_addr()?))
    }
}

/// Binds `addr` (a host name is resolved; the first address that binds wins) and listens with
/// a backlog of [`LISTEN_BACKLOG`]. The standard library's 128 is too small for a crowd
/// arriving at once: the kernel then drops SYNs, which come back only after a second or more,
/// and with SYN cookies a client can even be left believing it is connected to a connection
/// the server never had, waiting for a prompt that never comes.
async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        // As `TcpListener::bind` does: a restarted server can bind while old connections of
        // its port are in TIME_WAIT.
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}
