//! The static site of `--web-root`: which file a request path names, its content type, and
//! opening it so that only a regular file below the root is ever served.
//!
//! Files are opened per request and streamed, not cached at start: `cargo xtask run` may
//! rebuild the web client while the server runs, and a reload should then get the new files
//! without a restart. Streaming keeps each request's memory to one copy buffer however large
//! the file (the wasm bundle is the largest), so no size cap is needed.
//!
//! Opening never waits: a FIFO opened for reading waits for a writer, for ever, holding a
//! thread of the blocking pool and the request's HTTP connection. So a file is opened with
//! `O_NONBLOCK` (a FIFO opens at once, a socket fails) and served only if `fstat` then says it
//! is a regular file; FIFOs, sockets, devices and directories are `404`. Opening is bounded in
//! time all the same ([`OPEN_TIMEOUT`]), for a file system that hangs.
//!
//! Nor does a path leave the root. On Linux it is resolved by `openat2` with `RESOLVE_BENEATH`
//! against the root's descriptor: the kernel refuses, without a race, any symbolic link (or
//! `..` inside one) that would lead out, and any absolute link, even one pointing back inside;
//! relative links that stay below the root are followed. Where `openat2` is missing (another
//! system, Linux before 5.6, a seccomp filter that refuses it) the path is made canonical and
//! must lie below the root's canonical path; a link changed between that check and the open
//! could still lead out there, which only someone who can write the web root can do.

use std::fs::File as StdFile;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::fs::File;

/// How long opening a file may take, from the request on (waiting for a thread of the blocking
/// pool included), before the answer is `503`: a file system that hangs costs a request its
/// file, never its answer.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// An open file to send.
#[derive(Debug)]
pub struct Found {
    pub file: File,
    pub len: u64,
    pub content_type: &'static str,
    /// The file is the gzip-compressed `NAME.gz` beside the one asked for.
    pub gzip: bool,
}

/// The relative path a request path names under the web root: `/` and any path ending in `/`
/// name that directory's `index.html`. Only plain names are allowed: `%`-escapes are decoded
/// per segment, and a segment that is (or decodes to) `.`, `..`, or that holds `/`, `\`, `:`,
/// NUL or another control character is refused with 400. Names starting with `.` are never
/// served (404).
pub fn resolve(path: &str) -> Result<PathBuf, u16> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let Some(path) = path.strip_prefix('/') else {
        return Err(400);
    };
    let mut relative = PathBuf::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            if i + 1 == segments.len() {
                relative.push("index.html");
                break;
            }
            return Err(400); // `//`
        }
        let decoded = percent_decode(segment).ok_or(400u16)?;
        let name = String::from_utf8(decoded).map_err(|_| 400u16)?;
        if name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
        {
            return Err(400);
        }
        if name.starts_with('.') {
            return Err(404);
        }
        relative.push(name);
    }
    Ok(relative)
}

/// Decodes `%XX` escapes; `None` for a malformed one.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// The content type of a file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Opens the file `path` names under `root`, or its `.gz` sibling when the client takes gzip
/// and there is one; the status to answer otherwise: `404` for anything but a regular file
/// below the root, `503` when opening takes longer than [`OPEN_TIMEOUT`].
pub async fn open(root: &Path, path: &str, gzip_ok: bool) -> Result<Found, u16> {
    let relative = resolve(path)?;
    let content_type = content_type(&relative);
    let root = root.to_path_buf();
    let opening = tokio::task::spawn_blocking(move || open_blocking(&root, &relative, gzip_ok));
    match tokio::time::timeout(OPEN_TIMEOUT, opening).await {
        Ok(Ok(Some((file, len, gzip)))) => Ok(Found {
            file: File::from_std(file),
            len,
            content_type,
            gzip,
        }),
        Ok(Ok(None)) => Err(404),
        Ok(Err(err)) => {
            tracing::warn!(%err, path, "opening a file of --web-root failed");
            Err(500)
        }
        Err(_) => {
            tracing::warn!(
                path,
                "opening a file of --web-root took longer than {OPEN_TIMEOUT:?}"
            );
            Err(503)
        }
    }
}

