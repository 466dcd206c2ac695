//! fentry and fexit: BPF trampolines at the kernel function the program's
//! section names, chosen at load time.

use std::path::Path;

use aya::programs::links::FdLink;
use aya::programs::{FEntry, FExit};
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::kernel::sys::{SysAttach, call_err, tracing_kind};
use crate::kernel::{Feature, Kernel, KernelError, ProgramSpec, require};

/// fentry/fexit take no arguments: the section names the function.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TracingRequest {}

/// An fentry or fexit link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracingAttachment {
    pub function: String,
}

pub fn fits(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::Fentry | SectionKind::Fexit)
}

/// Loading needs the kernel's BTF: refuse before anything is loaded.
pub fn can_load<K: Kernel>(k: &K, kind: SectionKind, name: &str) -> Result<(), KernelError> {
    let what = if kind == SectionKind::Fexit {
        "fexit"
    } else {
        "fentry"
    };
    require(k, Feature::KernelBtf, || {
        format!("cannot load {what} program '{name}'")
    })
}

/// What loading an fentry or fexit program takes: the function its
/// section names, and the kernel's BTF.
pub(super) fn load_target<'a>(
    p: &ProgramSpec<'a>,
    btf: Option<&'a aya::Btf>,
) -> Result<(&'a str, &'a aya::Btf), KernelError> {
    let kind = tracing_kind(p.kind);
    super::btf_target(
        p,
        btf,
        "kernel function to trace",
        &format!("SEC(\"{kind}/<function>\")"),
    )
}

pub(super) fn route<K: Kernel>(cx: &Context<'_, K>) -> Route {
    let r = cx.record;
    let a = TracingAttachment {
        function: r
            .section
            .split_once('/')
            .map(|(_, f)| f.to_string())
            .unwrap_or_default(),
    };
    let exit = r.kind == SectionKind::Fexit;
    let what = format!("{} {}", if exit { "fexit" } else { "fentry" }, a.function);
    let attachment = if exit {
        Attachment::Fexit(a)
    } else {
        Attachment::Fentry(a)
    };
    Route::Direct(Target::new(what, TracingTarget { exit }), attachment)
}

#[derive(Debug)]
struct TracingTarget {
    exit: bool,
}

impl SysAttach for TracingTarget {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let what = || program.display().to_string();
        if self.exit {
            let mut prog = FExit::from_pin(program).map_err(call_err("open program", what()))?;
            let id = prog.attach().map_err(call_err("attach fexit", what()))?;
            Ok(FdLink::from(
                prog.take_link(id)
                    .map_err(call_err("attach fexit", what()))?,
            ))
        } else {
            let mut prog = FEntry::from_pin(program).map_err(call_err("open program", what()))?;
            let id = prog.attach().map_err(call_err("attach fentry", what()))?;
            Ok(FdLink::from(
                prog.take_link(id)
                    .map_err(call_err("attach fentry", what()))?,
            ))
        }
    }
}
