//! The image cache: a content-addressed blob store with a sled index.
//!
//! Layout under the root (default `/var/lib/bpfman-load`):
//!
//! ```text
//! blobs/sha256/<hex>   every blob of every cached image and its signatures
//! tmp/                 blobs being written (renamed into blobs/ once checked)
//! quarantine/          blobs fsck found corrupt, kept for inspection
//! db/                  sled: refs (name -> digest), images (digest -> record)
//! lock                 the lock file (see `lock`)
//! ```
//!
//! A blob is written to `tmp/`, synced, and renamed into place only after its
//! digest and size match; a failed or interrupted pull leaves nothing in
//! `blobs/` that is not whole and correct. Reads re-hash every blob, so a
//! blob corrupted on disk is an error (run `fsck`), never silently used.
//! Signature artifacts are cached with the image so verification can be
//! repeated offline, against whatever the policy is at the time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bpfman_image::content::ImageContent;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::oci::Descriptor;
use bpfman_trust::cosign::{Found, LegacyLayer};
use serde::{Deserialize, Serialize};

/// The default cache root.
pub const DEFAULT_ROOT: &str = "/var/lib/bpfman-load";

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot {action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cache index in '{path}' cannot be used: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("the program state in the cache index is unusable: {0}")]
    State(String),
    #[error("cache record for {key} is unreadable ({source}); run bpfman-load fsck")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "blob {expected} is corrupt on disk ('{path}' hashes to {found}, {size} bytes); run bpfman-load fsck, then pull again"
    )]
    Corrupt {
        path: PathBuf,
        expected: Digest,
        found: Digest,
        size: u64,
    },
    #[error(
        "blob {digest} is missing from the cache ('{path}'); run bpfman-load fsck, then pull again"
    )]
    Missing { path: PathBuf, digest: Digest },
    #[error(
        "refusing to cache blob {expected}: the bytes hash to {found} ({size} bytes, expected {expected_size})"
    )]
    Mismatch {
        expected: Digest,
        expected_size: u64,
        found: Digest,
        size: u64,
    },
}

/// One signature of a cached image, as stored. `source` is where it was
/// pulled from (`registry/repo` or `oci:/dir`): an image pulled from
/// several places keeps the signatures of each, and a pull from one place
/// replaces only that place's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum CachedSignature {
    /// A `.sig` layer: the payload blob and the layer's annotations.
    Legacy {
        origin: String,
        #[serde(default)]
        source: String,
        payload: Descriptor,
        annotations: BTreeMap<String, String>,
    },
    /// A bundle referrer's bundle blob.
    Bundle {
        origin: String,
        #[serde(default)]
        source: String,
        bundle: Descriptor,
    },
    /// Something found where signatures live that was not readable.
    Unreadable {
        origin: String,
        #[serde(default)]
        source: String,
        problem: String,
    },
}

impl CachedSignature {
    /// Where it was pulled from; empty in records written before sources
    /// were kept.
    pub fn source(&self) -> &str {
        match self {
            Self::Legacy { source, .. }
            | Self::Bundle { source, .. }
            | Self::Unreadable { source, .. } => source,
        }
    }
}

/// The same signature bytes (wherever they were found).
fn same_signature(a: &CachedSignature, b: &CachedSignature) -> bool {
    match (a, b) {
        (
            CachedSignature::Legacy {
                payload: pa,
                annotations: aa,
                ..
            },
            CachedSignature::Legacy {
                payload: pb,
                annotations: ab,
                ..
            },
        ) => pa.digest == pb.digest && aa == ab,
        (
            CachedSignature::Bundle { bundle: ba, .. },
            CachedSignature::Bundle { bundle: bb, .. },
        ) => ba.digest == bb.digest,
        _ => false,
    }
}

/// What the policy said when the image was last verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// `scope 'PATTERN' (RULE, ORIGIN)`.
    pub scope: String,
    pub policy: String,
    pub signed_by: Vec<String>,
    /// Seconds since the epoch.
    pub at: u64,
}

