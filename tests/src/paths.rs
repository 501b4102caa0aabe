//! Where things are: the workspace, the cargo target directory, the screenshots, and the
//! `chat-server` binary under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The workspace root (this package's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the test executable (`target/debug`), from `target/debug/deps/X`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/PROFILE/deps")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else where the test executable lives.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        }
        None => profile_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| workspace_root().join("target")),
    }
}

/// Where screenshots go: `target/e2e/`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("e2e")
}

/// The `chat-server` binary: `CHAT_SERVER_BIN`, else the one beside the test executable,
/// built first (once per test process) when it is missing or older than its sources.
pub fn server_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("CHAT_SERVER_BIN") {
                return PathBuf::from(bin);
            }
            let bin = profile_dir().join("chat-server");
            if !bin.exists() || older_than_sources(&bin) {
                eprintln!("building chat-server for the end-to-end tests");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "chat-server", "--bin", "chat-server"])
                    .current_dir(workspace_root())
                    .status()
                    .expect("run cargo build -p chat-server");
                assert!(status.success(), "cargo build -p chat-server failed");
            }
            assert!(bin.exists(), "{} exists after the build", bin.display());
            bin
        })
        .clone()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether a source of the server is newer than `bin` (so that `cargo test -p chat-tests`
/// never runs a stale server).
fn older_than_sources(bin: &Path) -> bool {
    let Some(built) = modified(bin) else {
        return true;
    };
    let root = workspace_root();
    let mut stack = vec![
        root.join("server-native/src"),
        root.join("core/src"),
        root.join("server-native/Cargo.toml"),
        root.join("core/Cargo.toml"),
    ];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(dir) = std::fs::read_dir(&path) {
                stack.extend(dir.flatten().map(|e| e.path()));
            }
        } else if modified(&path).is_some_and(|m| m > built) {
            return true;
        }
    }
    false
}
