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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use chat_core::{ChatMessage, LogRecord};
use serde::Serialize;

/// Buffered lines written out before the flush interval ends once they reach this size, so a
/// busy room's log is written in large blocks and the buffer stays small.
const WRITE_AT: usize = 256 * 1024;
/// Lines kept while the file refuses them (disk full); records past this are dropped, and
/// counted, rather than growing memory without bound.
const MAX_PENDING: usize = 64 * 1024 * 1024;
/// Records handed to the writer and not yet taken by it, in approximate bytes: a disk that
/// blocks every write must not grow the server's memory without bound. Past it, records are
/// dropped and counted (the shutdown then reports it and exits with an error).
const MAX_QUEUED: usize = 64 * 1024 * 1024;
/// How long after a failed rotation the writer tries again.
const ROTATE_RETRY: Duration = Duration::from_secs(10);
/// The shortest pause before retrying a failed write.
const WRITE_RETRY: Duration = Duration::from_secs(1);
/// Block size of the backwards reads at start.
const READ_BLOCK: usize = 64 * 1024;
/// The most of the log read back at start looking for messages; past it the history is what
/// was found (a log of nothing but joins and leaves, or not a log at all).
const MAX_SCAN: u64 = 256 * 1024 * 1024;
/// A line longer than this cannot be a record (a message is at most 16 MiB before escaping);
/// reading back skips it without holding it in memory.
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// The most rotated files kept, and read back at start.
pub const MAX_ROTATED: u32 = 1000;
/// Unparsable lines reported one by one at start; the rest are counted.
const MAX_BAD_LINE_WARNINGS: usize = 10;

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

enum Command {
    Record(SystemTime, LogRecord),
    Reopen,
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
        let writer = Writer::new(options, file, len);
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

/// What a queued record costs, roughly, in bytes.
fn queued_size(record: &LogRecord) -> usize {
    const OVERHEAD: usize = 128;
    OVERHEAD
        + match record {
            LogRecord::Message(message) => message.from.len() + message.text.len(),
            LogRecord::Join { name, .. } | LogRecord::Leave { name, .. } => name.len(),
        }
}

/// `PATH.n`, the `n`th newest rotated file.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens `path` for appending, creating it, and cuts an unfinished last line off; returns the
/// file and its length.
fn open_log_file(path: &Path) -> io::Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let cut = cut_torn_tail(&mut file)?;
    if cut > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = cut,
            "the message log ended in an unfinished line (a crash or a full disk while writing); \
             cut it off"
        );
    }
    sync_parent(path);
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Truncates `file` after its last newline when it does not end with one; returns the
/// number of bytes cut. Reads backwards in blocks, never the whole file.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; READ_BLOCK];
    while end > 0 {
        let start = end.saturating_sub(READ_BLOCK as u64);
        let block = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(block)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep == len {
                return Ok(0);
            }
            end = keep;
            break;
        }
        end = start;
    }
    file.set_len(end)?;
    file.sync_data()?;
    Ok(len - end)
}

/// Makes a created or renamed file's directory entry durable; best effort.
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(%err, dir = %dir.display(), "cannot sync the log's directory");
    }
}

