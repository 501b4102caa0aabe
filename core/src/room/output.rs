//! What the room asks of its driver: [`Output`], the log records it carries, and the bytes it sends.

use std::net::IpAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::conn::{ConnId, Wire};
use super::reason::{CloseReason, LeaveReason};
use crate::codec::{json, line};
use crate::event::{ChatMessage, Event};

/// One record of the message log. Private messages are never logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRecord {
    /// A user joined.
    Join {
        /// Who.
        name: String,
        /// From where, when the driver knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<IpAddr>,
    },
    /// A user left.
    Leave {
        /// Who.
        name: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A public message.
    Message(ChatMessage),
    /// Something an operator did (from a chat connection or the admin API), as one flat
    /// object: `{"type":"moderation","action":"kick","name":"bob","by":"op"}`.
    Moderation {
        /// What was done.
        #[serde(flatten)]
        action: crate::moderation::Moderation,
    },
    /// A `/op` that was refused (a wrong token, or too many tries).
    OpRefused {
        /// The name of who tried.
        name: String,
        /// From where, when the driver knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<IpAddr>,
    },
    /// Cluster mode, out of contact with the other nodes: a public message only this node's
    /// users got, outside the room's order.
    Local {
        /// The sender's name.
        from: String,
        /// The text.
        text: String,
    },
}

/// What the room wants done. Drain with [`Room::poll_output`](crate::room::Room::poll_output) after
/// every input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `data` to `conn`, encoded for its wire: for the line wire, text to write as is;
    /// for the JSON wire, one JSON object to send as one message. A broadcast is encoded once
    /// per wire and shares its bytes between recipients.
    Send {
        /// The recipient.
        conn: ConnId,
        /// The encoded event.
        data: Bytes,
    },
    /// Finish sending what was queued for `conn`, then close it. The room has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Append this record to the message log.
    Log(LogRecord),
    /// Cluster mode: ask the shared log to record this ([`crate::cluster`]); what it records
    /// comes back through `Room::handle_logged`, a refusal through `Room::handle_refused`.
    Publish(crate::cluster::Publish),
    /// The bans and mutes changed (a room alone): store them all, replacing what was stored,
    /// and hand them back with `Room::restore_sanctions` at the next start.
    Sanctions(Vec<crate::moderation::Sanction>),
}

/// One event encoded at most once per wire, however many it goes to: the recipients of a
/// broadcast share its bytes.
pub(super) struct Encoded<'a> {
    event: &'a Event,
    line: Option<Bytes>,
    json: Option<Bytes>,
}

impl<'a> Encoded<'a> {
    /// Nothing encoded yet.
    pub(super) fn new(event: &'a Event) -> Self {
        Encoded {
            event,
            line: None,
            json: None,
        }
    }

    /// The event as `wire` carries it, encoded on the first call for that wire.
    pub(super) fn on(&mut self, wire: Wire) -> Bytes {
        let event = self.event;
        match wire {
            Wire::Line => self.line.get_or_insert_with(|| line::encode(event)).clone(),
            Wire::Json => self
                .json
                .get_or_insert_with(|| json::encode_event(event))
                .clone(),
        }
    }
}
