//! The BPF filesystem, where everything we load is pinned so it outlives
//! the process, and the host mounts the loader needs (bpffs, tracefs).
//!
//! ```text
//! <bpffs>/bpfman-load/          (bpfman-load-<root hash>/ for a --root
//!                                other than the default)
//!   progs/<program id>          a loaded program
//!   maps/<load id>/<map name>   the maps of one load ('.' becomes '_')
//!   links/<link id>             an attachment
//!   dispatchers/<hook>-<netns>-<ifindex>/
//!     link                      the hook's link (XDP or tcx)
//!     ext-<program id>          a program loaded as an extension
//!     rev-<n>/dispatcher        revision n of the dispatcher
//!     rev-<n>/slot<i>           the freplace link of slot i
//! ```
//!
//! That directory belongs to one state root alone: reconciliation removes
//! any pin in it that the state does not account for (an interrupted run's),
//! and never looks outside it. Roots get their own directories so that two
//! roots on one host never take each other's pins for strays.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where bpffs is conventionally mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const TRACEFS_MAGIC: u64 = 0x7472_6163;
const OURS: &str = "bpfman-load";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error(
        "bpffs mount point '{0}' does not exist; create it, or pass --bpffs with a directory where bpffs is (or may be) mounted"
    )]
    NoMountPoint(PathBuf),
    #[error(
        "cannot mount {fstype} on '{path}': {source}; mount it yourself (mount -t {fstype} {fstype} {path})"
    )]
    Mount {
        fstype: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BpffsError {
    let path = path.to_path_buf();
    move |source| BpffsError::Io {
        action,
        path,
        source,
    }
}

fn fs_type(path: &Path) -> io::Result<u64> {
    Ok(rustix::fs::statfs(path)?.f_type as u64)
}

/// Mounts `fstype` on `dir` unless a filesystem with `magic` is already
/// there. Returns whether it mounted one.
fn ensure_mounted(dir: &Path, fstype: &str, magic: u64) -> io::Result<bool> {
    if fs_type(dir)? == magic {
        return Ok(false);
    }
    rustix::mount::mount(
        fstype,
        dir,
        fstype,
        rustix::mount::MountFlags::empty(),
        None,
    )?;
    Ok(true)
}

/// Our directory in a mounted bpffs.
#[derive(Debug, Clone)]
pub struct Bpffs {
    root: PathBuf,
}

impl Bpffs {
    /// Makes sure bpffs is mounted at `mount_point` (mounting it where none
    /// is) and that the directories of the state root `root` exist.
    pub fn open(mount_point: &Path, root: &Path) -> Result<Self, BpffsError> {
        if !mount_point.is_dir() {
            return Err(BpffsError::NoMountPoint(mount_point.into()));
        }
        let mounted = ensure_mounted(mount_point, "bpf", BPF_FS_MAGIC).map_err(|source| {
            BpffsError::Mount {
                fstype: "bpf",
                path: mount_point.into(),
                source,
            }
        })?;
        if mounted {
            tracing::info!("mounted bpffs on {}", mount_point.display());
        }
        let root = mount_point.join(dir_name(root));
        for d in ["progs", "maps", "links", "dispatchers"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn program(&self, id: u32) -> PathBuf {
        self.root.join("progs").join(id.to_string())
    }

    pub fn link(&self, id: u32) -> PathBuf {
        self.root.join("links").join(id.to_string())
    }

    /// The directory for one load's maps; created on demand.
    pub fn maps_dir(&self, load_id: u64) -> Result<PathBuf, BpffsError> {
        let p = self.root.join("maps").join(load_id.to_string());
        fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        Ok(p)
    }

    /// The directory of one dispatcher (its link, extensions, revisions).
    pub fn dispatcher(&self, key: &str) -> PathBuf {
        self.root.join("dispatchers").join(key)
    }

    /// Every pin under our directory.
    pub fn pins(&self) -> Result<BTreeSet<PathBuf>, BpffsError> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let entry = entry.map_err(io_err("list", &dir))?;
                let path = entry.path();
                if entry.file_type().map_err(io_err("stat", &path))?.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(path);
                }
            }
        }
        Ok(out)
    }

    /// Removes empty map and dispatcher directories left by unloads.
    pub fn tidy(&self) {
        fn prune(dir: &Path) {
            if let Ok(entries) = fs::read_dir(dir) {
                for d in entries.flatten() {
                    if d.file_type().is_ok_and(|t| t.is_dir()) {
                        prune(&d.path());
                        // Fails (and is left) when not empty.
                        let _ = fs::remove_dir(d.path());
                    }
                }
            }
        }
        prune(&self.root.join("maps"));
        prune(&self.root.join("dispatchers"));
    }
}

/// Our directory's name for a state root.
pub fn dir_name(root: &Path) -> String {
    if root == Path::new(crate::cache::DEFAULT_ROOT) {
        return OURS.to_string();
    }
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let digest = bpfman_image_spec::digest::Digest::of(root.as_os_str().as_encoded_bytes());
    format!("{OURS}-{}", &digest.hex()[..12])
}

/// A pin's file name: bpffs refuses '.' in names (reserved), so `.bss`
/// is pinned as `_bss`.
pub fn pin_name(map: &str) -> String {
    map.replace(['.', '/'], "_")
}

/// Removes a pin; a missing one is not an error (the goal is its absence).
pub fn unpin(path: &Path) -> Result<(), BpffsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(BpffsError::Io {
            action: "remove pin",
            path: path.into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Makes sure tracefs is mounted, for tracepoint attach.
pub fn ensure_tracefs() -> Result<(), BpffsError> {
    let dir = Path::new("/sys/kernel/tracing");
    if !dir.is_dir() {
        return Err(BpffsError::NoMountPoint(dir.into()));
    }
    let mounted =
        ensure_mounted(dir, "tracefs", TRACEFS_MAGIC).map_err(|source| BpffsError::Mount {
            fstype: "tracefs",
            path: dir.into(),
            source,
        })?;
    if mounted {
        tracing::info!("mounted tracefs on {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_get_their_own_directories() {
        assert_eq!(dir_name(Path::new("/var/lib/bpfman-load")), "bpfman-load");
        let a = dir_name(Path::new("/nonexistent/a"));
        let b = dir_name(Path::new("/nonexistent/b"));
        assert!(a.starts_with("bpfman-load-") && a.len() == "bpfman-load-".len() + 12);
        assert_ne!(a, b);
    }

    #[test]
    fn pin_names_avoid_dots() {
        assert_eq!(pin_name(".bss"), "_bss");
        assert_eq!(pin_name("xdp_counter.rodata"), "xdp_counter_rodata");
        assert_eq!(pin_name("counts"), "counts");
    }
}
