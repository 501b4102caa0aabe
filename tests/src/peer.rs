//! A plain TCP user of the real server, in blocking code (a test's own threads, floods): what
//! it received kept as text, every read and write timing out after [`WAIT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::scenario::WAIT;

/// A line-protocol client over a blocking socket.
pub struct Peer {
    pub stream: TcpStream,
    /// What it has received (and a test has not cleared).
    pub seen: String,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(WAIT))
            .and_then(|()| stream.set_write_timeout(Some(WAIT)))
            .expect("socket timeouts");
        Peer {
            stream,
            seen: String::new(),
        }
    }

    /// Connects and joins as `name`.
    pub fn join(addr: SocketAddr, name: &str) -> Peer {
        let mut peer = Peer::connect(addr);
        peer.expect("Enter your name: ");
        peer.send(name);
        peer.expect(&format!("Welcome, {name}!"));
        peer.expect("Type /help for the list of commands.\n");
        peer
    }

    /// Writes `line` and a newline.
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    }

    /// Reads until what was received contains `want`.
    pub fn expect(&mut self, want: &str) {
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            let n = self
                .stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {want:?} after {:?}: {e}", self.seen));
            assert!(
                n > 0,
                "closed while waiting for {want:?} after {:?}",
                self.seen
            );
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Everything else it receives until the server closes the connection.
    pub fn read_to_end(&mut self) -> String {
        let mut rest = String::new();
        self.stream
            .read_to_string(&mut rest)
            .unwrap_or_else(|e| panic!("read to the end after {:?}: {e}", self.seen));
        rest
    }
}
