//! Reading the files both tools are given or keep (policies, keys,
//! objects, cached blobs), bounded: only regular files, never more than
//! the caller expects. A path that is a FIFO, a device such as /dev/zero,
//! or (where links are refused) a symbolic link gets an error at once
//! instead of a hang or an unbounded read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether a symbolic link at the path itself is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Paths the user gives (a policy, a key, an object): a link to a
    /// regular file is fine.
    Follow,
    /// Files in our own stores (cached blobs): a link there was put by
    /// someone else and is refused.
    Refuse,
}

fn open(path: &Path, links: Links) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if links == Links::Refuse {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads at most `expected + 1` bytes of a regular file: enough for the
/// caller, who knows the size it expects, to tell a longer file from a
/// good one.
pub fn read_at_most(path: &Path, expected: u64, links: Links) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open(path, links)?
        .take(expected.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a regular file of at most `limit` bytes; a longer one is an
/// error that says so, after reading no more than `limit + 1` bytes.
pub fn read_regular(path: &Path, limit: u64, links: Links) -> io::Result<Vec<u8>> {
    let bytes = read_at_most(path, limit, links)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {limit}-byte limit for it"),
        ));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64, links: Links) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit, links)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The 1-based line of byte `offset` in `text` (clamped to its end), for
/// `file:line` in messages about files parsed with spans.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::TempDir::new().expect("tmp");
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").expect("write");
        assert_eq!(
            read_regular(&file, 5, Links::Refuse).expect("read"),
            b"12345"
        );
        assert!(read_regular(&file, 4, Links::Follow).is_err());
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).expect("link");
        assert!(read_regular(&link, 5, Links::Follow).is_ok());
        assert!(read_regular(&link, 5, Links::Refuse).is_err());
        let zero = dir.path().join("z");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("link");
        assert!(read_regular(&zero, 5, Links::Follow).is_err());
        let fifo = dir.path().join("p");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(read_regular(&fifo, 5, Links::Follow).is_err(), "no hang");
        assert!(read_regular(dir.path(), 5, Links::Follow).is_err());
    }
}
