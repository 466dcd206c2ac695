//! tcx (Linux 6.6+): TC programs ordered natively by the kernel, first,
//! last, or before or after one of ours.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use aya::programs::SchedClassifier;
use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::{TcAttachOptions, TcAttachType};
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use super::tc::{Direction, in_ns};
use super::{Attachment, Context, Route, Target};
use crate::kernel::netns::in_netns;
use crate::kernel::sys::{SysAttach, call_err};
use crate::kernel::{Feature, Interface, Kernel, KernelError, require};

#[derive(Debug, Clone, clap::Args)]
pub struct TcxRequest {
    /// The network interface.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,
    #[arg(long, value_enum)]
    pub direction: Direction,
    /// A network namespace: a name under /run/netns, or a path.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<PathBuf>,
    /// Run before every other tcx program on the hook.
    #[arg(long, conflicts_with_all = ["before", "after"])]
    pub first: bool,
    /// Run before this program of ours.
    #[arg(long, value_name = "ID", conflicts_with = "after")]
    pub before: Option<u32>,
    /// Run after this program of ours.
    #[arg(long, value_name = "ID")]
    pub after: Option<u32>,
}

/// Where a tcx program goes among the others on the hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TcxOrder {
    First,
    #[default]
    Last,
    /// Before or after one of our programs, by id.
    Before(u32),
    After(u32),
}

impl fmt::Display for TcxOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First => f.write_str("first"),
            Self::Last => f.write_str("last"),
            Self::Before(id) => write!(f, "before {id}"),
            Self::After(id) => write!(f, "after {id}"),
        }
    }
}

/// A tcx link, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcxAttachment {
    pub interface: String,
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    pub direction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

impl fmt::Display for TcxAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcx {} {}{}",
            self.direction,
            self.interface,
            in_ns(&self.netns)
        )
    }
}

pub fn fits(kind: SectionKind) -> bool {
    super::tc::fits(kind)
}

impl TcxRequest {
    pub fn order(&self) -> TcxOrder {
        match (self.first, self.before, self.after) {
            (true, _, _) => TcxOrder::First,
            (_, Some(id), _) => TcxOrder::Before(id),
            (_, _, Some(id)) => TcxOrder::After(id),
            _ => TcxOrder::Last,
        }
    }

    pub(super) fn route<K: Kernel>(&self, cx: &Context<'_, K>) -> Result<Route> {
        require(cx.kernel, Feature::Tcx, || format!("tcx on {}", self.iface))?;
        let order = self.order();
        let anchor = match order {
            TcxOrder::Before(other) | TcxOrder::After(other) => {
                let r = crate::loader::record(cx.state, other)?;
                if !r
                    .links
                    .iter()
                    .any(|l| matches!(l.attachment, Attachment::Tcx(_)))
                {
                    bail!("program {other} is not attached with tcx; it cannot anchor an order");
                }
                Some(r.pin)
            }
            TcxOrder::First | TcxOrder::Last => None,
        };
        let at = cx.kernel.interface(&self.iface, self.netns.as_deref())?;
        let attachment = TcxAttachment {
            interface: at.name.clone(),
            ifindex: at.ifindex,
            netns: at.netns.clone(),
            direction: self.direction.name().into(),
            order: Some(order.to_string()),
        };
        Ok(Route::Direct(
            Target::new(
                format!("{attachment} {order}"),
                TcxTarget {
                    at,
                    ingress: self.direction == Direction::Ingress,
                    order,
                    anchor,
                },
            ),
            Attachment::Tcx(attachment),
        ))
    }
}

#[derive(Debug)]
struct TcxTarget {
    at: Interface,
    ingress: bool,
    order: TcxOrder,
    /// The pin of the program `order` is relative to.
    anchor: Option<PathBuf>,
}

impl SysAttach for TcxTarget {
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError> {
        let anchor = self
            .anchor
            .as_deref()
            .map(SchedClassifier::from_pin)
            .transpose()
            .map_err(call_err(
                "open the program to order against",
                self.at.name.clone(),
            ))?;
        let at = &self.at;
        in_netns(at.netns.as_deref(), || {
            let order_err = call_err("order tcx on", at.name.clone());
            let link_order = match (self.order, &anchor) {
                (TcxOrder::First, _) => LinkOrder::first(),
                (TcxOrder::Before(_), Some(a)) => {
                    LinkOrder::before_program(a).map_err(order_err)?
                }
                (TcxOrder::After(_), Some(a)) => LinkOrder::after_program(a).map_err(order_err)?,
                _ => LinkOrder::last(),
            };
            let mut prog = SchedClassifier::from_pin(program)
                .map_err(call_err("open program", program.display().to_string()))?;
            let direction = if self.ingress {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            let id = prog
                .attach_with_options(&at.name, direction, TcAttachOptions::TcxOrder(link_order))
                .map_err(call_err("attach tcx to", at.name.clone()))?;
            let link = prog
                .take_link(id)
                .map_err(call_err("attach tcx to", at.name.clone()))?;
            FdLink::try_from(link)
                .map_err(|e| KernelError::call("attach tcx to", at.name.clone(), e))
        })
    }
}
