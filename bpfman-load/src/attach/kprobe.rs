//! kprobes and kretprobes (as the program was written), at a kernel
//! function and an offset into it.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use aya::programs::links::FdLink;
use aya::programs::{KProbe, ProbeKind};
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::kernel::sys::{SysAttach, call_err};
use crate::kernel::{Feature, Kernel, KernelError, Sys, require};

#[derive(Debug, Clone, clap::Args)]
pub struct KprobeRequest {
    #[arg(value_name = "FUNCTION")]
    pub function: String,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// A kprobe link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KprobeAttachment {
    pub function: String,
    pub offset: u64,
    #[serde(rename = "return")]
    pub ret: bool,
}

impl fmt::Display for KprobeAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = if self.ret { "kretprobe" } else { "kprobe" };
        write!(f, "{k} {}+{:#x}", self.function, self.offset)
    }
}

pub fn fits(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::Kprobe | SectionKind::Kretprobe)
}

/// Loading needs kprobes too: refuse before anything is loaded.
pub fn can_load<K: Kernel>(k: &K, name: &str) -> Result<(), KernelError> {
    require(k, Feature::Kprobes, || {
        format!("cannot load kprobe program '{name}'")
    })
}

impl KprobeRequest {
    pub(super) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        require(cx.kernel, Feature::Kprobes, || {
            format!("cannot attach a kprobe to {}", self.function)
        })?;
        let a = KprobeAttachment {
            function: self.function.clone(),
            offset: self.offset,
            ret: cx.record.kind == SectionKind::Kretprobe,
        };
        Ok(Route::Direct(
            Target::new(a.to_string(), a.clone()),
            Attachment::Kprobe(a),
        ))
    }
}

impl SysAttach for KprobeAttachment {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let kind = if self.ret {
            ProbeKind::Return
        } else {
            ProbeKind::Entry
        };
        let mut prog = KProbe::from_pin(program, kind)
            .map_err(call_err("open program", program.display().to_string()))?;
        let id = prog
            .attach(&self.function, self.offset)
            .map_err(call_err("attach a kprobe to", self.function.clone()))?;
        let link = prog
            .take_link(id)
            .map_err(call_err("attach a kprobe to", self.function.clone()))?;
        FdLink::try_from(link).map_err(|_| KernelError::NotSupported {
            feature: Feature::PerfLink,
            kernel: Kernel::release(&Sys),
            subject: "kprobe".into(),
            instead: None,
        })
    }
}
