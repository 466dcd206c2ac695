//! Reading a whole image back and describing it: `bpfman-image inspect`.
//! Every blob is digest-checked and every image validated against the spec.

use std::collections::BTreeMap;

use bpfman_image_spec::arch::Endianness;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::labels::LabelFormat;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{Descriptor, ImageIndex, Platform};
use bpfman_image_spec::validate::{
    ValidImage, ValidationError, parse_index, platform_string, validate_image,
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
    pub images: Vec<ReadImage>,
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
        let parsed =
            bpfman_image_spec::validate::parse_manifest(manifest).map_err(invalid(&desc.digest))?;
        let config = blob(&parsed.config)?;
        let layer = blob(&parsed.layers[0])?;
        let image =
            validate_image(manifest, config, layer, platform).map_err(invalid(&desc.digest))?;
        Ok::<_, InspectError>(ReadImage {
            descriptor: desc.clone(),
            image,
        })
    };
    if media::is_index(&top.media_type) {
        let index = parse_index(blob(top)?).map_err(invalid(&top.digest))?;
        let images = index
            .manifests
            .iter()
            .map(|d| read_one(d, d.platform.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(ReadResult {
            top: top.clone(),
            index: Some(index),
            images,
        })
    } else if media::is_manifest(&top.media_type) {
        Ok(ReadResult {
            top: top.clone(),
            index: None,
            images: vec![read_one(top, top.platform.as_ref())?],
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
            let programs = img
                .metadata
                .programs
                .iter()
                .map(|(name, ty)| ProgramReport {
                    name: name.clone(),
                    program_type: ty.name().into(),
                    section: img
                        .object_info
                        .programs
                        .iter()
                        .find(|p| &p.name == name)
                        .map(|p| p.section_name.clone())
                        .unwrap_or_default(),
                })
                .collect();
            let maps = img
                .metadata
                .maps
                .iter()
                .map(|(name, ty)| MapReport {
                    name: name.clone(),
                    map_type: ty.clone(),
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
                warnings: bpfman_image_spec::validate::label_warnings(
                    &img.metadata,
                    &img.object_info,
                ),
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
    }
}
