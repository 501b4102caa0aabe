//! Rotation: the rotated files' names (`PATH.1`, `PATH.2`, ...), rotating by size between two
//! whole lines, and opening the path afresh on request (SIGHUP, after logrotate renamed it).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::file::open_log_file;

/// The most rotated files kept, and read back at start.
pub const MAX_ROTATED: u32 = 1000;
/// How long after a failed rotation the writer tries again.
const ROTATE_RETRY: Duration = Duration::from_secs(10);

/// `PATH.n`, the `n`th newest rotated file.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The path the writer writes to, and when and how the file there is replaced by a new one.
pub(super) struct Rotation {
    path: PathBuf,
    /// Rotate once the file would grow past this many bytes; 0 never rotates by size.
    max_size: u64,
    /// Rotated files kept, `PATH.1` to `PATH.keep`.
    keep: u32,
    /// No size rotation before this, after one failed.
    retry_at: Option<Instant>,
}

impl Rotation {
    pub(super) fn new(path: PathBuf, max_size: u64, keep: u32) -> Rotation {
        Rotation {
            path,
            max_size,
            keep,
            retry_at: None,
        }
    }

    /// The log's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes of `rest`, whole lines, fit in a file of `len` bytes before it reaches
    /// `max_size`; 0 when it must be rotated first. A line longer than `max_size` gets a file
    /// of its own.
    pub(super) fn chunk(&self, len: u64, rest: &[u8]) -> usize {
        let max = self.max_size;
        let rotation_due = self.retry_at.is_none_or(|at| Instant::now() >= at);
        if max == 0 || !rotation_due {
            return rest.len();
        }
        let room = max.saturating_sub(len).min(rest.len() as u64) as usize;
        match rest[..room].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if len == 0 => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1),
            None => 0,
        }
    }

    /// Size rotation, once the writer has synced the file: shifts the files along
    /// ([`Rotation::shift`]) and returns the new `PATH` with its length. On failure it is
    /// logged and retried after [`ROTATE_RETRY`], and the writer keeps its file; `None` then.
    pub(super) fn rotate(&mut self) -> Option<(File, u64)> {
        match self.shift() {
            Ok(opened) => {
                self.retry_at = None;
                tracing::info!(path = %self.path.display(), "rotated the message log");
                Some(opened)
            }
            Err(err) => {
                self.retry_at = Some(Instant::now() + ROTATE_RETRY);
                tracing::error!(%err, path = %self.path.display(),
                    "cannot rotate the message log; writing on to the current file");
                None
            }
        }
    }

    /// Shifts `PATH.n` to `PATH.n+1` (dropping `PATH.keep`), renames `PATH` to `PATH.1` and
    /// opens a new `PATH`. If that cannot be opened, `PATH.1` is renamed back to `PATH`, the
    /// file being written.
    fn shift(&self) -> io::Result<(File, u64)> {
        let path = &self.path;
        for n in (1..self.keep).rev() {
            match fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        let first = rotated_path(path, 1);
        fs::rename(path, &first)?;
        open_log_file(path).inspect_err(|_| {
            let _ = fs::rename(&first, path);
        })
    }

    /// Opens the path afresh (SIGHUP), returning the file and its length; `None` when that
    /// fails, said in the log, and the writer keeps the file it has.
    pub(super) fn reopen(&self) -> Option<(File, u64)> {
        let path = &self.path;
        match open_log_file(path) {
            Ok(opened) => {
                tracing::info!(path = %path.display(), "reopened the message log");
                Some(opened)
            }
            Err(err) => {
                tracing::error!(%err, path = %path.display(),
                    "cannot reopen the message log; writing on to the old file");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{message, options, temp_dir};
    use crate::log::{LogOptions, MessageLog, read_recent};
    use chat_core::LogRecord;
    use std::time::SystemTime;

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
