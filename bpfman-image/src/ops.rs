//! The operations of `bpfman-image`, as a library: building into a
//! layout, pushing, copying (push and pull are copies), tagging, signing
//! and verifying. The CLI parses arguments, calls these, and prints; any
//! other front end (a CI plugin, a controller) calls the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::Descriptor;
use bpfman_trust::cosign;
use bpfman_trust::keys::{KeyId, PrivateKey};
use bpfman_trust::policy::Policy;
use bpfman_trust::verdict::Verdict;

use crate::builder::Built;
use crate::content::ImageContent;
use crate::layout::{self, LayoutError, WriteOutcome};
use crate::reference::{ImageRef, LayoutRef, valid_tag};
use crate::registry::Progress;
use crate::signing::{self, Resolved, SignError, Store};
use crate::store::{ImageStore, StoreError};

/// Which cosign signature format to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "frontend", derive(clap::ValueEnum))]
pub enum SignatureFormat {
    /// The `sha256-<hex>.sig` tag with a simple signing payload (cosign 1
    /// and 2; what most tooling reads).
    #[default]
    Legacy,
    /// A Sigstore bundle stored as an OCI 1.1 referrer (cosign 3).
    Bundle,
}

impl SignatureFormat {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Legacy => "cosign .sig",
            Self::Bundle => "sigstore bundle referrer",
        }
    }
}

/// What went wrong in an operation, naming the image.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(
        "'{tag}' is not a valid tag: use up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    BadTag { tag: String },
    #[error(
        "'{tag}' is the tag of a signature or attestation (sha256-<hex>[.sig|.att|.sbom]); those are written by sign, not by hand"
    )]
    SignatureTag { tag: String },
    #[error("cannot write {reference}")]
    Write {
        reference: String,
        #[source]
        source: LayoutError,
    },
    #[error(
        "the image was copied to {destination}, but its signatures were not; retry, or pass --no-signatures"
    )]
    Signatures {
        destination: String,
        #[source]
        source: Box<SignError>,
    },
    #[error("cannot sign {reference}")]
    Sign {
        reference: String,
        #[source]
        source: Box<SignError>,
    },
    #[error("cannot read the signatures of {reference}")]
    ReadSignatures {
        reference: String,
        #[source]
        source: Box<SignError>,
    },
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}

/// Writes a built image into a layout under its tag (default `latest`);
/// with `force`, replacing a tag that names another image. Returns the
/// pinned reference and what changed.
pub fn write_built(
    built: &Built,
    target: &LayoutRef,
    force: bool,
) -> Result<(String, WriteOutcome), OpError> {
    let tag = target.tag_or_default();
    check_tag(tag)?;
    let outcome = layout::write_image(&target.dir, tag, &built.top, &built.blobs(), force)
        .map_err(|source| OpError::Write {
            reference: format!("oci:{}:{tag}", target.dir.display()),
            source,
        })?;
    let pinned = format!("oci:{}:{tag}@{}", target.dir.display(), built.top.digest);
    Ok((pinned, outcome))
}

/// A signature to make as part of a write: with this key, in this format,
/// with these annotations in its payload.
#[derive(Debug, Clone, Copy)]
pub struct SignWith<'a> {
    pub key: &'a PrivateKey,
    pub format: SignatureFormat,
    pub annotations: &'a BTreeMap<String, String>,
}

/// A build written (and signed, when asked).
#[derive(Debug, Clone)]
pub struct Published {
    /// Where, pinned to the digest.
    pub pinned: String,
    /// For a layout: what changed.
    pub outcome: Option<WriteOutcome>,
    pub signed: Option<Signed>,
}

/// Writes a built image into a layout and signs it there, as one commit:
/// if signing fails, the tag is put back as it was (a layout this call
/// created is removed), and nothing is reported as written.
pub async fn publish_to_layout(
    built: &Built,
    target: &LayoutRef,
    force: bool,
    sign: Option<SignWith<'_>>,
) -> Result<Published, OpError> {
    let tag = target.tag_or_default();
    let existed = target.dir.exists();
    let previous = layout::Layout::open(&target.dir)
        .ok()
        .and_then(|l| l.resolve(tag).ok().cloned());
    let (pinned, outcome) = write_built(built, target, force)?;
    let Some(sign) = sign else {
        return Ok(Published {
            pinned,
            outcome: Some(outcome),
            signed: None,
        });
    };
    let store = Store::Layout {
        dir: target.dir.clone(),
    };
    let signed = async {
        let resolved = Resolved {
            identity: signing::layout_identity(&target.dir)?,
            top: built.top.clone(),
        };
        sign_resolved(
            &store,
            &resolved,
            sign.key,
            None,
            sign.format,
            sign.annotations,
        )
        .await
    }
    .await;
    match signed {
        Ok(signed) => Ok(Published {
            pinned,
            outcome: Some(outcome),
            signed: Some(signed),
        }),
        Err(source) => {
            undo_write(target, outcome, existed, previous.as_ref());
            Err(OpError::Sign {
                reference: format!("oci:{}:{tag}", target.dir.display()),
                source: Box::new(source),
            })
        }
    }
}

