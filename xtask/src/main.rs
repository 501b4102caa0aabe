//! `cargo xtask`: the project's two everyday commands, with nothing but cargo needed.
//!
//! - `cargo xtask run [-- SERVER FLAGS]`: builds the server in release mode and starts it
//!   with its defaults (nc on 127.0.0.1:8888, the page on http://127.0.0.1:8080).
//! - `cargo xtask test`: installs what the tests need when it is missing, then checks
//!   formatting, lints, the core's wasm build and dependency tree, and runs every test.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Crates that would mean native I/O slipped into the sans-IO core.
const FORBIDDEN_IN_CORE: &[&str] = &["tokio", "mio", "socket2", "getrandom"];
const WASM_TARGET: &str = "wasm32-unknown-unknown";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") | Some("ci") => test(),
        _ => {
            eprintln!(
                "usage:\n  cargo xtask run [-- SERVER FLAGS]   build and start the server\n  \
                 cargo xtask test                    install what is missing, run every check and test"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(server_args: &[String]) -> Result {
    let server_args = match server_args.first().map(String::as_str) {
        Some("--") => &server_args[1..],
        _ => server_args,
    };
    cargo(&["build", "--release", "-p", "chat-server"])?;
    let binary = target_dir().join("release").join("chat-server");
    step(&format!("starting {}", binary.display()));
    eprintln!("chat with: nc 127.0.0.1 8888   (stop the server with Ctrl-C)");
    let mut server = Command::new(&binary);
    server.args(server_args);
    // Become the server, so that Ctrl-C reaches it alone and the shell waits for its
    // graceful shutdown.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = server.exec();
        Err(format!("cannot start {}: {err}", binary.display()))
    }
    #[cfg(not(unix))]
    {
        let status = server
            .status()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        check(
            status.success(),
            &format!("chat-server exited with {status}"),
        )
    }
}

fn test() -> Result {
    step("prerequisites");
    ensure_rustup_component("rustfmt", &["fmt", "--version"])?;
    ensure_rustup_component("clippy", &["clippy", "--version"])?;
    ensure_wasm_target()?;
    ensure_nc()?;

    step("formatting");
    cargo(&["fmt", "--all", "--check"])?;
    step("lints");
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    step("chat-core builds for wasm32 with no native I/O in its tree");
    cargo(&["build", "-p", "chat-core", "--target", WASM_TARGET])?;
    check_core_tree()?;
    step("documentation");
    let status = Command::new(cargo_bin())
        .args(["doc", "--workspace", "--no-deps", "--quiet"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo doc: {e}"))?;
    check(status.success(), "cargo doc found broken documentation")?;
    // Last, so that the summary of the tests closes the output.
    step("tests");
    run_tests()
}

/// Runs every test, echoing the output, and closes with one line adding up all test binaries.
fn run_tests() -> Result {
    let mut child = Command::new(cargo_bin())
        .args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cannot read cargo test's output: {e}"))?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            passed += count(counts, " passed");
            failed += count(counts, " failed");
            ignored += count(counts, " ignored");
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    println!("\ntests: {passed} passed, {failed} failed, {ignored} skipped");
    check(status.success() && failed == 0, "some tests failed")?;
    check(passed > 0, "no test ran")
}

/// The number before `label` in a `test result:` line (`ok. 3 passed; 0 failed; ...`).
fn count(counts: &str, label: &str) -> u64 {
    counts
        .split(';')
        .find_map(|part| part.trim_end().strip_suffix(label))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn check_core_tree() -> Result {
    let out = Command::new(cargo_bin())
        .args([
            "tree",
            "-p",
            "chat-core",
            "--target",
            WASM_TARGET,
            "-e",
            "normal",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    check(out.status.success(), "cargo tree failed")?;
    let tree = String::from_utf8_lossy(&out.stdout);
    let mut crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    crates.sort_unstable();
    crates.dedup();
    let found: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|name| FORBIDDEN_IN_CORE.contains(name))
        .collect();
    check(
        found.is_empty(),
        &format!("chat-core's wasm dependency tree holds {found:?}; the core must stay sans-IO"),
    )?;
    println!("chat-core's wasm dependency tree: {}", crates.join(", "));
    Ok(())
}

fn ensure_rustup_component(component: &str, probe: &[&str]) -> Result {
    if Command::new(cargo_bin())
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    install(&["rustup", "component", "add", component])
}

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|t| t == WASM_TARGET)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    install(&["rustup", "target", "add", WASM_TARGET])
}

fn ensure_nc() -> Result {
    if ["/usr/bin/nc", "/bin/nc", "/usr/local/bin/nc"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        return Ok(());
    }
    let how = "apt-get update && apt-get install -y netcat-openbsd";
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    check(
        is_root && Path::new("/usr/bin/apt-get").exists(),
        &format!("the tests drive the real nc; install it as root with: {how}"),
    )?;
    install(&["apt-get", "update", "-qq"])?;
    install(&["apt-get", "install", "-y", "-qq", "netcat-openbsd"])
}

fn install(command: &[&str]) -> Result {
    eprintln!("installing: {}", command.join(" "));
    let status = Command::new(command[0])
        .args(&command[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    check(status.success(), &format!("`{}` failed", command.join(" ")))
}

fn cargo(args: &[&str]) -> Result {
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    check(
        status.success(),
        &format!("`cargo {}` failed", args.join(" ")),
    )
}

fn check(ok: bool, err: &str) -> Result {
    if ok { Ok(()) } else { Err(err.to_owned()) }
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

fn cargo_bin() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}