/// [`open`]'s work, on a thread of the blocking pool: the file, its length, and whether it is
/// the `.gz` sibling.
fn open_blocking(root: &Path, relative: &Path, gzip_ok: bool) -> Option<(StdFile, u64, bool)> {
    if gzip_ok {
        let mut gz = relative.as_os_str().to_owned();
        gz.push(".gz");
        if let Some((file, len)) = open_regular(root, Path::new(&gz)) {
            return Some((file, len, true));
        }
    }
    open_regular(root, relative).map(|(file, len)| (file, len, false))
}

/// A regular file below `root` and its length; `None` for anything missing, unreadable,
/// outside the root, or not a regular file (a directory, a FIFO, a socket, a device).
fn open_regular(root: &Path, relative: &Path) -> Option<(StdFile, u64)> {
    let file = open_below(root, relative).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta.len()))
}

/// Opens `relative` for reading, without waiting, if it resolves to something below `root`.
#[cfg(target_os = "linux")]
fn open_below(root: &Path, relative: &Path) -> io::Result<StdFile> {
    match open_beneath(root, relative) {
        // No openat2 here: a kernel before 5.6, or a seccomp filter that refuses it.
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            open_canonical(root, relative)
        }
        opened => opened,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_below(root: &Path, relative: &Path) -> io::Result<StdFile> {
    open_canonical(root, relative)
}

/// Opens `relative` for reading, without waiting, resolved by the kernel below `root`
/// (`openat2` with `RESOLVE_BENEATH`): a path that would lead out fails with `EXDEV`.
#[cfg(target_os = "linux")]
fn open_beneath(root: &Path, relative: &Path) -> io::Result<StdFile> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;

    /// `struct open_how` of `linux/openat2.h` (the libc crate's cannot be built outside it).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    // O_PATH: the root is only a place to resolve from; nothing of it is opened.
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(root)?;
    let name = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) reads the NUL-terminated `name` and the `how` of the size given, both
    // alive across the call, and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: `fd` was just opened by openat2 and belongs to nothing else.
    Ok(unsafe { StdFile::from_raw_fd(fd) })
}

