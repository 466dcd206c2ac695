//! The host's operations, as a library: what `bpfman-load`'s commands do,
//! for the CLI and for any other front end (a declarative `apply`, a
//! daemon). A [`Host`] holds one state root, locked for as long as it
//! lives; the kernel side is opened (and reconciled) on first use.
//!
//! Nothing here prints: results come back as values, and what
//! reconciliation cleaned as a [`Reconciled`] report.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bpfman_image::reference::ImageRef;
use bpfman_image::registry::TransportOptions;
use bpfman_image_spec::digest::Digest;
use bpfman_trust::policy::Policy;

use crate::attach::AttachRequest;
use crate::bpffs::{Bpffs, DEFAULT_BPFFS};
use crate::cache::{Cache, DEFAULT_ROOT, FsckReport, ImageRecord};
use crate::images::{self, Admitted, PullPolicy};
use crate::kernel::{Kernel, KernelProgram, Sys};
use crate::loadable::Loadable;
use crate::loader::{LoadOptions, Loader, Reconciled};
use crate::lock::Lock;
use crate::state::{LinkRecord, ProgramRecord, Source, State};

/// Where the host's trust policy is read from unless another is given.
pub const DEFAULT_POLICY: &str = "/etc/bpfman-load/policy.toml";

/// Where a host keeps its things.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The cache and state directory.
    pub root: PathBuf,
    /// The trust policy; `None`: [`DEFAULT_POLICY`] if it exists, else no
    /// image is admitted.
    pub policy: Option<PathBuf>,
    /// Where bpffs is (or will be) mounted.
    pub bpffs: PathBuf,
    /// How long to wait for another invocation to release the root.
    pub lock_timeout: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            root: DEFAULT_ROOT.into(),
            policy: None,
            bpffs: DEFAULT_BPFFS.into(),
            lock_timeout: Duration::from_secs(60),
        }
    }
}

/// One state root, locked.
#[derive(Debug)]
pub struct Host<K: Kernel = Sys> {
    opts: HostOptions,
    cache: Cache,
    kernel: K,
    loader: OnceCell<(Loader<K>, Reconciled)>,
    _lock: Lock,
}

impl Host<Sys> {
    /// Opens the root (creating it, 0700) on the running kernel, waiting
    /// for its lock; `waiting` hears who holds it while we wait.
    pub fn open(opts: HostOptions, waiting: impl FnMut(&str)) -> Result<Self> {
        Self::with_kernel(opts, Sys, waiting)
    }
}

