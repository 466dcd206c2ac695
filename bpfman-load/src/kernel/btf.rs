//! The kernel's BTF, parsed at most once per process, and aya loaders that
//! do not parse it.
//!
//! aya's `EbpfLoader::new()` parses `/sys/kernel/btf/vmlinux` (several
//! megabytes, the largest share of a warm load) on every call, though the
//! loader needs it only for CO-RE relocations. So loaders are made on a
//! short-lived thread whose filesystem root is a directory without
//! `sys/kernel/btf` (`unshare(CLONE_FS)` then `chroot`, which touch that
//! thread alone), where `new()` finds no BTF; objects with CO-RE
//! relocations are then given the process's one parsed copy, which fentry,
//! fexit and LSM programs share. Where that thread cannot chroot (not
//! root), the loader is made the ordinary way.

use std::sync::OnceLock;

use aya::{Btf, EbpfLoader};

use super::KernelError;

/// A directory on every Linux with procfs, holding only numbered entries,
/// so `sys/kernel/btf/vmlinux` resolves to nothing under it.
const BLIND_ROOT: &str = "/proc/self/fdinfo";

static KERNEL_BTF: OnceLock<Result<Btf, String>> = OnceLock::new();

/// The kernel's BTF, parsed on first use.
pub(crate) fn kernel_btf() -> Result<&'static Btf, KernelError> {
    KERNEL_BTF
        .get_or_init(|| Btf::from_sys_fs().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            KernelError::call(
                "read the kernel's BTF",
                "(/sys/kernel/btf/vmlinux)",
                e.clone(),
            )
        })
}

/// A loader for `object`: with the kernel's BTF only when the object has
/// CO-RE relocations to apply against it.
pub(crate) fn loader(object: &[u8]) -> Result<EbpfLoader<'static>, KernelError> {
    let mut loader = std::thread::scope(|s| s.spawn(blind_loader).join().ok().flatten())
        .unwrap_or_else(EbpfLoader::new);
    if crate::sections::has_core_relocations(object) {
        loader.btf(Some(kernel_btf()?));
    }
    Ok(loader)
}

/// Runs on its own thread: a loader made where no kernel BTF is to be
/// found, or `None` if this thread cannot get there.
#[allow(unsafe_code)]
fn blind_loader() -> Option<EbpfLoader<'static>> {
    // SAFETY: only the filesystem context (root, cwd, umask) is unshared,
    // and only for this thread, which ends when this function returns; no
    // file descriptor table is unshared, so no thread can see a descriptor
    // it does not share (the hazard `unshare_unsafe` documents).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.ok()?;
    rustix::process::chroot(BLIND_ROOT).ok()?;
    let loader = EbpfLoader::new();
    Some(loader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blind_loader_leaves_the_process_root_alone() {
        let before = std::fs::read_link("/proc/self/root").expect("root");
        let _ = loader(&crate::sections::test_object("xdp_pass.bpfel.o"));
        assert_eq!(std::fs::read_link("/proc/self/root").expect("root"), before);
        assert!(std::path::Path::new("/proc/self/fdinfo").is_dir());
    }
}
