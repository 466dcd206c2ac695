//! Reading a whole image back and describing it: `bpfman-image inspect`.
//! Every blob is digest-checked and every image validated against the spec.

use std::collections::BTreeMap;

use bpfman_image_spec::arch::Endianness;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::labels::LabelFormat;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{Descriptor, ImageIndex, Platform};
use bpfman_image_spec::validate::{
    ValidImage, ValidationError, is_artifact_manifest, parse_index, platform_string, validate_image,
};
use serde::Serialize;

use crate::content::{ContentError, ImageContent};
use crate::layout::{Layout, LayoutError};
use crate::reference::{ImageRef, LayoutRef};

/// Why an image could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("image {digest} is not a valid eBPF bytecode image")]
    Invalid {
        digest: Digest,
        #[source]
        source: ValidationError,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("blob {digest} is referenced but was not fetched")]
    MissingBlob { digest: Digest },
    #[error("'{media_type}' at {digest} is neither an image manifest nor an index")]
    NotAnImage { digest: Digest, media_type: String },
    #[error(
        "{digest} is an artifact (it names a subject or an artifactType, as attestations and signatures do), not a bytecode image"
    )]
    Artifact { digest: Digest },
    #[error("layout '{dir}' holds several images ({tags}); name one: oci:{dir}:TAG")]
    AmbiguousTag { dir: String, tags: String },
}

/// One platform's image, fully read and validated.
#[derive(Debug, Clone)]
pub struct ReadImage {
    pub descriptor: Descriptor,
    pub image: ValidImage,
}

/// A whole image or index, read and validated.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub top: Descriptor,
    /// The index, if the top is an index.
    pub index: Option<ImageIndex>,
    /// The bytecode images, in the order the index lists them.
    pub images: Vec<ReadImage>,
    /// Index entries that are attestations or other artifacts, not images:
    /// copied and signed with the index, never validated or loaded.
    pub artifacts: Vec<Descriptor>,
    /// What is odd about the index (entries without a platform, or for a
    /// platform listed before).
    pub warnings: Vec<String>,
}

/// Validates an image held in memory (from a layout, a registry or the
/// builder) against the spec.
pub fn read_image(content: &ImageContent) -> Result<ReadResult, InspectError> {
    let top = &content.top;
    let invalid = |digest: &Digest| {
        let digest = digest.clone();
        move |source| InspectError::Invalid { digest, source }
    };
    let blob = |desc: &Descriptor| {
        content
            .blob(&desc.digest)
            .ok_or_else(|| InspectError::MissingBlob {
                digest: desc.digest.clone(),
            })
    };
    let read_one = |desc: &Descriptor, platform: Option<&Platform>| {
        let manifest = blob(desc)?;
        if platform.is_none()
            && let Ok(m) = serde_json::from_slice(manifest)
            && is_artifact_manifest(&m)
        {
            return Ok(None);
        }
        let parsed =
            bpfman_image_spec::validate::parse_manifest(manifest).map_err(invalid(&desc.digest))?;
        let config = blob(&parsed.config)?;
        let layer = blob(&parsed.layers[0])?;
        let image =
            validate_image(manifest, config, layer, platform).map_err(invalid(&desc.digest))?;
        Ok::<_, InspectError>(Some(ReadImage {
            descriptor: desc.clone(),
            image,
        }))
    };
    if media::is_index(&top.media_type) {
        let view = parse_index(blob(top)?).map_err(invalid(&top.digest))?;
        let mut images = Vec::new();
        let mut artifacts = view.artifacts;
        for d in &view.images {
            match read_one(d, d.platform.as_ref())? {
                Some(image) => images.push(image),
                None => artifacts.push(d.clone()),
            }
        }
        if images.is_empty() {
            return Err(InspectError::Invalid {
                digest: top.digest.clone(),
                source: ValidationError::NoImages {
                    skipped: view.index.manifests.len(),
                },
            });
        }
        let warnings = view
            .warnings
            .into_iter()
            .filter(|w| !artifacts.iter().any(|a| w.contains(&a.digest.to_string())))
            .collect();
        Ok(ReadResult {
            top: top.clone(),
            index: Some(view.index),
            images,
            artifacts,
            warnings,
        })
    } else if media::is_manifest(&top.media_type) {
        let Some(image) = read_one(top, top.platform.as_ref())? else {
            return Err(InspectError::Artifact {
                digest: top.digest.clone(),
            });
        };
        Ok(ReadResult {
            top: top.clone(),
            index: None,
            images: vec![image],
            artifacts: Vec::new(),
            warnings: Vec::new(),
        })
    } else {
        Err(InspectError::NotAnImage {
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
        })
    }
}