impl<K: Kernel + Clone> Host<K> {
    pub fn with_kernel(opts: HostOptions, kernel: K, waiting: impl FnMut(&str)) -> Result<Self> {
        create_root(&opts.root)?;
        let lock = Lock::acquire(&opts.root, opts.lock_timeout, waiting)?;
        let cache = Cache::open(&opts.root)?;
        Ok(Self {
            opts,
            cache,
            kernel,
            loader: OnceCell::new(),
            _lock: lock,
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The kernel side, after reconciling the state with the kernel and
    /// bpffs (once per `Host`).
    pub fn loader(&self) -> Result<&Loader<K>> {
        Ok(&self.reconciled()?.0)
    }

    /// The kernel side and what reconciling it cleaned.
    pub fn reconciled(&self) -> Result<&(Loader<K>, Reconciled)> {
        if let Some(l) = self.loader.get() {
            return Ok(l);
        }
        let fs = Bpffs::open(&self.kernel, &self.opts.bpffs, &self.opts.root)?;
        let loader = Loader::new(self.kernel.clone(), State::open(&self.cache)?, fs);
        let report = loader
            .reconcile()
            .context("cannot reconcile the program state with the kernel")?;
        Ok(self.loader.get_or_init(|| (loader, report)))
    }

    /// The policy in force: the one given, else the default file if it
    /// exists, else none (nothing admitted).
    pub fn policy(&self) -> Result<Policy> {
        match &self.opts.policy {
            Some(p) => Ok(Policy::load(p)?),
            None if Path::new(DEFAULT_POLICY).exists() => {
                Ok(Policy::load(Path::new(DEFAULT_POLICY))?)
            }
            None => {
                let mut p = Policy::closed();
                p.origin = format!("no trust policy ({DEFAULT_POLICY} does not exist)");
                Ok(p)
            }
        }
    }

    /// Gets an image into the cache per the pull policy, verifies it
    /// against the policy in force, and narrows it to this host.
    pub fn admit(
        &self,
        image: &ImageRef,
        pull_policy: PullPolicy,
        transport: &TransportOptions,
    ) -> Result<(Admitted, Loadable)> {
        let policy = self.policy()?;
        let key = images::cache_key(image);
        // A pinned reference whose bytes are cached is not pulled.
        let pinned = match image {
            ImageRef::Registry(r) => r.digest.clone(),
            ImageRef::Layout(_) => None,
        };
        let before = match self.cache.resolve(&key)? {
            Some(d) => Some(d),
            None => match pinned {
                Some(d) if self.cache.image(&d)?.is_some() => Some(d),
                _ => None,
            },
        };
        let record = bpfman_image::runtime()?
            .block_on(images::ensure(&self.cache, transport, image, pull_policy))
            .with_context(|| format!("cannot pull {image}"))?;
        let pulled = pull_policy == PullPolicy::Always || before.is_none();
        let digest = record.digest.clone();
        let admitted = match images::verify_cached(&self.cache, image, record, &policy) {
            Ok(a) => a,
            Err(e @ images::ImageError::Refused(_)) if pulled => {
                // Refused content is not named in the cache.
                self.cache.refuse(&key, &digest, before.as_ref())?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())
            .with_context(|| format!("{image} cannot be loaded on this host"))?;
        Ok((admitted, loadable))
    }

    /// Verifies a cached image against the policy in force, offline, and
    /// narrows it to this host.
    pub fn verify(&self, image: &ImageRef) -> Result<(Admitted, Loadable)> {
        let policy = self.policy()?;
        let key = images::cache_key(image);
        let Some(record) = self.cache.lookup(&key)? else {
            bail!("{key} is not in the cache; pull it first");
        };
        let admitted = images::verify_cached(&self.cache, image, record, &policy)?;
        let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())
            .with_context(|| format!("{image} cannot be loaded on this host"))?;
        Ok((admitted, loadable))
    }

    /// Pulls, verifies and loads an image's programs.
    pub fn load_image(
        &self,
        image: &ImageRef,
        pull_policy: PullPolicy,
        transport: &TransportOptions,
        opts: &LoadOptions,
    ) -> Result<Vec<ProgramRecord>> {
        // Pull and verify before touching the kernel.
        let (admitted, loadable) = self.admit(image, pull_policy, transport)?;
        self.load_admitted(image, &admitted, &loadable, opts)
    }

    /// Loads the programs of an image [`Host::admit`] let in. The kernel
    /// gets only a [`Loadable`], which exists only with a proof.
    pub fn load_admitted(
        &self,
        image: &ImageRef,
        admitted: &Admitted,
        loadable: &Loadable,
        opts: &LoadOptions,
    ) -> Result<Vec<ProgramRecord>> {
        self.loader()?
            .load_image(
                loadable,
                &images::cache_key(image),
                &admitted.record.digest,
                opts,
            )
            .with_context(|| format!("cannot load {image}"))
    }

    /// Loads a local object file's programs (no signature: the operator
    /// vouches for it).
    pub fn load_file(&self, path: &Path, opts: &LoadOptions) -> Result<Vec<ProgramRecord>> {
        self.loader()?
            .load_file(path, opts)
            .with_context(|| format!("cannot load '{}'", path.display()))
    }

    /// Attaches one of our programs; a dispatcher slot loads the program
    /// again from its object, verified again first.
    pub fn attach(&self, id: u32, request: &AttachRequest) -> Result<LinkRecord> {
        self.loader()?
            .attach(id, request, |r| self.program_object(r))
            .with_context(|| format!("cannot attach program {id}"))
    }

    /// Detaches one link, by id; returns the program it belonged to.
    pub fn detach(&self, link: u32) -> Result<(u32, LinkRecord)> {
        self.loader()?.detach(link)
    }

    /// Detaches and unloads one of our programs.
    pub fn unload(&self, id: u32) -> Result<ProgramRecord> {
        self.loader()?.unload(id)
    }

    /// Our programs, by id.
    pub fn programs(&self) -> Result<Vec<ProgramRecord>> {
        let mut records = self.loader()?.state().all()?;
        records.sort_by_key(|r| r.id);
        Ok(records)
    }

    /// One of our programs.
    pub fn program(&self, id: u32) -> Result<ProgramRecord> {
        self.loader()?.record(id)
    }

    /// Every program in the kernel, ours marked.
    pub fn kernel_programs(&self) -> Result<Vec<KernelProgram>> {
        self.loader()?.kernel_programs()
    }

    /// Cached images, by reference.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut records = self.cache.images()?;
        records.sort_by(|a, b| a.references.cmp(&b.references));
        Ok(records)
    }

    /// The cached images loaded programs came from.
    fn in_use(&self) -> Result<Vec<(Digest, u32)>> {
        Ok(self
            .loader()?
            .state()
            .all()?
            .into_iter()
            .filter_map(|r| match r.source {
                Source::Image { image, .. } => Some((image, r.id)),
                Source::File { .. } => None,
            })
            .collect())
    }

    /// Removes a cached image (by reference, digest or digest prefix)
    /// that no loaded program uses. Returns its digest.
    pub fn remove_image(&self, what: &str) -> Result<Digest> {
        let used = self.in_use()?;
        let Some(record) = images::find(&self.cache, what)? else {
            bail!("no cached image matches '{what}'; see bpfman-load images");
        };
        if let Some((_, id)) = used.iter().find(|(d, _)| *d == record.digest) {
            bail!(
                "{} is in use by loaded program {id}; unload it first (bpfman-load unload {id})",
                record.digest
            );
        }
        self.cache.remove_image(&record.digest)?;
        Ok(record.digest)
    }

    /// Removes images nothing uses (with `all`, tagged ones too) and
    /// unreferenced blobs: the images removed, blobs and bytes freed.
    pub fn prune(&self, all: bool) -> Result<(Vec<ImageRecord>, usize, u64)> {
        let used = self.in_use()?;
        let keep = |r: &ImageRecord| {
            used.iter().any(|(d, _)| *d == r.digest) || (!all && !r.references.is_empty())
        };
        let (removed, blobs, bytes) = self.cache.prune(keep)?;
        Ok((removed, blobs, bytes))
    }

    /// Removes blobs no cached image uses (images stay): blobs and bytes
    /// freed.
    pub fn free_blobs(&self) -> Result<(usize, u64)> {
        let (_, blobs, bytes) = self.cache.prune(|_| true)?;
        Ok((blobs, bytes))
    }

    /// Re-hashes every cached blob; quarantines corrupt ones.
    pub fn fsck(&self) -> Result<FsckReport> {
        Ok(self.cache.fsck()?)
    }

    /// The bytes a program was loaded from, verified again: an image is
    /// re-verified from the cache against the policy in force; a file
    /// must still hash to what was loaded.
    pub fn program_object(&self, r: &ProgramRecord) -> Result<Vec<u8>> {
        match &r.source {
            Source::File { path, sha256 } => {
                let bytes = bpfman_trust::file::read_regular(
                    path,
                    bpfman_image_spec::layer::MAX_OBJECT_SIZE,
                    bpfman_trust::file::Links::Follow,
                )
                .with_context(|| {
                    format!(
                        "cannot read '{}', which program {} was loaded from",
                        path.display(),
                        r.id
                    )
                })?;
                if Digest::of(&bytes) != *sha256 {
                    bail!(
                        "'{}' changed since program {} was loaded from it (it was {sha256}); load it again",
                        path.display(),
                        r.id
                    );
                }
                Ok(bytes)
            }
            Source::Image {
                reference, image, ..
            } => {
                let policy = self.policy()?;
                let parsed: ImageRef = reference
                    .parse()
                    .with_context(|| format!("program {}'s image reference '{reference}'", r.id))?;
                let Some(record) = self.cache.image(image)? else {
                    bail!(
                        "{image}, which program {} came from, is no longer cached; load it again",
                        r.id
                    );
                };
                let admitted = images::verify_cached(&self.cache, &parsed, record, &policy)?;
                let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())?;
                Ok(loadable.image().object.clone())
            }
        }
    }
}

/// Creates the root (0700) so the lock file has somewhere to live, and
/// makes sure nobody else can steer what we (root) do in it.
fn create_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create the root '{}'", root.display()))?;
    check_root(root)
}

