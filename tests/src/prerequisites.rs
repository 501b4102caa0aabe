//! What the end-to-end tests need beyond cargo, and what a test does when it is missing: fail
//! with a pointer to `cargo xtask test`, or with `CHAT_E2E_SKIP=1` say "SKIPPED" and pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const OPENSSL: &str = "/usr/bin/openssl";
pub const SCRIPT: &str = "/usr/bin/script";
pub const HAPROXY: &str = "/usr/sbin/haproxy";
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Whether `CHAT_E2E_SKIP=1` asks to skip tests whose prerequisites are missing.
pub fn skipping_allowed() -> bool {
    std::env::var("CHAT_E2E_SKIP").is_ok_and(|v| v == "1")
}

/// A prerequisite is missing: fails the test, or with `CHAT_E2E_SKIP=1` prints a loud line
/// and returns `None` so that the test can return.
pub fn missing<T>(test: &str, what: &str) -> Option<T> {
    if skipping_allowed() {
        // Straight to stderr, past the test harness's capture, so that it is always seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED {test}: {what} (CHAT_E2E_SKIP=1; run `cargo xtask test` to run it) !!!!!!!!\n"
        );
        None
    } else {
        panic!(
            "{test} cannot run: {what}.\n\
             Run `cargo xtask test`, which installs Chromium, chromedriver, HAProxy, Redis and \
             Python's websockets and builds the page; or set CHAT_E2E_SKIP=1 to skip the end-to-end tests."
        )
    }
}

/// Returns early from a test when a prerequisite is missing and skipping is allowed.
#[macro_export]
macro_rules! require {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// The built page: the directory in `CHAT_WEB_ROOT`, which must hold `index.html`.
pub fn web_root(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("CHAT_WEB_ROOT") else {
        return missing(
            test,
            "CHAT_WEB_ROOT is not set (it names the built page, target/site)",
        );
    };
    let dir = PathBuf::from(dir);
    if !dir.join("index.html").is_file() {
        return missing(
            test,
            &format!(
                "CHAT_WEB_ROOT={} holds no index.html (build the page with `cargo xtask site`)",
                dir.display()
            ),
        );
    }
    Some(dir)
}

/// Chromium and chromedriver, Debian's packages.
pub fn browser_installed(test: &str) -> Option<()> {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(path).exists() {
            return missing(
                test,
                &format!("{path} is missing (Debian package {package})"),
            );
        }
    }
    Some(())
}

/// `openssl`, Debian's package, for `s_client` users.
pub fn openssl_installed(test: &str) -> Option<()> {
    if Path::new(OPENSSL).exists() {
        Some(())
    } else {
        missing(
            test,
            &format!("{OPENSSL} is missing (Debian package openssl)"),
        )
    }
}

/// `script`, util-linux's (Debian's `bsdutils`), which runs a program on a terminal of its own.
pub fn script_installed(test: &str) -> Option<()> {
    if Path::new(SCRIPT).exists() {
        Some(())
    } else {
        missing(
            test,
            &format!("{SCRIPT} is missing (Debian package bsdutils)"),
        )
    }
}

/// `redis-server`, Debian's package, for the cluster tests (each starts its own on a free
/// port; see [`crate::redis`]).
pub fn redis_installed(test: &str) -> Option<()> {
    if Path::new(REDIS_SERVER).exists() {
        Some(())
    } else {
        missing(
            test,
            &format!("{REDIS_SERVER} is missing (Debian package redis-server)"),
        )
    }
}

/// The Python interpreter (`CHAT_PYTHON`, else `python3` from PATH) if it has `websockets`.
pub fn python_with_websockets(test: &str) -> Option<String> {
    let python = std::env::var("CHAT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(python)
    } else {
        missing(
            test,
            &format!("`{python}` cannot import websockets (pip package websockets)"),
        )
    }
}
