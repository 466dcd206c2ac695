//! Signatures stored next to images, in registries and in layouts.
//!
//! [`Store`] reads and writes both cosign formats where an image lives:
//! the `sha256-<hex>.sig` tag, and bundle referrers (the OCI 1.1 referrers
//! API where the registry has it, else the `sha256-<hex>` fallback tag; in a
//! layout, the fallback tag, so a copied layout directory carries its
//! signatures). Deciding what the signatures are worth is
//! [`bpfman_trust::verdict::evaluate`]'s job; this module only fetches.
//!
//! The reference is resolved to a digest once ([`resolve`]); everything
//! after works from that digest, and [`pull_verified`] returns the image
//! bytes only together with a proof for exactly their digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::{Descriptor, ImageIndex, ImageManifest};
use bpfman_trust::cosign::{
    self, BUNDLE_V03, Found, LegacyLayer, MAX_SIGNATURE_BLOB, MAX_SIGNATURES, SIMPLE_SIGNING,
    Stored,
};
use bpfman_trust::policy::Policy;
use bpfman_trust::verdict::{self, Proof, Refusal, Subject, Verdict};

use crate::content::ImageContent;
use crate::inspect::{self, InspectError};
use crate::layout::{self, Layout, LayoutError};
use crate::reference::{LayoutRef, RegistryRef};
use crate::registry::{NoProgress, Registry, RegistryError};
use crate::transfer::{self, TransferError};

/// Why signatures could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("{what} in {place} is not a valid OCI document: {source}")]
    Json {
        what: String,
        place: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{place} holds {count} signatures for {digest}, more than the {MAX_SIGNATURES} we read; refusing it (someone may be flooding the repository)"
    )]
    TooMany {
        place: String,
        digest: Digest,
        count: usize,
    },
    #[error("cannot write a signature to {place}")]
    Write {
        place: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve layout path '{path}': {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(Box<Refusal>),
}

/// An image reference resolved, once, to the document it names.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What trust policy scopes match: `registry/repository`, or
    /// `oci:/absolute/dir` for a layout.
    pub identity: String,
    /// The manifest or index (its bytes were checked against it).
    pub top: Descriptor,
}

/// Where an image and its signatures live.
#[derive(Debug)]
pub enum Store<'a> {
    /// A repository; make it with [`Store::registry`], which drops the
    /// reference's tag and digest (a pinned `repo` would pin every read).
    Registry {
        reg: &'a Registry,
        repo: RegistryRef,
    },
    Layout {
        dir: PathBuf,
    },
}

/// Resolves a registry reference to its manifest or index (one request).
pub async fn resolve_registry(reg: &Registry, r: &RegistryRef) -> Result<Resolved, SignError> {
    let f = reg.get_manifest(r, None).await?;
    Ok(Resolved {
        identity: r.name(),
        top: f.descriptor,
    })
}

/// Resolves a layout reference to its manifest or index, present and
/// intact, like a registry's answer.
pub fn resolve_layout(l: &LayoutRef) -> Result<Resolved, SignError> {
    let (layout, _, top) = inspect::resolve_layout(l)?;
    layout.read_blob(&top)?;
    Ok(Resolved {
        identity: layout_identity(&l.dir)?,
        top,
    })
}

/// The identity policy scopes see for a layout: `oci:` and its absolute,
/// symlink-free path.
pub fn layout_identity(dir: &Path) -> Result<String, SignError> {
    let abs = std::fs::canonicalize(dir).map_err(|source| SignError::Path {
        path: dir.into(),
        source,
    })?;
    Ok(format!("oci:{}", abs.display()))
}

impl<'a> Store<'a> {
    /// The repository of `r` in `reg` (its tag and digest do not matter:
    /// signatures are found by the digest they are for).
    pub fn registry(reg: &'a Registry, r: &RegistryRef) -> Self {
        Store::Registry {
            reg,
            repo: RegistryRef {
                tag: None,
                digest: None,
                ..r.clone()
            },
        }
    }
}

