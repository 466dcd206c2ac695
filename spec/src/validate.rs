//! Validation of a whole bytecode image: manifest, config and layer bytes
//! in, a typed verdict out. Each rule of `spec/README.md` has its own error
//! variant. Pure: the caller fetches the bytes.

use std::collections::BTreeSet;

use crate::arch::{Arch, Endianness, UnknownArch};
use crate::digest::Digest;
use crate::elf::{ElfError, ObjectInfo, inspect};
use crate::labels::{ImageMetadata, LabelFormat};
use crate::layer::{LayerError, read_layer};
use crate::media;
use crate::oci::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform};

/// The largest manifest, index or config we parse (the distribution spec's
/// recommended manifest limit).
pub const MAX_DOCUMENT_SIZE: usize = 4 << 20;

/// An image that passed every rule, with everything a consumer needs.
#[derive(Debug, Clone)]
pub struct ValidImage {
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    pub arch: Arch,
    pub metadata: ImageMetadata,
    pub label_format: LabelFormat,
    pub file_name: String,
    pub object: Vec<u8>,
    pub object_info: ObjectInfo,
    /// What is odd about the image but does not stop it from loading, for
    /// the reader to see: labels that differ from the object, programs in
    /// unknown sections, an untidy layer.
    pub warnings: Vec<String>,
}

/// Why an image is not a valid bytecode image.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("{what} is {size} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit")]
    TooLarge { what: &'static str, size: usize },
    #[error("{what} is not valid JSON for its type")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} has schemaVersion {found}; expected 2")]
    SchemaVersion { what: &'static str, found: u32 },
    #[error("{what} has media type '{found}', which is not {expected}")]
    MediaType {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "{what} does not match its descriptor: expected {expected_digest} ({expected_size} bytes), found {found_digest} ({found_size} bytes)"
    )]
    DescriptorMismatch {
        what: &'static str,
        expected_digest: Digest,
        expected_size: u64,
        found_digest: Digest,
        found_size: u64,
    },
    #[error("the manifest has {found} layers; a bytecode image has exactly one")]
    LayerCount { found: usize },
    #[error("the image is for OS '{found}'; eBPF images are for linux")]
    NotLinux { found: String },
    #[error("the image config's architecture")]
    Arch(#[source] UnknownArch),
    #[error("the index entry says {expected}, but the image config says {found}")]
    PlatformMismatch { expected: String, found: String },
    #[error("the config's rootfs must be of type 'layers' with one diff_id")]
    RootFs,
    #[error(
        "the config's diff_id {expected} is not the digest of the uncompressed layer ({found})"
    )]
    DiffId { expected: Digest, found: Digest },
    #[error("the layer")]
    Layer(#[source] LayerError),
    #[error("the object '{file}' in the layer")]
    Object {
        file: String,
        #[source]
        source: ElfError,
    },
    #[error(
        "the object '{file}' is {found}, but {arch} runs {expected} eBPF; build it with clang -target {target}"
    )]
    Endianness {
        file: String,
        arch: Arch,
        expected: Endianness,
        found: Endianness,
        target: &'static str,
    },
    #[error(
        "the labels list program '{program}', which the object does not define; the image does not hold what it says"
    )]
    ProgramMissing { program: String },
    #[error("the index has no manifests")]
    EmptyIndex,
    #[error(
        "the index lists no bytecode image ({skipped} entries skipped: attestations, other platforms)"
    )]
    NoImages { skipped: usize },
}

/// Checks that `bytes` are what `desc` describes.
pub fn check_descriptor(
    what: &'static str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<(), ValidationError> {
    let found = Digest::of(bytes);
    if found != desc.digest || bytes.len() as u64 != desc.size {
        return Err(ValidationError::DescriptorMismatch {
            what,
            expected_digest: desc.digest.clone(),
            expected_size: desc.size,
            found_digest: found,
            found_size: bytes.len() as u64,
        });
    }
    Ok(())
}

