//! Moving whole images between registries and memory: `pull` fetches an
//! image (or index) and everything below it, verified; `push` uploads what
//! the registry lacks, children before the documents that name them, and
//! the top document last, so a tag never points at an incomplete image.

use std::sync::Arc;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::Descriptor;
use futures_util::{StreamExt, TryStreamExt};

use crate::content::{self, ContentError, ImageContent, check_size, children};
use crate::reference::RegistryRef;
use crate::registry::{Progress, Registry, RegistryError};

/// Blobs moved at once.
pub const CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("image structure from {source_ref} is not acceptable")]
    Content {
        source_ref: String,
        #[source]
        source: ContentError,
    },
    #[error("'{reference}' is pinned to {pinned}, but the image to push is {actual}")]
    PinMismatch {
        reference: String,
        pinned: Digest,
        actual: Digest,
    },
}

fn is_document(desc: &Descriptor) -> bool {
    media::is_manifest(&desc.media_type) || media::is_index(&desc.media_type)
}

/// Fetches the image `r` names and everything it references.
pub async fn pull(
    reg: &Registry,
    r: &RegistryRef,
    progress: &dyn Progress,
) -> Result<ImageContent, TransferError> {
    let content_err = |source| TransferError::Content {
        source_ref: r.to_string(),
        source,
    };
    reg.prepare(r, false).await?;
    let top = reg.get_manifest(r, None).await?;
    let mut content = ImageContent::new(top.descriptor.clone());
    let mut manifests = Vec::new();
    if media::is_index(&top.descriptor.media_type) {
        for child in children(&top.descriptor, &top.bytes).map_err(content_err)? {
            check_size(&child).map_err(content_err)?;
            let fetched = reg.get_manifest(r, Some(&child.digest.to_string())).await?;
            manifests.push((child, fetched.bytes));
        }
    } else {
        manifests.push((top.descriptor.clone(), top.bytes.clone()));
    }
    for (desc, bytes) in manifests {
        let blobs = children(&desc, &bytes).map_err(content_err)?;
        for b in &blobs {
            check_size(b).map_err(content_err)?;
        }
        let fetched: Vec<(Descriptor, Vec<u8>)> = futures_util::stream::iter(blobs)
            .map(|b| async move {
                let limit = content::size_limit(&b.media_type);
                let bytes = reg.get_blob(r, &b, limit, progress).await?;
                Ok::<_, TransferError>((b, bytes))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        for (b, bytes) in fetched {
            content.insert(b, bytes);
        }
        content.insert(desc, bytes);
    }
    if media::is_index(&top.descriptor.media_type) {
        content.insert(top.descriptor, top.bytes);
    }
    Ok(content)
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The digest of the top document, now in the repository.
    pub digest: Digest,
    /// `registry/repo@digest`.
    pub pinned: String,
}

/// Pushes `content` to `r` (under its tag; by digest only if it names none).
pub async fn push(
    reg: &Registry,
    r: &RegistryRef,
    content: &ImageContent,
    progress: Arc<dyn Progress>,
) -> Result<Pushed, TransferError> {
    push_blobs(reg, r, content, progress).await?;
    push_manifests(reg, r, content).await
}

/// The first half of [`push`]: every blob that is not a manifest or index,
/// concurrently (skipped when present, mounted when seen elsewhere).
pub async fn push_blobs(
    reg: &Registry,
    r: &RegistryRef,
    content: &ImageContent,
    progress: Arc<dyn Progress>,
) -> Result<(), TransferError> {
    let top = &content.top;
    if let Some(pinned) = &r.digest
        && pinned != &top.digest
    {
        return Err(TransferError::PinMismatch {
            reference: r.to_string(),
            pinned: pinned.clone(),
            actual: top.digest.clone(),
        });
    }
    reg.prepare(r, true).await?;
    let blob = |d: &Descriptor| content.blob(&d.digest).unwrap_or_default();
    futures_util::stream::iter(content.descriptors().iter().filter(|d| !is_document(d)))
        .map(|d| reg.put_blob(r, d, blob(d), progress.clone()))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The second half of [`push`]: the manifests, the top one (under the tag,
/// if any) last, once every blob is there.
pub async fn push_manifests(
    reg: &Registry,
    r: &RegistryRef,
    content: &ImageContent,
) -> Result<Pushed, TransferError> {
    let top = &content.top;
    let blob = |d: &Descriptor| content.blob(&d.digest).unwrap_or_default();
    for d in content.descriptors() {
        if is_document(d) && d.digest != top.digest {
            reg.put_manifest(r, &d.digest.to_string(), d, blob(d))
                .await?;
        }
    }
    let reference = r
        .tag_or_default()
        .map_or_else(|| top.digest.to_string(), String::from);
    reg.put_manifest(r, &reference, top, blob(top)).await?;
    Ok(Pushed {
        digest: top.digest.clone(),
        pinned: r.pinned(&top.digest),
    })
}