/// Undoes a layout write whose signing failed (best effort: what cannot
/// be undone is logged; fsck reports it).
fn undo_write(
    target: &LayoutRef,
    outcome: WriteOutcome,
    existed: bool,
    previous: Option<&Descriptor>,
) {
    let tag = target.tag_or_default();
    let undone = match outcome {
        WriteOutcome::Unchanged => Ok(()),
        WriteOutcome::Created => std::fs::remove_dir_all(&target.dir).and_then(|()| {
            if existed {
                std::fs::create_dir(&target.dir)
            } else {
                Ok(())
            }
        }),
        WriteOutcome::Updated => layout::restore_tag(&target.dir, tag, previous)
            .map_err(|e| std::io::Error::other(e.to_string())),
    };
    if let Err(e) = undone {
        tracing::warn!(
            "cannot undo the write of tag {tag} in '{}': {e}",
            target.dir.display()
        );
    }
}

/// Pushes a built image and signs it, as one commit: the image goes up by
/// digest, is signed, and only then is the tag set, so a failed signature
/// leaves no tag naming an unsigned image.
pub async fn publish_to_registry(
    built: &Built,
    dst: &ImageStore,
    sign: Option<SignWith<'_>>,
    progress: Arc<dyn Progress>,
) -> Result<Published, OpError> {
    check_destination(dst)?;
    let (ImageStore::Registry { reg, at }, Some(sign)) = (dst, sign) else {
        let pinned = push_built(built, dst, progress).await?;
        return Ok(Published {
            pinned,
            outcome: None,
            signed: None,
        });
    };
    let content = ImageContent::from_built(built);
    let by_digest = crate::reference::RegistryRef {
        tag: None,
        digest: Some(built.top.digest.clone()),
        ..at.clone()
    };
    crate::transfer::push(reg, &by_digest, &content, progress)
        .await
        .map_err(|source| {
            OpError::Store(Box::new(StoreError::Push {
                reference: at.to_string(),
                source,
            }))
        })?;
    let resolved = Resolved {
        identity: at.name(),
        top: built.top.clone(),
    };
    let signed = sign_resolved(
        &dst.signatures(),
        &resolved,
        sign.key,
        None,
        sign.format,
        sign.annotations,
    )
    .await
    .map_err(|source| OpError::Sign {
        reference: at.to_string(),
        source: Box::new(source),
    })?;
    let tag = at.tag_or_default().unwrap_or(crate::reference::DEFAULT_TAG);
    let top = content.blob(&built.top.digest).unwrap_or_default();
    reg.put_manifest(at, tag, &built.top, top)
        .await
        .map_err(|source| {
            OpError::Store(Box::new(StoreError::Tag {
                reference: at.to_string(),
                source,
            }))
        })?;
    Ok(Published {
        pinned: at.pinned(&built.top.digest),
        outcome: None,
        signed: Some(signed),
    })
}

/// Refuses tags only signing may write.
fn check_tag(tag: &str) -> Result<(), OpError> {
    if !valid_tag(tag) {
        return Err(OpError::BadTag { tag: tag.into() });
    }
    if cosign::is_artifact_tag(tag) {
        return Err(OpError::SignatureTag { tag: tag.into() });
    }
    Ok(())
}

/// The tag a write to `store` would set, checked.
fn check_destination(store: &ImageStore) -> Result<(), OpError> {
    match store.reference() {
        ImageRef::Layout(l) => check_tag(l.tag_or_default()),
        ImageRef::Registry(r) => r.tag.as_deref().map_or(Ok(()), check_tag),
    }
}

/// Pushes a built image to the store (a registry repository, usually).
pub async fn push_built(
    built: &Built,
    dst: &ImageStore,
    progress: Arc<dyn Progress>,
) -> Result<String, OpError> {
    check_destination(dst)?;
    Ok(dst
        .write(&ImageContent::from_built(built), progress)
        .await?)
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The destination, pinned to the image's digest.
    pub written: String,
    /// Signatures copied along (none when not asked).
    pub signatures: usize,
}

