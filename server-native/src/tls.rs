//! Optional TLS for both listeners (`--tls-cert`, `--tls-key`), with rustls and its `ring`
//! provider. The handshake runs in each connection's own task, after admission, bounded by
//! [`HANDSHAKE_TIMEOUT`], so that a slow client never holds up accepting. What comes out is a
//! [`Stream`], plain or TLS, over which `line.rs`, `http/` and `websocket.rs` run the
//! same code.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// How long a client may take over the TLS handshake before it is dropped without a word.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection, plain TCP or TLS over TCP. The TLS state (over a kilobyte) is boxed,
/// so that a plain connection, which is in every connection's task and split halves, stays the
/// size of a `TcpStream`.
pub type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The TLS settings of the two listeners: one certificate, two sets of protocols.
#[derive(Clone)]
pub struct Tls {
    /// The line listener: no ALPN (openssl s_client and `ncat --ssl` ask for none).
    pub line: TlsAcceptor,
    /// The HTTP listener: ALPN `http/1.1` only, so that a browser never tries HTTP/2.
    pub http: TlsAcceptor,
}

impl Tls {
    /// Reads the PEM certificate chain (leaf first) and private key; the error names the flag
    /// and the file at fault.
    pub fn load(cert: &Path, key: &Path) -> io::Result<Tls> {
        let chain = read_pem(cert, "--tls-cert")?;
        let chain = CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| not_pem(cert, "--tls-cert", &err))?;
        if chain.is_empty() {
            return Err(invalid(format!(
                "--tls-cert {} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)",
                cert.display()
            )));
        }
        let private = read_pem(key, "--tls-key")?;
        let private = PrivateKeyDer::from_pem_slice(&private).map_err(|err| match err {
            pem::Error::NoItemsFound => invalid(format!(
                "--tls-key {} holds no unencrypted private key (PEM, -----BEGIN PRIVATE KEY-----, \
                 or RSA PRIVATE KEY or EC PRIVATE KEY)",
                key.display()
            )),
            err => not_pem(key, "--tls-key", &err),
        })?;
        let line = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid(format!("TLS cannot be set up: {err}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => invalid(format!(
                    "--tls-key {} is not the private key of the certificate in --tls-cert {}",
                    key.display(),
                    cert.display()
                )),
                err => invalid(format!(
                    "cannot use --tls-cert {} with --tls-key {}: {err}",
                    cert.display(),
                    key.display()
                )),
            })?;
        let mut http = line.clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            line: TlsAcceptor::from(Arc::new(line)),
            http: TlsAcceptor::from(Arc::new(http)),
        })
    }
}

fn read_pem(path: &Path, flag: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot read {flag} {}: {err}", path.display()),
        )
    })
}

