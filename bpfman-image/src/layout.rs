//! OCI image layouts on disk: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
//!
//! Writes never leave partial output: a new layout is built in a temporary
//! sibling directory and renamed into place; in an existing layout each blob
//! is written to a temporary file, synced and renamed after its digest is
//! known, and `index.json` is replaced by rename last. If anything fails, the
//! blobs this write added are removed again.
//!
//! Reads trust nothing: every blob is checked against its descriptor's size
//! and digest before it is returned.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{
    Descriptor, ImageIndex, LAYOUT_VERSION, LayoutMarker, to_canonical_json,
};
use bpfman_image_spec::validate::MAX_DOCUMENT_SIZE;

const MARKER: &str = "oci-layout";
const INDEX: &str = "index.json";

/// Why a layout could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot {action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "'{path}' exists but is not an OCI image layout (no oci-layout file) and is not empty; choose another directory"
    )]
    NotALayout { path: PathBuf },
    #[error("'{path}' does not exist; build or pull an image into it first")]
    Missing { path: PathBuf },
    #[error("'{path}' is not valid JSON for an OCI {what}")]
    BadJson {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("'{path}' has image layout version '{found}'; only {LAYOUT_VERSION} is supported")]
    Version { path: PathBuf, found: String },
    #[error("layout '{dir}' has no image tagged '{tag}'; tags present: {present}")]
    NoSuchTag {
        dir: PathBuf,
        tag: String,
        present: String,
    },
    #[error(
        "layout '{dir}' already holds a different image under tag '{tag}' ({existing}); pass --force to replace it, or choose another tag"
    )]
    TagTaken {
        dir: PathBuf,
        tag: String,
        existing: Digest,
    },
    #[error("blob {digest} is missing from layout '{dir}'")]
    MissingBlob { dir: PathBuf, digest: Digest },
    #[error(
        "blob '{path}' is corrupt: expected {expected} ({expected_size} bytes), found {found} ({found_size} bytes); run fsck or rebuild the layout"
    )]
    CorruptBlob {
        path: PathBuf,
        expected: Digest,
        expected_size: u64,
        found: Digest,
        found_size: u64,
    },
    #[error(
        "a descriptor gives blob {digest} a size of {declared} bytes, but the blob (which matches its digest) has {actual}: the manifest or index pointing to it is wrong; rebuild the image"
    )]
    WrongSize {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
    #[error("blob {digest} in '{dir}' is {size} bytes, over the {limit}-byte limit for its kind")]
    BlobTooLarge {
        dir: PathBuf,
        digest: Digest,
        size: u64,
        limit: u64,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An existing OCI image layout.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    index: ImageIndex,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new layout directory was created.
    Created,
    /// The tag was added or moved in an existing layout.
    Updated,
    /// The tag already pointed at exactly this image.
    Unchanged,
}

impl Layout {
    /// Opens an existing layout.
    pub fn open(dir: &Path) -> Result<Self, LayoutError> {
        if !dir.exists() {
            return Err(LayoutError::Missing { path: dir.into() });
        }
        let marker_path = dir.join(MARKER);
        if !marker_path.exists() {
            return Err(LayoutError::NotALayout { path: dir.into() });
        }
        let marker: LayoutMarker = read_json(&marker_path, "image layout marker")?;
        if marker.image_layout_version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                path: marker_path,
                found: marker.image_layout_version,
            });
        }
        let index = read_json(&dir.join(INDEX), "image index")?;
        Ok(Self {
            dir: dir.into(),
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layout's own `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// Tags present, sorted.
    pub fn tags(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = self.index.manifests.iter().filter_map(ref_name).collect();
        tags.sort_unstable();
        tags
    }

    /// The descriptor tagged `tag`.
    pub fn resolve(&self, tag: &str) -> Result<&Descriptor, LayoutError> {
        self.index
            .manifests
            .iter()
            .find(|d| ref_name(d) == Some(tag))
            .ok_or_else(|| LayoutError::NoSuchTag {
                dir: self.dir.clone(),
                tag: tag.into(),
                present: match self.tags().join(", ") {
                    s if s.is_empty() => "none".into(),
                    s => s,
                },
            })
    }

    /// Path of a blob, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// Reads a blob and checks it against `desc`. Documents (manifests,
    /// indexes, configs) are limited to [`MAX_DOCUMENT_SIZE`].
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, LayoutError> {
        let limit = if media::is_layer(&desc.media_type) {
            bpfman_image_spec::layer::MAX_OBJECT_SIZE
        } else {
            MAX_DOCUMENT_SIZE as u64
        };
        if desc.size > limit {
            return Err(LayoutError::BlobTooLarge {
                dir: self.dir.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                limit,
            });
        }
        let path = self.blob_path(&desc.digest);
        // Up to the kind's limit, so a descriptor whose size is wrong is
        // told apart from a blob whose bytes are.
        let bytes = read_regular(&path, limit).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                LayoutError::MissingBlob {
                    dir: self.dir.clone(),
                    digest: desc.digest.clone(),
                }
            } else {
                LayoutError::Io {
                    action: "read blob",
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let found = Digest::of(&bytes);
        if found == desc.digest && bytes.len() as u64 != desc.size {
            return Err(LayoutError::WrongSize {
                digest: desc.digest.clone(),
                declared: desc.size,
                actual: bytes.len() as u64,
            });
        }
        if found != desc.digest {
            return Err(LayoutError::CorruptBlob {
                path,
                expected: desc.digest.clone(),
                expected_size: desc.size,
                found,
                found_size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }
}

/// What [`fsck`] found in a layout.
#[derive(Debug, Default, serde::Serialize)]
pub struct FsckReport {
    /// Blob files read and hashed.
    pub blobs_checked: usize,
    /// Blob files whose bytes do not hash to their name, or that are not
    /// regular files, with what is wrong.
    pub corrupt: Vec<(PathBuf, String)>,
    /// Blobs a tagged image needs that are missing or damaged, with the
    /// tag that needs them.
    pub broken: Vec<(String, Digest)>,
    /// Blob files nothing tagged reaches (left by untagging; harmless).
    pub unreferenced: Vec<PathBuf>,
    /// Damaged files removed (with `repair`).
    pub removed: Vec<PathBuf>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.broken.is_empty()
    }
}

/// Checks a layout: every blob file hashes to its name and is a regular
/// file, and every tag's image (manifests, configs, layers, index
/// entries) is whole. With `repair`, damaged blob files are removed, so
/// that the next write of the same content puts good ones back.
pub fn fsck(dir: &Path, repair: bool) -> Result<FsckReport, LayoutError> {
    let layout = Layout::open(dir)?;
    let _lock = lock_dir(dir)?;
    let mut report = FsckReport::default();
    let blobs = dir.join("blobs").join("sha256");
    let mut good = std::collections::BTreeSet::new();
    let entries = match fs::read_dir(&blobs) {
        Ok(e) => e
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("list", &blobs))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("list", &blobs)(e)),
    };
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            continue;
        }
        report.blobs_checked += 1;
        let problem = match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => Some("not a regular file".to_string()),
            Ok(m) => match read_regular(&path, m.len()) {
                Ok(bytes) if Digest::of(&bytes).hex() == name => None,
                Ok(bytes) => Some(format!("its bytes hash to {}", Digest::of(&bytes))),
                Err(e) => Some(format!("unreadable: {e}")),
            },
            Err(e) => Some(format!("unreadable: {e}")),
        };
        match problem {
            None => {
                good.insert(name);
            }
            Some(why) => {
                if repair {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    report.removed.push(path.clone());
                }
                report.corrupt.push((path, why));
            }
        }
    }
    // Walk every tag's image from the index.
    let mut reached = std::collections::BTreeSet::new();
    for top in &layout.index.manifests {
        let tag = ref_name(top).unwrap_or("<untagged>").to_string();
        let mut stack = vec![top.clone()];
        while let Some(desc) = stack.pop() {
            reached.insert(desc.digest.hex().to_string());
            let whole = good.contains(desc.digest.hex())
                && fs::metadata(layout.blob_path(&desc.digest)).is_ok_and(|m| m.len() == desc.size);
            if !whole {
                report.broken.push((tag.clone(), desc.digest.clone()));
                continue;
            }
            if media::is_manifest(&desc.media_type) || media::is_index(&desc.media_type) {
                let Ok(bytes) = layout.read_blob(&desc) else {
                    report.broken.push((tag.clone(), desc.digest.clone()));
                    continue;
                };
                if let Ok(m) =
                    serde_json::from_slice::<bpfman_image_spec::oci::ImageManifest>(&bytes)
                    && media::is_manifest(&desc.media_type)
                {
                    stack.push(m.config);
                    stack.extend(m.layers);
                } else if let Ok(i) =
                    serde_json::from_slice::<bpfman_image_spec::oci::ImageIndex>(&bytes)
                {
                    stack.extend(i.manifests);
                } else {
                    report.broken.push((tag.clone(), desc.digest.clone()));
                }
            }
        }
    }
    report.unreferenced = good
        .iter()
        .filter(|h| !reached.contains(*h))
        .map(|h| blobs.join(h))
        .collect();
    Ok(report)
}

