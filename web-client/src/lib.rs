//! `chat-web`: the browser client, Rust compiled to WebAssembly.
//!
//! It speaks the JSON wire of `docs/protocol.md` over a WebSocket and takes every protocol rule
//! from `chat-core`: the event and request types, the JSON codec, the name rules
//! (`validate_name`, checked as the user types), the command parser (`parse_line`, so
//! `/msg Bob hi`, `/who` and `/quit` work as with nc) and the protocol's sentences.
//!
//! # Layout
//!
//! - [`state`]: [`ClientState`], the client as a pure state machine: events from the server
//!   and from the user in, log entries, roster, status and [`Effect`]s (send, connect, wait)
//!   out. Seq tracking, resume after a reconnect, back-off and rejoin live here, tested on the
//!   host with `cargo test -p chat-web`; `state/session.rs` holds its phases (connecting, at
//!   the name form, joining, joined, waiting to reconnect, retrying a rejoin, closed) as one
//!   enum, each with the data only it needs.
//! - [`input`]: the message box's text as a [`Request`](chat_core::Request), or the sentence
//!   that refuses it.
//! - `dom` (wasm32 only): the thin layer that binds the page's elements, the WebSocket and
//!   the timers to [`ClientState`], renders with `textContent` only (names and messages are
//!   untrusted), and starts itself when the module is initialised.
//!
//! The page the DOM layer expects is `www/index.html`; `cargo xtask site` assembles it with the
//! wasm-bindgen output into `target/site/`.

pub mod input;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod dom;

pub use state::{ClientState, Effect, Entry, Kind};

/// The WebSocket URL for a page served from `protocol` (`http:` or `https:`) and `host`
/// (with its port): `ws://HOST/ws` or `wss://HOST/ws`, unless `chosen` (the page's `?ws=`
/// parameter) names another.
pub fn socket_url(protocol: &str, host: &str, chosen: Option<&str>) -> String {
    match chosen.map(str::trim) {
        Some(url) if !url.is_empty() => url.to_owned(),
        _ => {
            let scheme = if protocol == "https:" { "wss" } else { "ws" };
            format!("{scheme}://{host}/ws")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_beside_the_page_unless_chosen() {
        assert_eq!(
            socket_url("http:", "127.0.0.1:8080", None),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            socket_url("https:", "chat.example", None),
            "wss://chat.example/ws"
        );
        assert_eq!(
            socket_url("http:", "a:1", Some("ws://127.0.0.1:9/ws")),
            "ws://127.0.0.1:9/ws"
        );
        assert_eq!(socket_url("http:", "a:1", Some("")), "ws://a:1/ws");
    }
}
