//! BPF LSM: a program on the security hook its section names
//! (`SEC("lsm/file_open")`), through a BPF trampoline. The kernel needs
//! CONFIG_BPF_LSM, its BTF, no lockdown, and `bpf` in the boot's `lsm=`
//! list (without it the hook never calls the program).

use std::path::Path;

use aya::programs::Lsm;
use aya::programs::links::FdLink;
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::kernel::sys::{SysAttach, call_err};
use crate::kernel::{Feature, Kernel, KernelError, require};

/// LSM programs take no arguments: the section names the hook.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LsmRequest {}

/// An LSM link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsmAttachment {
    pub hook: String,
}

impl std::fmt::Display for LsmAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lsm {}", self.hook)
    }
}

/// `lsm` and `lsm.s`; `lsm_cgroup` attaches per cgroup, which this
/// loader does not do.
pub fn fits(kind: SectionKind) -> bool {
    kind == SectionKind::Lsm
}

/// Loading needs the kernel's BTF and an active BPF LSM: refuse before
/// anything is loaded.
pub fn can_load<K: Kernel>(k: &K, name: &str) -> Result<(), KernelError> {
    require(k, Feature::KernelBtf, || {
        format!("cannot load LSM program '{name}'")
    })?;
    require(k, Feature::BpfLsm, || format!("LSM program '{name}'"))
}

pub(super) fn route<K: Kernel>(cx: &Context<'_, K>) -> Route {
    let hook = cx
        .record
        .section
        .split_once('/')
        .map(|(_, h)| h.to_string())
        .unwrap_or_default();
    let a = LsmAttachment { hook };
    Route::Direct(Target::new(a.to_string(), LsmTarget), Attachment::Lsm(a))
}

#[derive(Debug)]
struct LsmTarget;

impl SysAttach for LsmTarget {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let what = || program.display().to_string();
        let mut prog = Lsm::from_pin(program).map_err(call_err("open program", what()))?;
        let id = prog.attach().map_err(call_err("attach lsm", what()))?;
        Ok(FdLink::from(
            prog.take_link(id).map_err(call_err("attach lsm", what()))?,
        ))
    }
}