/// Puts `tag` back as it was before a write that must be undone: naming
/// `previous` again, or gone. Blobs stay (unreferenced; fsck lists them).
pub fn restore_tag(
    dir: &Path,
    tag: &str,
    previous: Option<&Descriptor>,
) -> Result<(), LayoutError> {
    let _lock = lock_dir(dir)?;
    let layout = Layout::open(dir)?;
    let mut index = layout.index.clone();
    let at = index
        .manifests
        .iter()
        .position(|d| ref_name(d) == Some(tag));
    match (at, previous) {
        (Some(i), Some(p)) => index.manifests[i] = p.clone(),
        (Some(i), None) => {
            index.manifests.remove(i);
        }
        (None, Some(p)) => index.manifests.push(p.clone()),
        (None, None) => return Ok(()),
    }
    write_file_atomic(&dir.join(INDEX), &to_canonical_json(&index))
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations
        .get(media::ANNOTATION_REF_NAME)
        .map(String::as_str)
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, LayoutError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadJson {
        what,
        path: path.into(),
        source,
    })
}

/// Writes an image (its top descriptor plus every blob it needs) into the
/// layout at `dir` under `tag`, creating the layout if needed. A tag that
/// already names a different image is an error unless `replace`.
pub fn write_image(
    dir: &Path,
    tag: &str,
    top: &Descriptor,
    blobs: &[&[u8]],
    replace: bool,
) -> Result<WriteOutcome, LayoutError> {
    let mut entry = Descriptor {
        platform: None,
        ..top.clone()
    };
    entry
        .annotations
        .insert(media::ANNOTATION_REF_NAME.into(), tag.into());

    let empty = match fs::read_dir(dir) {
        Ok(mut it) => it.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(source) => {
            return Err(LayoutError::Io {
                action: "read directory",
                path: dir.into(),
                source,
            });
        }
    };
    if empty {
        // rename(2) replaces an empty directory, so both cases are atomic.
        match create_layout(dir, entry.clone(), blobs) {
            // Another writer made the layout first: add to it instead.
            Err(LayoutError::Io { source, .. }) if dir_filled(&source) => {}
            done => return done,
        }
    }
    if !dir.join(MARKER).exists() {
        return Err(LayoutError::NotALayout { path: dir.into() });
    }
    // Writers take turns: the index is read, changed and replaced under an
    // exclusive lock on the layout directory, so no writer's tag is lost.
    let _lock = lock_dir(dir)?;
    let layout = Layout::open(dir)?;
    let mut index = layout.index.clone();
    if let Some(existing) = index
        .manifests
        .iter()
        .position(|d| ref_name(d) == Some(tag))
    {
        let old = &index.manifests[existing];
        if old.digest == entry.digest && blobs_present(dir, blobs) {
            return Ok(WriteOutcome::Unchanged);
        }
        if old.digest != entry.digest && !replace {
            return Err(LayoutError::TagTaken {
                dir: dir.into(),
                tag: tag.into(),
                existing: old.digest.clone(),
            });
        }
        // In place: a moved tag keeps its position in the index.
        index.manifests[existing] = entry;
    } else {
        index.manifests.push(entry);
    }

    let mut added = Vec::new();
    let result = (|| {
        for blob in blobs {
            if let Some(path) = write_blob(dir, blob)? {
                added.push(path);
            }
        }
        write_file_atomic(&dir.join(INDEX), &to_canonical_json(&index))
    })();
    if let Err(e) = result {
        for path in added {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(WriteOutcome::Updated)
}

/// True for the error rename(2) gives when the target directory is not
/// (any longer) empty.
fn dir_filled(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
    )
}

/// An exclusive lock (flock) on a layout directory, held until dropped.
/// Locking the directory itself leaves nothing in the layout, and it stays
/// the same inode while `index.json` is replaced.
fn lock_dir(dir: &Path) -> Result<fs::File, LayoutError> {
    let f = fs::File::open(dir).map_err(io_err("open", dir))?;
    f.lock().map_err(io_err("lock", dir))?;
    Ok(f)
}

/// A blob file: a regular file, not a link, at most `expected + 1` bytes
/// read (enough to tell it is too long, never an unbounded read).
fn read_regular(path: &Path, expected: u64) -> io::Result<Vec<u8>> {
    bpfman_trust::file::read_at_most(path, expected, bpfman_trust::file::Links::Refuse)
}

/// Whether the blob at `path` is a regular file holding exactly `bytes`.
fn blob_intact(path: &Path, bytes: &[u8]) -> bool {
    read_regular(path, bytes.len() as u64).is_ok_and(|found| found == bytes)
}

fn blobs_present(dir: &Path, blobs: &[&[u8]]) -> bool {
    blobs
        .iter()
        .all(|b| blob_intact(&blob_path(dir, &Digest::of(b)), b))
}

fn create_layout(
    dir: &Path,
    entry: Descriptor,
    blobs: &[&[u8]],
) -> Result<WriteOutcome, LayoutError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "layout".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(&parent)
        .map_err(io_err("create a temporary directory in", &parent))?;
    write_marker(tmp.path())?;
    for blob in blobs {
        write_blob(tmp.path(), blob)?;
    }
    let index = ImageIndex::new(vec![entry], Default::default());
    write_file_atomic(&tmp.path().join(INDEX), &to_canonical_json(&index))?;
    // rename(2) of a directory fails if the target is (or meanwhile became)
    // non-empty; the temporary directory is then dropped, i.e. removed.
    fs::rename(tmp.path(), dir).map_err(io_err("move the new layout into", dir))?;
    let _ = tmp.keep();
    sync_dir(&parent);
    Ok(WriteOutcome::Created)
}