/// The last `count` public messages of the log at `path`, oldest first: from the end of
/// `path`, then of `path.1` if `path` holds fewer, then `path.2`, and so on while the files
/// exist (with logrotate's compressed older files, `path.1` is the last). Never fails the start: unreadable files and
/// unparsable lines are skipped with a warning. Only the newest unbroken run of numbers is
/// taken (`seq` falling from newest to oldest), so that messages of a server that once
/// numbered afresh at each start are not mixed in. At least the newest message is read even
/// when `count` is 0, for the numbering to go on after it.
pub fn read_recent(path: &Path, count: usize) -> Vec<ChatMessage> {
    let want = count.max(1);
    let mut newest_first: Vec<ChatMessage> = Vec::new();
    let mut scanned = 0u64;
    let mut bad = 0usize;
    let files = (0..=MAX_ROTATED).map(|n| match n {
        0 => path.to_path_buf(),
        n => rotated_path(path, n),
    });
    'files: for file_path in files {
        let file = match File::open(&file_path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
            Err(err) => {
                tracing::warn!(path = %file_path.display(), %err, "cannot read the message log back");
                break;
            }
        };
        let mut lines = match ReverseLines::new(file, READ_BLOCK, MAX_RECORD) {
            Ok(lines) => lines,
            Err(err) => {
                tracing::warn!(path = %file_path.display(), %err, "cannot read the message log back");
                break;
            }
        };
        loop {
            if scanned > MAX_SCAN {
                tracing::warn!(
                    path = %file_path.display(),
                    scanned,
                    found = newest_first.len(),
                    "read back this much of the message log without finding more messages; \
                     the history starts with what was found"
                );
                break 'files;
            }
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(path = %file_path.display(), %err, "cannot read the message log back");
                    break 'files;
                }
            };
            scanned = lines.scanned();
            let record = match &line {
                Line::Whole { offset, text } if !text.is_empty() => {
                    match serde_json::from_slice::<LogRecord>(text) {
                        Ok(record) => record,
                        Err(err) => {
                            bad += 1;
                            if bad <= MAX_BAD_LINE_WARNINGS {
                                tracing::warn!(path = %file_path.display(), offset, %err,
                                    "skipping a line of the message log that is not a record");
                            }
                            continue;
                        }
                    }
                }
                Line::Whole { .. } => continue,
                Line::TooLong { offset } => {
                    bad += 1;
                    if bad <= MAX_BAD_LINE_WARNINGS {
                        tracing::warn!(path = %file_path.display(), offset,
                            "skipping an overlong line of the message log");
                    }
                    continue;
                }
            };
            let LogRecord::Message(message) = record else {
                continue;
            };
            if newest_first
                .last()
                .is_some_and(|newer| message.seq >= newer.seq)
            {
                break 'files; // An earlier run's numbering.
            }
            newest_first.push(message);
            if newest_first.len() == want {
                break 'files;
            }
        }
    }
    if bad > MAX_BAD_LINE_WARNINGS {
        tracing::warn!(
            skipped = bad,
            "skipped lines of the message log that are not records"
        );
    }
    newest_first.reverse();
    newest_first
}

/// A line read back by [`ReverseLines`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line without its newline, and where it starts in the file.
    Whole { offset: u64, text: Vec<u8> },
    /// A line over the reader's `max_record` bytes, skipped unread.
    TooLong { offset: u64 },
}

/// The lines of a file, last first, read backwards in blocks: memory holds one line and one
/// block, whatever the size of the file.
struct ReverseLines {
    file: File,
    /// The bytes before this offset are not read yet.
    pos: u64,
    /// Read, not yet returned: the bytes from `pos` up to the end of the next line to return.
    tail: Vec<u8>,
    block: usize,
    /// Longer lines are skipped.
    max_record: usize,
    /// The line being skipped is longer than `max_record`.
    skipping: bool,
    /// The first line has been returned.
    done: bool,
    len: u64,
}

impl ReverseLines {
    fn new(file: File, block: usize, max_record: usize) -> io::Result<ReverseLines> {
        let len = file.metadata()?.len();
        Ok(ReverseLines {
            file,
            pos: len,
            tail: Vec::new(),
            block,
            max_record,
            skipping: false,
            done: len == 0,
            len,
        })
    }

    /// How many bytes from the end have been read.
    fn scanned(&self) -> u64 {
        self.len - self.pos
    }

    fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(i) = self.tail.iter().rposition(|&b| b == b'\n') {
                let offset = self.pos + i as u64 + 1;
                let text = self.tail.split_off(i + 1);
                self.tail.truncate(i);
                if std::mem::take(&mut self.skipping) {
                    return Ok(Some(Line::TooLong { offset }));
                }
                if text.is_empty() && offset == self.len {
                    continue; // After the file's last newline: no line.
                }
                return Ok(Some(Line::Whole { offset, text }));
            }
            if self.pos == 0 {
                if std::mem::replace(&mut self.done, true) {
                    return Ok(None);
                }
                if std::mem::take(&mut self.skipping) {
                    return Ok(Some(Line::TooLong { offset: 0 }));
                }
                let text = std::mem::take(&mut self.tail);
                return Ok(Some(Line::Whole { offset: 0, text }));
            }
            if self.tail.len() > self.max_record {
                self.skipping = true;
                self.tail.clear();
            }
            // Read as much again as is held (so a long line costs linear time, not quadratic)
            // but not past `max_record` by more than a block.
            let held = self.tail.len();
            let want = held
                .min(self.max_record.saturating_sub(held))
                .max(self.block) as u64;
            let start = self.pos.saturating_sub(want);
            let mut chunk = vec![0u8; (self.pos - start) as usize];
            self.file.seek(SeekFrom::Start(start))?;
            self.file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&self.tail);
            self.tail = chunk;
            self.pos = start;
        }
    }
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
struct Writer {
    options: LogOptions,
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
    /// No size rotation before this, after one failed.
    rotate_after: Option<Instant>,
    /// Writing fails; reported once until it works again.
    failing: bool,
    /// Records dropped because `pending` was full.
    dropped: u64,
}

