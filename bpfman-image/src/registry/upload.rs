//! Writing to a registry: blobs (skipped when present, chunked otherwise) and
//! manifests.

use std::sync::Arc;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::Descriptor;
use futures_util::StreamExt;

use crate::reference::RegistryRef;

use super::*;

/// Blob uploads are sent in chunks of this size (one PATCH each).
pub const UPLOAD_CHUNK: usize = 4 << 20;

impl Registry {
    /// True if the repository already has the blob.
    pub async fn has_blob(&self, r: &RegistryRef, digest: &Digest) -> Result<bool, RegistryError> {
        self.authorize(r, false).await?;
        let oci_ref = self.oci_ref(r, None);
        let what = format!("blob {digest}");
        self.retry(&what, || async {
            self.client
                .blob_exists(&oci_ref, &digest.to_string())
                .await
                .map_err(|e| self.oci_error(r, &what, false, e))
        })
        .await
    }

    /// Uploads a blob unless the repository has it; returns true if it was
    /// uploaded. Large blobs go in [`UPLOAD_CHUNK`]-sized chunks.
    pub async fn put_blob(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        bytes: &[u8],
        progress: Arc<dyn Progress>,
    ) -> Result<bool, RegistryError> {
        if self.has_blob(r, &desc.digest).await? {
            Stats::add(&self.stats.blobs_skipped, 1);
            progress.finish(desc, true);
            return Ok(false);
        }
        self.authorize(r, true).await?;
        let oci_ref = self.oci_ref(r, None);
        let what = format!("upload of blob {}", desc.digest);
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(&what, || {
            progress.start(desc, "push");
            let chunks: Vec<_> = data
                .chunks(UPLOAD_CHUNK)
                .map(|c| data.slice_ref(c))
                .collect();
            let (progress, desc_owned) = (progress.clone(), desc.clone());
            let stream = futures_util::stream::iter(chunks).map(move |c| {
                progress.advance(&desc_owned, c.len() as u64);
                Ok(c)
            });
            let oci_ref = &oci_ref;
            let what = &what;
            async move {
                self.client
                    .push_blob_stream(oci_ref, stream, &desc.digest.to_string(), Some(desc.size))
                    .await
                    .map_err(|e| self.oci_error(r, what, true, e))
            }
        })
        .await?;
        Stats::add(&self.stats.blobs_uploaded, 1);
        Stats::add(&self.stats.bytes_uploaded, desc.size);
        progress.finish(desc, false);
        Ok(true)
    }

    /// Puts a manifest or index under `reference` (a tag, or its digest).
    pub async fn put_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        self.authorize(r, true).await?;
        let oci_ref = self.oci_ref(r, Some(reference));
        let what = format!("manifest {}:{reference}", r.repository);
        let content_type =
            reqwest::header::HeaderValue::from_str(&desc.media_type).map_err(|_| {
                RegistryError::NotAManifest {
                    registry: self.registry.clone(),
                    what: what.clone(),
                    media_type: desc.media_type.clone(),
                }
            })?;
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(&what, || async {
            self.client
                .push_manifest_raw(&oci_ref, data.clone(), content_type.clone())
                .await
                .map_err(|e| self.oci_error(r, &what, true, e))
        })
        .await?;
        Stats::add(&self.stats.manifests_pushed, 1);
        Ok(())
    }
}
