//! `bpfman-image build`: eBPF objects in, a reproducible image (or a
//! multi-arch index) out, in memory; the caller writes it to a target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bpfman_image_spec::arch::{Arch, Endianness, UnknownArch};
use bpfman_image_spec::elf::{self, ElfError, ObjectInfo};
use bpfman_image_spec::image::{
    AssembleError, AssembledImage, ImageInput, assemble_index, assemble_inspected,
};
use bpfman_image_spec::labels::ImageMetadata;
use bpfman_image_spec::oci::Descriptor;

/// The architecture a lone little-endian object is labelled with when none is
/// given. Fixed (not the build host's) so the digest is the same everywhere.
pub const DEFAULT_ARCH: Arch = Arch::Amd64;

/// One `--object [ARCH=]PATH` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectArg {
    pub arch: Option<Arch>,
    pub path: PathBuf,
}

impl FromStr for ObjectArg {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((arch, path)) = s.split_once('=') {
            // "name=path" where name looks like an arch (no path separators or
            // dots) must be a known arch; anything else is a path with '='.
            if !arch.is_empty() && !arch.contains(['/', '.']) {
                return Ok(Self {
                    arch: Some(arch.parse()?),
                    path: path.into(),
                });
            }
        }
        Ok(Self {
            arch: None,
            path: s.into(),
        })
    }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub objects: Vec<ObjectArg>,
    /// Extra config labels (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Manifest (and index) annotations (`--annotation`).
    pub annotations: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: the `created` time and the tar mtime.
    pub epoch: u64,
    /// Write an index even for a single object.
    pub force_index: bool,
}

/// A built image, ready to be written.
#[derive(Debug, Clone)]
pub struct Built {
    /// One image per architecture, sorted by arch.
    pub images: Vec<AssembledImage>,
    /// The index, for multi-arch builds.
    pub index: Option<Vec<u8>>,
    /// The descriptor to tag: the index, or the single manifest.
    pub top: Descriptor,
}

impl Built {
    /// Every blob of the image, each once.
    pub fn blobs(&self) -> Vec<&[u8]> {
        let mut blobs: Vec<&[u8]> = Vec::new();
        for img in &self.images {
            blobs.extend([
                img.layer.as_slice(),
                img.config.as_slice(),
                img.manifest.as_slice(),
            ]);
        }
        blobs.extend(self.index.as_deref());
        blobs
    }
}

/// Why a build failed. Every variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no objects given; pass --object PATH (or --object ARCH=PATH per architecture)")]
    NoObjects,
    #[error("cannot read object '{path}'")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object '{path}'")]
    Object {
        path: PathBuf,
        #[source]
        source: AssembleError,
    },
    #[error("object '{path}'")]
    Inspect {
        path: PathBuf,
        #[source]
        source: ElfError,
    },
    #[error(
        "object '{path}' is big-endian: say which architecture it is for, e.g. --object s390x={path}"
    )]
    NeedsArch { path: PathBuf },
    #[error(
        "object '{path}' has no architecture; with several objects give each one, e.g. --object amd64={path}"
    )]
    MissingArch { path: PathBuf },
    #[error("two objects for {arch}: '{first}' and '{second}'")]
    DuplicateArch {
        arch: Arch,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "object '{path}' has file name '{name}'; the object in an image must be named *.o (rename the file)"
    )]
    BadFileName { path: PathBuf, name: String },
    #[error(
        "objects '{first}' ({first_arch}) and '{second}' ({second_arch}) differ in {what}: an image's objects must be the same programs built for each arch"
    )]
    ArchMismatch {
        first: PathBuf,
        first_arch: Arch,
        second: PathBuf,
        second_arch: Arch,
        what: &'static str,
    },
}

/// A read, inspected object with its resolved architecture.
#[derive(Debug)]
pub struct LoadedObject {
    pub arch: Arch,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub info: ObjectInfo,
}

impl LoadedObject {
    /// The labels' view of the object.
    pub fn metadata(&self) -> ImageMetadata {
        ImageMetadata::from_object(&self.info)
    }
}