/// Copies an image between stores, every blob verified on the way, and
/// its signatures (both formats) when `signatures` is set.
pub async fn copy(
    src: &ImageStore,
    dst: &ImageStore,
    signatures: bool,
    progress: Arc<dyn Progress>,
) -> Result<Copied, OpError> {
    check_destination(dst)?;
    // Blobs move while the image is validated beside them; nothing names
    // it at the destination unless it passes.
    let (content, _) = src.read_content(progress.as_ref()).await?;
    let content = Arc::new(content);
    let check = {
        let content = content.clone();
        tokio::task::spawn_blocking(move || crate::inspect::read_image(&content).map(|_| ()))
    };
    let gate = async {
        match check.await {
            Ok(verdict) => verdict.map_err(|e| src.invalid(e)),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    };
    let written = dst.write_gated(&content, progress, gate).await?;
    let signatures = if signatures {
        signing::copy_signatures(&src.signatures(), &dst.signatures(), &content.top)
            .await
            .map_err(|source| OpError::Signatures {
                destination: dst.reference().to_string(),
                source: Box::new(source),
            })?
    } else {
        0
    };
    Ok(Copied {
        written,
        signatures,
    })
}

/// Gives the store's image more tags, in the same layout or repository.
/// A tag that names another image is refused unless `force`; tags only
/// signing may write are always refused.
pub async fn tag(store: &ImageStore, tags: &[String], force: bool) -> Result<Vec<String>, OpError> {
    for t in tags {
        check_tag(t)?;
    }
    Ok(store.tag(tags, force).await?)
}

/// A signature written.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Where it went: the `.sig` tag, or the referrer's digest.
    pub stored: String,
    /// What the policy scopes see: `registry/repo` or `oci:/dir`.
    pub identity: String,
    pub digest: Digest,
    pub key: KeyId,
    pub format: SignatureFormat,
}

/// Signs the image a store's reference names (resolved once).
pub async fn sign(
    store: &ImageStore,
    key: &PrivateKey,
    certificate: Option<&cosign::SigningCertificate>,
    identity: Option<&str>,
    format: SignatureFormat,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, OpError> {
    let resolved = store.resolve().await?;
    sign_resolved_with(
        &store.signatures(),
        &resolved,
        key,
        certificate,
        identity,
        format,
        annotations,
    )
    .await
    .map_err(|source| OpError::Sign {
        reference: store.reference().to_string(),
        source: Box::new(source),
    })
}

/// Signs the image `resolved` names, in `store`. `identity` is the
/// docker-reference claimed in the payload (default: the resolved one).
pub async fn sign_resolved(
    store: &Store<'_>,
    resolved: &Resolved,
    key: &PrivateKey,
    identity: Option<&str>,
    format: SignatureFormat,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    sign_resolved_with(store, resolved, key, None, identity, format, annotations).await
}

/// [`sign_resolved`], carrying the key's certificate (and chain) when
/// given: cosign's `--certificate`, for signers with their own CA.
pub async fn sign_resolved_with(
    store: &Store<'_>,
    resolved: &Resolved,
    key: &PrivateKey,
    certificate: Option<&cosign::SigningCertificate>,
    identity: Option<&str>,
    format: SignatureFormat,
    annotations: &BTreeMap<String, String>,
) -> Result<Signed, SignError> {
    let digest = &resolved.top.digest;
    let claimed = identity.unwrap_or(&resolved.identity);
    let stored = match format {
        SignatureFormat::Legacy => {
            let mut layer = cosign::sign_legacy(key, claimed, digest, annotations);
            if let Some(c) = certificate {
                c.annotate(&mut layer);
            }
            store.add_legacy(digest, &[layer]).await?;
            format!("{}:{}", resolved.identity, cosign::signature_tag(digest))
        }
        SignatureFormat::Bundle => {
            let bundle = cosign::sign_bundle_with(key, claimed, digest, annotations, certificate);
            let referrer = store.add_bundle(&resolved.top, &bundle).await?;
            format!("{}@{}", resolved.identity, referrer.digest)
        }
    };
    Ok(Signed {
        stored,
        identity: resolved.identity.clone(),
        digest: digest.clone(),
        key: key.public().id().clone(),
        format,
    })
}

/// Verifies the image a store's reference names against a policy: every
/// signature found (both formats) is judged; the verdict says whether the
/// policy admits it, and why.
pub async fn verify(
    store: &ImageStore,
    resolved: Resolved,
    policy: &Policy,
) -> Result<(Resolved, Verdict), OpError> {
    let verdict = store
        .signatures()
        .verify(&resolved, policy)
        .await
        .map_err(|source| OpError::ReadSignatures {
            reference: store.reference().to_string(),
            source: Box::new(source),
        })?;
    Ok((resolved, verdict))
}
