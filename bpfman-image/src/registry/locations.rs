//! Where blobs were last seen: for each registry, the repositories that
//! hold each digest, learnt from pushes and pulls. A push to another
//! repository of the same registry then asks the registry to mount the
//! blob from one of them (`POST .../blobs/uploads/?mount=D&from=R`)
//! instead of sending it again, as skopeo's blob-info cache does.
//!
//! Only a cache: losing it, or a registry that declines the mount (the
//! blob was deleted, the token may not read the other repository), costs
//! an upload and nothing else. Reads and writes are best effort and never
//! fail an operation; the file is replaced atomically. It holds digests
//! and repository names, no credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Repositories remembered per blob.
const REPOS_PER_BLOB: usize = 4;
/// Blobs remembered per registry (the oldest are dropped first).
const BLOBS_PER_REGISTRY: usize = 4096;

type Map = BTreeMap<String, BTreeMap<String, Entry>>;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// Most recent first.
    repos: Vec<String>,
    /// A counter, not a clock: higher is newer.
    seen: u64,
}

/// The cache file and what it holds.
#[derive(Debug)]
pub struct BlobLocations {
    path: PathBuf,
    state: Mutex<(Map, bool)>,
}

impl BlobLocations {
    /// The default file: `$XDG_CACHE_HOME/bpfman-image/blob-locations.json`,
    /// else under `$HOME/.cache`.
    pub fn default_path() -> Option<PathBuf> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("bpfman-image/blob-locations.json"))
    }

    /// Opens the cache at `path`; a missing or unreadable file is empty.
    pub fn open(path: PathBuf) -> Self {
        let map = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            state: Mutex::new((map, false)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Map, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Repositories of `registry` other than `except` known to hold
    /// `digest`, most recent first.
    pub fn known(&self, registry: &str, digest: &str, except: &str) -> Vec<String> {
        self.lock()
            .0
            .get(registry)
            .and_then(|blobs| blobs.get(digest))
            .map(|e| e.repos.iter().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }

    /// Remembers that `repo` on `registry` holds `digest`.
    pub fn record(&self, registry: &str, digest: &str, repo: &str) {
        let mut guard = self.lock();
        let (map, dirty) = &mut *guard;
        let blobs = map.entry(registry.to_string()).or_default();
        let newest = blobs.values().map(|e| e.seen).max().unwrap_or(0) + 1;
        let entry = blobs.entry(digest.to_string()).or_default();
        if entry.repos.first().map(String::as_str) == Some(repo) {
            return;
        }
        entry.repos.retain(|r| r != repo);
        entry.repos.insert(0, repo.to_string());
        entry.repos.truncate(REPOS_PER_BLOB);
        entry.seen = newest;
        while blobs.len() > BLOBS_PER_REGISTRY {
            let oldest = blobs
                .iter()
                .min_by_key(|(_, e)| e.seen)
                .map(|(d, _)| d.clone());
            match oldest {
                Some(d) => blobs.remove(&d),
                None => break,
            };
        }
        *dirty = true;
    }

    /// Writes the cache back if it changed: to a temporary file beside
    /// it, then renamed over it. Failures are logged and ignored.
    pub fn save(&self) {
        let guard = self.lock();
        let (map, dirty) = &*guard;
        if !dirty {
            return;
        }
        let write = || -> std::io::Result<()> {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(&tmp, map)?;
            tmp.persist(&self.path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot save the blob-location cache");
        }
    }
}

impl Drop for BlobLocations {
    fn drop(&mut self) {
        self.save();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_repositories_and_survives_a_reopen() {
        let dir = tempfile::TempDir::new().expect("tmp");
        let path = dir.path().join("sub/locations.json");
        let l = BlobLocations::open(path.clone());
        for repo in ["a", "b", "c", "d", "e", "b"] {
            l.record("reg:5000", "sha256:1", repo);
        }
        assert_eq!(l.known("reg:5000", "sha256:1", "b"), ["e", "d", "c"]);
        assert!(l.known("other:5000", "sha256:1", "x").is_empty());
        l.save();
        let again = BlobLocations::open(path.clone());
        assert_eq!(
            again.known("reg:5000", "sha256:1", "z"),
            ["b", "e", "d", "c"]
        );
        // A corrupt file is an empty cache.
        std::fs::write(&path, b"{not json").expect("write");
        assert!(
            BlobLocations::open(path)
                .known("reg:5000", "sha256:1", "z")
                .is_empty()
        );
    }
}
