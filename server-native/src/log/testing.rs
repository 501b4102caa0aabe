//! Fixtures shared by the log's unit tests: a temporary directory, records, options and the
//! lines the writer would have written.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_core::{ChatMessage, LogRecord};

use super::LogOptions;

/// A fresh directory for one test, removed when dropped (also when the test fails).
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn temp_dir(name: &str) -> TempDir {
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

pub(super) fn message(seq: u64, text: &str) -> LogRecord {
    LogRecord::Message(ChatMessage {
        seq,
        from: "ann".into(),
        text: text.into(),
    })
}

pub(super) fn options(path: &Path) -> LogOptions {
    LogOptions {
        path: path.to_owned(),
        flush: Duration::from_millis(200),
        max_size: 0,
        keep: 5,
    }
}

pub(super) fn line(seq: u64, text: &str) -> String {
    format!(
        "{{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"message\",\"seq\":{seq},\"from\":\"ann\",\"text\":\"{text}\"}}\n"
    )
}

pub(super) fn texts(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}
