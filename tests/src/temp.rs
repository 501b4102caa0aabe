//! What a test makes on disk and removes when dropped: temporary directories, and a
//! self-signed certificate in one.

use std::path::{Path, PathBuf};

/// A directory of its own for one test, `chat-e2e-LABEL-XXXXXX` in the system's temporary
/// directory, removed with everything in it when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chat-e2e-{label}-"))
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `name` inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, made at test time, and its
/// key, as PEM files in a directory removed when dropped.
pub struct TestCert {
    dir: TempDir,
    /// The certificate, DER-encoded, for a client that trusts it and nothing else.
    der: Vec<u8>,
}

impl TestCert {
    pub fn new(label: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("make a certificate");
        let dir = TempDir::new(&format!("cert-{label}"));
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem())
            .expect("write key.pem");
        TestCert {
            dir,
            der: made.cert.der().to_vec(),
        }
    }

    /// The certificate's PEM file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The key's PEM file.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `--tls-cert CERT --tls-key KEY`, for [`crate::server::ServerCommand::args`].
    pub fn flags(&self) -> Vec<String> {
        [("--tls-cert", self.cert()), ("--tls-key", self.key())]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect()
    }
}
