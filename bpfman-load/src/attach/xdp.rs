//! XDP: a slot in the interface's dispatcher chain (the default), or one
//! program owning the interface (`--exclusive`, for kernels that refuse
//! freplace).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use aya::programs::Xdp;
use aya::programs::links::FdLink;
use aya_obj::programs::XdpAttachType;
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::{Attachment, Context, Route, Target};
use crate::chain::ChainArgs;
use crate::dispatcher::ChainHook;
use crate::kernel::netns::in_netns;
use crate::kernel::sys::{SysAttach, aya_mode, call_err, is_busy};
use crate::kernel::{Feature, Interface, Kernel, KernelError, Sys, XdpMode};

#[derive(Debug, Clone, clap::Args)]
pub struct XdpRequest {
    /// The network interface.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,
    /// A network namespace: a name under /run/netns, or a path.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = XdpMode::Default)]
    pub mode: XdpMode,
    /// Attach directly, alone on the interface, without the dispatcher
    /// (for kernels that refuse freplace).
    #[arg(long, conflicts_with_all = ["priority", "proceed_on"])]
    pub exclusive: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// An exclusive XDP link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpAttachment {
    pub interface: String,
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    pub mode: String,
}

impl fmt::Display for XdpAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xdp {}{} ({})",
            self.interface,
            super::tc::in_ns(&self.netns),
            self.mode
        )
    }
}

pub fn fits(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::Xdp | SectionKind::XdpFrags)
}

impl XdpRequest {
    pub(super) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        if !self.exclusive {
            return Ok(Route::Chain(self.chain.request(
                ChainHook::Xdp,
                &self.iface,
                self.netns.clone(),
                self.mode,
                false,
            )?));
        }
        let at = cx.kernel.interface(&self.iface, self.netns.as_deref())?;
        let attachment = XdpAttachment {
            interface: at.name.clone(),
            ifindex: at.ifindex,
            netns: at.netns.clone(),
            mode: self.mode.name().to_string(),
        };
        let what = attachment.to_string();
        Ok(Route::Direct(
            Target::new(
                what,
                XdpTarget {
                    at,
                    mode: self.mode,
                },
            ),
            Attachment::Xdp(attachment),
        ))
    }
}

#[derive(Debug)]
struct XdpTarget {
    at: Interface,
    mode: XdpMode,
}

impl SysAttach for XdpTarget {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let at = &self.at;
        in_netns(at.netns.as_deref(), || {
            let mut prog = Xdp::from_pin(program, XdpAttachType::Interface)
                .map_err(call_err("open program", program.display().to_string()))?;
            let id = prog
                .attach_to_if_index(at.ifindex, aya_mode(self.mode))
                .map_err(|e| {
                    if is_busy(&e) {
                        KernelError::Busy {
                            interface: at.name.clone(),
                        }
                    } else if self.mode == XdpMode::Hw {
                        KernelError::call(
                            "attach XDP in hardware offload mode (--mode hw needs a NIC and driver that offload XDP programs; use --mode driver or skb) to",
                            at.name.clone(),
                            e,
                        )
                    } else {
                        KernelError::call("attach XDP to", at.name.clone(), e)
                    }
                })?;
            let link = prog
                .take_link(id)
                .map_err(call_err("attach XDP to", at.name.clone()))?;
            FdLink::try_from(link).map_err(|_| KernelError::NotSupported {
                feature: Feature::XdpLink,
                kernel: crate::kernel::Kernel::release(&Sys),
                subject: at.name.clone(),
                instead: None,
            })
        })
    }
}
