//! The writer thread: takes records off the channel, encodes each as one JSON line, and writes
//! them and `fdatasync`s the file at most `flush` after the first, whole lines only, holding at
//! most 64 MiB of them while the disk refuses them.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use chat_core::LogRecord;
use serde::Serialize;

use super::file::cut_torn_tail;
use super::rotation::Rotation;

/// Buffered lines written out before the flush interval ends once they reach this size, so a
/// busy room's log is written in large blocks and the buffer stays small.
const WRITE_AT: usize = 256 * 1024;
/// Lines kept while the file refuses them (disk full); records past this are dropped, and
/// counted, rather than growing memory without bound.
const MAX_PENDING: usize = 64 * 1024 * 1024;
/// The shortest pause before retrying a failed write.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// What the writer thread is sent.
pub(super) enum Command {
    Record(SystemTime, LogRecord),
    Reopen,
}

/// What a queued record costs, roughly, in bytes.
pub(super) fn queued_size(record: &LogRecord) -> usize {
    const OVERHEAD: usize = 128;
    OVERHEAD
        + match record {
            LogRecord::Message(message) => message.from.len() + message.text.len(),
            LogRecord::Local { from, text } => from.len() + text.len(),
            LogRecord::Join { name, .. }
            | LogRecord::Leave { name, .. }
            | LogRecord::OpRefused { name, .. } => name.len(),
            LogRecord::Moderation { .. } => 256,
        }
}

/// One line of the log file.
#[derive(Serialize)]
struct Entry<'a> {
    /// Wall-clock time the room accepted the record, RFC 3339 in UTC.
    time: String,
    #[serde(flatten)]
    record: &'a LogRecord,
}

/// What the writer needs of its file: writes, and cutting a partly written line off again.
trait LogFile: Write {
    /// The file's length now (someone else may have truncated it: logrotate's copytruncate).
    fn size(&mut self) -> io::Result<u64>;
    fn truncate_to(&mut self, len: u64) -> io::Result<()>;
}

