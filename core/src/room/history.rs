//! The public messages' numbering, and the ring of recent ones replayed to a joining client.

use std::collections::VecDeque;

use crate::command::Resume;
use crate::event::{ChatMessage, Event};

/// The room's single order of public messages, and the last `capacity` of them.
#[derive(Debug)]
pub(super) struct History {
    ring: VecDeque<ChatMessage>,
    /// Messages kept (`Config::history`); zero keeps none.
    capacity: usize,
    /// The `seq` the next public message gets.
    next_seq: u64,
}

impl History {
    /// No message yet; the first gets `seq` 1.
    pub(super) fn new(capacity: usize) -> Self {
        History {
            ring: VecDeque::new(),
            capacity,
            next_seq: 1,
        }
    }

    /// The sequence number the next public message will get.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Numbers a public message and keeps it.
    pub(super) fn push(&mut self, from: String, text: String) -> ChatMessage {
        let message = ChatMessage {
            seq: self.next_seq,
            from,
            text,
        };
        self.next_seq += 1;
        self.keep(message.clone());
        message
    }

    /// Keeps a public message the shared log numbered `seq` (cluster mode): the numbering
    /// goes on after it.
    pub(super) fn apply(&mut self, seq: u64, from: String, text: String) -> ChatMessage {
        let message = ChatMessage { seq, from, text };
        self.next_seq = seq.saturating_add(1);
        self.keep(message.clone());
        message
    }

    /// Seeds the ring with messages of an earlier run, oldest first; those not above the
    /// numbering so far are skipped, and it goes on after the last one.
    /// A new run of the numbering (the log's epoch changed): the ring is emptied and numbering
    /// goes on after `last`.
    pub(super) fn renumber(&mut self, last: u64) {
        self.ring.clear();
        self.next_seq = last.saturating_add(1);
    }

    /// Messages up to `last` exist though this room never held them (they were logged while it
    /// was out of contact, beyond what it was sent back).
    pub(super) fn skip_to(&mut self, last: u64) {
        self.next_seq = self.next_seq.max(last.saturating_add(1));
    }

    pub(super) fn restore(&mut self, messages: impl IntoIterator<Item = ChatMessage>) {
        for message in messages {
            if message.seq < self.next_seq {
                continue;
            }
            self.next_seq = message.seq.saturating_add(1);
            self.keep(message);
        }
    }

    fn keep(&mut self, message: ChatMessage) {
        if self.capacity > 0 {
            if self.ring.len() == self.capacity {
                self.ring.pop_front();
            }
            self.ring.push_back(message);
        }
    }

    /// What a joining client is replayed in the room's run `epoch`: the whole ring on a first
    /// join; after a resume, the messages past its resume point, and whether some it missed
    /// are no longer held. `None` when there is nothing to say.
    pub(super) fn replay(&self, epoch: u64, resume: Option<Resume>) -> Option<Event> {
        let from_here = resume.filter(|r| r.epoch == epoch && r.seq < self.next_seq);
        let (messages, gap): (Vec<ChatMessage>, bool) = match (resume, from_here) {
            (None, _) => (self.ring.iter().cloned().collect(), false),
            (Some(_), Some(r)) => {
                let oldest_held = self.ring.front().map_or(self.next_seq, |m| m.seq);
                let missed = self.ring.iter().filter(|m| m.seq > r.seq).cloned();
                (missed.collect(), oldest_held > r.seq + 1)
            }
            // A resume point from another run of the numbering (or from its future): the
            // recent messages, and a warning that the client may have missed others.
            (Some(_), None) => (self.ring.iter().cloned().collect(), true),
        };
        (!messages.is_empty() || gap).then_some(Event::History { messages, gap })
    }
}