fn not_pem(path: &Path, flag: &str, err: &pem::Error) -> io::Error {
    invalid(format!("{flag} {} is not valid PEM: {err}", path.display()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The connection as it is without `acceptor`; with it, the connection after a TLS handshake,
/// or `None` when the handshake fails, takes longer than [`HANDSHAKE_TIMEOUT`] or the server
/// stops meanwhile. A failure is only worth a debug line: a plain `nc` to a TLS port, say.
pub async fn accept(
    acceptor: Option<&TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) -> Option<Stream> {
    match acceptor {
        None => Some(Either::Left(stream)),
        // Boxed, so that the handshake's state (as big as a TLS stream) is not part of every
        // connection's task, plain ones included, for its whole life.
        Some(acceptor) => Box::pin(handshake(acceptor, stream, peer, stop))
            .await
            .map(|stream| Either::Right(Box::new(stream))),
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: S,
    peer: SocketAddr,
    stop: &CancellationToken,
) -> Option<TlsStream<S>> {
    tokio::select! {
        () = stop.cancelled() => None,
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(err)) => {
                tracing::debug!(%peer, %err, "tls handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "tls handshake timed out");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::*;

    /// A directory of PEM files, removed when dropped.
    struct Files(PathBuf);

    impl Files {
        fn new() -> Files {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "chat-tls-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
    }

    fn load_error(cert: &Path, key: &Path) -> String {
        match Tls::load(cert, key) {
            Ok(_) => panic!("{} and {} load", cert.display(), key.display()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn bad_files_are_refused_naming_the_flag_and_the_file() {
        let files = Files::new();
        let one = self_signed();
        let cert = files.write("cert.pem", &one.cert.pem());
        let key = files.write("key.pem", &one.signing_key.serialize_pem());
        assert!(Tls::load(&cert, &key).is_ok());

        let missing = files.0.join("nowhere.pem");
        let err = load_error(&missing, &key);
        assert!(err.starts_with("cannot read --tls-cert "), "{err}");
        assert!(err.contains("nowhere.pem"), "{err}");
        let err = load_error(&cert, &missing);
        assert!(err.starts_with("cannot read --tls-key "), "{err}");

        // The two files swapped: neither holds what its flag needs.
        let err = load_error(&key, &cert);
        assert!(err.starts_with("--tls-cert "), "{err}");
        assert!(err.contains("key.pem holds no certificate"), "{err}");
        let err = load_error(&cert, &cert);
        assert!(
            err.contains("--tls-key ") && err.contains("holds no"),
            "{err}"
        );

        let broken = files.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let err = load_error(&broken, &key);
        assert!(err.contains("broken.pem is not valid PEM"), "{err}");

        // A key that is not the certificate's.
        let other = files.write("other.pem", &self_signed().signing_key.serialize_pem());
        let err = load_error(&cert, &other);
        assert!(err.starts_with("--tls-key "), "{err}");
        assert!(
            err.contains("other.pem is not the private key of the certificate"),
            "{err}"
        );
    }

    fn tls_pair() -> (Tls, TlsConnector) {
        let files = Files::new();
        let one = self_signed();
        let cert = files.write("cert.pem", &one.cert.pem());
        let key = files.write("key.pem", &one.signing_key.serialize_pem());
        let tls = Tls::load(&cert, &key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(one.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (tls, TlsConnector::from(Arc::new(client)))
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[tokio::test]
    async fn a_handshake_gives_a_stream_that_carries_bytes() {
        let (tls, connector) = tls_pair();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let stop = CancellationToken::new();
        let name = ServerName::try_from("localhost").unwrap();
        let (client, server) = tokio::join!(
            connector.connect(name, client),
            handshake(&tls.line, server, peer(), &stop)
        );
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        server.write_all(b"Enter your name: ").await.unwrap();
        server.flush().await.unwrap();
        let mut prompt = [0u8; 17];
        client.read_exact(&mut prompt).await.unwrap();
        assert_eq!(&prompt, b"Enter your name: ");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
        let (tls, _) = tls_pair();
        let (_client, server) = tokio::io::duplex(1024);
        let start = tokio::time::Instant::now();
        let stop = CancellationToken::new();
        assert!(handshake(&tls.line, server, peer(), &stop).await.is_none());
        assert_eq!(start.elapsed(), HANDSHAKE_TIMEOUT);
    }

    #[tokio::test]
    async fn plain_text_fails_the_handshake_at_once_and_so_does_stopping() {
        let (tls, _) = tls_pair();
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"alice\n").await.unwrap();
        let stop = CancellationToken::new();
        let failed = tokio::time::timeout(
            Duration::from_secs(5),
            handshake(&tls.line, server, peer(), &stop),
        );
        assert!(failed.await.expect("fails at once").is_none());

        let (_client, server) = tokio::io::duplex(1024);
        stop.cancel();
        let stopped = tokio::time::timeout(
            Duration::from_secs(5),
            handshake(&tls.line, server, peer(), &stop),
        );
        assert!(stopped.await.expect("ends at once").is_none());
    }
}
