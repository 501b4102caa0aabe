//! Opening the log file: for appending, created if missing, with an unfinished last line (a
//! crash mid-write) cut off and the directory entry made durable.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Block size of the backwards reads: the torn tail here, the history in `history`.
pub(super) const READ_BLOCK: usize = 64 * 1024;

/// Opens `path` for appending, creating it, and cuts an unfinished last line off; returns the
/// file and its length.
pub(super) fn open_log_file(path: &Path) -> io::Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let cut = cut_torn_tail(&mut file)?;
    if cut > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = cut,
            "the message log ended in an unfinished line (a crash or a full disk while writing); \
             cut it off"
        );
    }
    sync_parent(path);
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Truncates `file` after its last newline when it does not end with one; returns the
/// number of bytes cut. Reads backwards in blocks, never the whole file.
pub(super) fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = vec![0u8; READ_BLOCK];
    while end > 0 {
        let start = end.saturating_sub(READ_BLOCK as u64);
        let block = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(block)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep == len {
                return Ok(0);
            }
            end = keep;
            break;
        }
        end = start;
    }
    file.set_len(end)?;
    file.sync_data()?;
    Ok(len - end)
}

/// Makes a created or renamed file's directory entry durable; best effort.
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(%err, dir = %dir.display(), "cannot sync the log's directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::testing::{line, temp_dir};
    use std::fs;
    use std::io::Write;

    /// The file at `path`, opened the way [`open_log_file`] opens it but cut by nobody.
    fn open_uncut(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_newline() {
        let dir = temp_dir("torn");
        let path = dir.join("log.jsonl");
        let whole = format!("{}{}", line(1, "one"), line(2, "two"));
        let torn = "{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"mess";
        fs::write(&path, format!("{whole}{torn}")).unwrap();
        let (mut file, len) = open_log_file(&path).unwrap();
        assert_eq!(len, whole.len() as u64);
        assert_eq!(fs::read_to_string(&path).unwrap(), whole);
        // Appending goes on at the cut.
        file.write_all(line(3, "three").as_bytes()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{whole}{}", line(3, "three"))
        );

        // Nothing to cut; a file with no newline at all is emptied; longer than a block.
        let mut f = open_uncut(&path);
        assert_eq!(cut_torn_tail(&mut f).unwrap(), 0);
        let long = "y".repeat(3 * READ_BLOCK + 5);
        fs::write(&path, &long).unwrap();
        let mut f = open_uncut(&path);
        assert_eq!(cut_torn_tail(&mut f).unwrap(), long.len() as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        fs::write(&path, format!("a\n{long}")).unwrap();
        let mut f = open_uncut(&path);
        assert_eq!(cut_torn_tail(&mut f).unwrap(), long.len() as u64);
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\n");
    }
}
