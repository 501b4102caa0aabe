//! The bans and mutes of a room alone, kept beside the message log (`--log PATH`) in
//! `PATH.bans.json` so that they survive a restart: read back at start, written again whenever
//! the room says they changed (`Output::Sanctions`), off the room task.
//!
//! The file is one JSON array of `chat_core::moderation::Sanction`, replaced whole and
//! atomically (a temporary file in the same directory, synced, renamed over it, the directory
//! synced), so that it is always either the list before or the list after. The room task only
//! hands the newest list to a [`watch`] channel; a task of its own writes it on the blocking
//! pool, and when lists come faster than the disk takes them, the newest wins and those between
//! are never written. Without `--log` the bans and mutes live in memory only; with `--redis`
//! they are in Redis, with the room's log.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chat_core::moderation::Sanction;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long after a failed write the writer tries again, should no newer list come first.
const RETRY: Duration = Duration::from_secs(5);

/// `PATH.bans.json`, beside the log at `log`.
pub fn path_beside(log: &Path) -> PathBuf {
    let mut name = OsString::from(log.as_os_str());
    name.push(".bans.json");
    PathBuf::from(name)
}

/// The bans and mutes stored at `path`; none when there is no file. A file that cannot be read
/// or is not such a list is an error that names it: the server must not start and silently
/// forget who was banned.
pub fn load(path: &Path) -> io::Result<Vec<Sanction>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!(
                    "cannot read the bans and mutes in {}: {err}",
                    path.display()
                ),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the bans and mutes in {} are not a JSON array of sanctions ({err}); mend the \
                 file, or remove it to start with none",
                path.display()
            ),
        )
    })
}

/// Replaces the file at `path` with `all`, atomically and durably.
pub fn store(path: &Path, all: &[Sanction]) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(all).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut temp = OsString::from(path.as_os_str());
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let written = write_synced(&temp, &text).and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(path);
    Ok(())
}

/// Writes `data` to a new file at `path` (readable by the server's user only: it holds
/// addresses) and syncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Makes the rename durable: syncs the directory holding `path`; best effort.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(%err, dir = %dir.display(), "cannot sync the bans file's directory");
    }
}

/// The room task's end: hands over the newest list, never waiting.
#[derive(Debug)]
pub struct Keeper {
    newest: watch::Sender<Vec<Sanction>>,
}

impl Keeper {
    /// `all` is what the file must hold now.
    pub fn keep(&self, all: Vec<Sanction>) {
        self.newest.send_replace(all);
    }
}

/// Starts the writer of `path`. It writes each list handed to the [`Keeper`] (the newest, when
/// several came meanwhile), and ends once the keeper is dropped and the last list is written:
/// its result says whether that last write failed.
pub fn start(path: PathBuf) -> (Keeper, JoinHandle<io::Result<()>>) {
    let (newest, lists) = watch::channel(Vec::new());
    let task = tokio::spawn(write_lists(path, lists));
    (Keeper { newest }, task)
}

async fn write_lists(path: PathBuf, mut lists: watch::Receiver<Vec<Sanction>>) -> io::Result<()> {
    // The last write failed: it is tried again after a pause, or with the next list.
    let mut failing = false;
    loop {
        let more = if failing {
            tokio::select! {
                changed = lists.changed() => changed.is_ok(),
                () = tokio::time::sleep(RETRY) => true,
            }
        } else {
            lists.changed().await.is_ok()
        };
        // `more` is false once the room has stopped and nothing newer came.
        if !more && !failing {
            return Ok(());
        }
        let all = lists.borrow_and_update().clone();
        let (target, count) = (path.clone(), all.len());
        let written = tokio::task::spawn_blocking(move || store(&target, &all))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)));
        match written {
            Ok(()) => {
                if failing {
                    tracing::info!(path = %path.display(), "the bans and mutes are stored again");
                }
                tracing::debug!(path = %path.display(), count, "bans and mutes stored");
                failing = false;
            }
            Err(err) => {
                tracing::error!(path = %path.display(), %err,
                    "cannot store the bans and mutes; they hold in memory, and the write is tried \
                     again");
                if !more {
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "cannot store the bans and mutes in {}: {err}",
                            path.display()
                        ),
                    ));
                }
                failing = true;
            }
        }
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::moderation::SanctionKind;

    fn ban(name: &str, until: u64) -> Sanction {
        Sanction {
            kind: SanctionKind::Ban,
            name: name.into(),
            address: Some("203.0.113.9".into()),
            until,
            by: "op".into(),
            reason: Some("spam".into()),
        }
    }

    #[test]
    fn the_file_sits_beside_the_log() {
        assert_eq!(
            path_beside(Path::new("/var/lib/chat/chat.jsonl")),
            PathBuf::from("/var/lib/chat/chat.jsonl.bans.json")
        );
    }

    #[test]
    fn stored_lists_read_back_and_replace_each_other_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.jsonl.bans.json");
        assert_eq!(load(&path).unwrap(), Vec::new(), "no file: none");
        let first = vec![ban("bob", 10), ban("carol", 20)];
        store(&path, &first).unwrap();
        assert_eq!(load(&path).unwrap(), first);
        store(&path, &first[1..]).unwrap();
        assert_eq!(load(&path).unwrap(), first[1..]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["chat.jsonl.bans.json"], "no temporary file left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_list_of_sanctions_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.jsonl.bans.json");
        for bad in [
            "",
            "[{\"kind\":\"ban\"",
            "{\"kind\":\"ban\"}",
            "[{\"kind\":\"exile\"}]",
        ] {
            fs::write(&path, bad).unwrap();
            let err = load(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        let unreadable = load(dir.path()).unwrap_err();
        assert!(
            unreadable
                .to_string()
                .starts_with("cannot read the bans and mutes in ")
        );
    }

    #[tokio::test]
    async fn the_writer_stores_the_newest_list_and_the_last_one_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.jsonl.bans.json");
        let (keeper, task) = start(path.clone());
        for n in 1..=50 {
            keeper.keep((0..n).map(|i| ban(&format!("u{i}"), 1_000)).collect());
        }
        keeper.keep(vec![ban("last", 5)]);
        drop(keeper);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(load(&path).unwrap(), vec![ban("last", 5)]);
    }

    #[tokio::test]
    async fn a_last_write_that_fails_is_the_writers_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("chat.jsonl.bans.json");
        let (keeper, task) = start(path);
        keeper.keep(vec![ban("bob", 5)]);
        drop(keeper);
        let err = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot store the bans and mutes in "),
            "{err}"
        );
    }
}