/// Everything the cache knows about one image (by its top digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub digest: Digest,
    pub media_type: String,
    /// Names this image was pulled as (`registry/repo:tag` or `@digest`).
    pub references: BTreeSet<String>,
    /// Every blob of the image, children first, the top document last.
    pub blobs: Vec<Descriptor>,
    pub signatures: Vec<CachedSignature>,
    /// The last verification that admitted it.
    pub admitted: Option<Admission>,
    pub pulled_at: u64,
    pub last_used: u64,
}

impl ImageRecord {
    /// Total bytes of the image's blobs.
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|d| d.size).sum()
    }

    /// Every blob this record needs: the image's and its signatures'.
    pub fn needed(&self) -> impl Iterator<Item = &Digest> {
        let signatures = self.signatures.iter().filter_map(|s| match s {
            CachedSignature::Legacy { payload, .. } => Some(&payload.digest),
            CachedSignature::Bundle { bundle, .. } => Some(&bundle.digest),
            CachedSignature::Unreadable { .. } => None,
        });
        self.blobs.iter().map(|d| &d.digest).chain(signatures)
    }
}

/// What `fsck` found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    pub blobs_checked: usize,
    /// Corrupt blobs, moved to `quarantine/`.
    pub quarantined: Vec<Digest>,
    /// Images that lost a blob and were dropped from the index (pull again).
    pub images_dropped: Vec<Digest>,
    /// Leftovers of interrupted writes removed from `tmp/`.
    pub temp_removed: usize,
}

/// The cache at one root.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    db: sled::Db,
    refs: sled::Tree,
    images: sled::Tree,
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn mkdir(path: &Path) -> Result<(), CacheError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("create directory", path))
}