/// Reads and inspects each object, resolves architectures and checks that
/// the set is consistent (one per arch, same programs and maps).
pub fn load_objects(objects: &[ObjectArg]) -> Result<Vec<LoadedObject>, BuildError> {
    if objects.is_empty() {
        return Err(BuildError::NoObjects);
    }
    let mut loaded: Vec<LoadedObject> = Vec::new();
    for obj in objects {
        let bytes = bpfman_trust::file::read_regular(
            &obj.path,
            bpfman_image_spec::layer::MAX_OBJECT_SIZE,
            bpfman_trust::file::Links::Follow,
        )
        .map_err(|source| BuildError::Read {
            path: obj.path.clone(),
            source,
        })?;
        let info = elf::inspect(&bytes).map_err(|source| BuildError::Inspect {
            path: obj.path.clone(),
            source,
        })?;
        let arch = match obj.arch {
            Some(arch) => arch,
            None if objects.len() > 1 => {
                return Err(BuildError::MissingArch {
                    path: obj.path.clone(),
                });
            }
            None if info.endianness == Endianness::Big => {
                return Err(BuildError::NeedsArch {
                    path: obj.path.clone(),
                });
            }
            None => DEFAULT_ARCH,
        };
        if let Some(first) = loaded.iter().find(|l| l.arch == arch) {
            return Err(BuildError::DuplicateArch {
                arch,
                first: first.path.clone(),
                second: obj.path.clone(),
            });
        }
        let metadata = ImageMetadata::from_object(&info);
        if let Some(first) = loaded.first() {
            let first_metadata = first.metadata();
            let what = if first_metadata.programs != metadata.programs {
                Some("programs")
            } else if first_metadata.maps != metadata.maps {
                Some("maps")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(BuildError::ArchMismatch {
                    first: first.path.clone(),
                    first_arch: first.arch,
                    second: obj.path.clone(),
                    second_arch: arch,
                    what,
                });
            }
        }
        loaded.push(LoadedObject {
            arch,
            path: obj.path.clone(),
            bytes,
            info,
        });
    }
    loaded.sort_by_key(|l| l.arch);
    Ok(loaded)
}

fn file_name(path: &Path) -> Result<String, BuildError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.len() > 2 && name.ends_with(".o") && name.len() <= 100 {
        Ok(name)
    } else {
        Err(BuildError::BadFileName {
            path: path.into(),
            name,
        })
    }
}

/// Builds the image in memory. Nothing is written.
pub fn build(opts: &BuildOptions) -> Result<Built, BuildError> {
    let objects = load_objects(&opts.objects)?;
    let mut images = Vec::with_capacity(objects.len());
    for obj in objects {
        let name = file_name(&obj.path)?;
        let input = ImageInput {
            arch: obj.arch,
            file_name: &name,
            object: &obj.bytes,
            labels: &opts.labels,
            annotations: &opts.annotations,
            epoch: opts.epoch,
        };
        let img = assemble_inspected(&input, obj.info).map_err(|source| BuildError::Object {
            path: obj.path.clone(),
            source,
        })?;
        images.push(img);
    }
    if images.len() == 1 && !opts.force_index {
        let top = images[0].descriptor.clone();
        return Ok(Built {
            images,
            index: None,
            top,
        });
    }
    let (index, top) = assemble_index(&images, &opts.annotations, opts.epoch);
    Ok(Built {
        images,
        index: Some(index),
        top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_args() {
        let a: ObjectArg = "s390x=x/prog.o".parse().expect("parses");
        assert_eq!(a.arch, Some(Arch::S390x));
        assert_eq!(a.path, PathBuf::from("x/prog.o"));
        let a: ObjectArg = "prog.o".parse().expect("parses");
        assert_eq!(a.arch, None);
        let a: ObjectArg = "./a=b.o".parse().expect("parses");
        assert_eq!((a.arch, a.path), (None, PathBuf::from("./a=b.o")));
        assert!("sparc=prog.o".parse::<ObjectArg>().is_err());
    }
}
