//! The floor of fan-out on this machine: the least a server can do to relay a line to every
//! other client, with no chat in it. `chat-bench` measures it beside chat-server so that a
//! latency figure can be read against what the kernel and the machine themselves cost here.
//!
//! It speaks the seed's protocol (`Enter your name: `, then `name: text` to everyone else) and
//! does nothing else: one thread waits on epoll (through mio), reads what a client sent, and
//! writes each complete line to every other client's socket at once, one `write` per receiver.
//! No runtime, no tasks, no queues, no second thread, no flood control, no log, and no bound
//! on a reader that stops reading (a full socket is retried until it drains, which stalls
//! everyone): not a server to run, only the cost of one read and N-1 writes per line.
//!
//! Listens on 127.0.0.1, port `PORT` (default 8888), like the seed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);

struct Client {
    stream: TcpStream,
    /// `None` until the first line.
    name: Option<Vec<u8>>,
    /// Bytes read and not yet a whole line.
    partial: Vec<u8>,
}

fn main() -> io::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse::<u16>()
            .map_err(|e| io::Error::other(format!("PORT={port}: {e}")))?,
        Err(_) => 8888,
    };
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == LISTENER {
                accept(&listener, &poll, &mut clients);
                continue;
            }
            let at = event.token().0;
            let Some(Some(client)) = clients.get_mut(at) else {
                continue;
            };
            // Edge-triggered: read until the socket is empty.
            let mut gone = false;
            loop {
                match client.stream.read(&mut chunk) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => client.partial.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            // Whole lines out of what was read.
            lines.clear();
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &client.partial[start..]) {
                let text = client.partial[start..start + end].trim_ascii();
                match &client.name {
                    None => client.name = Some(text.to_vec()),
                    Some(name) if !text.is_empty() => {
                        let mut out = Vec::with_capacity(name.len() + text.len() + 3);
                        out.extend_from_slice(name);
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(text);
                        out.push(b'\n');
                        lines.push(out);
                    }
                    Some(_) => {}
                }
                start += end + 1;
            }
            client.partial.drain(..start);
            if gone && let Some(mut client) = clients[at].take() {
                let _ = poll.registry().deregister(&mut client.stream);
            }
            for out in &lines {
                for (to, other) in clients.iter_mut().enumerate() {
                    if let Some(other) = other
                        && to != at
                        && other.name.is_some()
                    {
                        write_fully(&mut other.stream, out);
                    }
                }
            }
        }
    }
}

fn accept(listener: &TcpListener, poll: &Poll, clients: &mut Vec<Option<Client>>) {
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        write_fully(&mut stream, b"Enter your name: ");
        let at = clients
            .iter()
            .position(Option::is_none)
            .unwrap_or(clients.len());
        if poll
            .registry()
            .register(&mut stream, Token(at), Interest::READABLE)
            .is_err()
        {
            continue;
        }
        let client = Client {
            stream,
            name: None,
            partial: Vec::new(),
        };
        if at == clients.len() {
            clients.push(Some(client));
        } else {
            clients[at] = Some(client);
        }
    }
}

/// Writes all of `bytes`, retrying while the socket is full; gives up on an error (the
/// reader's side notices the close).
fn write_fully(stream: &mut TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
