//! The static site of `--web-root`: which file a request path names, and its content type.
//!
//! Files are opened per request and streamed, not cached at start: `cargo xtask run` may
//! rebuild the web client while the server runs, and a reload should then get the new files
//! without a restart. Streaming keeps each request's memory to one copy buffer however large
//! the file (the wasm bundle is the largest), so no size cap is needed.

use std::path::{Path, PathBuf};

use tokio::fs::File;

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
/// and there is one; the status to answer otherwise.
pub async fn open(root: &Path, path: &str, gzip_ok: bool) -> Result<Found, u16> {
    let relative = resolve(path)?;
    let full = root.join(&relative);
    let content_type = content_type(&full);
    if gzip_ok {
        let mut gz = full.clone().into_os_string();
        gz.push(".gz");
        if let Some((file, len)) = open_file(Path::new(&gz)).await {
            return Ok(Found {
                file,
                len,
                content_type,
                gzip: true,
            });
        }
    }
    let (file, len) = open_file(&full).await.ok_or(404u16)?;
    Ok(Found {
        file,
        len,
        content_type,
        gzip: false,
    })
}

/// A regular file and its length; `None` for anything missing, unreadable or a directory.
async fn open_file(path: &Path) -> Option<(File, u64)> {
    let file = File::open(path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    meta.is_file().then_some((file, meta.len()))
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