fn parse_doc<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ValidationError> {
    if bytes.len() > MAX_DOCUMENT_SIZE {
        return Err(ValidationError::TooLarge {
            what,
            size: bytes.len(),
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ValidationError::Json { what, source })
}

/// `schemaVersion` 2, and the document's own media type if it states one.
fn check_header(
    what: &'static str,
    schema_version: u32,
    media_type: Option<&str>,
    accepted: fn(&str) -> bool,
    expected: &'static str,
) -> Result<(), ValidationError> {
    if schema_version != 2 {
        return Err(ValidationError::SchemaVersion {
            what,
            found: schema_version,
        });
    }
    media_type.map_or(Ok(()), |mt| check_media_type(what, mt, accepted, expected))
}

fn check_media_type(
    what: &'static str,
    media_type: &str,
    accepted: fn(&str) -> bool,
    expected: &'static str,
) -> Result<(), ValidationError> {
    if accepted(media_type) {
        return Ok(());
    }
    Err(ValidationError::MediaType {
        what,
        found: media_type.into(),
        expected,
    })
}

/// Parses and checks a manifest on its own (media types, schema, one layer).
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, ValidationError> {
    let manifest: ImageManifest = parse_doc("the manifest", bytes)?;
    check_header(
        "the manifest",
        manifest.schema_version,
        manifest.media_type.as_deref(),
        media::is_manifest,
        "an OCI or Docker v2 image manifest",
    )?;
    check_media_type(
        "the config",
        &manifest.config.media_type,
        media::is_config,
        "an OCI or Docker image config",
    )?;
    if manifest.layers.len() != 1 {
        return Err(ValidationError::LayerCount {
            found: manifest.layers.len(),
        });
    }
    check_media_type(
        "the layer",
        &manifest.layers[0].media_type,
        media::is_layer,
        "a tar+gzip layer",
    )?;
    Ok(manifest)
}

/// The annotation docker buildx puts on the attestation manifests it adds
/// to an index (with platform `unknown/unknown`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// An index, read leniently: the entries that are bytecode images, in the
/// order the index lists them, and what was passed over.
#[derive(Debug, Clone)]
pub struct IndexView {
    pub index: ImageIndex,
    /// Entries to read as images. Entries without a platform are here (as
    /// images they stand on their own) but no host picks them.
    pub images: Vec<Descriptor>,
    /// Attestations and other artifacts: not images, silently passed over.
    pub artifacts: Vec<Descriptor>,
    /// What a reader should be told: entries without a platform, not for
    /// linux, for an unknown architecture, or for a platform seen before.
    pub warnings: Vec<String>,
}

/// Whether an index entry is an attestation or another artifact rather
/// than an image: buildx's attestation manifests (platform
/// `unknown/unknown`, `vnd.docker.reference.type`), or an OCI artifact
/// (`artifactType` on the descriptor).
pub fn is_artifact_entry(d: &Descriptor) -> bool {
    d.annotations.contains_key(ANNOTATION_REFERENCE_TYPE)
        || d.artifact_type.is_some()
        || d.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// Whether a manifest is an artifact (it names a `subject` or an
/// `artifactType`), as newer buildkit writes attestations.
pub fn is_artifact_manifest(m: &ImageManifest) -> bool {
    m.subject.is_some() || m.artifact_type.is_some()
}

/// Parses an index and sorts its entries: the bytecode images (first
/// entry per platform, as upstream bpfman picks), the artifacts, and what
/// is odd. Refused only when it is not an index or lists no image.
pub fn parse_index(bytes: &[u8]) -> Result<IndexView, ValidationError> {
    let index: ImageIndex = parse_doc("the index", bytes)?;
    check_header(
        "the index",
        index.schema_version,
        index.media_type.as_deref(),
        media::is_index,
        "an OCI image index or Docker manifest list",
    )?;
    if index.manifests.is_empty() {
        return Err(ValidationError::EmptyIndex);
    }
    let mut seen = BTreeSet::new();
    let mut images = Vec::new();
    let mut artifacts = Vec::new();
    let mut warnings = Vec::new();
    for m in &index.manifests {
        if is_artifact_entry(m) {
            artifacts.push(m.clone());
            continue;
        }
        check_media_type(
            "an index entry",
            &m.media_type,
            media::is_manifest,
            "an image manifest",
        )?;
        let Some(p) = m.platform.as_ref() else {
            warnings.push(format!(
                "index entry {} has no platform; it is read, but no host picks it",
                m.digest
            ));
            images.push(m.clone());
            continue;
        };
        let skip = match platform_arch(p) {
            Err(e) => Some(format!("{}", crate::text::printable(&error_chain(&e)))),
            Ok(arch) if !seen.insert(arch) => Some(format!(
                "{} is listed again; the first entry is used",
                platform_string(p)
            )),
            Ok(_) => None,
        };
        match skip {
            Some(why) => warnings.push(format!("index entry {} skipped: {why}", m.digest)),
            None => images.push(m.clone()),
        }
    }
    if images.is_empty() {
        return Err(ValidationError::NoImages {
            skipped: index.manifests.len(),
        });
    }
    Ok(IndexView {
        index,
        images,
        artifacts,
        warnings,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn platform_arch(p: &Platform) -> Result<Arch, ValidationError> {
    if p.os != "linux" {
        return Err(ValidationError::NotLinux {
            found: p.os.clone(),
        });
    }
    p.architecture.parse().map_err(ValidationError::Arch)
}

/// `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Validates one image. `platform` is what an index said about it, if it
/// came from one. The caller has checked the manifest bytes against whatever
/// pointed at them; this checks everything the manifest points at.
pub fn validate_image(
    manifest_bytes: &[u8],
    config_bytes: &[u8],
    layer_bytes: &[u8],
    platform: Option<&Platform>,
) -> Result<ValidImage, ValidationError> {
    let manifest = parse_manifest(manifest_bytes)?;
    check_descriptor("the config", &manifest.config, config_bytes)?;
    check_descriptor("the layer", &manifest.layers[0], layer_bytes)?;
    let config: ImageConfig = parse_doc("the config", config_bytes)?;
    let config_platform = Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
    };
    let arch = platform_arch(&config_platform)?;
    if let Some(p) = platform
        && (p.os != config.os || p.architecture.parse::<Arch>().ok() != Some(arch))
    {
        return Err(ValidationError::PlatformMismatch {
            expected: platform_string(p),
            found: platform_string(&config_platform),
        });
    }
    if config.rootfs.kind != "layers" || config.rootfs.diff_ids.len() != 1 {
        return Err(ValidationError::RootFs);
    }
    let layer = read_layer(layer_bytes).map_err(ValidationError::Layer)?;
    if layer.diff_id != config.rootfs.diff_ids[0] {
        return Err(ValidationError::DiffId {
            expected: config.rootfs.diff_ids[0].clone(),
            found: layer.diff_id,
        });
    }
    let (metadata, label_format, label_warnings) =
        ImageMetadata::from_labels(&config.config.labels);
    let object_info = inspect(&layer.object).map_err(|source| ValidationError::Object {
        file: layer.file_name.clone(),
        source,
    })?;
    if object_info.endianness != arch.endianness() {
        return Err(ValidationError::Endianness {
            file: layer.file_name,
            arch,
            expected: arch.endianness(),
            found: object_info.endianness,
            target: arch.endianness().clang_target(),
        });
    }
    check_labels_match_object(&metadata, &object_info)?;
    let mut warnings = layer.warnings;
    warnings.extend(label_warnings);
    warnings.extend(metadata.differences(&object_info));
    warnings.extend(object_info.warnings());
    Ok(ValidImage {
        manifest,
        config,
        arch,
        metadata,
        label_format,
        file_name: layer.file_name,
        object: layer.object,
        object_info,
        warnings,
    })
}

/// Every labelled program must exist in the object: an image whose labels
/// promise a program it lacks does not hold what it says. (Labels may list
/// fewer programs than the object has: older images list only the entry
/// points they mean to be loaded; a type that differs is only a warning.)
pub fn check_labels_match_object(
    metadata: &ImageMetadata,
    object: &ObjectInfo,
) -> Result<(), ValidationError> {
    match metadata.programs.keys().find(|name| {
        !object.programs.iter().any(|p| &p.name == *name)
            && !object.skipped.iter().any(|p| &p.name == *name)
    }) {
        Some(program) => Err(ValidationError::ProgramMissing {
            program: program.clone(),
        }),
        None => Ok(()),
    }
}