/// Opens the state database. The caller holds the root's lock, so a sled
/// file lock still held can only be this process's own handle, just
/// dropped: sled lets go of it from its flusher thread, a moment later
/// (`apply --watch` reopens the root every round). That is waited for,
/// briefly; anything else is an error at once.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.kind() == io::ErrorKind::Other
                    && e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`. Directories are 0700:
    /// the cache decides what runs in the kernel.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for d in ["blobs/sha256", "tmp", "quarantine"] {
            mkdir(&root.join(d))?;
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set permissions of", root))?;
        let db_path = root.join("db");
        let db = open_db(&db_path).map_err(|source| CacheError::Db {
            path: db_path.clone(),
            source,
        })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| CacheError::Db {
                path: db_path.clone(),
                source,
            })
        };
        Ok(Self {
            refs: tree("refs")?,
            images: tree("images")?,
            root: root.into(),
            db,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Another tree of the same database (sled allows one open per
    /// process), for the program state.
    pub fn tree(&self, name: &str) -> Result<(sled::Db, sled::Tree), CacheError> {
        let tree = self.db.open_tree(name).map_err(|e| self.db_err(e))?;
        Ok((self.db.clone(), tree))
    }

    fn db_err(&self, source: sled::Error) -> CacheError {
        CacheError::Db {
            path: self.root.join("db"),
            source,
        }
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Stores `bytes` as the blob `desc` names, after checking digest and
    /// size. A blob already present is left alone.
    pub fn write_blob(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), CacheError> {
        let found = Digest::of(bytes);
        if found != desc.digest || bytes.len() as u64 != desc.size {
            return Err(CacheError::Mismatch {
                expected: desc.digest.clone(),
                expected_size: desc.size,
                found,
                size: bytes.len() as u64,
            });
        }
        let path = self.blob_path(&desc.digest);
        if path.exists() {
            return Ok(());
        }
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::Builder::new()
            .prefix(desc.digest.hex())
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create a temporary file in", &tmp_dir))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_err("write", &path))?;
        tmp.persist(&path)
            .map_err(|e| io_err("rename into", &path)(e.error))?;
        if let Some(dir) = path.parent()
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a blob and checks it against `desc`.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(&desc.digest);
        let bytes =
            bpfman_trust::file::read_at_most(&path, desc.size, bpfman_trust::file::Links::Refuse)
                .map_err(|source| {
                if source.kind() == io::ErrorKind::NotFound {
                    CacheError::Missing {
                        path: path.clone(),
                        digest: desc.digest.clone(),
                    }
                } else {
                    io_err("read", &path)(source)
                }
            })?;
        let found = Digest::of(&bytes);
        if found != desc.digest || bytes.len() as u64 != desc.size {
            return Err(CacheError::Corrupt {
                path,
                expected: desc.digest.clone(),
                found,
                size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Stores a whole image and its signatures, found at `source`
    /// (`registry/repo` or `oci:/dir`), then records it under `reference`.
    /// The signatures replace those pulled from `source` before and join
    /// those from elsewhere. Blobs first, the index last: a crash in
    /// between leaves only unreferenced blobs, which `prune` removes.
    pub fn store(
        &self,
        reference: &str,
        source: &str,
        content: &ImageContent,
        legacy: &[LegacyLayer],
        found: &[Found],
    ) -> Result<ImageRecord, CacheError> {
        let tag = bpfman_trust::cosign::signature_tag(&content.top.digest);
        for d in content.descriptors() {
            let bytes = content.blob(&d.digest).unwrap_or_default();
            self.write_blob(d, bytes)?;
        }
        let mut signatures = Vec::new();
        for (i, l) in legacy.iter().enumerate() {
            let payload = Descriptor::for_bytes(bpfman_trust::cosign::SIMPLE_SIGNING, &l.payload);
            self.write_blob(&payload, &l.payload)?;
            signatures.push(CachedSignature::Legacy {
                origin: format!("{source} {tag} layer {}", i + 1),
                source: source.into(),
                payload,
                annotations: l.annotations.clone(),
            });
        }
        for f in found {
            match f {
                Found::Bundle { origin, bundle } => {
                    let desc = Descriptor::for_bytes(bpfman_trust::cosign::BUNDLE_V03, bundle);
                    self.write_blob(&desc, bundle)?;
                    signatures.push(CachedSignature::Bundle {
                        origin: format!("{source} {origin}"),
                        source: source.into(),
                        bundle: desc,
                    });
                }
                Found::Unreadable { origin, problem } => {
                    signatures.push(CachedSignature::Unreadable {
                        origin: format!("{source} {origin}"),
                        source: source.into(),
                        problem: problem.clone(),
                    });
                }
                Found::Legacy { .. } => {}
            }
        }
        let previous = self.image(&content.top.digest)?;
        // The union: what other places gave stays (unless this pull has
        // the same signature too).
        if let Some(p) = &previous {
            let kept: Vec<CachedSignature> = p
                .signatures
                .iter()
                .filter(|s| !s.source().is_empty() && s.source() != source)
                .filter(|s| !signatures.iter().any(|n| same_signature(n, s)))
                .cloned()
                .collect();
            signatures.extend(kept);
        }
        let mut references = previous
            .as_ref()
            .map(|p| p.references.clone())
            .unwrap_or_default();
        references.insert(reference.into());
        let record = ImageRecord {
            digest: content.top.digest.clone(),
            media_type: content.top.media_type.clone(),
            references,
            blobs: content.descriptors().to_vec(),
            signatures,
            admitted: previous.as_ref().and_then(|p| p.admitted.clone()),
            pulled_at: now(),
            last_used: previous.map_or(0, |p| p.last_used),
        };
        self.put_record(&record)?;
        self.set_ref(reference, &record.digest)?;
        Ok(record)
    }

    fn put_record(&self, record: &ImageRecord) -> Result<(), CacheError> {
        let json = serde_json::to_vec(record)
            .unwrap_or_else(|e| unreachable!("serializing an image record: {e}"));
        self.images
            .insert(record.digest.to_string(), json)
            .map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Points `reference` at `digest`, taking it off any image it named
    /// before (a tag moves).
    fn set_ref(&self, reference: &str, digest: &Digest) -> Result<(), CacheError> {
        if let Some(old) = self.resolve(reference)?
            && &old != digest
            && let Some(mut rec) = self.image(&old)?
        {
            rec.references.remove(reference);
            self.put_record(&rec)?;
        }
        self.refs
            .insert(reference, digest.to_string().as_bytes())
            .map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// A pull of `reference` that the policy refused: the refused image
    /// `digest` loses the name and its admission (its blobs stay for
    /// `prune`), and the name points again at what it named before, if
    /// that is still cached.
    pub fn refuse(
        &self,
        reference: &str,
        digest: &Digest,
        previous: Option<&Digest>,
    ) -> Result<(), CacheError> {
        if let Some(mut rec) = self.image(digest)? {
            rec.references.remove(reference);
            rec.admitted = None;
            self.put_record(&rec)?;
        }
        match previous {
            Some(p) if p != digest => {
                if let Some(mut rec) = self.image(p)? {
                    rec.references.insert(reference.into());
                    self.put_record(&rec)?;
                    return self.set_ref(reference, p);
                }
            }
            _ => {}
        }
        self.refs.remove(reference).map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The digest `reference` was last pulled as, if any.
    pub fn resolve(&self, reference: &str) -> Result<Option<Digest>, CacheError> {
        let Some(v) = self.refs.get(reference).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        let s = String::from_utf8_lossy(&v).into_owned();
        match s.parse() {
            Ok(d) => Ok(Some(d)),
            Err(_) => Ok(None),
        }
    }

    /// The record `reference` was last pulled as, if any.
    pub fn lookup(&self, reference: &str) -> Result<Option<ImageRecord>, CacheError> {
        match self.resolve(reference)? {
            Some(d) => self.image(&d),
            None => Ok(None),
        }
    }

    /// The record of `digest`, if cached.
    pub fn image(&self, digest: &Digest) -> Result<Option<ImageRecord>, CacheError> {
        let key = digest.to_string();
        let Some(v) = self.images.get(&key).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|source| CacheError::Record { key, source })
    }

    /// Every cached image, by digest.
    pub fn images(&self) -> Result<Vec<ImageRecord>, CacheError> {
        let mut out = Vec::new();
        for item in self.images.iter() {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            out.push(
                serde_json::from_slice(&v).map_err(|source| CacheError::Record { key, source })?,
            );
        }
        Ok(out)
    }

    /// Records that an image was verified and used now.
    pub fn mark_used(&self, digest: &Digest, admission: Admission) -> Result<(), CacheError> {
        if let Some(mut rec) = self.image(digest)? {
            rec.last_used = admission.at;
            rec.admitted = Some(admission);
            self.put_record(&rec)?;
        }
        Ok(())
    }

    /// The image's blobs, every one re-hashed.
    pub fn content(&self, record: &ImageRecord) -> Result<ImageContent, CacheError> {
        let top = record
            .blobs
            .last()
            .cloned()
            .unwrap_or_else(|| Descriptor::for_bytes(&record.media_type, b""));
        let mut content = ImageContent::new(top);
        for d in &record.blobs {
            content.insert(d.clone(), self.read_blob(d)?);
        }
        Ok(content)
    }

    /// The image's cached signatures, every blob re-hashed, ready to check.
    pub fn signatures(&self, record: &ImageRecord) -> Result<Vec<Found>, CacheError> {
        record
            .signatures
            .iter()
            .map(|s| {
                Ok(match s {
                    CachedSignature::Legacy {
                        origin,
                        payload,
                        annotations,
                        ..
                    } => LegacyLayer {
                        payload: self.read_blob(payload)?,
                        annotations: annotations.clone(),
                    }
                    .found(origin.clone()),
                    CachedSignature::Bundle { origin, bundle, .. } => Found::Bundle {
                        origin: origin.clone(),
                        bundle: self.read_blob(bundle)?,
                    },
                    CachedSignature::Unreadable {
                        origin, problem, ..
                    } => Found::Unreadable {
                        origin: origin.clone(),
                        problem: problem.clone(),
                    },
                })
            })
            .collect()
    }

    /// Removes the image `digest` and every reference to it (its blobs go
    /// at the next `prune`).
    pub fn remove_image(&self, digest: &Digest) -> Result<Option<ImageRecord>, CacheError> {
        let Some(rec) = self.image(digest)? else {
            return Ok(None);
        };
        for r in &rec.references {
            if self.resolve(r)?.as_ref() == Some(digest) {
                self.refs.remove(r.as_str()).map_err(|e| self.db_err(e))?;
            }
        }
        self.images
            .remove(digest.to_string())
            .map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(Some(rec))
    }

    fn blob_files(&self) -> Result<Vec<(Digest, PathBuf)>, CacheError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let path = entry.map_err(io_err("read directory", &dir))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match format!("sha256:{name}").parse::<Digest>() {
                Ok(d) => out.push((d, path)),
                // Not ours: never touched.
                Err(_) => tracing::warn!(path = %path.display(), "stray file in the blob store"),
            }
        }
        Ok(out)
    }

    fn blobs_in_use(&self) -> Result<HashSet<Digest>, CacheError> {
        let mut used = HashSet::new();
        for rec in self.images()? {
            used.extend(rec.needed().cloned());
        }
        Ok(used)
    }

    /// Removes images `keep` says no to, then every blob no remaining image
    /// uses. Returns (images removed, blobs removed, bytes freed).
    pub fn prune(
        &self,
        mut keep: impl FnMut(&ImageRecord) -> bool,
    ) -> Result<(Vec<ImageRecord>, usize, u64), CacheError> {
        let mut removed = Vec::new();
        for rec in self.images()? {
            if !keep(&rec) {
                self.remove_image(&rec.digest)?;
                removed.push(rec);
            }
        }
        let used = self.blobs_in_use()?;
        let (mut blobs, mut bytes) = (0, 0);
        for (digest, path) in self.blob_files()? {
            if !used.contains(&digest) {
                bytes += fs::metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                blobs += 1;
            }
        }
        Ok((removed, blobs, bytes))
    }

    /// Re-hashes every blob; corrupt ones move to `quarantine/`, images
    /// missing a blob leave the index, leftovers in `tmp/` go.
    pub fn fsck(&self) -> Result<FsckReport, CacheError> {
        let mut report = FsckReport::default();
        let quarantine = self.root.join("quarantine");
        for (digest, path) in self.blob_files()? {
            report.blobs_checked += 1;
            // A blob that is no regular file (a link, a FIFO) or is larger
            // than any we store is as corrupt as one with the wrong bytes.
            let intact = bpfman_trust::file::read_at_most(
                &path,
                bpfman_image_spec::layer::MAX_OBJECT_SIZE,
                bpfman_trust::file::Links::Refuse,
            )
            .is_ok_and(|bytes| Digest::of(&bytes) == digest);
            if !intact {
                let to = quarantine.join(digest.hex());
                fs::rename(&path, &to).map_err(io_err("quarantine", &path))?;
                tracing::warn!(%digest, to = %to.display(), "corrupt blob quarantined");
                report.quarantined.push(digest);
            }
        }
        for rec in self.images()? {
            if rec.needed().any(|d| !self.blob_path(d).exists()) {
                self.remove_image(&rec.digest)?;
                report.images_dropped.push(rec.digest);
            }
        }
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_err("read directory", &tmp))? {
            let path = entry.map_err(io_err("read directory", &tmp))?.path();
            if fs::remove_file(&path).is_ok() {
                report.temp_removed += 1;
            }
        }
        Ok(report)
    }
}