/// Reads and validates the image `top` names in `layout`.
pub fn read_layout_image(
    layout: &Layout,
    top: &Descriptor,
) -> Result<(ImageContent, ReadResult), InspectError> {
    let content = ImageContent::from_layout(layout, top)?;
    let read = read_image(&content)?;
    Ok((content, read))
}

/// Opens a layout reference and picks its image: the tag given, or the only
/// one there is (signature and referrer tags do not count).
pub fn resolve_layout(r: &LayoutRef) -> Result<(Layout, String, Descriptor), InspectError> {
    let layout = Layout::open(&r.dir)?;
    let images: Vec<&str> = layout
        .tags()
        .into_iter()
        .filter(|t| !bpfman_trust::cosign::is_artifact_tag(t))
        .collect();
    let tag = match &r.tag {
        Some(t) => t.clone(),
        None => match images.as_slice() {
            [one] => (*one).to_string(),
            [] => crate::reference::DEFAULT_TAG.to_string(),
            many => {
                return Err(InspectError::AmbiguousTag {
                    dir: r.dir.display().to_string(),
                    tags: many.join(", "),
                });
            }
        },
    };
    let top = layout.resolve(&tag)?.clone();
    Ok((layout, tag, top))
}

/// What `inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub reference: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub images: Vec<ImageReport>,
    /// Index entries passed over as attestations or other artifacts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Digest>,
    /// What is odd about the index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One platform of a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub platform: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layer_digest: Digest,
    pub layer_size: u64,
    pub object: String,
    pub endianness: Endianness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub label_format: LabelFormat,
    pub programs: Vec<ProgramReport>,
    pub maps: Vec<MapReport>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// What is odd but does not stop the image from loading.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub name: String,
    #[serde(rename = "type")]
    pub program_type: String,
    pub section: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MapReport {
    pub name: String,
    #[serde(rename = "type")]
    pub map_type: String,
}

/// Builds the report for an image that has been read.
pub fn report(reference: &ImageRef, read: &ReadResult) -> Report {
    let images = read
        .images
        .iter()
        .map(|ri| {
            let img = &ri.image;
            // The object is the truth: its programs and maps, typed as the
            // labels would type them.
            let programs = img
                .object_info
                .programs
                .iter()
                .map(|p| ProgramReport {
                    name: p.name.clone(),
                    program_type: p.kind().label(&p.section_name).into(),
                    section: p.section_name.clone(),
                })
                .collect();
            let maps = img
                .object_info
                .maps
                .iter()
                .map(|m| MapReport {
                    name: m.name.clone(),
                    map_type: m.map_type.clone(),
                })
                .collect();
            ImageReport {
                platform: platform_string(&Platform {
                    architecture: img.config.architecture.clone(),
                    os: img.config.os.clone(),
                    variant: img.config.variant.clone(),
                }),
                manifest_digest: ri.descriptor.digest.clone(),
                config_digest: img.manifest.config.digest.clone(),
                layer_digest: img.manifest.layers[0].digest.clone(),
                layer_size: img.manifest.layers[0].size,
                object: img.file_name.clone(),
                endianness: img.object_info.endianness,
                created: img.config.created.clone(),
                label_format: img.label_format,
                programs,
                maps,
                labels: img.config.config.labels.clone(),
                annotations: img.manifest.annotations.clone(),
                warnings: img.warnings.clone(),
            }
        })
        .collect();
    Report {
        reference: reference.to_string(),
        media_type: read.top.media_type.clone(),
        digest: read.top.digest.clone(),
        size: read.top.size,
        annotations: read
            .index
            .as_ref()
            .map(|i| i.annotations.clone())
            .unwrap_or_default(),
        images,
        artifacts: read.artifacts.iter().map(|d| d.digest.clone()).collect(),
        warnings: read.warnings.clone(),
    }
}
