//! Choosing the image for this host: the index entry for the host's
//! architecture, and a guard that the object's byte order is the host's.
//! Loading an object of the wrong byte order would feed the verifier
//! byte-swapped instructions; refuse it before it reaches the kernel.

use bpfman_image_spec::arch::{Arch, Endianness};
use bpfman_image_spec::elf::{ElfError, identify};
use bpfman_image_spec::oci::Descriptor;

/// Why no image fits this host.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("this host's architecture ({arch}) is not one eBPF images are built for")]
    UnknownHostArch { arch: &'static str },
    #[error(
        "the image has no linux/{host} entry (it has: {available}); rebuild it with --object {host}=PROG.o"
    )]
    NoEntryForHost { host: Arch, available: String },
    #[error(
        "the object is {found} but this host runs {host} eBPF; use the image built for this architecture"
    )]
    Endianness { found: Endianness, host: Endianness },
    #[error("the object is not a usable eBPF object")]
    Object(#[source] ElfError),
}

/// The host's architecture.
pub fn host_arch() -> Result<Arch, PlatformError> {
    Arch::host().ok_or(PlatformError::UnknownHostArch {
        arch: std::env::consts::ARCH,
    })
}

/// The first of an index's image entries (attestations and other
/// artifacts already set aside) for `host`: linux, no variant preference,
/// first match as upstream bpfman picks. Entries without a platform are
/// never picked.
pub fn select_manifest<'a>(
    entries: &[&'a Descriptor],
    host: Arch,
) -> Result<&'a Descriptor, PlatformError> {
    entries
        .iter()
        .copied()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == "linux" && p.architecture.parse::<Arch>().ok() == Some(host)
            })
        })
        .ok_or_else(|| PlatformError::NoEntryForHost {
            host,
            available: entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Refuses an object whose byte order is not `host`'s.
pub fn check_object_endianness(object: &[u8], host: Endianness) -> Result<(), PlatformError> {
    let found = identify(object).map_err(PlatformError::Object)?;
    if found != host {
        return Err(PlatformError::Endianness { found, host });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bpfman_image_spec::image::{ImageInput, assemble, assemble_index};
    use bpfman_image_spec::validate::parse_index;

    use super::*;

    const EL: &[u8] = include_bytes!("../../testdata/bpf/xdp_pass.bpfel.o");
    const EB: &[u8] = include_bytes!("../../testdata/bpf/xdp_pass.bpfeb.o");

    fn index(archs: &[(Arch, &[u8])]) -> Vec<Descriptor> {
        let empty = BTreeMap::new();
        let images: Vec<_> = archs
            .iter()
            .map(|(arch, object)| {
                assemble(&ImageInput {
                    arch: *arch,
                    file_name: "p.o",
                    object,
                    labels: &empty,
                    annotations: &empty,
                    epoch: 0,
                })
                .expect("assembles")
            })
            .collect();
        parse_index(&assemble_index(&images, &empty, 0).0)
            .expect("valid")
            .images
    }

    #[test]
    fn picks_the_host_entry() {
        let idx = index(&[(Arch::Amd64, EL), (Arch::S390x, EB)]);
        let idx: Vec<&Descriptor> = idx.iter().collect();
        let d = select_manifest(&idx, Arch::S390x).expect("found");
        assert_eq!(
            d.platform.as_ref().map(|p| p.architecture.as_str()),
            Some("s390x")
        );
        let err = select_manifest(&idx, Arch::Arm64).expect_err("absent");
        assert!(
            err.to_string().contains("linux/amd64, linux/s390x"),
            "{err}"
        );
    }

    #[test]
    fn endianness_guard() {
        check_object_endianness(EL, Endianness::Little).expect("matches");
        assert!(matches!(
            check_object_endianness(EB, Endianness::Little),
            Err(PlatformError::Endianness {
                found: Endianness::Big,
                ..
            })
        ));
        assert!(matches!(
            check_object_endianness(b"nope", Endianness::Little),
            Err(PlatformError::Object(ElfError::NotElf))
        ));
    }

    #[test]
    fn this_host_is_known() {
        // Every architecture we build and test on must be one images carry.
        host_arch().expect("host arch is known");
    }
}
