//! A real HAProxy (Debian's `haproxy`) in front of the server: a child process of the test, run
//! in the foreground (`-db`) with a configuration written for it on free ports, never the
//! system's service, and killed by its pid when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::free_port;
use crate::prerequisites::{HAPROXY, missing};
use crate::scenario::WAIT;
use crate::temp::TempDir;

/// `haproxy`, Debian's package.
pub fn haproxy_installed(test: &str) -> Option<()> {
    if Path::new(HAPROXY).exists() {
        Some(())
    } else {
        missing(
            test,
            &format!("{HAPROXY} is missing (Debian package haproxy)"),
        )
    }
}

/// A running HAProxy; killed when dropped.
pub struct HaProxy {
    child: Child,
    _dir: TempDir,
}

impl HaProxy {
    /// Starts HAProxy with `sections` (its frontends and backends) after a `defaults` section
    /// of short timeouts, and waits until it listens: a frontend of its own answers
    /// `GET /ready` once every `bind` of the configuration is bound.
    pub async fn start(label: &str, sections: &str) -> HaProxy {
        let dir = TempDir::new(&format!("haproxy-{label}"));
        let ready = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "global\n    maxconn 256\n\n\
             defaults\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n    \
             timeout tunnel 30s\n\n\
             frontend ready\n    mode http\n    bind {ready}\n    monitor-uri /ready\n\n\
             {sections}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &config).expect("write the HAProxy configuration");
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {HAPROXY}: {e}"));
        let mut haproxy = HaProxy { child, _dir: dir };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited with {status}; its configuration:\n{config}");
            }
            if answers_ready(ready) {
                return haproxy;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy not listening on {ready} in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether HAProxy's monitor frontend at `addr` answers `200`.
fn answers_ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    stream
        .write_all(b"GET /ready HTTP/1.0\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut answer))
        .is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
