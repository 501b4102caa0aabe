//! What a test makes on disk and removes when dropped: temporary directories, and a
//! self-signed certificate in one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "chat-e2e-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, made at test time, and its
/// key, as PEM files in a directory removed when dropped.
pub struct TestCert {
    dir: TempDir,
}

impl TestCert {
    pub fn new(label: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("make a certificate");
        let dir = TempDir::new(&format!("cert-{label}"));
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem())
            .expect("write key.pem");
        TestCert { dir }
    }

    /// `--tls-cert CERT --tls-key KEY`, for [`Server::start`].
    pub fn flags(&self) -> Vec<String> {
        ["cert", "key"]
            .iter()
            .flat_map(|what| {
                let path = self.dir.path().join(format!("{what}.pem"));
                [format!("--tls-{what}"), path.display().to_string()]
            })
            .collect()
    }
}
