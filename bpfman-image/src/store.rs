//! Where images live, as one type: a local OCI image layout, or a
//! repository in a registry together with its connection. Reading,
//! writing, tagging, resolving and the signatures beside an image go
//! through it, whichever of the two it is.

use std::sync::Arc;

use crate::content::{ContentError, ImageContent};
use crate::inspect::{self, InspectError, ReadResult};
use crate::layout::{self, LayoutError};
use crate::reference::{ImageRef, LayoutRef, RegistryRef};
use crate::registry::mirrors::Endpoint;
use crate::registry::{Progress, Registry, RegistryError, TransportOptions};
use crate::signing::{self, Resolved, SignError, Store};
use crate::transfer::{self, TransferError};

/// What went wrong reading or writing a store; each names the image.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect for {reference}")]
    Connect {
        reference: String,
        #[source]
        source: RegistryError,
    },
    #[error("cannot read {reference}")]
    Layout {
        reference: String,
        #[source]
        source: InspectError,
    },
    #[error("cannot read {reference}")]
    LayoutContent {
        reference: String,
        #[source]
        source: ContentError,
    },
    #[error("cannot pull {reference}")]
    Pull {
        reference: String,
        #[source]
        source: TransferError,
    },
    #[error("{reference} is not a valid eBPF bytecode image")]
    Invalid {
        reference: String,
        #[source]
        source: InspectError,
    },
    #[error("cannot write {reference}")]
    Write {
        reference: String,
        #[source]
        source: LayoutError,
    },
    #[error("cannot push to {reference}")]
    Push {
        reference: String,
        #[source]
        source: TransferError,
    },
    #[error("cannot tag {reference}")]
    Tag {
        reference: String,
        #[source]
        source: RegistryError,
    },
    #[error(
        "{reference} already names a different image ({existing}); pass --force to move the tag, or choose another"
    )]
    TagTaken {
        reference: String,
        existing: bpfman_image_spec::digest::Digest,
    },
    #[error("{0}")]
    Blocked(String),
    #[error("cannot resolve {reference}")]
    Resolve {
        reference: String,
        #[source]
        source: Box<SignError>,
    },
}

/// An image's home: a layout, or a registry repository and its connection.
#[derive(Debug)]
pub enum ImageStore {
    Layout(LayoutRef),
    Registry { reg: Box<Registry>, at: RegistryRef },
}

/// An image as read: its content, what validation found, and the
/// reference it was read under (a layout's with its tag filled in).
#[derive(Debug)]
pub struct ReadImage {
    pub content: ImageContent,
    pub read: ReadResult,
    pub shown: ImageRef,
}

impl ImageStore {
    /// The store of `r`, connected if it is in a registry: the registry
    /// itself (at its registries.conf location), never a mirror. For
    /// writing, and wherever the source must answer.
    pub async fn open(r: &ImageRef, opts: &TransportOptions) -> Result<Self, StoreError> {
        Ok(match r {
            ImageRef::Layout(l) => Self::Layout(l.clone()),
            ImageRef::Registry(rr) => {
                let end = opts
                    .registries
                    .push_endpoint(rr)
                    .map_err(StoreError::Blocked)?;
                Self::connect(opts, &end).await?
            }
        })
    }

    async fn connect(opts: &TransportOptions, end: &Endpoint) -> Result<Self, StoreError> {
        let mut o;
        let opts = if end.insecure {
            o = opts.clone();
            o.insecure.push(end.at.registry.clone());
            &o
        } else {
            opts
        };
        let reg = Registry::connect(opts, &end.at)
            .await
            .map_err(|source| StoreError::Connect {
                reference: end.at.to_string(),
                source,
            })?;
        Ok(Self::Registry {
            reg: Box::new(reg),
            at: end.at.clone(),
        })
    }

