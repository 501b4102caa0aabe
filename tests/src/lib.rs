//! The end-to-end harness: the real `chat-server` binary as a child process (the one cargo
//! built for this run), real `nc` users, `openssl s_client` users when the server speaks TLS
//! (with a certificate made at test time), plain TCP users in blocking code, a headless
//! Chromium driven through chromedriver (WebDriver, with fantoccini), a TCP proxy that can cut
//! connections, a line-oriented child process for WebSocket clients the project did not
//! write, and a Redis of the test's own for several nodes in one room; and the load generator behind `chat-bench`. Every test that runs a process is in
//! this package; the server's own tests (`server-native/tests`) run its library in-process.
//!
//! Every wait is bounded ([`WAIT`]) and a failed wait says what was seen. Every child process
//! is killed when its handle is dropped, also when a test panics.
//!
//! What the tests need beyond cargo (`cargo xtask test` installs and builds it): Debian's
//! `chromium` and `chromium-driver`, `nc` (netcat-openbsd), `openssl`, `haproxy`, `redis-server`,
//! Python 3 with the `websockets` package, and the built page, whose directory is named by `CHAT_WEB_ROOT`. When one is
//! missing a test fails and says so; with `CHAT_E2E_SKIP=1` it prints a loud "SKIPPED" line and
//! passes instead.
//!
//! Environment: `CHAT_WEB_ROOT` (the built page, required by the browser tests),
//! `CHAT_E2E_SKIP=1` (skip when a prerequisite is missing), `CHAT_PYTHON` (the interpreter
//! with `websockets`; by default `python3`). None of the shell's `CHAT_*` variables reaches the
//! server. Screenshots go to `target/e2e/`.
//!
//! # Layout
//!
//! - [`prerequisites`]: what the tests need beyond cargo, and failing or skipping without it.
//! - [`paths`]: the workspace, the target directory, screenshots, the server binary.
//! - [`temp`]: temporary directories and the test certificate.
//! - [`child`]: child processes at a low level: output read by a thread, exits, signals.
//! - [`line_process`]: programs a user types into: `nc`, `openssl s_client`, any other.
//! - [`server`]: the real `chat-server` binary as a child process, and how to start it.
//! - [`peer`]: a plain TCP user in blocking code.
//! - [`page`] and [`browser`]: what the page shows, and the headless Chromium that shows it.
//! - [`proxy`]: a TCP proxy that can cut connections.
//! - [`haproxy`]: a real HAProxy in front of the server, as a child process.
//! - [`redis`]: a real Redis on a free port, as a child process that a test can pause, kill and
//!   start again, and a small blocking client to ask it anything.
//! - [`scenario`]: how long a test waits, for one thing and for a whole scenario.
//! - [`load`]: many clients of either wire in one process.
//! - [`bench`](mod@bench): the load generator behind `chat-bench`.

pub mod bench;
pub mod browser;
pub mod child;
pub mod haproxy;
pub mod line_process;
pub mod load;
pub mod page;
pub mod paths;
pub mod peer;
pub mod prerequisites;
pub mod proxy;
pub mod redis;
pub mod scenario;
pub mod server;
pub mod temp;

pub use browser::Browser;
pub use child::free_port;
pub use haproxy::{HaProxy, haproxy_installed};
pub use line_process::{LineProcess, Nc, nc_path};
pub use page::{Entry, PageState};
pub use paths::{screenshot_dir, server_binary, target_dir, workspace_root};
pub use peer::Peer;
pub use prerequisites::{
    CHROMEDRIVER, CHROMIUM, HAPROXY, OPENSSL, REDIS_SERVER, SCRIPT, browser_installed, missing,
    openssl_installed, python_with_websockets, redis_installed, script_installed, skipping_allowed,
    web_root,
};
pub use proxy::Proxy;
pub use redis::{RedisServer, RespConnection, RespValue};
pub use scenario::{TEST_TIMEOUT, WAIT, bounded};
pub use server::{Server, ServerCommand};
pub use temp::{TempDir, TestCert};
