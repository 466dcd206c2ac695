//! One `bpfman-load` at a time per root: an exclusive `flock` on
//! `<root>/lock`. The holder writes who it is into the file, so a waiting
//! invocation can say whom it waits for. The kernel drops the lock when the
//! holder exits, however it exits (`kill -9` included): no stale locks.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the lock file '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "gave up after {waited:?} waiting for the lock on '{path}', held by {holder}; wait for it to finish, or raise --lock-timeout"
    )]
    Timeout {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
}

/// The held lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Who holds the lock, as its holder wrote it.
fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut s));
    match s.trim() {
        "" => "another bpfman-load (it has not said who it is yet)".into(),
        who => who.to_string(),
    }
}

impl Lock {
    /// Takes the lock on `root`, waiting up to `timeout`. While it waits it
    /// calls `waiting` once with the holder's description.
    pub fn acquire(
        root: &Path,
        timeout: Duration,
        mut waiting: impl FnMut(&str),
    ) -> Result<Self, LockError> {
        let path = root.join("lock");
        let err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if !told {
                        waiting(&holder(&mut file));
                        told = true;
                    }
                    if start.elapsed() >= timeout {
                        return Err(LockError::Timeout {
                            holder: holder(&mut file),
                            path,
                            waited: start.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        let args: Vec<String> = std::env::args().collect();
        let who = format!(
            "pid {} ({}) since {}",
            std::process::id(),
            args.join(" "),
            crate::cache::now()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(err)?;
        let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_names_the_holder_and_times_out() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = Lock::acquire(dir.path(), Duration::ZERO, |_| {}).expect("first");
        let mut seen = String::new();
        let e = Lock::acquire(dir.path(), Duration::from_millis(200), |h| {
            seen = h.to_string();
        })
        .expect_err("held");
        assert!(
            seen.starts_with(&format!("pid {}", std::process::id())),
            "{seen}"
        );
        assert!(e.to_string().contains("gave up after"), "{e}");
        drop(first);
        Lock::acquire(dir.path(), Duration::ZERO, |_| {}).expect("free again");
    }
}
