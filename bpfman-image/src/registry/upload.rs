//! Writing to a registry: blobs (skipped when present) and manifests.
//!
//! A blob goes up in as few requests as the registry allows: a small one
//! in one monolithic `PUT` after the `POST` that opens the session, a
//! large one in one `PATCH` of the whole body and a closing `PUT`. A
//! registry that asks for chunks gets them: when it answers the single
//! `PATCH` with 416 (or 413), or refuses the monolithic `PUT`, the upload
//! starts again in chunks of [`UPLOAD_CHUNK`], or of its
//! `OCI-Chunk-Min-Length` if that is larger.

use std::sync::Arc;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::Descriptor;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION};

use crate::reference::RegistryRef;

use super::*;

/// Chunk size when the registry wants chunks.
pub const UPLOAD_CHUNK: usize = 4 << 20;

/// Blobs up to this size go in one monolithic `PUT`.
pub const MONOLITHIC_MAX: usize = 1 << 20;

/// How one upload attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `POST`, then `PUT ?digest=` with the body.
    Monolithic,
    /// `POST`, one `PATCH` of the body, then `PUT ?digest=`.
    Streamed,
    /// `POST`, a `PATCH` per chunk, then `PUT ?digest=`.
    Chunked,
}

/// A session's answer that says: send chunks instead.
struct WantsChunks {
    min_chunk: usize,
}

/// An upload session the registry has opened: where to send the next
/// request, and the smallest chunk it takes.
struct Session {
    location: String,
    min_chunk: usize,
}

/// Mount attempts per blob, one per repository known to hold it.
const MOUNT_TRIES: usize = 2;

impl Registry {
    /// True if the repository already has the blob.
    pub async fn has_blob(&self, r: &RegistryRef, digest: &Digest) -> Result<bool, RegistryError> {
        let token = self.authorize(r, false).await?;
        let what = format!("blob {digest}");
        let url = self.repo_url(r, &format!("blobs/{digest}"));
        let found = self
            .retry(&what, || async {
                let req = self.with_auth(self.http.head(&url), token.as_deref());
                let resp = req.send().await.map_err(|e| self.reqwest_error(&what, e))?;
                match resp.status().as_u16() {
                    // A redirect sends the bytes from storage: it has them.
                    200..=299 | 301..=303 | 307 | 308 => Ok(true),
                    404 => Ok(false),
                    _ => Err(self.response_error(r, &what, false, resp).await),
                }
            })
            .await?;
        if found {
            self.seen(r, digest);
        }
        Ok(found)
    }

    /// Remembers that `r`'s repository holds `digest`.
    pub(super) fn seen(&self, r: &RegistryRef, digest: &Digest) {
        if let Some(l) = &self.locations {
            l.record(&self.registry, &digest.to_string(), &r.repository);
        }
    }

    /// Asks the registry to mount `digest` into `r`'s repository from one
    /// it was seen in. `Ok(None)`: mounted. `Ok(Some(session))`: declined,
    /// with the upload session it opened instead (to be used). Errors are
    /// not fatal: the caller uploads.
    async fn mount(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        token: Option<&str>,
        what: &str,
    ) -> Option<Option<Session>> {
        let l = self.locations.as_ref()?;
        for from in l
            .known(&self.registry, &digest.to_string(), &r.repository)
            .into_iter()
            .take(MOUNT_TRIES)
        {
            let url = self.repo_url(r, &format!("blobs/uploads/?mount={digest}&from={from}"));
            let req = self.with_auth(self.http.post(&url).header(CONTENT_LENGTH, 0), token);
            let Ok(resp) = self.send(r, req, what, &[201, 202]).await else {
                continue;
            };
            if resp.status() == 201 {
                tracing::debug!(registry = %self.registry, %digest, %from, "mounted");
                return Some(None);
            }
            // Declined (the blob is gone there, or we may not read it):
            // the registry opened an ordinary session instead.
            let session = self.location(resp.headers(), what).ok()?;
            return Some(Some(Session {
                location: session,
                min_chunk: chunk_min_length(resp.headers()),
            }));
        }
        None
    }

