//! uprobes and uretprobes (as the program was written): a symbol or a
//! file offset in a binary or library, in every process or in one.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use aya::programs::links::FdLink;
use aya::programs::uprobe::UProbeError;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{ProbeKind, UProbe};
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::kernel::sys::{SysAttach, call_err};
use crate::kernel::{Feature, Kernel, KernelError, Sys};

#[derive(Debug, Clone, clap::Args)]
pub struct UprobeRequest {
    /// The binary or library.
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// A symbol in it; without one, --offset is a file offset.
    #[arg(long, value_name = "SYMBOL", required_unless_present = "offset")]
    pub function: Option<String>,
    #[arg(long, value_name = "BYTES")]
    pub offset: Option<u64>,
    /// Only this process.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// A uprobe link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UprobeAttachment {
    pub target: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(rename = "return")]
    pub ret: bool,
}

impl fmt::Display for UprobeAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = if self.ret { "uretprobe" } else { "uprobe" };
        write!(f, "{k} {}:", self.target.display())?;
        match &self.function {
            Some(func) => write!(f, "{func}+{:#x}", self.offset)?,
            None => write!(f, "{:#x}", self.offset)?,
        }
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

pub fn fits(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::Uprobe | SectionKind::Uretprobe)
}

impl UprobeRequest {
    pub(super) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        let a = UprobeAttachment {
            target: self.target.clone(),
            function: self.function.clone(),
            offset: self.offset.unwrap_or(0),
            pid: self.pid,
            ret: cx.record.kind == SectionKind::Uretprobe,
        };
        Ok(Route::Direct(
            Target::new(a.to_string(), a.clone()),
            Attachment::Uprobe(a),
        ))
    }
}

impl SysAttach for UprobeAttachment {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let kind = if self.ret {
            ProbeKind::Return
        } else {
            ProbeKind::Entry
        };
        let mut prog = UProbe::from_pin(program, kind)
            .map_err(call_err("open program", program.display().to_string()))?;
        let location = match &self.function {
            Some(f) if self.offset == 0 => UProbeAttachLocation::Symbol(f),
            Some(f) => UProbeAttachLocation::SymbolOffset(f, self.offset),
            None => UProbeAttachLocation::AbsoluteOffset(self.offset),
        };
        let scope = match self.pid.and_then(std::num::NonZeroU32::new) {
            Some(p) => UProbeScope::OneProcess(p),
            None => UProbeScope::AllProcesses,
        };
        let point = UProbeAttachPoint {
            location,
            cookie: None,
        };
        let what = || format!("'{}'", self.target.display());
        let id = prog.attach(point, &self.target, scope).map_err(|e| match &e {
            aya::programs::ProgramError::UProbeError(UProbeError::SymbolError { symbol, .. }) => {
                KernelError::call(
                    "attach a uprobe to",
                    what(),
                    format!(
                        "it has no function '{symbol}' (not in its symbol tables, nor in debug info it links to); list its functions with nm -D, or give --offset"
                    ),
                )
            }
            _ => call_err("attach a uprobe to", what())(e),
        })?;
        let link = prog
            .take_link(id)
            .map_err(call_err("attach a uprobe to", what()))?;
        FdLink::try_from(link).map_err(|_| KernelError::NotSupported {
            feature: Feature::PerfLink,
            kernel: Kernel::release(&Sys),
            subject: "uprobe".into(),
            instead: None,
        })
    }
}
