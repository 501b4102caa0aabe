//! Many chat clients in one process, over either wire, for the crowd and chaos tests (and the
//! benchmark): a client joins, then splits into a [`Sender`] and a [`Receiver`] that run in
//! tasks of their own. Both wires are seen the same way: a public message is
//! [`Incoming::Message`], everything else a [`Incoming::Notice`] with its raw text.
//!
//! Every wait here is bounded by the caller (`tokio::time::timeout`); errors are returned, not
//! panicked on, so a test can count what failed among thousands of clients.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Which wire a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// nc's line protocol on the TCP listener.
    Line,
    /// JSON over WebSocket on the HTTP listener's `/ws`.
    Json,
}

/// Where the server listens.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The line listener.
    pub tcp: SocketAddr,
    /// The HTTP listener (`/ws`).
    pub http: SocketAddr,
}

/// What a client received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A public message.
    Message {
        /// Who said it.
        from: String,
        /// What.
        text: String,
    },
    /// Anything else, as the wire carried it (a line, or a JSON object).
    Notice(String),
}

type Ws = WebSocketStream<TcpStream>;

/// A joined client's sending half.
pub enum Sender {
    /// Line wire.
    Line(OwnedWriteHalf),
    /// JSON wire.
    Json(SplitSink<Ws, Message>),
}

/// A joined client's receiving half.
pub enum Receiver {
    /// Line wire.
    Line {
        /// Buffered lines.
        rd: BufReader<OwnedReadHalf>,
        /// The last line read.
        buf: String,
    },
    /// JSON wire.
    Json(SplitStream<Ws>),
}

/// Connects over `wire` and joins as `name`; returns once the welcome has arrived.
pub async fn join(wire: Wire, target: Target, name: &str) -> io::Result<(Sender, Receiver)> {
    match wire {
        Wire::Line => {
            let stream = TcpStream::connect(target.tcp).await?;
            stream.set_nodelay(true)?;
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::with_capacity(2048, rd);
            expect_prompt(&mut rd).await?;
            wr.write_all(format!("{name}\n").as_bytes()).await?;
            let mut buf = String::new();
            loop {
                buf.clear();
                if rd.read_line(&mut buf).await? == 0 {
                    return Err(refused(format!("closed before the welcome of {name}")));
                }
                if buf.starts_with("Welcome, ") {
                    break;
                }
                if !buf.starts_with("Type /help") {
                    return Err(refused(format!("{name} was answered {:?}", buf.trim_end())));
                }
            }
            Ok((Sender::Line(wr), Receiver::Line { rd, buf }))
        }
        Wire::Json => {
            let ws = ws_connect(target.http).await?;
            let (mut tx, mut rx) = ws.split();
            let join = json!({"type": "join", "name": name}).to_string();
            tx.send(Message::text(join))
                .await
                .map_err(io::Error::other)?;
            loop {
                let Some(frame) = rx.next().await else {
                    return Err(refused(format!("closed before the welcome of {name}")));
                };
                let Message::Text(text) = frame.map_err(io::Error::other)? else {
                    continue;
                };
                let event: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
                match event["type"].as_str() {
                    Some("welcome") => break,
                    Some("prompt") => {}
                    _ => return Err(refused(format!("{name} was answered {text}"))),
                }
            }
            Ok((Sender::Json(tx), Receiver::Json(rx)))
        }
    }
}

/// Opens a WebSocket to `/ws` on `http`, without joining.
pub async fn ws_connect(http: SocketAddr) -> io::Result<Ws> {
    let stream = TcpStream::connect(http).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{http}/ws");
    // tungstenite's default 128 KiB read buffer is zeroed for every read: with a chat line
    // per read, that memset was over a quarter of the load generator's CPU.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(io::Error::other)?;
    Ok(ws)
}