fn write_marker(dir: &Path) -> Result<(), LayoutError> {
    let marker = LayoutMarker {
        image_layout_version: LAYOUT_VERSION.into(),
    };
    write_file_atomic(&dir.join(MARKER), &to_canonical_json(&marker))
}

/// Writes a blob under its digest unless an intact copy is there (one
/// that is truncated, altered, or a link is replaced). Returns the path if
/// this call created it.
fn write_blob(dir: &Path, bytes: &[u8]) -> Result<Option<PathBuf>, LayoutError> {
    let path = blob_path(dir, &Digest::of(bytes));
    if fs::symlink_metadata(&path).is_ok() {
        if !blob_intact(&path, bytes) {
            tracing::warn!("replacing damaged blob '{}'", path.display());
            write_file_atomic(&path, bytes)?;
        }
        return Ok(None);
    }
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    write_file_atomic(&path, bytes)?;
    Ok(Some(path))
}

/// Writes to a temporary file in the same directory, syncs, renames.
/// Layouts are shared content: readable by all, like skopeo's (umask still
/// applies). tempfile's default would be 0600.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    write_file_atomic_mode(path, bytes, 0o644)
}

/// [`write_file_atomic`] with the file created with `mode` from the start,
/// so a secret (0600) is never briefly readable by others.
pub fn write_file_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LayoutError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("rename into", path)(e.error))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Durability of the rename; failure here is not worth failing the write.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