/// The state root must be ours alone: a directory (not a link) owned by
/// the user running us and writable by nobody else, in a parent nobody
/// else can swap it in (not writable by others, unless it is a
/// root-owned sticky directory such as /tmp), with no links where our own
/// files go. Otherwise another user could make us delete or overwrite
/// files of their choosing.
fn check_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |why: String| {
        anyhow::anyhow!(
            "refusing the state root '{}': {why}; use a directory only the user running bpfman-load can change (chown it, chmod 0700)",
            root.display()
        )
    };
    let meta = std::fs::symlink_metadata(root)
        .with_context(|| format!("cannot stat the root '{}'", root.display()))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse("it is not a directory (a symbolic link?)".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by uid {me}",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(refuse("others can write to it".into()));
    }
    let parent = std::fs::canonicalize(root)
        .ok()
        .and_then(|r| r.parent().map(Path::to_path_buf));
    if let Some(parent) = parent
        && let Ok(p) = std::fs::metadata(&parent)
    {
        let mode = p.permissions().mode();
        let sticky_root = mode & 0o1000 != 0 && p.uid() == 0;
        if mode & 0o002 != 0 && !sticky_root {
            return Err(refuse(format!(
                "its parent '{}' is writable by anyone and not a root-owned sticky directory",
                parent.display()
            )));
        }
    }
    for entry in ["lock", "tmp", "blobs", "quarantine", "db"] {
        let path = root.join(entry);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refuse(format!("'{}' is a symbolic link", path.display())));
        }
    }
    Ok(())
}