    /// The store to read `r` from: the first of its registries.conf
    /// mirrors that has it (asked with one resolve each), else the registry
    /// itself (not asked: reading it will tell). What a mirror serves is
    /// checked by digest like anything else; resolve with
    /// [`ImageStore::resolve_as`] so that signatures are judged under
    /// `r`'s own name.
    pub async fn open_to_read(r: &ImageRef, opts: &TransportOptions) -> Result<Self, StoreError> {
        let ImageRef::Registry(rr) = r else {
            return Self::open(r, opts).await;
        };
        let ends = opts
            .registries
            .pull_endpoints(rr)
            .map_err(StoreError::Blocked)?;
        let mut last = None;
        for end in &ends {
            if !end.mirror {
                return Self::connect(opts, end).await;
            }
            let tried = async {
                let store = Self::connect(opts, end).await?;
                store.resolve().await?;
                Ok::<_, StoreError>(store)
            }
            .await;
            match tried {
                Ok(store) => {
                    tracing::info!("reading {rr} from mirror {}", end.at);
                    return Ok(store);
                }
                Err(e) => {
                    tracing::warn!("mirror {} of {rr} failed, trying the next: {e}", end.at);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Blocked(format!("no registry to read {rr} from"))))
    }

    /// Resolves (one request to a registry), naming the image as `r` is
    /// written: a mirror or a rewritten location serves bytes, never a
    /// name for the policy.
    pub async fn resolve_as(&self, r: &ImageRef) -> Result<Resolved, StoreError> {
        let mut resolved = self.resolve().await?;
        if let ImageRef::Registry(rr) = r {
            resolved.identity = rr.name();
        }
        Ok(resolved)
    }

    /// The reference this store was opened for.
    pub fn reference(&self) -> ImageRef {
        match self {
            Self::Layout(l) => ImageRef::Layout(l.clone()),
            Self::Registry { at, .. } => ImageRef::Registry(at.clone()),
        }
    }

    /// The registry connection, for a registry store.
    pub fn registry(&self) -> Option<&Registry> {
        match self {
            Self::Registry { reg, .. } => Some(reg),
            Self::Layout(_) => None,
        }
    }

    /// Where this image's signatures are.
    pub fn signatures(&self) -> Store<'_> {
        match self {
            Self::Layout(l) => Store::Layout { dir: l.dir.clone() },
            Self::Registry { reg, at } => Store::registry(reg, at),
        }
    }

    /// Resolves the reference to its manifest or index, once (one request
    /// to a registry).
    pub async fn resolve(&self) -> Result<Resolved, StoreError> {
        let resolved = match self {
            Self::Layout(l) => signing::resolve_layout(l),
            Self::Registry { reg, at } => signing::resolve_registry(reg, at).await,
        };
        resolved.map_err(|source| StoreError::Resolve {
            reference: self.reference().to_string(),
            source: Box::new(source),
        })
    }

    /// The content of the image `resolved` names, read by its digest (so
    /// a tag moved since does not matter), every blob digest-checked.
    pub async fn fetch(
        &self,
        resolved: &Resolved,
        progress: &dyn Progress,
    ) -> Result<ImageContent, StoreError> {
        let reference = self.reference().to_string();
        match self {
            Self::Layout(l) => layout::Layout::open(&l.dir)
                .map_err(ContentError::from)
                .and_then(|layout| ImageContent::from_layout(&layout, &resolved.top))
                .map_err(|source| StoreError::LayoutContent { reference, source }),
            Self::Registry { reg, at } => {
                transfer::pull(reg, &at.with_digest(resolved.top.digest.clone()), progress)
                    .await
                    .map_err(|source| StoreError::Pull { reference, source })
            }
        }
    }

    /// Reads and validates the image (pulled, from a registry), every
    /// blob digest-checked.
    pub async fn read(&self, progress: &dyn Progress) -> Result<ReadImage, StoreError> {
        let (content, shown) = self.read_content(progress).await?;
        let read = inspect::read_image(&content).map_err(|e| self.invalid(e))?;
        Ok(ReadImage {
            content,
            read,
            shown,
        })
    }

    /// Reads the image (pulled, from a registry), every blob
    /// digest-checked, but not yet validated as a bytecode image
    /// ([`inspect::read_image`] does that); with the reference to show for
    /// it.
    pub async fn read_content(
        &self,
        progress: &dyn Progress,
    ) -> Result<(ImageContent, ImageRef), StoreError> {
        let reference = self.reference().to_string();
        match self {
            Self::Layout(l) => {
                let layout_err = |source| StoreError::Layout {
                    reference: reference.clone(),
                    source,
                };
                let (layout, tag, top) = inspect::resolve_layout(l).map_err(layout_err)?;
                let content = ImageContent::from_layout(&layout, &top)
                    .map_err(|e| layout_err(InspectError::from(e)))?;
                let shown = ImageRef::Layout(LayoutRef {
                    dir: l.dir.clone(),
                    tag: Some(tag),
                });
                Ok((content, shown))
            }
            Self::Registry { reg, at } => {
                let content = transfer::pull(reg, at, progress)
                    .await
                    .map_err(|source| StoreError::Pull { reference, source })?;
                Ok((content, self.reference()))
            }
        }
    }