/// Reads up to and including `Enter your name: `, which has no newline.
async fn expect_prompt(rd: &mut BufReader<OwnedReadHalf>) -> io::Result<()> {
    const PROMPT: &[u8] = b"Enter your name: ";
    let mut seen = Vec::new();
    while !seen.ends_with(PROMPT) {
        if seen.len() > 4096 {
            return Err(refused(String::from_utf8_lossy(&seen).into_owned()));
        }
        match rd.read_u8().await {
            Ok(byte) => seen.push(byte),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(refused(String::from_utf8_lossy(&seen).into_owned()));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn refused(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, what)
}

impl Sender {
    /// Says `text` to the room.
    pub async fn say(&mut self, text: &str) -> io::Result<()> {
        match self {
            Sender::Line(wr) => wr.write_all(format!("{text}\n").as_bytes()).await,
            Sender::Json(tx) => {
                let say = json!({"type": "say", "text": text}).to_string();
                tx.send(Message::text(say)).await.map_err(io::Error::other)
            }
        }
    }

    /// Sends a raw line (line wire) or text message (JSON wire), as a command would be.
    pub async fn send_raw(&mut self, raw: &str) -> io::Result<()> {
        match self {
            Sender::Line(wr) => wr.write_all(format!("{raw}\n").as_bytes()).await,
            Sender::Json(tx) => tx
                .send(Message::text(raw.to_owned()))
                .await
                .map_err(io::Error::other),
        }
    }
}

impl Receiver {
    /// The next thing received; `None` once the server has closed the connection.
    pub async fn next(&mut self) -> io::Result<Option<Incoming>> {
        match self {
            Receiver::Line { rd, buf } => {
                buf.clear();
                if rd.read_line(buf).await? == 0 {
                    return Ok(None);
                }
                let line = buf.trim_end_matches(['\n', '\r']);
                Ok(Some(parse_line(line)))
            }
            Receiver::Json(rx) => loop {
                let Some(frame) = rx.next().await else {
                    return Ok(None);
                };
                match frame {
                    Ok(Message::Text(text)) => return Ok(Some(parse_json(&text))),
                    Ok(Message::Close(_)) => return Ok(None),
                    Ok(_) => continue,
                    Err(err) => return Err(io::Error::other(err)),
                }
            },
        }
    }
}

/// `NAME: TEXT` is a public message when NAME is a possible name; system lines (`*** ...`,
/// `[private] ...`, `Error: ...`) are notices.
fn parse_line(line: &str) -> Incoming {
    if let Some((from, text)) = line.split_once(": ") {
        let is_name = !from.is_empty()
            && from
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_name && from != "Error" {
            return Incoming::Message {
                from: from.to_owned(),
                text: text.to_owned(),
            };
        }
    }
    Incoming::Notice(line.to_owned())
}

fn parse_json(text: &str) -> Incoming {
    let Ok(event) = serde_json::from_str::<Value>(text) else {
        return Incoming::Notice(text.to_owned());
    };
    match (
        event["type"].as_str(),
        event["from"].as_str(),
        event["text"].as_str(),
    ) {
        (Some("message"), Some(from), Some(body)) => Incoming::Message {
            from: from.to_owned(),
            text: body.to_owned(),
        },
        _ => Incoming::Notice(text.to_owned()),
    }
}

/// The history's worst case for the JSON wire: `WORST_HISTORY` messages of
/// `WORST_HISTORY_TEXT` bytes of `"`, each of which JSON writes as two.
pub const WORST_HISTORY: usize = 50;
/// See [`WORST_HISTORY`]: the longest line at the default `--max-line`.
pub const WORST_HISTORY_TEXT: usize = 4096;

/// Fills the room's history with its worst case for the JSON wire ([`WORST_HISTORY`] messages
/// of `"`, about 414 kB of JSON in the `history` event every newcomer gets), from a line
/// user who then quits; returns once the room has taken every message. Needs `--flood off`
/// (or a minute's patience, which this does not have).
pub async fn fill_worst_history(target: Target) -> io::Result<()> {
    let (mut tx, mut rx) = join(Wire::Line, target, "filler").await?;
    let text = "\"".repeat(WORST_HISTORY_TEXT);
    for _ in 0..WORST_HISTORY {
        tx.say(&text).await?;
    }
    // Answered after the room has taken every message before it.
    tx.send_raw("/msg filler done").await?;
    loop {
        match rx.next().await? {
            Some(Incoming::Notice(line)) if line == "[private to filler] done" => break,
            Some(Incoming::Notice(line)) if line.starts_with("Error: ") => {
                return Err(io::Error::other(format!("filling the history: {line}")));
            }
            Some(_) => {}
            None => return Err(io::Error::other("closed while filling the history")),
        }
    }
    tx.send_raw("/quit").await
}

/// The resident set size of process `pid`, in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Raises this process's soft limit on open files to its hard limit and returns the result:
/// thousands of clients need thousands of descriptors, and a child started afterwards (the
/// server) inherits the raised limit.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_messages_only_when_they_start_with_a_name() {
        assert_eq!(
            parse_line("ann: hi: there"),
            Incoming::Message {
                from: "ann".into(),
                text: "hi: there".into()
            }
        );
        for notice in [
            "*** ann has joined the chat ***",
            "[private] ann: psst",
            "Error: line too long (the limit is 4096 bytes); it was discarded.",
            "Online (2): ann, bob",
        ] {
            assert_eq!(parse_line(notice), Incoming::Notice(notice.into()));
        }
    }

    #[test]
    fn json_messages_are_messages_and_other_events_notices() {
        assert_eq!(
            parse_json(r#"{"type":"message","seq":3,"from":"ann","text":"hi"}"#),
            Incoming::Message {
                from: "ann".into(),
                text: "hi".into()
            }
        );
        let joined = r#"{"type":"joined","name":"ann"}"#;
        assert_eq!(parse_json(joined), Incoming::Notice(joined.into()));
    }
}
