//! Tracepoints: CATEGORY/NAME, as /sys/kernel/tracing/events lists them.

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, Result};
use aya::programs::TracePoint;
use aya::programs::links::FdLink;
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::kernel::sys::{SysAttach, call_err};
use crate::kernel::{Feature, FsType, Kernel, KernelError, Sys};

/// Where tracefs is mounted (and is mounted, when it is not).
pub const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Debug, Clone, clap::Args)]
pub struct TracepointRequest {
    #[arg(value_name = "CATEGORY/NAME")]
    pub tracepoint: String,
}

/// A tracepoint link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracepointAttachment {
    pub category: String,
    pub name: String,
}

impl fmt::Display for TracepointAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tracepoint {}/{}", self.category, self.name)
    }
}

pub fn fits(kind: SectionKind) -> bool {
    kind == SectionKind::Tracepoint
}

impl TracepointRequest {
    pub(super) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        let Some((category, name)) = self.tracepoint.split_once('/') else {
            anyhow::bail!(
                "'{}' is not CATEGORY/NAME (e.g. syscalls/sys_enter_openat)",
                self.tracepoint
            );
        };
        cx.kernel
            .mount(FsType::Trace, Path::new(TRACEFS))
            .context("tracepoints need tracefs")?;
        let a = TracepointAttachment {
            category: category.into(),
            name: name.into(),
        };
        Ok(Route::Direct(
            Target::new(a.to_string(), a.clone()),
            Attachment::Tracepoint(a),
        ))
    }
}

impl SysAttach for TracepointAttachment {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let mut prog = TracePoint::from_pin(program)
            .map_err(call_err("open program", program.display().to_string()))?;
        let what = || {
            format!(
                "{}/{} (see /sys/kernel/tracing/events/ for the ones this kernel has)",
                self.category, self.name
            )
        };
        let id = prog
            .attach(&self.category, &self.name)
            .map_err(call_err("attach to tracepoint", what()))?;
        let link = prog
            .take_link(id)
            .map_err(call_err("attach to tracepoint", what()))?;
        FdLink::try_from(link).map_err(|_| KernelError::NotSupported {
            feature: Feature::PerfLink,
            kernel: Kernel::release(&Sys),
            subject: "tracepoint".into(),
            instead: None,
        })
    }
}
