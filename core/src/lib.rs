//! `chat-core`: the chat room as a sans-IO state machine, and the codecs of its two wires.
//!
//! The room never touches a socket, a clock, a thread or a random generator. A driver (the
//! tokio server, a blocking server, a simulation test) feeds it inputs that carry the time,
//! drains the outputs it queues, and wakes it at its next deadline. That is what lets the same
//! code run in tokio, in plain threads, in a browser and in a test that replays thousands of
//! events in milliseconds. See [`Room`] for the contract and an example.
//!
//! # Layout
//!
//! - [`room`]: [`Room`], the state machine: its inputs (`handle_*`), outputs ([`Output`]) and
//!   deadlines. Its configuration, outputs, per-connection state, timers, flood control,
//!   history and digest of joins and leaves each have a file in `room/`.
//! - [`event`]: [`Event`], everything the room tells a user, as typed values.
//! - [`command`]: [`Request`], everything a user asks, [`parse_line`] for typed lines, and
//!   [`private_prefix`], the start of a private message as `parse_line` reads it.
//! - [`error_code`]: [`ErrorCode`], the kinds of refusal, named by events and parse errors alike.
//! - [`codec`]: the line wire (nc text, the words of each event, incremental bounded
//!   [`LineDecoder`]) and the JSON wire.
//! - [`roster`]: [`Roster`], who is online as a client keeps it from the room's events.
//! - [`name`]: the name rules and keys, shared with the browser client.
//! - [`text`]: the cleaning of every text a user sends (controls, bidi controls, invisible
//!   characters, NFC).
//! - [`time`]: [`Timestamp`], the time drivers pass in.
//! - [`stats`]: [`Stats`], the room's counts for a driver's metrics.
//! - [`admission`]: [`Admission`], the per-address limits a driver applies when it accepts a
//!   connection.
//! - [`proxy`]: the addresses trusted to speak for their clients (`--trusted-proxy`), and the
//!   parsers of what they say: the PROXY protocol (v1, v2), `X-Forwarded-For` and `Forwarded`.
//! - [`moderation`]: operators' rules as data: the bans and mutes in force, the bound on
//!   guessing the operator token, what an operator does, the admin API's requests and answers.
//! - [`lobby`]: [`Lobby`], the connections not in yet (a TLS handshake, an HTTP connection
//!   before its request, the name prompt): their share per address, and who makes room.

#![warn(missing_docs)]

pub mod admission;
pub mod cluster;
pub mod codec;
pub mod command;
pub mod error_code;
pub mod event;
pub mod lobby;
pub mod moderation;
pub mod name;
pub mod proxy;
pub mod room;
pub mod roster;
pub mod stats;
pub mod text;
pub mod time;

pub use admission::{AddrKey, Admission, AdmissionConfig, Admitted, Refusal, TOO_MANY_CONNECTIONS};
pub use codec::line::{Line, LineDecoder};
pub use command::{ParseError, Request, Resume, parse_line, private_prefix};
pub use error_code::ErrorCode;
pub use event::{ChatMessage, Event};
pub use lobby::{Entered, Lobby, LobbyConfig, Ticket};
pub use name::{NameError, look_key, name_key, validate_name};
pub use room::{
    CloseReason, Config, ConnId, Disconnect, FloodConfig, LeaveReason, LogRecord, Output, Room,
    Wire,
};
pub use roster::Roster;
pub use stats::Stats;
pub use time::Timestamp;