impl Writer {
    fn new(options: LogOptions, file: File, len: u64) -> Writer {
        Writer {
            options,
            file,
            len,
            torn: false,
            pending: Vec::new(),
            due: None,
            unsynced: false,
            rotate_after: None,
            failing: false,
            dropped: 0,
        }
    }

    /// Takes records until every sender is gone; then writes and syncs what is left.
    fn run(mut self, rx: mpsc::Receiver<Command>, queued: &AtomicUsize) -> io::Result<()> {
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
                        self.due = Some(Instant::now() + self.options.flush);
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
            .then(|| Instant::now() + self.options.flush.max(WRITE_RETRY));
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
            let chunk = match self.chunk(&self.pending[done..]) {
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
            tracing::error!(%err, path = %self.options.path.display(),
                "cannot write the message log; keeping the records and trying again");
        }
    }

    /// How many bytes of `rest`, whole lines, fit in the file before it reaches `max_size`; 0
    /// when it must be rotated first. A line longer than `max_size` gets a file of its own.
    fn chunk(&self, rest: &[u8]) -> usize {
        let max = self.options.max_size;
        let rotation_due = self.rotate_after.is_none_or(|at| Instant::now() >= at);
        if max == 0 || !rotation_due {
            return rest.len();
        }
        let room = max.saturating_sub(self.len).min(rest.len() as u64) as usize;
        match rest[..room].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if self.len == 0 => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1),
            None => 0,
        }
    }

    /// Size rotation: syncs the file, shifts `PATH.n` to `PATH.n+1` (dropping `PATH.keep`),
    /// renames `PATH` to `PATH.1` and starts a new `PATH`. On failure it is logged, retried
    /// after [`ROTATE_RETRY`], and the writer keeps its file; false then.
    fn rotate(&mut self) -> bool {
        let path = self.options.path.clone();
        if let Err(err) = self.file.sync_data() {
            tracing::warn!(%err, "cannot sync the message log before rotating it");
        } else {
            self.unsynced = false;
        }
        let result = (|| {
            for n in (1..self.options.keep).rev() {
                match fs::rename(rotated_path(&path, n), rotated_path(&path, n + 1)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            let first = rotated_path(&path, 1);
            fs::rename(&path, &first)?;
            match open_log_file(&path) {
                Ok(opened) => Ok(opened),
                Err(err) => {
                    // Back to where it was, so that PATH is the file being written.
                    let _ = fs::rename(&first, &path);
                    Err(err)
                }
            }
        })();
        match result {
            Ok((file, len)) => {
                self.file = file;
                self.len = len;
                self.torn = false;
                self.rotate_after = None;
                tracing::info!(path = %path.display(), "rotated the message log");
                true
            }
            Err(err) => {
                self.rotate_after = Some(Instant::now() + ROTATE_RETRY);
                tracing::error!(%err, path = %path.display(),
                    "cannot rotate the message log; writing on to the current file");
                false
            }
        }
    }

    /// Opens the path afresh (SIGHUP); keeps the old file when that fails.
    fn reopen(&mut self) {
        let path = &self.options.path;
        match open_log_file(path) {
            Ok((file, len)) => {
                self.file = file;
                self.len = len;
                self.torn = false;
                tracing::info!(path = %path.display(), "reopened the message log");
            }
            Err(err) => {
                tracing::error!(%err, path = %path.display(),
                    "cannot reopen the message log; writing on to the old file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory for one test, removed when dropped (also when the test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chat-log-unit-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn message(seq: u64, text: &str) -> LogRecord {
        LogRecord::Message(ChatMessage {
            seq,
            from: "ann".into(),
            text: text.into(),
        })
    }

    fn options(path: &Path) -> LogOptions {
        LogOptions {
            path: path.to_owned(),
            flush: Duration::from_millis(200),
            max_size: 0,
            keep: 5,
        }
    }

    fn line(seq: u64, text: &str) -> String {
        format!(
            "{{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"message\",\"seq\":{seq},\"from\":\"ann\",\"text\":\"{text}\"}}\n"
        )
    }

    fn texts(messages: &[ChatMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.text.as_str()).collect()
    }

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

    #[test]
    fn reverse_lines_across_block_boundaries() {
        let dir = temp_dir("reverse");
        let path = dir.join("f");
        let lines: Vec<String> = (0..200).map(|i| "x".repeat(i % 37)).collect();
        let mut content = lines.join("\n");
        content.push('\n');
        fs::write(&path, &content).unwrap();
        for block in [1, 2, 3, 7, 64, 4096] {
            let mut reader = ReverseLines::new(File::open(&path).unwrap(), block, 1 << 20).unwrap();
            let mut got = Vec::new();
            while let Some(line) = reader.next_line().unwrap() {
                let Line::Whole { offset, text } = line else {
                    panic!("no line is too long")
                };
                let text = String::from_utf8(text).unwrap();
                // The offset is where the line starts.
                assert!(content[offset as usize..].starts_with(&format!("{text}\n")));
                got.push(text);
            }
            got.reverse();
            assert_eq!(got, lines, "block {block}");
            assert_eq!(reader.scanned(), content.len() as u64);
        }
        // No newline at the end, and an empty file.
        fs::write(&path, "a\nb").unwrap();
        let mut reader = ReverseLines::new(File::open(&path).unwrap(), 1, 1 << 20).unwrap();
        assert_eq!(
            reader.next_line().unwrap(),
            Some(Line::Whole {
                offset: 2,
                text: b"b".to_vec()
            })
        );
        assert_eq!(
            reader.next_line().unwrap(),
            Some(Line::Whole {
                offset: 0,
                text: b"a".to_vec()
            })
        );
        assert_eq!(reader.next_line().unwrap(), None);
        fs::write(&path, "").unwrap();
        let mut reader = ReverseLines::new(File::open(&path).unwrap(), 4, 1 << 20).unwrap();
        assert_eq!(reader.next_line().unwrap(), None);
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_newline() {
        let dir = temp_dir("torn");
        let path = dir.join("log.jsonl");
        let whole = format!("{}{}", line(1, "one"), line(2, "two"));
        let torn = "{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"mess";
        fs::write(&path, format!("{whole}{torn}")).unwrap();
        let (mut file, len) = open_log_file(&path).unwrap();
        assert_eq!(len, whole.len() as u64);
        assert_eq!(fs::read_to_string(&path).unwrap(), whole);
        // Appending goes on at the cut.
        file.write_all(line(3, "three").as_bytes()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{whole}{}", line(3, "three"))
        );

        // Nothing to cut; a file with no newline at all is emptied; longer than a block.
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(cut_torn_tail(&mut f).unwrap(), 0);
        let long = "y".repeat(3 * READ_BLOCK + 5);
        fs::write(&path, &long).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(cut_torn_tail(&mut f).unwrap(), long.len() as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        fs::write(&path, format!("a\n{long}")).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(cut_torn_tail(&mut f).unwrap(), long.len() as u64);
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\n");
    }

    #[test]
    fn read_recent_takes_the_last_messages_skipping_bad_lines_and_falls_back_to_rotated_files() {
        let dir = temp_dir("recent");
        let path = dir.join("log.jsonl");
        let join = "{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"join\",\"name\":\"ann\"}\n";
        let oldest: String = (1..=2).map(|i| line(i, &format!("m{i}"))).collect();
        fs::write(rotated_path(&path, 2), &oldest).unwrap();
        let older: String = (3..=4).map(|i| line(i, &format!("m{i}"))).collect();
        fs::write(rotated_path(&path, 1), &older).unwrap();
        // After a missing PATH.3, nothing more is read.
        fs::write(rotated_path(&path, 4), line(0, "m0")).unwrap();
        let newer = format!(
            "{join}{}not json at all\n\n{}{{\"type\":\"message\"}}\n{}",
            line(5, "m5"),
            line(6, "m6"),
            line(7, "m7")
        );
        fs::write(&path, &newer).unwrap();
        assert_eq!(texts(&read_recent(&path, 2)), ["m6", "m7"]);
        assert_eq!(texts(&read_recent(&path, 3)), ["m5", "m6", "m7"]);
        assert_eq!(
            texts(&read_recent(&path, 5)),
            ["m3", "m4", "m5", "m6", "m7"]
        );
        assert_eq!(
            texts(&read_recent(&path, 6)),
            ["m2", "m3", "m4", "m5", "m6", "m7"]
        );
        assert_eq!(texts(&read_recent(&path, 50)).len(), 7);
        // History 0 still gives the newest, for the numbering.
        assert_eq!(texts(&read_recent(&path, 0)), ["m7"]);
        // Missing files: nothing, no error.
        assert!(read_recent(&dir.join("missing"), 50).is_empty());
    }

    #[test]
    fn read_recent_stops_at_an_earlier_runs_numbering() {
        let dir = temp_dir("runs");
        let path = dir.join("log.jsonl");
        let content: String = (1..=3)
            .map(|i| line(i, &format!("old{i}")))
            .chain((1..=2).map(|i| line(i, &format!("new{i}"))))
            .collect();
        fs::write(&path, content).unwrap();
        assert_eq!(texts(&read_recent(&path, 50)), ["new1", "new2"]);
    }

    #[test]
    fn an_overlong_line_is_skipped_without_holding_it_whole() {
        let dir = temp_dir("long");
        let path = dir.join("log.jsonl");
        let before = line(1, "before");
        let long = "z".repeat(100_000);
        let content = format!("{before}{long}\n{}", line(2, "after"));
        fs::write(&path, content).unwrap();
        let mut reader = ReverseLines::new(File::open(&path).unwrap(), 64, 10_000).unwrap();
        assert!(matches!(
            reader.next_line().unwrap(),
            Some(Line::Whole { .. })
        ));
        assert_eq!(
            reader.next_line().unwrap(),
            Some(Line::TooLong {
                offset: before.len() as u64
            })
        );
        // It held at most a little more than the limit at a time.
        assert!(reader.tail.capacity() < 10_000 + 2 * 64 + before.len());
        assert!(matches!(
            reader.next_line().unwrap(),
            Some(Line::Whole { offset: 0, .. })
        ));
        assert_eq!(reader.next_line().unwrap(), None);
        // Under the real limit it is just an unparsable line, skipped.
        assert_eq!(texts(&read_recent(&path, 50)), ["before", "after"]);
    }

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

    #[test]
    fn size_rotation_splits_between_lines_and_keeps_n_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("log.jsonl");
        let (log, _) = MessageLog::open(
            LogOptions {
                max_size: 400,
                keep: 3,
                ..options(&path)
            },
            50,
        )
        .unwrap();
        for i in 1..=100 {
            log.append(SystemTime::UNIX_EPOCH, message(i, &format!("m{i}")));
        }
        log.close().unwrap();
        let mut seqs = Vec::new();
        for file in [3, 2, 1, 0] {
            let p = if file == 0 {
                path.clone()
            } else {
                rotated_path(&path, file)
            };
            let content = fs::read_to_string(&p).unwrap();
            assert!(
                content.len() <= 400,
                "{} is {} bytes",
                p.display(),
                content.len()
            );
            assert!(content.ends_with('\n'));
            for l in content.lines() {
                let r: LogRecord = serde_json::from_str(l).unwrap();
                let LogRecord::Message(m) = r else { panic!() };
                seqs.push(m.seq);
            }
        }
        assert!(
            !rotated_path(&path, 4).exists(),
            "only 3 rotated files are kept"
        );
        // The newest, without gaps, up to the last.
        let first = seqs[0];
        assert_eq!(seqs, (first..=100).collect::<Vec<_>>());
        assert!(first > 1);
        // Reading back crosses from PATH into PATH.1.
        let per_file = fs::read_to_string(&path).unwrap().lines().count();
        let recent = read_recent(&path, per_file + 2);
        assert_eq!(recent.len(), per_file + 2);
        assert_eq!(recent.last().unwrap().seq, 100);
    }

    #[test]
    fn reopen_follows_a_rename_and_a_failed_reopen_keeps_the_old_file() {
        let dir = temp_dir("reopen");
        let path = dir.join("log.jsonl");
        let (log, _) = MessageLog::open(options(&path), 50).unwrap();
        log.append(SystemTime::UNIX_EPOCH, message(1, "before"));
        fs::rename(&path, dir.join("old")).unwrap();
        log.reopen();
        log.append(SystemTime::UNIX_EPOCH, message(2, "after"));
        log.close().unwrap();
        let old = fs::read_to_string(dir.join("old")).unwrap();
        let new = fs::read_to_string(&path).unwrap();
        assert!(old.contains("before") && !old.contains("after"), "{old}");
        assert!(new.contains("after") && !new.contains("before"), "{new}");

        let path = dir.join("failing.jsonl");
        let (log, _) = MessageLog::open(options(&path), 50).unwrap();
        log.append(SystemTime::UNIX_EPOCH, message(1, "one"));
        fs::hard_link(&path, dir.join("same")).unwrap();
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap(); // The path cannot be opened as a file now.
        log.reopen();
        log.append(SystemTime::UNIX_EPOCH, message(2, "two"));
        log.close().unwrap();
        let same = fs::read_to_string(dir.join("same")).unwrap();
        assert!(same.contains("one") && same.contains("two"), "{same}");
    }
}
