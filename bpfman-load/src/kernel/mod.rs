//! The one seam between the loader's logic and the kernel.
//!
//! Every kernel and bpffs effect the loader has goes through [`Kernel`]:
//! loading objects and dispatchers, pinning and unpinning, attaching per
//! hook, link updates, netlink (clsact filters), network namespaces,
//! feature probes and mounts. [`Sys`] is the real implementation, and the
//! only code that names aya types besides the hook modules' own kernel
//! halves (`attach::*::sys`). A recording fake (`kernel::fake`, in unit
//! tests) keeps a model of bpffs and the hooks, counts every call, and
//! injects a failure or a crash at any of them, so reconciliation, commit
//! ordering, the dispatcher rebuild and undo are tested without root.
//!
//! Every call that creates a kernel object pins it before it returns, or
//! fails leaving nothing: an object that was never pinned dies with our
//! file descriptor. What the loader sees is therefore always a set of pins.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use bpfman_image_spec::program::SectionKind;

use crate::attach::Target;
use crate::dispatcher::{ChainHook, TcFilter};

pub(crate) mod btf;
#[cfg(test)]
pub mod fake;
pub(crate) mod netlink;
pub mod netns;
pub mod sys;

pub use netlink::XdpAttached;
pub use sys::Sys;

/// A program found by its id: its name, and the value of its only map if
/// it has exactly one (how libxdp reads a dispatcher's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramView {
    pub name: String,
    /// How many maps the program uses.
    pub maps: usize,
    /// The first (key 0) value of its map, when it has one map.
    pub map_value: Option<Vec<u8>>,
}

/// An exclusive `flock` on a directory, held until dropped (libxdp's lock
/// on its bpffs directory).
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] Option<std::fs::File>);

/// A kernel program's identity: its id, and the tag that tells a reused
/// id from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramId {
    pub id: u32,
    pub tag: u64,
}

impl ProgramId {
    pub fn tag_hex(&self) -> String {
        format!("{:016x}", self.tag)
    }
}

/// A program in the kernel, for `list --all`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelProgram {
    pub id: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: String,
    /// What it is to us, when ours. Shown as `ours` (true in any role),
    /// then the role.
    #[serde(flatten, serialize_with = "ours_and_role")]
    pub role: Option<Role>,
}

impl KernelProgram {
    /// Ours, in any role.
    pub fn ours(&self) -> bool {
        self.role.is_some()
    }
}

fn ours_and_role<S: serde::Serializer>(role: &Option<Role>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Ours<'a> {
        ours: bool,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        role: Option<&'a Role>,
    }
    serde::Serialize::serialize(
        &Ours {
            ours: role.is_some(),
            role: role.as_ref(),
        },
        s,
    )
}

/// What a kernel program of ours is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// A program we loaded: `get` shows its record.
    Program,
    /// The dispatcher in front of one of our chains.
    Dispatcher,
    /// One of our programs loaded again as an extension, to run in a
    /// dispatcher's slot (ours or libxdp's).
    Extension { of: u32 },
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Program => f.write_str("yes"),
            Self::Dispatcher => f.write_str("dispatcher"),
            Self::Extension { of } => write!(f, "extension of {of}"),
        }
    }
}

/// One object to load: its bytes (sections already named for aya), the
/// global data to set, where maps the object pins by name go, and maps to
/// reuse instead of creating.
#[derive(Debug, Clone, Copy)]
pub struct ObjectSpec<'a> {
    pub bytes: &'a [u8],
    pub globals: &'a [(String, Vec<u8>)],
    pub map_dir: &'a Path,
    pub shared_maps: &'a [(String, PathBuf)],
}

/// One program of an opened object to load.
#[derive(Debug, Clone, Copy)]
pub struct ProgramSpec<'a> {
    pub name: &'a str,
    pub kind: SectionKind,
    pub section: &'a str,
    /// The kernel function fentry/fexit programs trace.
    pub target: Option<&'a str>,
}

/// An object opened by [`Kernel::open_object`]: its maps exist, its
/// programs are loaded one by one.
pub trait LoadedObject {
    /// Loads one program and pins it at `dir/<program id>`.
    fn load_program(
        &mut self,
        p: &ProgramSpec<'_>,
        dir: &Path,
    ) -> Result<(ProgramId, PathBuf), KernelError>;
    /// Pins every map not named in `skip` under `dir` (maps the object
    /// pins by name are there already). Returns each map's name and pin.
    fn pin_maps(
        &mut self,
        dir: &Path,
        skip: &[&str],
    ) -> Result<Vec<(String, PathBuf)>, KernelError>;
}

