//! Hooks: one module per hook, each owning its request (what the CLI and
//! the library take), its checks, its kernel probe, its record in the
//! state, and its kernel half (`sys`, with aya).
//!
//! Adding a hook touches only this directory and the docs: a new module,
//! a variant in [`AttachRequest`] and in [`Attachment`], and its arms in
//! the matches beside them here (its load call in [`sys_load`] among
//! them); then its row in docs/loader.md.

use std::fmt;

use anyhow::Result;
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use crate::chain::{ChainRequest, SlotAttachment};
use crate::kernel::Kernel;
use crate::kernel::sys::SysAttach;
use crate::state::{ProgramRecord, State};

pub mod kprobe;
pub mod lsm;
pub mod tc;
pub mod tcx;
pub mod tracepoint;
pub mod tracing;
pub mod uprobe;
pub mod xdp;

/// Where to attach a program: one variant per hook.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AttachRequest {
    /// XDP: through the interface's multi-program dispatcher (ordered by
    /// priority), or --exclusive (this program owns the hook).
    Xdp(xdp::XdpRequest),
    /// TC through the hook's multi-program dispatcher (attached with tcx
    /// where the kernel has it, else clsact + cls_bpf).
    Tc(tc::TcRequest),
    /// tcx (Linux 6.6+), ordered among the hook's tcx programs.
    Tcx(tcx::TcxRequest),
    /// A tracepoint: CATEGORY/NAME (see /sys/kernel/tracing/events).
    Tracepoint(tracepoint::TracepointRequest),
    /// A kprobe or kretprobe (as the program was written).
    Kprobe(kprobe::KprobeRequest),
    /// A uprobe or uretprobe (as the program was written).
    Uprobe(uprobe::UprobeRequest),
    /// fentry, at the function its section names.
    Fentry(tracing::TracingRequest),
    /// fexit, at the function its section names.
    Fexit(tracing::TracingRequest),
    /// BPF LSM, at the security hook its section names (the kernel must
    /// be booted with bpf in its lsm= list).
    Lsm(lsm::LsmRequest),
}

/// Where a link attaches a program, as the state records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Attachment {
    Xdp(xdp::XdpAttachment),
    Tcx(tcx::TcxAttachment),
    Tracepoint(tracepoint::TracepointAttachment),
    Kprobe(kprobe::KprobeAttachment),
    Uprobe(uprobe::UprobeAttachment),
    Fentry(tracing::TracingAttachment),
    Fexit(tracing::TracingAttachment),
    Lsm(lsm::LsmAttachment),
    /// A slot of a multi-program dispatcher (the link is the slot's
    /// freplace link, renewed by every change of the chain).
    Dispatcher(SlotAttachment),
    /// A slot of a libxdp dispatcher, on an interface shared with libxdp
    /// (the pin is our extension's; the id is the extension's).
    Libxdp(xdp::LibxdpAttachment),
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xdp(a) => a.fmt(f),
            Self::Tcx(a) => a.fmt(f),
            Self::Tracepoint(a) => a.fmt(f),
            Self::Kprobe(a) => a.fmt(f),
            Self::Uprobe(a) => a.fmt(f),
            Self::Fentry(a) => write!(f, "fentry {}", a.function),
            Self::Fexit(a) => write!(f, "fexit {}", a.function),
            Self::Lsm(a) => a.fmt(f),
            Self::Dispatcher(a) => a.fmt(f),
            Self::Libxdp(a) => a.fmt(f),
        }
    }
}

impl Attachment {
    /// The hook whose link can be moved to another program in place (one
    /// `BPF_LINK_UPDATE`, atomic for traffic) when `other` is the same
    /// place: exclusive XDP and tcx links.
    pub fn updatable_as(&self, other: &Attachment) -> Option<crate::dispatcher::ChainHook> {
        use crate::dispatcher::ChainHook;
        match (self, other) {
            (Self::Xdp(a), Self::Xdp(b))
                if a.ifindex == b.ifindex && a.netns == b.netns && a.mode == b.mode =>
            {
                Some(ChainHook::Xdp)
            }
            (Self::Tcx(a), Self::Tcx(b))
                if a.ifindex == b.ifindex && a.netns == b.netns && a.direction == b.direction =>
            {
                Some(if a.direction == "egress" {
                    ChainHook::TcEgress
                } else {
                    ChainHook::TcIngress
                })
            }
            _ => None,
        }
    }

    /// The dispatcher this attachment is a slot of, if it is one.
    pub fn dispatcher_key(&self) -> Option<&str> {
        match self {
            Self::Dispatcher(s) => Some(&s.key),
            _ => None,
        }
    }
}

