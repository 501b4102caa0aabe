//! Where things are: the workspace, the cargo target directory, the screenshots, and the
//! `chat-server` binary under test, which cargo builds for this test run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long building the server may take: a cold build on a small machine, or a wait for
/// another cargo holding the target directory's lock.
const BUILD_WAIT: Duration = Duration::from_secs(600);

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

/// The `chat-server` executable every test runs: the one cargo names after
/// `cargo build -p chat-server --bin chat-server`, run once per test process into the test
/// executable's own target directory and profile. Cargo decides whether anything it is built
/// from changed (sources, `Cargo.lock`, flags) and does nothing when it is fresh, so no test
/// can run a stale server, whichever package's tests run and whatever was built before.
///
/// A failed build fails every test that needs the server, with cargo's messages above.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(build_server) {
        Ok(path) => path,
        Err(err) => panic!("{err}"),
    }
}

/// Runs cargo for [`server_binary`] and reads the executable's path from its JSON messages.
fn build_server() -> Result<PathBuf, String> {
    let profile_dir = profile_dir();
    // `cargo test` puts the dev profile's output in `debug`; any other profile in its name.
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(name) => name.to_owned(),
    };
    let target = profile_dir
        .parent()
        .ok_or("the test executable lives in TARGET/PROFILE/deps")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // What cargo set for this test executable, not for the build: with this package's
    // `CARGO_MANIFEST_DIR`, for one, build scripts that watch it (ring's) would run again, and
    // then again in the next `cargo test`.
    let test_vars = std::env::vars_os().map(|(name, _)| name).filter(|name| {
        let name = name.to_string_lossy();
        name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
    });
    for name in test_vars {
        build.env_remove(name);
    }
    build
        .args(["build", "--package", "chat-server", "--bin", "chat-server"])
        .args([
            "--profile",
            &profile,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(target)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Cargo's progress and any compiler error, for the developer to read.
        .stderr(Stdio::inherit());
    let mut child = build
        .spawn()
        .map_err(|e| format!("cannot run {build:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("cargo's piped stdout")?;
    let messages = std::thread::spawn(move || std::io::read_to_string(stdout));
    let deadline = Instant::now() + BUILD_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{build:?} did not finish within {BUILD_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let messages = messages
        .join()
        .map_err(|_| "the thread reading cargo's messages panicked")?
        .map_err(|e| format!("cannot read cargo's messages: {e}"))?;
    if !status.success() {
        return Err(format!("{build:?} failed ({status}); its errors are above"));
    }
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "chat-server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("{build:?} named no chat-server executable"))
}
