//! The message log: JSON Lines appended by a thread of its own, so a slow disk never stalls
//! the room.
//!
//! Durability, in order of what can go wrong:
//!
//! - Graceful shutdown: [`MessageLog::close`] writes everything queued and syncs the file.
//! - `kill -9` or a crash: the writer writes what it holds at most `flush` after it was
//!   accepted and then `fdatasync`s; what was written survives the process, what was synced
//!   survives the machine. At most the last `flush` worth of records is lost.
//! - A torn line: the writer only ever hands whole lines to the file and cuts a partly failed
//!   write (disk full) back to the last whole line; a file that still ends in an unfinished
//!   line (a crash of the machine mid-write) is cut back to its last newline when opened.
//! - Rotation: SIGHUP ([`MessageLog::reopen`]) reopens the path after an external rename
//!   (logrotate), and `max_size` renames `PATH` to `PATH.1` (older ones to `PATH.2` and up to
//!   `PATH.keep`) between two whole lines. A failure of either is logged and the writer goes
//!   on with the file it has.
//!
//! At start [`MessageLog::open`] reads back the last public messages, from the end of the
//! file in blocks (and from `PATH.1`, `PATH.2`... when `PATH` holds too few), for the room's
//! history.
//!
//! # Layout
//!
//! - this file: [`MessageLog`], the handle the room task holds, and [`LogOptions`].
//! - `writer`: the writer thread: encoding, batching, whole-line writes cut back on failure,
//!   `fdatasync`, and the 64 MiB bound on what it holds while the disk refuses it.
//! - `file`: opening the file for appending, an unfinished last line cut off.
//! - `rotation`: `PATH.n` ([`rotated_path`]), size rotation and the SIGHUP reopen.
//! - `history`: reading the last messages back at start ([`read_recent`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

use chat_core::{ChatMessage, LogRecord};

mod file;
mod history;
mod rotation;
#[cfg(test)]
mod testing;
mod writer;

pub use history::read_recent;
pub use rotation::{MAX_ROTATED, rotated_path};

use file::open_log_file;
use rotation::Rotation;
use writer::{Command, Writer, queued_size};

/// Records handed to the writer and not yet taken by it, in approximate bytes: a disk that
/// blocks every write must not grow the server's memory without bound. Past it, records are
/// dropped and counted (the shutdown then reports it and exits with an error).
const MAX_QUEUED: usize = 64 * 1024 * 1024;

/// Where and how to write the log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// The file; rotated files are `PATH.1`, `PATH.2`, ...
    pub path: PathBuf,
    /// The longest a record waits in memory before it is written and the file synced.
    pub flush: Duration,
    /// Rotate once the file would grow past this many bytes; 0 never rotates by size.
    pub max_size: u64,
    /// Rotated files kept, `PATH.1` (newest) to `PATH.keep`; at least 1.
    pub keep: u32,
}

/// A handle to the log writer thread. Records sent before [`MessageLog::close`] are on disk
/// when it returns.
pub struct MessageLog {
    tx: mpsc::Sender<Command>,
    thread: thread::JoinHandle<io::Result<()>>,
    /// What the writer has not taken yet, approximate bytes ([`MAX_QUEUED`]).
    queued: Arc<AtomicUsize>,
    /// Records dropped because the writer fell [`MAX_QUEUED`] behind.
    dropped: AtomicU64,
}

impl MessageLog {
    /// Opens the log for appending (creating it), cuts off an unfinished last line, reads back
    /// the last `history` public messages (oldest first) and starts the writer thread.
    pub fn open(options: LogOptions, history: usize) -> io::Result<(MessageLog, Vec<ChatMessage>)> {
        let (file, len) = open_log_file(&options.path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "cannot open the message log {}: {err}",
                    options.path.display()
                ),
            )
        })?;
        let recent = read_recent(&options.path, history);
        let (tx, rx) = mpsc::channel();
        let LogOptions {
            path,
            flush,
            max_size,
            keep,
        } = options;
        let writer = Writer::new(flush, Rotation::new(path, max_size, keep), file, len);
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let thread = thread::Builder::new()
            .name("message-log".into())
            .spawn(move || writer.run(rx, &taken))?;
        let log = MessageLog {
            tx,
            thread,
            queued,
            dropped: AtomicU64::new(0),
        };
        Ok((log, recent))
    }

    /// Queues a record; never blocks. When the writer is 64 MiB of records behind (a disk that
    /// blocks), the record is dropped and counted instead.
    pub fn append(&self, time: SystemTime, record: LogRecord) {
        let size = queued_size(&record);
        if self.queued.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUED {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::error!(
                    dropped,
                    "the message log writer is far behind (a blocked disk?); \
                    records are dropped"
                );
            }
            return;
        }
        if self.tx.send(Command::Record(time, record)).is_err() {
            tracing::error!("the message log writer has stopped; a record was not written");
        }
    }

    /// Asks the writer to write and sync what it holds, then open the path afresh: after
    /// logrotate renamed the file, new lines go to a new one. If the path cannot be opened,
    /// the writer says so and keeps the file it has.
    pub fn reopen(&self) {
        if self.tx.send(Command::Reopen).is_err() {
            tracing::error!("the message log writer has stopped; cannot reopen the log");
        }
    }

    /// Writes everything queued, syncs the file, and stops the thread.
    pub fn close(self) -> io::Result<()> {
        drop(self.tx);
        let written = self
            .thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the message log writer panicked")));
        match self.dropped.into_inner() {
            0 => written,
            dropped => Err(io::Error::other(format!(
                "{dropped} records were dropped while the message log writer was behind"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use testing::{message, options, temp_dir};

    #[test]
    fn writes_one_json_object_per_line_and_appends() {
        let dir = temp_dir("append");
        let path = dir.join("log.jsonl");
        for text in ["first", "second"] {
            let (log, _) = MessageLog::open(options(&path), 50).unwrap();
            log.append(SystemTime::UNIX_EPOCH, message(1, text));
            log.close().unwrap();
        }
        let content = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = content
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(lines[0]["type"], "message");
        assert_eq!(lines[1]["text"], "second");
        assert_eq!(lines[1]["from"], "ann");
    }
}
