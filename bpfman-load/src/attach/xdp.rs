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
    /// Share the hook with libxdp (xdp-loader and other libxdp users): the
    /// chain is made in libxdp's layout and attach style. An interface
    /// whose hook holds a libxdp dispatcher already is joined without it.
    #[arg(long, conflicts_with = "exclusive")]
    pub libxdp: bool,
    /// The libxdp dispatcher version for a new chain: 2 (libxdp 1.3 to
    /// 1.5, as Debian 12 ships) or 3 (libxdp 1.6 and later). An existing
    /// dispatcher keeps its version.
    #[arg(long, value_name = "VERSION", default_value_t = 2, requires = "libxdp",
          value_parser = clap::value_parser!(u8).range(2..=3))]
    pub libxdp_version: u8,
}

/// A slot of ours in a libxdp dispatcher (an interface shared with
/// libxdp), as recorded. The chain itself is libxdp's: its pins and the
/// kernel are the truth, read again for every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibxdpAttachment {
    pub interface: String,
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    pub priority: i32,
    pub proceed_on: Vec<String>,
    /// The dispatcher's configuration version (libxdp's v2 or v3).
    pub version: u8,
}

impl LibxdpAttachment {
    /// The interface the slot is on, as recorded.
    pub fn interface(&self) -> Interface {
        Interface {
            name: self.interface.clone(),
            ifindex: self.ifindex,
            netns: self.netns.clone(),
        }
    }
}

impl fmt::Display for LibxdpAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xdp libxdp dispatcher v{} (shared with libxdp; a dispatcher even for one program) {}{} priority {} proceed-on {}",
            self.version,
            self.interface,
            super::tc::in_ns(&self.netns),
            self.priority,
            self.proceed_on.join(",")
        )
    }
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
            let mut req = self.chain.request(
                ChainHook::Xdp,
                &self.iface,
                self.netns.clone(),
                self.mode,
                false,
            )?;
            req.libxdp = self.libxdp.then_some(self.libxdp_version);
            return Ok(Route::Chain(req));
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
