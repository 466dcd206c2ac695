//! Getting an image into the cache (by pull policy) and out of it verified.
//!
//! Every use re-verifies from the cache: blob digests are re-hashed and the
//! cached signatures are checked against the policy in force now, so a
//! policy change applies to images pulled before it.

use bpfman_image::content::{ContentError, ImageContent};
use bpfman_image::inspect::InspectError;
use bpfman_image::reference::ImageRef;
use bpfman_image::registry::{NoProgress, RegistryError, TransportOptions};
use bpfman_image::signing::{self, SignError};
use bpfman_image::store::{ImageStore, StoreError};
use bpfman_image::transfer::TransferError;
use bpfman_image_spec::digest::Digest;
use bpfman_trust::policy::Policy;
use bpfman_trust::verdict::{self, Proof, Refusal, Subject, Verdict};

use crate::cache::{Admission, Cache, CacheError, ImageRecord, now};

impl From<StoreError> for ImageError {
    fn from(e: StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}

/// When to contact the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Resolve the reference at the registry every time.
    Always,
    /// Use the cached image for this reference if there is one.
    #[default]
    IfNotPresent,
    /// Never contact the registry; the image must be cached.
    Never,
}

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Layout(#[from] InspectError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(
        "{reference} is not in the cache and the pull policy is Never; pull it first (bpfman-load pull {reference}) or use another pull policy"
    )]
    NotCached { reference: String },
    #[error("{0}")]
    Refused(Box<Refusal>),
}

/// The cache key of a reference: `registry/repo:tag`,
/// `registry/repo@digest`, or `oci:/absolute/dir:tag` for a layout.
pub fn cache_key(r: &ImageRef) -> String {
    match r {
        ImageRef::Registry(r) => match (&r.digest, &r.tag) {
            (Some(d), _) => format!("{}@{d}", r.name()),
            (None, t) => format!("{}:{}", r.name(), t.as_deref().unwrap_or("latest")),
        },
        ImageRef::Layout(l) => {
            let dir = std::fs::canonicalize(&l.dir).unwrap_or_else(|_| l.dir.clone());
            format!(
                "oci:{}:{}",
                dir.display(),
                l.tag
                    .as_deref()
                    .unwrap_or(bpfman_image::reference::DEFAULT_TAG)
            )
        }
    }
}

/// The name trust policies see: `registry/repo`, or `oci:/absolute/dir`.
pub fn identity(r: &ImageRef) -> Result<String, ImageError> {
    Ok(match r {
        ImageRef::Registry(r) => r.name(),
        ImageRef::Layout(l) => signing::layout_identity(&l.dir)?,
    })
}

/// Copies `r` into the cache with its signatures, from a registry or a
/// local layout: the reference is resolved once, the image is read by that
/// digest, and its signatures (both formats) come along.
pub async fn pull(
    cache: &Cache,
    opts: &TransportOptions,
    r: &ImageRef,
) -> Result<ImageRecord, ImageError> {
    let store = ImageStore::open_to_read(r, opts).await?;
    let resolved = store.resolve_as(r).await?;
    // The image and its signatures (by the digest just resolved) at once.
    let signatures = store.signatures();
    let digest = &resolved.top.digest;
    let (content, (legacy, mut others), bundles) = futures_util::try_join!(
        async { Ok::<_, ImageError>(store.fetch(&resolved, &NoProgress).await?) },
        async { Ok(signatures.legacy(digest).await?) },
        async { Ok(signatures.bundles(digest).await?) },
    )?;
    others.extend(bundles);
    Ok(cache.store(&cache_key(r), &identity(r)?, &content, &legacy, &others)?)
}

/// The cached record for `r` under `policy`, pulling as the policy says.
pub async fn ensure(
    cache: &Cache,
    opts: &TransportOptions,
    r: &ImageRef,
    policy: PullPolicy,
) -> Result<ImageRecord, ImageError> {
    let key = cache_key(r);
    let mut cached = cache.lookup(&key)?;
    if cached.is_none()
        && let ImageRef::Registry(rr) = r
        && let Some(d) = &rr.digest
    {
        // A pinned reference names its bytes: whichever reference brought
        // them into the cache, they are the same image (and the policy
        // judges them under this reference's name when they are used).
        cached = cache.image(d)?;
    }
    match (policy, cached) {
        (PullPolicy::Always, _) => pull(cache, opts, r).await,
        (_, Some(rec)) => Ok(rec),
        (PullPolicy::IfNotPresent, None) => pull(cache, opts, r).await,
        (PullPolicy::Never, None) => Err(ImageError::NotCached { reference: key }),
    }
}

/// A cached image admitted by the policy: its bytes, re-hashed, and the
/// proof for exactly their digest.
#[derive(Debug)]
pub struct Admitted {
    pub record: ImageRecord,
    pub content: ImageContent,
    pub proof: Proof,
    pub verdict: Verdict,
}

/// Verifies the cached image `record` (pulled as `r`) against `policy`,
/// offline. Records the admission, or returns the refusal.
pub fn verify_cached(
    cache: &Cache,
    r: &ImageRef,
    record: ImageRecord,
    policy: &Policy,
) -> Result<Admitted, ImageError> {
    let content = cache.content(&record)?;
    let found = cache.signatures(&record)?;
    let identity = identity(r)?;
    let verdict = verdict::evaluate(
        Subject {
            identity: &identity,
            digest: &record.digest,
        },
        &found,
        policy,
    );
    let proof = verdict
        .decision
        .clone()
        .map_err(|refusal| ImageError::Refused(Box::new(refusal)))?;
    if !proof.covers(&content.top.digest) {
        // The record's blobs end with the top document; a record that does
        // not is corrupt.
        return Err(ImageError::Cache(CacheError::Missing {
            path: cache.blob_path(&record.digest),
            digest: record.digest.clone(),
        }));
    }
    cache.mark_used(
        &record.digest,
        Admission {
            scope: proof.admitted_by().to_string(),
            policy: proof.policy().to_string(),
            signed_by: proof.signed_by().iter().map(ToString::to_string).collect(),
            at: now(),
        },
    )?;
    Ok(Admitted {
        record,
        content,
        proof,
        verdict,
    })
}

/// Finds a cached image by reference or digest (`sha256:...`, or a unique
/// prefix of its hex of at least 12 characters).
pub fn find(cache: &Cache, what: &str) -> Result<Option<ImageRecord>, ImageError> {
    if let Ok(d) = what.parse::<Digest>() {
        return Ok(cache.image(&d)?);
    }
    if what.len() >= 12 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
        let matches: Vec<ImageRecord> = cache
            .images()?
            .into_iter()
            .filter(|r| r.digest.hex().starts_with(what))
            .collect();
        if matches.len() == 1 {
            return Ok(matches.into_iter().next());
        }
    }
    match what.parse::<ImageRef>() {
        Ok(r) => Ok(cache.lookup(&cache_key(&r))?),
        Err(_) => Ok(None),
    }
}
