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

use std::fs;
use std::path::{Path, PathBuf};

use crate::kernel::{FsType, Kernel, KernelError};

/// Where bpffs is conventionally mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
const OURS: &str = "bpfman-load";
const DIRS: [&str; 4] = ["progs", "maps", "links", "dispatchers"];

/// Our directory in a mounted bpffs: where each kind of pin goes.
#[derive(Debug, Clone)]
pub struct Bpffs {
    root: PathBuf,
}

impl Bpffs {
    /// Makes sure bpffs is mounted at `mount_point` (mounting it where none
    /// is) and that the directories of the state root `root` exist.
    pub fn open<K: Kernel>(k: &K, mount_point: &Path, root: &Path) -> Result<Self, KernelError> {
        k.mount(FsType::Bpf, mount_point)?;
        let fs = Self::at(mount_point.join(dir_name(root)));
        for d in DIRS {
            k.create_dir(&fs.root.join(d))?;
        }
        Ok(fs)
    }

    /// Our directory at `root`, as it is.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where programs are pinned, by id.
    pub fn programs_dir(&self) -> PathBuf {
        self.root.join("progs")
    }

    /// Where links are pinned, by id.
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    /// The directory for one load's maps.
    pub fn maps_dir(&self, load_id: u64) -> PathBuf {
        self.root.join("maps").join(load_id.to_string())
    }

    /// The directory of one dispatcher (its link, extensions, revisions).
    pub fn dispatcher(&self, key: &str) -> PathBuf {
        self.root.join("dispatchers").join(key)
    }

    /// Removes empty map and dispatcher directories left by unloads.
    pub fn tidy<K: Kernel>(&self, k: &K) {
        for d in ["maps", "dispatchers"] {
            let dir = self.root.join(d);
            k.remove_empty_dirs(&dir);
            // The top directories stay, empty or not.
            if let Err(e) = k.create_dir(&dir) {
                tracing::warn!("{e}");
            }
        }
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