    /// The error for content read from here that does not validate.
    pub fn invalid(&self, source: InspectError) -> StoreError {
        let reference = self.reference().to_string();
        match self {
            Self::Layout(_) => StoreError::Layout { reference, source },
            Self::Registry { .. } => StoreError::Invalid { reference, source },
        }
    }

    /// Writes an image here (a layout's tag, default `latest`, is
    /// replaced); returns the reference pinned to its digest.
    pub async fn write(
        &self,
        content: &ImageContent,
        progress: Arc<dyn Progress>,
    ) -> Result<String, StoreError> {
        self.write_gated(content, progress, async { Ok(()) }).await
    }

    /// Like [`Self::write`], with `gate` (a check of the content, such as
    /// its validation) run beside the transfer: blobs go up while it runs,
    /// and nothing names the image (no manifest, no tag) unless it passes.
    pub async fn write_gated(
        &self,
        content: &ImageContent,
        progress: Arc<dyn Progress>,
        gate: impl Future<Output = Result<(), StoreError>>,
    ) -> Result<String, StoreError> {
        let reference = self.reference().to_string();
        match self {
            Self::Layout(l) => {
                gate.await?;
                let tag = l.tag_or_default();
                layout::write_image(&l.dir, tag, &content.top, &content.blobs(), true)
                    .map_err(|source| StoreError::Write { reference, source })?;
                Ok(format!(
                    "oci:{}:{tag}@{}",
                    l.dir.display(),
                    content.top.digest
                ))
            }
            Self::Registry { reg, at } => {
                let blobs = async {
                    transfer::push_blobs(reg, at, content, progress)
                        .await
                        .map_err(|source| StoreError::Push {
                            reference: reference.clone(),
                            source,
                        })
                };
                let (blobs, gate) = futures_util::join!(blobs, gate);
                // The check's verdict first: a blob that failed to go up
                // matters less than content that must not be named.
                gate?;
                blobs?;
                transfer::push_manifests(reg, at, content)
                    .await
                    .map(|p| p.pinned)
                    .map_err(|source| StoreError::Push { reference, source })
            }
        }
    }

    /// Tags the image with `tags`, in the same layout or repository;
    /// returns each new reference pinned to the digest. A tag that names
    /// another image is refused unless `force`.
    pub async fn tag(&self, tags: &[String], force: bool) -> Result<Vec<String>, StoreError> {
        let reference = self.reference().to_string();
        let mut out = Vec::new();
        match self {
            Self::Layout(l) => {
                let (layout, _, top) =
                    inspect::resolve_layout(l).map_err(|source| StoreError::Layout {
                        reference: reference.clone(),
                        source,
                    })?;
                let content = ImageContent::from_layout(&layout, &top).map_err(|source| {
                    StoreError::LayoutContent {
                        reference: reference.clone(),
                        source,
                    }
                })?;
                for t in tags {
                    layout::write_image(&l.dir, t, &content.top, &content.blobs(), force).map_err(
                        |source| StoreError::Write {
                            reference: format!("oci:{}:{t}", l.dir.display()),
                            source,
                        },
                    )?;
                    out.push(format!(
                        "oci:{}:{t}@{}",
                        l.dir.display(),
                        content.top.digest
                    ));
                }
            }
            Self::Registry { reg, at } => {
                let err = |source| StoreError::Tag {
                    reference: reference.clone(),
                    source,
                };
                let top = reg.get_manifest(at, None).await.map_err(err)?;
                for t in tags {
                    if !force
                        && let Some(old) = reg.find_manifest(at, t).await.map_err(err)?
                        && old.descriptor.digest != top.descriptor.digest
                    {
                        return Err(StoreError::TagTaken {
                            reference: at.with_tag(t).to_string(),
                            existing: old.descriptor.digest,
                        });
                    }
                    reg.put_manifest(at, t, &top.descriptor, &top.bytes)
                        .await
                        .map_err(|source| StoreError::Tag {
                            reference: at.with_tag(t).to_string(),
                            source,
                        })?;
                    out.push(at.with_tag(t).pinned(&top.descriptor.digest));
                }
            }
        }
        Ok(out)
    }
}