/// A program loaded again as an extension (`BPF_PROG_TYPE_EXT`) of a
/// dispatcher slot: its object, globals, and the maps it shares with the
/// program the user loaded.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionSpec<'a> {
    pub bytes: &'a [u8],
    pub name: &'a str,
    pub globals: &'a [(String, Vec<u8>)],
    pub maps: &'a [(String, PathBuf)],
}

/// A network interface in a namespace: where XDP and TC hooks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub netns: Option<PathBuf>,
}

/// The XDP attach mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    #[default]
    Default,
    Skb,
    Driver,
    Hw,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Skb => "skb",
            Self::Driver => "driver",
            Self::Hw => "hardware",
        }
    }
}

/// The filesystems the loader mounts where they are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Bpf,
    Trace,
}

impl FsType {
    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bpf => "bpffs",
            Self::Trace => "tracefs",
        }
    }

    /// The filesystem type mount(2) takes.
    pub fn fstype(self) -> &'static str {
        match self {
            Self::Bpf => "bpf",
            Self::Trace => "tracefs",
        }
    }
}

/// Everything the loader asks of the kernel and of bpffs.
pub trait Kernel {
    type Object: LoadedObject;

    // bpffs and mounts.

    /// Mounts `fs` on `dir` unless it is mounted there; true if it mounted.
    fn mount(&self, fs: FsType, dir: &Path) -> Result<bool, KernelError>;
    fn create_dir(&self, dir: &Path) -> Result<(), KernelError>;
    /// Removes every directory under `dir`, and `dir`, that is empty
    /// (bottom up); anything else is left as it is.
    fn remove_empty_dirs(&self, dir: &Path);
    /// Every pin (not directory) under `dir`.
    fn pins(&self, dir: &Path) -> Result<BTreeSet<PathBuf>, KernelError>;
    fn is_pinned(&self, pin: &Path) -> bool;
    /// Removes a pin; a missing one is not an error (the goal is its
    /// absence).
    fn unpin(&self, pin: &Path) -> Result<(), KernelError>;

    // Programs.

    /// Whether the kernel has a feature, as far as can be told without
    /// trying it.
    fn probe(&self, feature: Feature) -> Support;
    /// This kernel's release, for messages.
    fn release(&self) -> String;
    /// Parses an object and creates its maps (shared ones reused).
    fn open_object(&self, spec: &ObjectSpec<'_>) -> Result<Self::Object, KernelError>;
    /// The program pinned at `pin`.
    fn program(&self, pin: &Path) -> Result<ProgramId, KernelError>;
    /// Every program in the kernel (`ours` left false).
    fn programs(&self) -> Result<Vec<KernelProgram>, KernelError>;

    // Attaching.

    /// An interface's index, looked up in its namespace.
    fn interface(&self, name: &str, netns: Option<&Path>) -> Result<Interface, KernelError>;
    /// Attaches the program pinned at `program` where `target` says and
    /// pins the link at `dir/<link id>`; returns the id and the pin.
    fn attach(
        &self,
        program: &Path,
        target: &Target,
        dir: &Path,
    ) -> Result<(u32, PathBuf), KernelError>;

    // Dispatchers.

    /// Loads a dispatcher with its configuration and pins it.
    fn load_dispatcher(
        &self,
        hook: ChainHook,
        config: &[u8],
        pin: &Path,
    ) -> Result<ProgramId, KernelError>;
    /// Loads a program as the extension replacing slot `slot` of the
    /// dispatcher pinned at `dispatcher`, pins it at `pin`, attaches it and
    /// pins that link at `link`. Returns the extension's id.
    fn load_extension(
        &self,
        hook: ChainHook,
        spec: &ExtensionSpec<'_>,
        dispatcher: &Path,
        slot: usize,
        pin: &Path,
        link: &Path,
    ) -> Result<ProgramId, KernelError>;
    /// Attaches an existing extension to slot `slot` of another dispatcher
    /// and pins the link.
    fn attach_extension(
        &self,
        hook: ChainHook,
        extension: &Path,
        dispatcher: &Path,
        slot: usize,
        link: &Path,
    ) -> Result<(), KernelError>;
    /// Attaches a dispatcher to its hook with a new bpf_link (XDP or tcx),
    /// pinned at `link`; returns the link's id.
    fn attach_dispatcher(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        mode: XdpMode,
        link: &Path,
    ) -> Result<u32, KernelError>;
    /// Points the hook's link at another dispatcher (`BPF_LINK_UPDATE`):
    /// traffic sees the old program or the new one, never neither.
    fn update_link(&self, hook: ChainHook, link: &Path, program: &Path) -> Result<(), KernelError>;
    /// Classic TC: puts the dispatcher in a cls_bpf filter under clsact,
    /// replacing `existing`'s program in place when given (one netlink
    /// request), else adding clsact and a new filter.
    fn clsact_attach(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        existing: Option<TcFilter>,
    ) -> Result<TcFilter, KernelError>;
    /// Deletes a cls_bpf filter.
    fn clsact_detach(
        &self,
        hook: ChainHook,
        at: &Interface,
        filter: TcFilter,
    ) -> Result<(), KernelError>;

    // Sharing an XDP hook with libxdp.

    /// What program is on the interface's XDP hook, and in which mode.
    fn xdp_attached(&self, at: &Interface) -> Result<Option<XdpAttached>, KernelError>;
    /// A program, by id.
    fn program_view(&self, id: u32) -> Result<ProgramView, KernelError>;
    /// Pins the program pinned at `from` at `to` as well.
    fn pin_again(&self, from: &Path, to: &Path) -> Result<(), KernelError>;
    /// Puts the program pinned at `program` (none: nothing) on the XDP
    /// hook through netlink, replacing program `expected` atomically (the
    /// kernel refuses if another is there by then), or only if the hook is
    /// empty when `expected` is none. Nothing is pinned: the hook holds it.
    fn xdp_netlink(
        &self,
        at: &Interface,
        program: Option<&Path>,
        expected: Option<u32>,
        mode: XdpMode,
    ) -> Result<(), KernelError>;
    /// Takes an exclusive lock on a directory (made if missing), waiting
    /// for whoever holds it.
    fn lock_dir(&self, dir: &Path) -> Result<DirLock, KernelError>;
}

/// What a probe could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    No,
    /// Only trying will tell (lockdown refuses some program types at
    /// load time, with nothing to read beforehand).
    Unknown,
}

