//! An image's content held in memory: its top descriptor and every blob it
//! references, each already checked against its digest and size. Layouts,
//! registries and the builder all produce and consume this one shape, so
//! validation, `inspect`, `push`, `pull` and `copy` share one code path.
//!
//! Bytecode images are small (one object per platform, at most
//! [`MAX_OBJECT_SIZE`] each), and the walk below bounds what it accepts, so
//! holding an image in memory is safe.

use std::collections::HashMap;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::layer::MAX_OBJECT_SIZE;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{Descriptor, ImageIndex, ImageManifest};
use bpfman_image_spec::validate::MAX_DOCUMENT_SIZE;

use crate::builder::Built;
use crate::layout::{Layout, LayoutError};

/// At most this many manifests in an index (one per platform).
pub const MAX_INDEX_ENTRIES: usize = 64;
/// At most this many layers in a manifest (bytecode images have one).
pub const MAX_LAYERS: usize = 8;

/// Why an image's structure cannot be walked.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{media_type} {digest} is not valid JSON")]
    Json {
        media_type: String,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{digest} has media type '{media_type}', which is neither an image manifest nor an index"
    )]
    NotAnImage { digest: Digest, media_type: String },
    #[error("index {digest} has {count} entries; at most {MAX_INDEX_ENTRIES} are accepted")]
    TooManyEntries { digest: Digest, count: usize },
    #[error("manifest {digest} has {count} layers; at most {MAX_LAYERS} are accepted")]
    TooManyLayers { digest: Digest, count: usize },
    #[error(
        "index {digest} lists {child} of type '{media_type}'; only image manifests may be nested"
    )]
    NestedIndex {
        digest: Digest,
        child: Digest,
        media_type: String,
    },
    #[error("{digest} ({media_type}) is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        digest: Digest,
        media_type: String,
        size: u64,
        limit: u64,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// The largest blob of `media_type` we accept: documents are small, layers
/// hold one object.
pub fn size_limit(media_type: &str) -> u64 {
    if media::is_manifest(media_type) || media::is_index(media_type) || media::is_config(media_type)
    {
        MAX_DOCUMENT_SIZE as u64
    } else {
        // A gzip of an object can, in theory, be a little larger than it.
        MAX_OBJECT_SIZE + (MAX_OBJECT_SIZE >> 6) + 4096
    }
}

/// Checks `desc.size` against [`size_limit`] before any byte is fetched.
pub fn check_size(desc: &Descriptor) -> Result<(), ContentError> {
    let limit = size_limit(&desc.media_type);
    if desc.size > limit {
        return Err(ContentError::TooLarge {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            limit,
        });
    }
    Ok(())
}

/// What a manifest or index points at, in the order it lists them. Other
/// media types have no children.
pub fn children(desc: &Descriptor, bytes: &[u8]) -> Result<Vec<Descriptor>, ContentError> {
    let json_err = |source| ContentError::Json {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        source,
    };
    if media::is_index(&desc.media_type) {
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(json_err)?;
        if index.manifests.len() > MAX_INDEX_ENTRIES {
            return Err(ContentError::TooManyEntries {
                digest: desc.digest.clone(),
                count: index.manifests.len(),
            });
        }
        if let Some(bad) = index
            .manifests
            .iter()
            .find(|m| !media::is_manifest(&m.media_type))
        {
            return Err(ContentError::NestedIndex {
                digest: desc.digest.clone(),
                child: bad.digest.clone(),
                media_type: bad.media_type.clone(),
            });
        }
        Ok(index.manifests)
    } else if media::is_manifest(&desc.media_type) {
        let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(json_err)?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(ContentError::TooManyLayers {
                digest: desc.digest.clone(),
                count: manifest.layers.len(),
            });
        }
        let mut out = vec![manifest.config];
        out.extend(manifest.layers);
        Ok(out)
    } else {
        Ok(Vec::new())
    }
}

/// Fails unless `desc` is a manifest or an index.
pub fn check_top(desc: &Descriptor) -> Result<(), ContentError> {
    if media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type) {
        Ok(())
    } else {
        Err(ContentError::NotAnImage {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        })
    }
}

/// A whole image, every blob verified.
#[derive(Debug, Clone)]
pub struct ImageContent {
    /// The index or manifest a tag points at.
    pub top: Descriptor,
    /// Every blob, each once, children before the documents that list them;
    /// `top` is last.
    order: Vec<Descriptor>,
    bytes: HashMap<Digest, Vec<u8>>,
}

impl ImageContent {
    /// Starts with the top document; add the rest with [`Self::insert`],
    /// then call [`Self::finish`].
    pub fn new(top: Descriptor) -> Self {
        Self {
            top,
            order: Vec::new(),
            bytes: HashMap::new(),
        }
    }

    /// Adds a blob whose bytes the caller has checked against `desc`.
    /// Duplicates are ignored.
    pub fn insert(&mut self, desc: Descriptor, bytes: Vec<u8>) {
        if self.bytes.contains_key(&desc.digest) {
            return;
        }
        self.bytes.insert(desc.digest.clone(), bytes);
        self.order.push(desc);
    }

    /// The bytes of a blob in this image.
    pub fn blob(&self, digest: &Digest) -> Option<&[u8]> {
        self.bytes.get(digest).map(Vec::as_slice)
    }

    /// Every blob's descriptor, children first, `top` last.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.order
    }

    /// Every blob's bytes, in [`Self::descriptors`] order.
    pub fn blobs(&self) -> Vec<&[u8]> {
        self.order
            .iter()
            .filter_map(|d| self.blob(&d.digest))
            .collect()
    }

    /// Total bytes of all blobs.
    pub fn size(&self) -> u64 {
        self.order.iter().map(|d| d.size).sum()
    }

    /// Reads `top` and everything below it from a layout; every read is
    /// digest-checked by [`Layout::read_blob`].
    pub fn from_layout(layout: &Layout, top: &Descriptor) -> Result<Self, ContentError> {
        check_top(top)?;
        let mut content = Self::new(top.clone());
        content.walk_layout(layout, top)?;
        Ok(content)
    }

    fn walk_layout(&mut self, layout: &Layout, desc: &Descriptor) -> Result<(), ContentError> {
        if self.bytes.contains_key(&desc.digest) {
            return Ok(());
        }
        check_size(desc)?;
        let bytes = layout.read_blob(desc)?;
        for child in children(desc, &bytes)? {
            self.walk_layout(layout, &child)?;
        }
        self.insert(desc.clone(), bytes);
        Ok(())
    }

    /// The builder's output; its descriptors were computed from these bytes.
    pub fn from_built(built: &Built) -> Self {
        let mut content = Self::new(built.top.clone());
        for img in &built.images {
            let manifest: ImageManifest = serde_json::from_slice(&img.manifest)
                .unwrap_or_else(|e| unreachable!("the builder's manifest parses: {e}"));
            content.insert(manifest.config.clone(), img.config.clone());
            content.insert(manifest.layers[0].clone(), img.layer.clone());
            content.insert(img.descriptor.clone(), img.manifest.clone());
        }
        if let Some(index) = &built.index {
            content.insert(built.top.clone(), index.clone());
        }
        content
    }
}
