//! TC: a slot in the hook's dispatcher chain, attached with tcx where the
//! kernel has it and with clsact + cls_bpf where it does not (or when
//! asked, to sit among classic tc filters).

use std::path::PathBuf;

use anyhow::Result;
use bpfman_image_spec::program::SectionKind;

use crate::chain::{ChainArgs, ChainRequest};
use crate::dispatcher::ChainHook;
use crate::kernel::XdpMode;

/// A TC direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct TcRequest {
    /// The network interface.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,
    #[arg(long, value_enum)]
    pub direction: Direction,
    /// A network namespace: a name under /run/netns, or a path.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<PathBuf>,
    /// Attach a new dispatcher with clsact + cls_bpf even where tcx
    /// exists (to sit among classic tc filters).
    #[arg(long)]
    pub clsact: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
}

pub fn fits(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::Tc | SectionKind::TcxIngress | SectionKind::TcxEgress
    )
}

impl TcRequest {
    pub(super) fn chain(&self) -> Result<ChainRequest> {
        let hook = match self.direction {
            Direction::Ingress => ChainHook::TcIngress,
            Direction::Egress => ChainHook::TcEgress,
        };
        self.chain.request(
            hook,
            &self.iface,
            self.netns.clone(),
            XdpMode::Default,
            self.clsact,
        )
    }
}

/// " netns NAME" for messages, or nothing.
pub(crate) fn in_ns(netns: &Option<PathBuf>) -> String {
    netns
        .as_ref()
        .map(|p| format!(" netns {}", p.display()))
        .unwrap_or_default()
}