/// Kernel features the loader depends on, each with the first kernel that
/// has it and what to do without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// tcx links (`BPF_TCX_INGRESS`/`EGRESS`).
    Tcx,
    /// kprobes (CONFIG_KPROBES).
    Kprobes,
    /// The kernel's own BTF (CONFIG_DEBUG_INFO_BTF).
    KernelBtf,
    /// fentry/fexit: BPF trampolines, not refused by lockdown.
    Tracing,
    /// `BPF_PROG_TYPE_EXT` (freplace), which the dispatchers need.
    Freplace,
    /// XDP through a bpf_link (pinnable).
    XdpLink,
    /// tracepoint, kprobe and uprobe bpf_links.
    PerfLink,
    /// BPF LSM programs: CONFIG_BPF_LSM, `bpf` in the boot's `lsm=` list,
    /// and no lockdown.
    BpfLsm,
}

impl Feature {
    /// The first kernel that has it.
    pub fn since(self) -> &'static str {
        match self {
            Self::Tcx => "Linux 6.6",
            Self::Kprobes => "Linux 4.1",
            Self::KernelBtf | Self::Tracing => "Linux 5.5",
            Self::Freplace => "Linux 5.10",
            Self::XdpLink => "Linux 5.9",
            Self::PerfLink => "Linux 5.15",
            Self::BpfLsm => "Linux 5.7",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Kprobes => "kprobes",
            Self::KernelBtf => "kernel BTF",
            Self::Tracing => "fentry/fexit",
            Self::Freplace => "freplace",
            Self::XdpLink => "XDP bpf_links",
            Self::PerfLink => "perf-event bpf_links",
            Self::BpfLsm => "BPF LSM",
        }
    }

    fn explain(self, kernel: &str, subject: &str) -> String {
        let since = self.since();
        match self {
            Self::Tcx => format!(
                "this kernel ({kernel}) has no tcx: tcx links need {since} or later. Use a newer kernel; on this one TC programs need the TC dispatcher (attach ID tc, which uses clsact)."
            ),
            Self::Kprobes => format!(
                "{subject}: this kernel ({kernel}) has no kprobes: it was built without CONFIG_KPROBES (there is no /sys/bus/event_source/devices/kprobe). BPF kprobes need that option ({since} or later). Attach to a tracepoint instead (SEC(\"tracepoint/<category>/<name>\"), see /sys/kernel/tracing/events), or run on a kernel with kprobes."
            ),
            Self::KernelBtf => format!(
                "{subject}: this kernel ({kernel}) has no BTF (/sys/kernel/btf/vmlinux); fentry/fexit need CONFIG_DEBUG_INFO_BTF ({since} or later). Use a kprobe or a tracepoint instead."
            ),
            Self::Tracing => format!(
                "the kernel ({kernel}) refused to load {subject} (EPERM, before the verifier ran): it does not allow BPF tracing programs here. This is what kernel lockdown does (integrity or confidentiality mode), or a kernel without BPF trampolines; fentry/fexit need {since} or later without lockdown. Use a tracepoint or a kprobe instead, or run on a kernel that allows fentry."
            ),
            Self::Freplace => format!(
                "the kernel ({kernel}) refused to load {subject} as an extension program (BPF_PROG_TYPE_EXT, freplace): EPERM before the verifier ran, which is what kernel lockdown does. The multi-program dispatcher needs freplace ({since}+ without lockdown)."
            ),
            Self::XdpLink => format!(
                "this kernel ({kernel}) attached XDP through netlink, which cannot be pinned; bpfman-load needs XDP bpf_links ({since} or later)"
            ),
            Self::PerfLink => {
                format!("this kernel ({kernel}) cannot make {subject} links ({since} or later)")
            }
            Self::BpfLsm => format!(
                "this kernel ({kernel}) does not run {subject}: BPF LSM programs need CONFIG_BPF_LSM ({since} or later), 'bpf' in the LSMs the kernel was booted with (lsm=...,bpf on its command line; see /sys/kernel/security/lsm), and no kernel lockdown, which refuses them with EPERM as it does fentry. Boot with lsm=...,bpf on a kernel without lockdown."
            ),
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong in the kernel or bpffs, typed so callers decide on the
/// kind, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel lacks a feature; the message names the first kernel
    /// that has it and what to do instead.
    #[error("{}{}", .feature.explain(.kernel, .subject), .instead.as_deref().map(|i| format!(" {i}")).unwrap_or_default())]
    NotSupported {
        feature: Feature,
        kernel: String,
        /// What needed it ("kprobe program 'x'").
        subject: String,
        /// What to do instead, where that depends on more than the
        /// feature (the program's type, say).
        instead: Option<String>,
    },
    /// The verifier refused a program; its log is kept whole.
    #[error("the kernel's verifier rejected program '{program}' ({errno}); its log:\n{log}")]
    Verifier {
        program: String,
        errno: io::Error,
        log: String,
    },
    /// A load refused for lack of privilege.
    #[error(
        "the kernel refused to load program '{program}' (EPERM): bpfman-load needs root (CAP_BPF and CAP_SYS_ADMIN or CAP_PERFMON/CAP_NET_ADMIN)"
    )]
    PermissionDenied { program: String },
    /// A load refused with no verifier log.
    #[error("the kernel refused to load program '{program}': {errno}")]
    LoadRefused { program: String, errno: io::Error },
    /// Exclusive XDP on an interface that has a program already.
    #[error(
        "interface {interface} already has an XDP program: in exclusive mode one program owns the interface; detach the other one first"
    )]
    Busy { interface: String },
    #[error("no network interface named '{name}'{}; see ip link", .netns.as_ref().map(|n| format!(" in network namespace '{}'", n.display())).unwrap_or_default())]
    NoInterface {
        name: String,
        netns: Option<PathBuf>,
    },
    #[error("no network namespace '{name}' (looked for '{}')", .path.display())]
    NoNetns {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the object refers to '{name}', which it does not define (a --global that names no variable in it?)"
    )]
    Symbol { name: String },
    /// A bpffs or mount operation failed.
    #[error("cannot {action} '{}'", .path.display())]
    Fs {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot mount {} on '{}'; mount it yourself (mount -t {} {} {})",
        .fs.name(), .path.display(), .fs.fstype(), .fs.fstype(), .path.display()
    )]
    Mount {
        fs: FsType,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory the loader will not mount over.
    #[error(
        "will not mount {} on '{}': {why}, and a mount would hide what is there; give an empty directory that is not a mount point, or mount {} there yourself",
        .fs.name(), .path.display(), .fs.name()
    )]
    MountRefused {
        fs: FsType,
        path: PathBuf,
        why: &'static str,
    },
    /// A mount point the loader needs is not there.
    #[error(
        "{} mount point '{}' does not exist; {}",
        .fs.name(), .path.display(),
        if *.fs == FsType::Bpf {
            "create it, or pass --bpffs with a directory where bpffs is (or may be) mounted"
        } else {
            "this kernel has no tracefs there, which tracepoints need"
        }
    )]
    NoMountPoint { fs: FsType, path: PathBuf },
    /// Any other failed kernel call: what was asked, of what.
    #[error("cannot {call} {what}")]
    Call {
        call: &'static str,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl KernelError {
    /// The feature this error says is missing, if that is what it says.
    pub fn not_supported(&self) -> Option<Feature> {
        match self {
            Self::NotSupported { feature, .. } => Some(*feature),
            _ => None,
        }
    }

    /// The same error, saying what to do instead where it is a missing
    /// feature.
    pub fn instead(self, advice: impl Into<String>) -> Self {
        match self {
            Self::NotSupported {
                feature,
                kernel,
                subject,
                ..
            } => Self::NotSupported {
                feature,
                kernel,
                subject,
                instead: Some(advice.into()),
            },
            other => other,
        }
    }

    pub(crate) fn call(
        call: &'static str,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Call {
            call,
            what: what.into(),
            source: source.into(),
        }
    }

    pub(crate) fn fs(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Fs {
            action,
            path,
            source,
        }
    }
}

