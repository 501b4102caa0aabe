//! How long a test waits: for any one thing, and for a whole scenario.

use std::time::{Duration, Instant};

use crate::paths::server_binary;

/// How long a test waits for any one thing it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a whole scenario may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `scenario` with an overall bound of [`TEST_TIMEOUT`]. The server binary is built
/// first, outside the bound: a cold build takes longer than any scenario may.
pub async fn bounded<F: std::future::Future<Output = ()>>(name: &str, scenario: F) {
    server_binary();
    let start = Instant::now();
    if tokio::time::timeout(TEST_TIMEOUT, scenario).await.is_err() {
        panic!("{name} did not finish within {TEST_TIMEOUT:?}");
    }
    eprintln!("{name}: {:.1} s", start.elapsed().as_secs_f64());
}
