//! Reading the history back at start: the last public messages, from the end of the log and
//! then of its rotated files, read backwards in blocks so that memory holds one line at a time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use chat_core::{ChatMessage, LogRecord};

use super::file::READ_BLOCK;
use super::rotation::{MAX_ROTATED, rotated_path};

/// The most of the log read back at start looking for messages; past it the history is what
/// was found (a log of nothing but joins and leaves, or not a log at all).
const MAX_SCAN: u64 = 256 * 1024 * 1024;
/// A line longer than this cannot be a record (a message is at most 16 MiB before escaping);
/// reading back skips it without holding it in memory.
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Unparsable lines reported one by one at start; the rest are counted.
const MAX_BAD_LINE_WARNINGS: usize = 10;

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
        let opened =
            File::open(&file_path).and_then(|file| ReverseLines::new(file, READ_BLOCK, MAX_RECORD));
        let mut lines = match opened {
            Ok(lines) => lines,
            Err(err) if err.kind() == io::ErrorKind::NotFound => break,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{line, temp_dir, texts};
    use std::fs;

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
}