/// Fails with `NotSupported` when a probe says the feature is missing.
pub fn require<K: Kernel + ?Sized>(
    k: &K,
    feature: Feature,
    subject: impl FnOnce() -> String,
) -> Result<(), KernelError> {
    match k.probe(feature) {
        Support::No => Err(KernelError::NotSupported {
            feature,
            kernel: k.release(),
            subject: subject(),
            instead: None,
        }),
        Support::Yes | Support::Unknown => Ok(()),
    }
}

/// Fault injection for the crash tests: `BPFMAN_LOAD_FAULT=<step>` makes
/// the process SIGKILL itself at that step, as `kill -9` would, with no
/// destructor or cleanup running. The steps are named where they are.
pub(crate) fn fault(step: &str) {
    if std::env::var("BPFMAN_LOAD_FAULT").is_ok_and(|v| v == step) {
        tracing::warn!("fault injection: killing ourselves at {step}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Pins made by an operation that has not committed yet: dropped, it
/// removes them (in reverse order); [`Undo::commit`] keeps them.
#[must_use = "an Undo removes its pins when dropped"]
pub struct Undo<'k, K: Kernel + ?Sized> {
    kernel: &'k K,
    pins: Vec<PathBuf>,
    trees: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl<K: Kernel + ?Sized> fmt::Debug for Undo<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undo")
            .field("pins", &self.pins)
            .field("trees", &self.trees)
            .field("dirs", &self.dirs)
            .finish()
    }
}

impl<'k, K: Kernel + ?Sized> Undo<'k, K> {
    pub fn new(kernel: &'k K) -> Self {
        Self {
            kernel,
            pins: Vec::new(),
            trees: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// Records a directory of this operation's own: every pin under it
    /// goes if the operation fails.
    pub fn tree(&mut self, dir: impl Into<PathBuf>) {
        self.trees.push(dir.into());
    }

    /// Records a pin to remove if the operation fails.
    pub fn pin(&mut self, pin: impl Into<PathBuf>) {
        self.pins.push(pin.into());
    }

    /// Records a directory to remove (when empty) if the operation fails.
    pub fn dir(&mut self, dir: impl Into<PathBuf>) {
        self.dirs.push(dir.into());
    }

    /// The operation committed: keep everything.
    pub fn commit(mut self) {
        self.pins.clear();
        self.trees.clear();
        self.dirs.clear();
    }
}

impl<K: Kernel + ?Sized> Drop for Undo<'_, K> {
    fn drop(&mut self) {
        for p in self.pins.drain(..).rev() {
            if let Err(e) = self.kernel.unpin(&p) {
                tracing::warn!("cannot undo pin: {e}");
            }
        }
        for t in self.trees.drain(..).rev() {
            for p in self.kernel.pins(&t).unwrap_or_default() {
                if let Err(e) = self.kernel.unpin(&p) {
                    tracing::warn!("cannot undo pin: {e}");
                }
            }
            self.kernel.remove_empty_dirs(&t);
        }
        for d in self.dirs.drain(..).rev() {
            self.kernel.remove_empty_dirs(&d);
        }
    }
}