/// A resolved direct attachment for [`Kernel::attach`]: what it is (for
/// messages and the fake kernel's log) and the hook's kernel half.
pub struct Target {
    what: String,
    sys: Box<dyn SysAttach>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Target {
    pub(crate) fn new(what: impl Into<String>, sys: impl SysAttach + 'static) -> Self {
        Self {
            what: what.into(),
            sys: Box::new(sys),
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub(crate) fn sys(&self) -> &dyn SysAttach {
        self.sys.as_ref()
    }
}

/// How a request reaches the kernel.
#[derive(Debug)]
pub enum Route {
    /// One link of the program's own, pinned and recorded.
    Direct(Target, Attachment),
    /// A slot in a hook's dispatcher chain.
    Chain(ChainRequest),
}

/// Whether loading programs of `kind` needs the kernel's BTF.
pub fn needs_btf(kind: SectionKind) -> bool {
    tracing::fits(kind) || lsm::fits(kind)
}

/// What loading a BTF-attached program (fentry, fexit, LSM) takes: the
/// kernel symbol its section names, and the kernel's BTF. `hint` says how
/// the section should read (`SEC("lsm/<hook>")`).
pub(super) fn btf_target<'a>(
    p: &crate::kernel::ProgramSpec<'a>,
    btf: Option<&'a aya::Btf>,
    names: &str,
    hint: &str,
) -> Result<(&'a str, &'a aya::Btf), crate::kernel::KernelError> {
    use crate::kernel::KernelError;
    let target = p.target.ok_or_else(|| {
        KernelError::call(
            "load program",
            format!("'{}'", p.name),
            format!(
                "section '{}' does not name the {names}; write {hint}",
                p.section
            ),
        )
    })?;
    let btf = btf.ok_or_else(|| {
        KernelError::call("load program", format!("'{}'", p.name), "no kernel BTF")
    })?;
    Ok((target, btf))
}

/// The kernel half of loading one program, by type (run by
/// [`crate::kernel::Sys`]): the load call each hook's programs need.
pub(crate) fn sys_load<'a>(
    prog: &mut aya::programs::Program,
    p: &crate::kernel::ProgramSpec<'a>,
    btf: Option<&'a aya::Btf>,
) -> Result<Result<(), aya::programs::ProgramError>, crate::kernel::KernelError> {
    use aya::programs::Program;
    Ok(match prog {
        Program::Xdp(x) => x.load(),
        Program::SchedClassifier(x) => x.load(),
        Program::TracePoint(x) => x.load(),
        Program::KProbe(x) => x.load(),
        Program::UProbe(x) => x.load(),
        Program::FEntry(x) => {
            let (function, btf) = tracing::load_target(p, btf)?;
            x.load(function, btf)
        }
        Program::FExit(x) => {
            let (function, btf) = tracing::load_target(p, btf)?;
            x.load(function, btf)
        }
        Program::Lsm(x) => {
            let (hook, btf) = btf_target(
                p,
                btf,
                "LSM hook",
                "SEC(\"lsm/<hook>\"), e.g. lsm/file_open",
            )?;
            x.load(hook, btf)
        }
        other => {
            return Err(crate::kernel::KernelError::call(
                "load program",
                format!("'{}'", p.name),
                format!("bpfman-load cannot load {:?} programs", other.prog_type()),
            ));
        }
    })
}

/// What the request's module needs besides the kernel: the program and
/// the records of the others (tcx orders relative to them).
pub(crate) struct Context<'a, K: Kernel> {
    pub kernel: &'a K,
    pub state: &'a State,
    pub record: &'a ProgramRecord,
}

impl AttachRequest {
    /// The hook's name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Xdp(_) => "xdp",
            Self::Tc(_) => "tc",
            Self::Tcx(_) => "tcx",
            Self::Tracepoint(_) => "tracepoint",
            Self::Kprobe(_) => "kprobe",
            Self::Uprobe(_) => "uprobe",
            Self::Fentry(_) | Self::Fexit(_) => "fentry/fexit",
            Self::Lsm(_) => "lsm",
        }
    }

    /// Whether programs of `kind` attach here.
    pub fn fits(&self, kind: SectionKind) -> bool {
        match self {
            Self::Xdp(_) => xdp::fits(kind),
            Self::Tc(_) => tc::fits(kind),
            Self::Tcx(_) => tcx::fits(kind),
            Self::Tracepoint(_) => tracepoint::fits(kind),
            Self::Kprobe(_) => kprobe::fits(kind),
            Self::Uprobe(_) => uprobe::fits(kind),
            Self::Fentry(_) | Self::Fexit(_) => tracing::fits(kind),
            Self::Lsm(_) => lsm::fits(kind),
        }
    }

    /// The kinds this loader can load at all: those some hook attaches.
    pub fn loadable(kind: SectionKind) -> bool {
        xdp::fits(kind)
            || tc::fits(kind)
            || tcx::fits(kind)
            || tracepoint::fits(kind)
            || kprobe::fits(kind)
            || uprobe::fits(kind)
            || tracing::fits(kind)
            || lsm::fits(kind)
    }

    /// Checks the request against the program and resolves it for the
    /// kernel.
    pub(crate) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        let r = cx.record;
        if !self.fits(r.kind) {
            anyhow::bail!(
                "program {} ({}) is of type {} (section '{}'); it cannot attach as {}",
                r.id,
                r.name,
                crate::loader::kind_name(r.kind),
                r.section,
                self.name()
            );
        }
        Ok(match self {
            Self::Xdp(x) => x.route(cx)?,
            Self::Tc(x) => Route::Chain(x.chain()?),
            Self::Tcx(x) => x.route(cx)?,
            Self::Tracepoint(x) => x.route(cx)?,
            Self::Kprobe(x) => x.route(cx)?,
            Self::Uprobe(x) => x.route(cx)?,
            Self::Fentry(_) | Self::Fexit(_) => tracing::route(cx),
            Self::Lsm(_) => lsm::route(cx),
        })
    }
}
