//! Several nodes, one room (`--redis`): the link between this node's room and the room's
//! shared log in Redis.
//!
//! - `scripts`: the room's keys, its atomic scripts (`lua/`), and their replies and the log's
//!   entries read back as the core's values.
//! - `engine`: the task that holds the link: lease, reaper, publishes, the log's reader, the
//!   private-message channel, local mode when Redis is lost and the way back.
//!
//! The room decides everything (`chat_core::cluster`): this module only carries its publishes
//! to Redis and what Redis logged back to it.

mod engine;
pub(crate) mod scripts;
#[cfg(test)]
mod tests;

pub use engine::{Fatal, Link, Publisher, Settings, start};