impl Store<'_> {
    fn place(&self) -> String {
        match self {
            Store::Registry { repo, .. } => repo.name(),
            Store::Layout { dir } => format!("oci:{}", dir.display()),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, SignError> {
        serde_json::from_slice(bytes).map_err(|source| SignError::Json {
            what: what.into(),
            place: self.place(),
            source,
        })
    }

    /// The document tagged `tag`, if there is one.
    async fn tagged(&self, tag: &str) -> Result<Option<(Descriptor, Vec<u8>)>, SignError> {
        match self {
            Store::Registry { reg, repo } => Ok(reg
                .find_manifest(repo, tag)
                .await?
                .map(|f| (f.descriptor, f.bytes))),
            Store::Layout { dir } => {
                let layout = Layout::open(dir)?;
                let Ok(desc) = layout.resolve(tag) else {
                    return Ok(None);
                };
                let bytes = layout.read_blob(desc)?;
                Ok(Some((desc.clone(), bytes)))
            }
        }
    }

    /// A blob or manifest by descriptor, digest-checked.
    async fn fetch(&self, desc: &Descriptor) -> Result<Vec<u8>, SignError> {
        match self {
            Store::Registry { reg, repo } => {
                if bpfman_image_spec::media::is_manifest(&desc.media_type) {
                    Ok(reg
                        .get_manifest(repo, Some(&desc.digest.to_string()))
                        .await?
                        .bytes)
                } else {
                    Ok(reg
                        .get_blob(repo, desc, MAX_SIGNATURE_BLOB, &NoProgress)
                        .await?)
                }
            }
            Store::Layout { dir } => Ok(Layout::open(dir)?.read_blob(desc)?),
        }
    }

    /// Stores `stored` (children first) under `tag`.
    async fn put(&self, stored: &Stored, tag: &str) -> Result<(), SignError> {
        // Fault injection for the tests: a signature write failing as on
        // a full disk.
        if std::env::var_os("BPFMAN_IMAGE_FAULT").is_some_and(|v| v == "signature-write") {
            return Err(SignError::Write {
                place: self.place(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        match self {
            Store::Registry { reg, repo } => push(reg, &repo.with_tag(tag), stored).await,
            Store::Layout { dir } => {
                let mut blobs: Vec<&[u8]> =
                    stored.blobs.iter().map(|(_, b)| b.as_slice()).collect();
                blobs.push(&stored.top_bytes);
                layout::write_image(dir, tag, &stored.top, &blobs, true)?;
                Ok(())
            }
        }
    }

    /// The layers of the `.sig` manifest for `digest`: readable ones, and
    /// what was wrong with the others.
    pub async fn legacy(
        &self,
        digest: &Digest,
    ) -> Result<(Vec<LegacyLayer>, Vec<Found>), SignError> {
        let tag = cosign::signature_tag(digest);
        let Some((_, bytes)) = self.tagged(&tag).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let manifest: ImageManifest = self.json(&format!("signature manifest {tag}"), &bytes)?;
        if manifest.layers.len() > MAX_SIGNATURES {
            return Err(SignError::TooMany {
                place: self.place(),
                digest: digest.clone(),
                count: manifest.layers.len(),
            });
        }
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for (i, layer) in manifest.layers.iter().enumerate() {
            let origin = format!("{tag} layer {}", i + 1);
            let problem = if layer.media_type != SIMPLE_SIGNING {
                Some(format!(
                    "media type '{}', not {SIMPLE_SIGNING}",
                    layer.media_type
                ))
            } else if layer.size > MAX_SIGNATURE_BLOB {
                Some(format!(
                    "{} bytes, too large for a signature payload",
                    layer.size
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                bad.push(Found::Unreadable { origin, problem });
                continue;
            }
            let payload = self.fetch(layer).await?;
            good.push(LegacyLayer {
                payload,
                annotations: layer.annotations.clone(),
            });
        }
        Ok((good, bad))
    }

    /// The referrers index of `digest`: from the referrers API, else the
    /// fallback tag. `api` says which.
    async fn referrers(&self, digest: &Digest) -> Result<(Option<ImageIndex>, bool), SignError> {
        if let Store::Registry { reg, repo } = self
            && let Some(f) = reg.get_referrers(repo, digest, BUNDLE_V03).await?
        {
            return Ok((Some(self.json("referrers list", &f.bytes)?), true));
        }
        let tag = cosign::referrers_tag(digest);
        match self.tagged(&tag).await? {
            Some((d, bytes)) if bpfman_image_spec::media::is_index(&d.media_type) => Ok((
                Some(self.json(&format!("referrers index {tag}"), &bytes)?),
                false,
            )),
            // Something else under the tag: not a referrers index, no bundles.
            _ => Ok((None, false)),
        }
    }

    /// The sigstore bundles stored as referrers of `digest`.
    pub async fn bundles(&self, digest: &Digest) -> Result<Vec<Found>, SignError> {
        let (Some(index), _) = self.referrers(digest).await? else {
            return Ok(Vec::new());
        };
        let referrers = cosign::bundle_referrers(&index);
        if referrers.len() > MAX_SIGNATURES {
            return Err(SignError::TooMany {
                place: self.place(),
                digest: digest.clone(),
                count: referrers.len(),
            });
        }
        let mut out = Vec::new();
        for d in referrers {
            let origin = format!("referrer {}", d.digest);
            let bytes = self.fetch(d).await?;
            let manifest: ImageManifest = self.json(&origin, &bytes)?;
            match cosign::bundle_layer(&manifest, digest) {
                Ok(layer) if layer.size <= MAX_SIGNATURE_BLOB => {
                    let bundle = self.fetch(layer).await?;
                    out.push(Found::Bundle { origin, bundle });
                }
                Ok(layer) => out.push(Found::Unreadable {
                    origin,
                    problem: format!("bundle of {} bytes is too large", layer.size),
                }),
                Err(problem) => out.push(Found::Unreadable { origin, problem }),
            }
        }
        Ok(out)
    }

    /// Every signature stored for `digest`, in both formats.
    pub async fn signatures(&self, digest: &Digest) -> Result<Vec<Found>, SignError> {
        let tag = cosign::signature_tag(digest);
        let (good, bad) = self.legacy(digest).await?;
        let mut found: Vec<Found> = good
            .iter()
            .enumerate()
            .map(|(i, l)| l.found(format!("{tag} layer {}", i + 1)))
            .collect();
        found.extend(bad);
        found.extend(self.bundles(digest).await?);
        Ok(found)
    }

    /// Adds legacy signature layers for `digest`, keeping those already
    /// there. Returns the `.sig` manifest's descriptor.
    pub async fn add_legacy(
        &self,
        digest: &Digest,
        new: &[LegacyLayer],
    ) -> Result<Descriptor, SignError> {
        let (mut layers, bad) = self.legacy(digest).await?;
        for b in &bad {
            tracing::warn!(
                origin = b.origin(),
                "dropping an unreadable layer of the signature manifest"
            );
        }
        layers.extend_from_slice(new);
        if layers.len() > MAX_SIGNATURES {
            return Err(SignError::TooMany {
                place: self.place(),
                digest: digest.clone(),
                count: layers.len(),
            });
        }
        let stored = cosign::legacy_manifest(&layers);
        self.put(&stored, &cosign::signature_tag(digest)).await?;
        Ok(stored.top)
    }

    /// Stores `bundle` as a referrer of `subject`, and lists it in the
    /// fallback index unless the registry has the referrers API.
    pub async fn add_bundle(
        &self,
        subject: &Descriptor,
        bundle: &[u8],
    ) -> Result<Descriptor, SignError> {
        let stored = cosign::bundle_manifest(subject, bundle, None);
        let (existing, api) = self.referrers(&subject.digest).await?;
        let (desc, bytes) = cosign::referrers_index(existing.as_ref(), &stored.top);
        let tag = cosign::referrers_tag(&subject.digest);
        match self {
            Store::Registry { reg, repo } => {
                // By digest: the registry indexes it by its subject...
                push(reg, &repo.with_digest(stored.top.digest.clone()), &stored).await?;
                // ...or, without the referrers API, the fallback tag lists it.
                if !api {
                    let index = Stored {
                        top: desc,
                        top_bytes: bytes,
                        blobs: Vec::new(),
                    };
                    self.put(&index, &tag).await?;
                }
            }
            Store::Layout { .. } => {
                // A layout has no untagged documents: one write of the
                // referrer's blobs, the referrer, and the index listing it.
                let mut blobs = stored.blobs.clone();
                blobs.push((stored.top.clone(), stored.top_bytes.clone()));
                let index = Stored {
                    top: desc,
                    top_bytes: bytes,
                    blobs,
                };
                self.put(&index, &tag).await?;
            }
        }
        Ok(stored.top)
    }

    /// Checks the signatures of `resolved` against `policy`.
    pub async fn verify(&self, resolved: &Resolved, policy: &Policy) -> Result<Verdict, SignError> {
        let found = self.signatures(&resolved.top.digest).await?;
        let subject = Subject {
            identity: &resolved.identity,
            digest: &resolved.top.digest,
        };
        Ok(verdict::evaluate(subject, &found, policy))
    }
}

/// Pushes `stored` to `target` (a tag or the digest), children first.
async fn push(reg: &Registry, target: &RegistryRef, stored: &Stored) -> Result<(), SignError> {
    let mut content = ImageContent::new(stored.top.clone());
    for (d, b) in &stored.blobs {
        content.insert(d.clone(), b.clone());
    }
    content.insert(stored.top.clone(), stored.top_bytes.clone());
    transfer::push(reg, target, &content, Arc::new(NoProgress)).await?;
    Ok(())
}

/// Copies the signatures of `top` (both formats) from `src` to `dst`,
/// merging with any already there. Returns how many were copied. Only
/// well-formed signatures are copied; none is checked (copying is not
/// trusting).
pub async fn copy_signatures(
    src: &Store<'_>,
    dst: &Store<'_>,
    top: &Descriptor,
) -> Result<usize, SignError> {
    let (legacy, _) = src.legacy(&top.digest).await?;
    if !legacy.is_empty() {
        dst.add_legacy(&top.digest, &legacy).await?;
    }
    let mut n = legacy.len();
    for found in src.bundles(&top.digest).await? {
        if let Found::Bundle { bundle, .. } = found {
            dst.add_bundle(top, &bundle).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Pulls `r` only if `policy` admits it: the tag is resolved once, the
/// signatures are checked over that digest, and the image is fetched by
/// that digest, so the bytes returned are exactly the bytes the proof is
/// about.
pub async fn pull_verified(
    reg: &Registry,
    r: &RegistryRef,
    policy: &Policy,
) -> Result<(ImageContent, Proof, Verdict), SignError> {
    let store = Store::registry(reg, r);
    let resolved = resolve_registry(reg, r).await?;
    let verdict = store.verify(&resolved, policy).await?;
    let proof = verdict
        .decision
        .clone()
        .map_err(|refusal| SignError::Refused(Box::new(refusal)))?;
    let pinned = r.with_digest(proof.digest().clone());
    let content = transfer::pull(reg, &pinned, &NoProgress).await?;
    // transfer::pull checked the top against the pinned digest; check
    // again here, where the guarantee is made.
    if !proof.covers(&content.top.digest) {
        return Err(SignError::Transfer(TransferError::PinMismatch {
            reference: pinned.to_string(),
            pinned: proof.digest().clone(),
            actual: content.top.digest,
        }));
    }
    Ok((content, proof, verdict))
}
