//! The last gate before the kernel: an admitted image, narrowed to the
//! object for this host.
//!
//! A [`Loadable`] can only be made from image bytes together with a
//! [`Proof`] that covers exactly their digest, and only after the image
//! validates and the host's platform and byte order are checked. Whatever
//! loads programs takes a `Loadable`, so nothing reaches the kernel that
//! the trust policy did not admit.

use bpfman_image::content::ImageContent;
use bpfman_image::inspect::{self, InspectError};
use bpfman_image_spec::arch::Arch;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::Descriptor;
use bpfman_image_spec::validate::ValidImage;
use bpfman_trust::verdict::Proof;

use crate::platform::{self, PlatformError};

/// Why an admitted image cannot be loaded here.
#[derive(Debug, thiserror::Error)]
pub enum LoadableError {
    #[error(
        "the proof is for {proved}, not for these bytes ({actual}); refusing to load unverified bytes"
    )]
    NotCovered { proved: Digest, actual: Digest },
    #[error(transparent)]
    Invalid(#[from] InspectError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// The object of an admitted image for this host.
#[derive(Debug, Clone)]
pub struct Loadable {
    proof: Proof,
    manifest: Descriptor,
    image: ValidImage,
    /// What was odd about the index the image was chosen from.
    index_warnings: Vec<String>,
}

impl Loadable {
    /// Narrows `content` to the image for `host`, if `proof` covers it.
    pub fn new(content: &ImageContent, proof: Proof, host: Arch) -> Result<Self, LoadableError> {
        if !proof.covers(&content.top.digest) {
            return Err(LoadableError::NotCovered {
                proved: proof.digest().clone(),
                actual: content.top.digest.clone(),
            });
        }
        let read = inspect::read_image(content)?;
        let index_warnings = read.warnings;
        let chosen = match &read.index {
            Some(_) => {
                let entries: Vec<&Descriptor> = read.images.iter().map(|i| &i.descriptor).collect();
                let entry = platform::select_manifest(&entries, host)?.digest.clone();
                read.images
                    .into_iter()
                    .find(|i| i.descriptor.digest == entry)
            }
            None => read.images.into_iter().find(|i| i.image.arch == host),
        };
        let Some(chosen) = chosen else {
            return Err(PlatformError::NoEntryForHost {
                host,
                available: "a single image for another architecture".into(),
            }
            .into());
        };
        platform::check_object_endianness(&chosen.image.object, host.endianness())?;
        Ok(Self {
            proof,
            manifest: chosen.descriptor,
            image: chosen.image,
            index_warnings,
        })
    }

    /// Like [`Self::new`] for this host's architecture.
    pub fn for_host(content: &ImageContent, proof: Proof) -> Result<Self, LoadableError> {
        Self::new(content, proof, platform::host_arch()?)
    }

    pub fn proof(&self) -> &Proof {
        &self.proof
    }

    /// The platform manifest chosen.
    pub fn manifest(&self) -> &Descriptor {
        &self.manifest
    }

    /// The validated image: object bytes, programs and maps.
    pub fn image(&self) -> &ValidImage {
        &self.image
    }

    /// What is odd about the index and the chosen image but did not stop
    /// it from loading, for the operator to see.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.index_warnings.clone();
        out.extend(self.image.warnings.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bpfman_image::builder::{BuildOptions, ObjectArg, build};
    use bpfman_trust::policy::{Policy, Rule};
    use bpfman_trust::verdict::{Subject, evaluate};

    use super::*;

    fn content(objects: &[(Option<&str>, &str)]) -> ImageContent {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/bpf");
        let opts = BuildOptions {
            objects: objects
                .iter()
                .map(|(arch, file)| ObjectArg {
                    arch: arch.map(|a| a.parse().expect("arch")),
                    path: dir.join(file),
                })
                .collect(),
            labels: Default::default(),
            annotations: Default::default(),
            epoch: 0,
            force_index: false,
        };
        ImageContent::from_built(&build(&opts).expect("builds"))
    }

    fn proof(digest: &Digest) -> Proof {
        let policy = Policy::everything(Rule::AcceptUnsigned { keys: vec![] }, "test");
        let subject = Subject {
            identity: "r.io/x",
            digest,
        };
        evaluate(subject, &[], &policy).decision.expect("admitted")
    }

    #[test]
    fn picks_this_hosts_object_from_an_index() {
        let c = content(&[
            (Some("amd64"), "xdp_pass.bpfel.o"),
            (Some("s390x"), "xdp_pass.bpfeb.o"),
        ]);
        let p = proof(&c.top.digest);
        let amd = Loadable::new(&c, p.clone(), Arch::Amd64).expect("amd64");
        assert_eq!(amd.image().arch, Arch::Amd64);
        let s390 = Loadable::new(&c, p.clone(), Arch::S390x).expect("s390x");
        assert_eq!(s390.image().arch, Arch::S390x);
        assert_ne!(amd.manifest().digest, s390.manifest().digest);
        let e = Loadable::new(&c, p, Arch::Arm64).expect_err("no arm64");
        assert!(e.to_string().contains("no linux/arm64 entry"), "{e}");
    }

    #[test]
    fn refuses_bytes_the_proof_does_not_cover() {
        let c = content(&[(None, "xdp_pass.bpfel.o")]);
        let other = proof(&Digest::of(b"another image"));
        let e = Loadable::new(&c, other, Arch::Amd64).expect_err("not covered");
        assert!(matches!(e, LoadableError::NotCovered { .. }), "{e}");
        let single = Loadable::new(&c, proof(&c.top.digest), Arch::Arm64).expect_err("arch");
        assert!(matches!(single, LoadableError::Platform(_)), "{single}");
    }
}