impl LogFile for File {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// How a [`write_lines`] went.
struct Written {
    /// Bytes of the data now in the file, all whole lines.
    bytes: usize,
    /// The write failed part-way through a line and the file could not be cut back: it ends
    /// in an unfinished line, to be cut off before anything else is written.
    torn: bool,
    error: Option<io::Error>,
}

/// Writes `data`, whole lines, to `file`, opened for appending. If a write fails after part
/// of a line went out (disk full), the file is cut back to the last whole line written, so it
/// never holds a torn line.
fn write_lines(file: &mut impl LogFile, data: &[u8]) -> Written {
    let mut written = 0;
    while written < data.len() {
        let error = match file.write(&data[written..]) {
            Ok(0) => io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => {
                written += n;
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => err,
        };
        let whole = data[..written]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let partial = (written - whole) as u64;
        let torn = partial > 0
            && file
                .size()
                .and_then(|size| file.truncate_to(size.saturating_sub(partial)))
                .is_err();
        return Written {
            bytes: whole,
            torn,
            error: Some(error),
        };
    }
    Written {
        bytes: written,
        torn: false,
        error: None,
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    /// The longest a record waits before it is written and the file synced.
    flush: Duration,
    /// The path, and when its file is rotated.
    rotation: Rotation,
    file: File,
    /// The file's length as written by this writer, for size rotation.
    len: u64,
    /// A failed write left part of a line at the end that could not be cut off yet.
    torn: bool,
    /// Whole lines not yet written.
    pending: Vec<u8>,
    /// When what is pending must be written and the file synced.
    due: Option<Instant>,
    /// Written since the last sync.
    unsynced: bool,
    /// Writing fails; reported once until it works again.
    failing: bool,
    /// Records dropped because `pending` was full.
    dropped: u64,
}

impl Writer {
    /// A writer of `file`, `len` bytes long, at `rotation`'s path.
    pub(super) fn new(flush: Duration, rotation: Rotation, file: File, len: u64) -> Writer {
        Writer {
            flush,
            rotation,
            file,
            len,
            torn: false,
            pending: Vec::new(),
            due: None,
            unsynced: false,
            failing: false,
            dropped: 0,
        }
    }

    /// Takes records until every sender is gone; then writes and syncs what is left.
    pub(super) fn run(
        mut self,
        rx: mpsc::Receiver<Command>,
        queued: &AtomicUsize,
    ) -> io::Result<()> {
        loop {
            let command = match self.due {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            match command {
                Ok(Command::Record(time, record)) => {
                    queued.fetch_sub(queued_size(&record), Ordering::AcqRel);
                    self.push(time, &record);
                    if self.due.is_none() {
                        self.due = Some(Instant::now() + self.flush);
                    }
                    if self.pending.len() >= WRITE_AT {
                        self.write_pending();
                    }
                }
                Ok(Command::Reopen) => {
                    self.flush();
                    self.reopen();
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
        if !self.pending.is_empty() || self.dropped > 0 {
            return Err(io::Error::other(format!(
                "{} bytes of the message log could not be written and {} records were dropped",
                self.pending.len(),
                self.dropped
            )));
        }
        if self.unsynced {
            return Err(io::Error::other("the message log could not be synced"));
        }
        Ok(())
    }

    /// Adds the record's line to what is pending.
    fn push(&mut self, time: SystemTime, record: &LogRecord) {
        if self.pending.len() >= MAX_PENDING {
            if self.dropped == 0 {
                tracing::error!(
                    "the message log cannot be written and its buffer is full; dropping records"
                );
            }
            self.dropped += 1;
            return;
        }
        let start = self.pending.len();
        let entry = Entry {
            time: humantime::format_rfc3339_millis(time).to_string(),
            record,
        };
        match serde_json::to_writer(&mut self.pending, &entry) {
            Ok(()) => self.pending.push(b'\n'),
            Err(err) => {
                self.pending.truncate(start);
                tracing::error!(%err, "cannot encode a record of the message log");
            }
        }
    }

    /// Writes what is pending and syncs the file; on failure, tries again a little later.
    fn flush(&mut self) {
        self.write_pending();
        if self.unsynced {
            match self.file.sync_data() {
                Ok(()) => self.unsynced = false,
                Err(err) => tracing::error!(%err, "cannot sync the message log"),
            }
        }
        self.due = (!self.pending.is_empty() || self.unsynced)
            .then(|| Instant::now() + self.flush.max(WRITE_RETRY));
    }

    /// Writes the pending lines, rotating between two of them when the file reaches
    /// `max_size`. Whatever cannot be written stays pending.
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.torn {
            if let Err(err) = cut_torn_tail(&mut self.file) {
                self.report_failure(&err);
                return;
            }
            self.torn = false;
            self.len = self.file.size().unwrap_or(self.len);
        }
        let mut done = 0;
        while done < self.pending.len() {
            let chunk = match self.rotation.chunk(self.len, &self.pending[done..]) {
                0 if self.rotate() => continue,
                // Rotation failed: everything goes to the file we have.
                0 => self.pending.len() - done,
                chunk => chunk,
            };
            let written = write_lines(&mut self.file, &self.pending[done..done + chunk]);
            self.len += written.bytes as u64;
            done += written.bytes;
            self.unsynced |= written.bytes > 0;
            self.torn = written.torn;
            if let Some(err) = written.error {
                self.report_failure(&err);
                break;
            }
        }
        self.pending.drain(..done);
        if self.failing && self.pending.is_empty() {
            self.failing = false;
            tracing::info!(dropped = self.dropped, "the message log is written again");
        }
    }

    fn report_failure(&mut self, err: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(%err, path = %self.rotation.path().display(),
                "cannot write the message log; keeping the records and trying again");
        }
    }

    /// Size rotation between two lines: syncs the file, which [`Rotation::rotate`] then
    /// renames and replaces. False when that failed and the writer keeps its file.
    fn rotate(&mut self) -> bool {
        if let Err(err) = self.file.sync_data() {
            tracing::warn!(%err, "cannot sync the message log before rotating it");
        } else {
            self.unsynced = false;
        }
        let Some(new) = self.rotation.rotate() else {
            return false;
        };
        self.replace_file(new);
        true
    }

    /// Opens the path afresh (SIGHUP); keeps the old file when that fails.
    fn reopen(&mut self) {
        if let Some(new) = self.rotation.reopen() {
            self.replace_file(new);
        }
    }

    /// Writes on to `file`, `len` bytes long and ending in a whole line, from now on.
    fn replace_file(&mut self, (file, len): (File, u64)) {
        self.file = file;
        self.len = len;
        self.torn = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::line;

    /// A file that takes `room` bytes and then fails, like a full disk.
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
        truncate_fails: bool,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.data.len()).min(7);
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl LogFile for FullDisk {
        fn size(&mut self) -> io::Result<u64> {
            Ok(self.data.len() as u64)
        }

        fn truncate_to(&mut self, len: u64) -> io::Result<()> {
            if self.truncate_fails {
                return Err(io::Error::other("no"));
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_write_that_fails_part_way_leaves_only_whole_lines() {
        let data = format!("{}{}{}", line(1, "a"), line(2, "b"), line(3, "c"));
        let first_two = line(1, "a").len() + line(2, "b").len();
        for room in 0..data.len() + 10 {
            let mut disk = FullDisk {
                data: b"earlier\n".to_vec(),
                room: room + 8,
                truncate_fails: false,
            };
            let written = write_lines(&mut disk, data.as_bytes());
            assert!(!written.torn);
            let file = String::from_utf8(disk.data).unwrap();
            assert_eq!(file.len(), 8 + written.bytes, "room {room}");
            assert!(file.ends_with('\n'), "room {room}: {file:?}");
            assert!(data.starts_with(&file[8..]));
            assert_eq!(written.error.is_none(), room >= data.len(), "room {room}");
            if (first_two..data.len()).contains(&room) {
                assert_eq!(written.bytes, first_two);
            }
        }
        // When cutting back fails too, the writer is told so.
        let mut disk = FullDisk {
            data: Vec::new(),
            room: 10,
            truncate_fails: true,
        };
        let written = write_lines(&mut disk, data.as_bytes());
        assert!(written.torn && written.bytes == 0 && written.error.is_some());
    }
}

#[cfg(test)]
mod record_lines {
    use super::*;
    use chat_core::moderation::{Moderation, Sanction, SanctionKind};

    /// The line the writer makes of `record`, and the object it parses back to.
    fn line_of(record: &LogRecord) -> (String, serde_json::Value) {
        let entry = Entry {
            time: "2026-01-01T00:00:00.000Z".into(),
            record,
        };
        let text = serde_json::to_string(&entry).unwrap();
        let value = serde_json::from_str(&text).unwrap();
        (text, value)
    }

    #[test]
    fn a_moderation_record_is_one_flat_object_with_one_type() {
        let kick = LogRecord::Moderation {
            action: Moderation::Kick {
                name: "bob".into(),
                by: "admin".into(),
                reason: Some("spam".into()),
            },
        };
        let (text, value) = line_of(&kick);
        assert_eq!(text.matches("\"type\"").count(), 1, "{text}");
        assert_eq!(value["type"], "moderation", "{text}");
        assert_eq!(value["action"], "kick", "{text}");
        assert_eq!(value["name"], "bob");
        assert_eq!(value["reason"], "spam");
        // Read back at start (the history) as the record it was, not skipped as malformed.
        assert_eq!(serde_json::from_str::<LogRecord>(&text).unwrap(), kick);
        let ban = LogRecord::Moderation {
            action: Moderation::Sanction(Sanction {
                kind: SanctionKind::Ban,
                name: "bob".into(),
                address: None,
                until: 5,
                by: "admin".into(),
                reason: None,
            }),
        };
        let (text, value) = line_of(&ban);
        assert_eq!(value["type"], "moderation", "{text}");
        assert_eq!(value["action"], "sanction");
        assert_eq!(value["kind"], "ban");
        assert_eq!(serde_json::from_str::<LogRecord>(&text).unwrap(), ban);
        let refused = LogRecord::OpRefused {
            name: "bob".into(),
            peer: Some("203.0.113.9".parse().unwrap()),
        };
        let (text, value) = line_of(&refused);
        assert_eq!(value["type"], "op_refused", "{text}");
        assert_eq!(value["peer"], "203.0.113.9");
    }
}