/// Opens `relative` for reading, without waiting, if its canonical path (every link followed)
/// lies below the canonical path of `root`: the portable check, racy where openat2 is not.
fn open_canonical(root: &Path, relative: &Path) -> io::Result<StdFile> {
    let root = root.canonicalize()?;
    let full = root.join(relative).canonicalize()?;
    if !full.starts_with(&root) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "outside the web root",
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    options.open(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_paths_resolve() {
        assert_eq!(resolve("/"), Ok(PathBuf::from("index.html")));
        assert_eq!(resolve("/?v=2"), Ok(PathBuf::from("index.html")));
        assert_eq!(resolve("/pkg/app.js"), Ok(PathBuf::from("pkg/app.js")));
        assert_eq!(resolve("/pkg/"), Ok(PathBuf::from("pkg/index.html")));
        assert_eq!(
            resolve("/my%20page.html"),
            Ok(PathBuf::from("my page.html"))
        );
    }

    #[test]
    fn traversal_and_tricks_are_refused() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2e%2fetc",
            "/a%2fb",
            "/a%5cb",
            "/..\\x",
            "/a\\b",
            "/a%00b",
            "/x%zz",
            "/x%4",
            "//etc/passwd",
            "/c:/x",
            "/%ff",
            "etc/passwd",
            "*",
        ] {
            assert_eq!(resolve(bad), Err(400), "{bad}");
        }
        assert_eq!(resolve("/.git/config"), Err(404));
        assert_eq!(resolve("/%2egit"), Err(404));
    }

    /// A web root beside a secret file: a file, links that stay inside it and links that lead
    /// out, a FIFO and a socket. The socket lives as long as its listener.
    #[cfg(unix)]
    fn hostile_root() -> (tempfile::TempDir, PathBuf, std::os::unix::net::UnixListener) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/app.js"), "export{}").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "do not serve").unwrap();
        for (target, link) in [
            (Path::new("pkg/app.js"), "alias.js"),
            (Path::new("pkg"), "lib"),
            (Path::new("/"), "rootfs"),
            (Path::new("../secret.txt"), "up.txt"),
            (Path::new("pkg/../../secret.txt"), "sneaky.txt"),
            (&dir.path().join("secret.txt"), "abs.txt"),
            (&root.join("pkg/app.js"), "abs-inside.js"),
        ] {
            symlink(target, root.join(link)).unwrap();
        }
        let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, alive across the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
        (dir, root, socket)
    }

    /// One way of opening a path below a root.
    #[cfg(unix)]
    type Opener = fn(&Path, &Path) -> io::Result<StdFile>;

    /// What `open` makes of `relative` below `root`, on a thread of its own, so that an open that
    /// waits fails the test instead of hanging it.
    #[cfg(unix)]
    fn served(open: Opener, root: &Path, relative: &str) -> Option<String> {
        use std::io::Read;
        let (root, path) = (root.to_path_buf(), PathBuf::from(relative));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let content = open(&root, &path).ok().and_then(|mut file| {
                let meta = file.metadata().ok()?;
                let mut content = String::new();
                meta.is_file().then_some(())?;
                file.read_to_string(&mut content).ok()?;
                Some(content)
            });
            let _ = tx.send(content);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("opening {relative:?} waited"))
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_below_the_root_are_opened_links_inside_it_followed() {
        let (_dir, root, _socket) = hostile_root();
        let ways: [(&str, Opener); 2] = [
            ("open_below", open_below),
            ("open_canonical", open_canonical),
        ];
        for (way, open) in ways {
            for inside in ["pkg/app.js", "alias.js", "lib/app.js"] {
                assert_eq!(
                    served(open, &root, inside).as_deref(),
                    Some("export{}"),
                    "{way} {inside}"
                );
            }
            for refused in [
                "rootfs/etc/passwd",
                "rootfs/etc/hostname",
                "up.txt",
                "sneaky.txt",
                "abs.txt",
                "pipe",
                "socket",
                "pkg",
                "missing",
            ] {
                assert_eq!(served(open, &root, refused), None, "{way} {refused}");
            }
        }
        // An absolute link back inside: the canonical check follows it, the kernel's refuses
        // every absolute link.
        assert_eq!(
            served(open_canonical, &root, "abs-inside.js").as_deref(),
            Some("export{}")
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(served(open_beneath, &root, "abs-inside.js"), None);
            let inside = served(open_beneath, &root, "alias.js");
            assert_eq!(
                inside.as_deref(),
                Some("export{}"),
                "openat2 needs Linux 5.6"
            );
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_fifo_or_a_socket_is_404_and_a_fifo_beside_a_file_is_skipped_for_it() {
        let (_dir, root, _socket) = hostile_root();
        for path in ["/socket", "/pipe", "/pkg", "/rootfs/etc/passwd", "/up.txt"] {
            assert_eq!(open(&root, path, true).await.err(), Some(404), "{path}");
        }
        std::fs::rename(root.join("pipe"), root.join("pkg/app.js.gz")).unwrap();
        let found = open(&root, "/pkg/app.js", true).await.unwrap();
        assert!(!found.gzip);
        assert_eq!(
            (found.len, found.content_type),
            (8, "text/javascript; charset=utf-8")
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (name, want) in [
            ("index.html", "text/html; charset=utf-8"),
            ("style.CSS", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("app_bg.wasm", "application/wasm"),
            ("logo.svg", "image/svg+xml"),
            ("logo.png", "image/png"),
            ("favicon.ico", "image/x-icon"),
            ("data.json", "application/json"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("blob", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }
}