    /// Uploads a blob unless the repository has it; returns true if it was
    /// uploaded.
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
        let token = self.authorize(r, true).await?;
        let what = format!("upload of blob {}", desc.digest);
        let mut opened = match self.mount(r, &desc.digest, token.as_deref(), &what).await {
            Some(None) => {
                Stats::add(&self.stats.blobs_mounted, 1);
                self.seen(r, &desc.digest);
                progress.finish(desc, true);
                return Ok(false);
            }
            Some(Some(session)) => Some(session),
            None => None,
        };
        let data = bytes::Bytes::copy_from_slice(bytes);
        let first = if data.len() <= MONOLITHIC_MAX {
            Shape::Monolithic
        } else {
            Shape::Streamed
        };
        let (data, what) = (&data, &what);
        let tok = token.as_deref();
        self.retry(what, || {
            // A session the mount attempt opened serves the first try.
            let session = opened.take();
            let progress = &progress;
            async move {
                progress.start(desc, "push");
                match self.upload_once(r, desc, data, tok, first, session, what).await? {
                    Ok(()) => Ok(()),
                    Err(WantsChunks { min_chunk }) => {
                        tracing::info!(registry = %self.registry, blob = %desc.digest, "the registry wants chunks; uploading in chunks");
                        progress.start(desc, "push");
                        let session = Session {
                            location: String::new(),
                            min_chunk,
                        };
                        let chunked = Shape::Chunked;
                        match self
                            .upload_once(r, desc, data, tok, chunked, Some(session), what)
                            .await?
                        {
                            Ok(()) => Ok(()),
                            Err(_) => Err(RegistryError::Protocol {
                                registry: self.registry.clone(),
                                what: what.clone(),
                                message: "the registry refused the upload in chunks as well as whole"
                                    .into(),
                            }),
                        }
                    }
                }
            }
        })
        .await?;
        self.seen(r, &desc.digest);
        progress.advance(desc, desc.size);
        Stats::add(&self.stats.blobs_uploaded, 1);
        Stats::add(&self.stats.bytes_uploaded, desc.size);
        progress.finish(desc, false);
        Ok(true)
    }

    /// One upload session from `POST` (unless `session` is one already
    /// open; one with no location only carries a chunk size) to the
    /// closing `PUT`. The inner error says the registry wants chunks
    /// (only for the first shapes).
    #[allow(clippy::too_many_arguments)]
    async fn upload_once(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        data: &bytes::Bytes,
        token: Option<&str>,
        shape: Shape,
        session: Option<Session>,
        what: &str,
    ) -> Result<Result<(), WantsChunks>, RegistryError> {
        let (mut location, min_chunk) = match session {
            Some(s) if !s.location.is_empty() => (s.location, s.min_chunk),
            other => {
                let post = self.repo_url(r, "blobs/uploads/");
                let req = self.with_auth(self.http.post(&post).header(CONTENT_LENGTH, 0), token);
                let resp = self.send(r, req, what, &[202]).await?;
                let min = other.map_or(0, |s| s.min_chunk);
                (
                    self.location(resp.headers(), what)?,
                    min.max(chunk_min_length(resp.headers())),
                )
            }
        };
        let wants_chunks = || {
            Ok(Err(WantsChunks {
                min_chunk: min_chunk.max(UPLOAD_CHUNK),
            }))
        };
        let body: bytes::Bytes = match shape {
            Shape::Monolithic => data.clone(),
            Shape::Streamed => {
                let req = self.patch(&location, data.clone(), 0, token);
                let resp = self.send(r, req, what, &[202, 413, 416]).await?;
                if resp.status() != 202 {
                    return wants_chunks();
                }
                location = self.location(resp.headers(), what)?;
                bytes::Bytes::new()
            }
            Shape::Chunked => {
                let size = min_chunk.max(UPLOAD_CHUNK);
                let mut at = 0;
                while at < data.len() {
                    let end = (at + size).min(data.len());
                    let req = self.patch(&location, data.slice(at..end), at, token);
                    let resp = self.send(r, req, what, &[202]).await?;
                    location = self.location(resp.headers(), what)?;
                    at = end;
                }
                bytes::Bytes::new()
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", desc.digest);
        let req = self.with_auth(
            self.http
                .put(&put)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, body.len())
                .body(body),
            token,
        );
        // A registry that refuses a monolithic PUT says so with 400, 405
        // or 413; it gets chunks instead.
        let refused: &[u16] = if shape == Shape::Monolithic {
            &[201, 400, 405, 413]
        } else {
            &[201]
        };
        let resp = self.send(r, req, what, refused).await?;
        if resp.status() != 201 {
            return wants_chunks();
        }
        Ok(Ok(()))
    }

    fn patch(
        &self,
        location: &str,
        chunk: bytes::Bytes,
        at: usize,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let end = (at + chunk.len()).saturating_sub(1);
        self.with_auth(
            self.http
                .patch(location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, chunk.len())
                .header(CONTENT_RANGE, format!("{at}-{end}"))
                .body(chunk),
            token,
        )
    }

    /// Sends `req`; a status outside `expected` is an error.
    async fn send(
        &self,
        r: &RegistryRef,
        req: reqwest::RequestBuilder,
        what: &str,
        expected: &[u16],
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = req.send().await.map_err(|e| self.reqwest_error(what, e))?;
        if expected.contains(&resp.status().as_u16()) {
            return Ok(resp);
        }
        Err(self.response_error(r, what, true, resp).await)
    }

    /// The upload session's next URL, from `Location` (absolute, or a path
    /// on this registry).
    fn location(&self, headers: &HeaderMap, what: &str) -> Result<String, RegistryError> {
        let loc = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry.clone(),
                what: what.into(),
                message: "the registry opened an upload without a Location".into(),
            })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_string()
            } else {
                format!("{}/{}", self.origin(), loc.trim_start_matches('/'))
            },
        )
    }

    /// Puts a manifest or index under `reference` (a tag, or its digest).
    pub async fn put_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let token = self.authorize(r, true).await?;
        let what = format!("manifest {}:{reference}", r.repository);
        let url = self.repo_url(r, &format!("manifests/{reference}"));
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
            let req = self
                .http
                .put(&url)
                .header(CONTENT_TYPE, content_type.clone())
                .body(data.clone());
            let req = self.with_auth(req, token.as_deref());
            self.send(r, req, &what, &[200, 201, 202, 204])
                .await
                .map(drop)
        })
        .await?;
        Stats::add(&self.stats.manifests_pushed, 1);
        Ok(())
    }
}

/// The smallest chunk the registry takes (`OCI-Chunk-Min-Length`), or 0.
fn chunk_min_length(headers: &HeaderMap) -> usize {
    headers
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
