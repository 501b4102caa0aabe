//! The message log: JSON Lines appended by a thread of its own, so a slow disk never stalls
//! the room.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::SystemTime;

use chat_core::LogRecord;
use serde::Serialize;

/// A handle to the log writer thread. Records sent before [`MessageLog::close`] are on disk
/// when it returns.
pub struct MessageLog {
    tx: mpsc::Sender<(SystemTime, LogRecord)>,
    thread: thread::JoinHandle<io::Result<()>>,
}

/// One line of the log file.
#[derive(Serialize)]
struct Entry<'a> {
    /// Wall-clock time the room accepted the record, RFC 3339 in UTC.
    time: String,
    #[serde(flatten)]
    record: &'a LogRecord,
}

impl MessageLog {
    /// Opens `path` for appending (creating it) and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<MessageLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("message-log".into())
            .spawn(move || write_all(file, rx))?;
        Ok(MessageLog { tx, thread })
    }

    /// Queues a record; never blocks.
    pub fn append(&self, time: SystemTime, record: LogRecord) {
        if self.tx.send((time, record)).is_err() {
            tracing::error!("the message log writer has stopped; a record was not written");
        }
    }

    /// Writes everything queued, syncs the file, and stops the thread.
    pub fn close(self) -> io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the message log writer panicked")))
    }
}

/// Writes records as they come; flushes whenever the queue runs dry, so a quiet room's log is
/// current and a busy one's is written in large blocks.
fn write_all(file: File, rx: mpsc::Receiver<(SystemTime, LogRecord)>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    while let Ok(first) = rx.recv() {
        write_entry(&mut out, first);
        while let Ok(more) = rx.try_recv() {
            write_entry(&mut out, more);
        }
        if let Err(err) = out.flush() {
            tracing::error!(%err, "cannot write the message log");
        }
    }
    out.flush()?;
    out.get_ref().sync_all()
}

fn write_entry(out: &mut impl Write, (time, record): (SystemTime, LogRecord)) {
    let entry = Entry {
        time: humantime::format_rfc3339_millis(time).to_string(),
        record: &record,
    };
    let result = serde_json::to_writer(&mut *out, &entry)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"));
    if let Err(err) = result {
        tracing::error!(%err, "cannot write the message log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::ChatMessage;

    #[test]
    fn writes_one_json_object_per_line_and_appends() {
        let path = std::env::temp_dir().join(format!("chat-log-test-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        for text in ["first", "second"] {
            let log = MessageLog::open(&path).unwrap();
            log.append(
                SystemTime::UNIX_EPOCH,
                LogRecord::Message(ChatMessage {
                    seq: 1,
                    from: "ann".into(),
                    text: text.into(),
                }),
            );
            log.close().unwrap();
        }
        let content = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
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
