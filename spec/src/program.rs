//! Program types: the fine-grained kind an ELF section name gives (libbpf's
//! conventions), and the coarse type written to the `io.ebpf.programs` label.

use std::fmt;
use std::str::FromStr;

/// What a program's ELF section says it is, after libbpf's section naming
/// rules. The loader needs this detail (kprobe vs kretprobe, tcx direction);
/// the image label only carries the coarse [`ProgramType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    Xdp,
    XdpFrags,
    XdpDevmap,
    XdpCpumap,
    /// `tc` / `classifier`: classic cls_bpf (or a dispatcher slot).
    Tc,
    TcAction,
    TcxIngress,
    TcxEgress,
    NetkitPrimary,
    NetkitPeer,
    Tracepoint,
    RawTracepoint,
    RawTracepointWritable,
    TpBtf,
    Kprobe,
    Kretprobe,
    KprobeMulti,
    KretprobeMulti,
    Ksyscall,
    Kretsyscall,
    Uprobe,
    Uretprobe,
    UprobeMulti,
    UretprobeMulti,
    Usdt,
    Fentry,
    Fexit,
    FmodRet,
    Iter,
    Freplace,
    Lsm,
    LsmCgroup,
    StructOps,
    SocketFilter,
    SkReuseport,
    PerfEvent,
    LwtIn,
    LwtOut,
    LwtXmit,
    LwtSeg6local,
    SockOps,
    SkSkb,
    SkMsg,
    LircMode2,
    FlowDissector,
    CgroupSkb,
    CgroupSock,
    CgroupSockAddr,
    CgroupSysctl,
    CgroupSockopt,
    CgroupDevice,
    SkLookup,
    Syscall,
    Netfilter,
}

/// A parsed section name: the kind, the attach target it names (if any), and
/// whether it asks for a sleepable program (`.s` variants).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramSection {
    pub kind: SectionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sleepable: bool,
    /// The name is not one libbpf knows but one aya-based tooling writes
    /// (`xdp/<name>`, `sk_msg/<name>` ...): the kind comes from its first
    /// segment and the rest is only a name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aya_style: bool,
}

/// How a table entry matches: `Exact` is the whole section name; `Plus` is
/// libbpf's `+`: the name alone or followed by `/<target>`.
#[derive(Clone, Copy)]
enum Match {
    Exact,
    Plus,
}

use Match::{Exact, Plus};
use SectionKind as K;

/// libbpf's section definitions (libbpf.c `section_defs`), most specific
/// first where prefixes overlap. Sleepable variants carry `true`.
const SECTIONS: &[(&str, SectionKind, Match, bool)] = &[
    ("socket", K::SocketFilter, Plus, false),
    ("sk_reuseport/migrate", K::SkReuseport, Exact, false),
    ("sk_reuseport", K::SkReuseport, Exact, false),
    ("kprobe.multi", K::KprobeMulti, Plus, false),
    ("kretprobe.multi", K::KretprobeMulti, Plus, false),
    ("uprobe.multi.s", K::UprobeMulti, Plus, true),
    ("uretprobe.multi.s", K::UretprobeMulti, Plus, true),
    ("uprobe.multi", K::UprobeMulti, Plus, false),
    ("uretprobe.multi", K::UretprobeMulti, Plus, false),
    ("kprobe", K::Kprobe, Plus, false),
    ("kretprobe", K::Kretprobe, Plus, false),
    ("uprobe.s", K::Uprobe, Plus, true),
    ("uretprobe.s", K::Uretprobe, Plus, true),
    ("uprobe", K::Uprobe, Plus, false),
    ("uretprobe", K::Uretprobe, Plus, false),
    ("ksyscall", K::Ksyscall, Plus, false),
    ("kretsyscall", K::Kretsyscall, Plus, false),
    ("usdt.s", K::Usdt, Plus, true),
    ("usdt", K::Usdt, Plus, false),
    // libbpf >= 1.3 treats tc/ingress and tc/egress as tcx aliases.
    ("tc/ingress", K::TcxIngress, Exact, false),
    ("tc/egress", K::TcxEgress, Exact, false),
    ("tcx/ingress", K::TcxIngress, Exact, false),
    ("tcx/egress", K::TcxEgress, Exact, false),
    ("tc", K::Tc, Plus, false),
    ("classifier", K::Tc, Plus, false),
    ("action", K::TcAction, Plus, false),
    ("netkit/primary", K::NetkitPrimary, Exact, false),
    ("netkit/peer", K::NetkitPeer, Exact, false),
    ("tracepoint", K::Tracepoint, Plus, false),
    ("tp", K::Tracepoint, Plus, false),
    ("raw_tracepoint.w", K::RawTracepointWritable, Plus, false),
    ("raw_tp.w", K::RawTracepointWritable, Plus, false),
    ("raw_tracepoint", K::RawTracepoint, Plus, false),
    ("raw_tp", K::RawTracepoint, Plus, false),
    ("tp_btf", K::TpBtf, Plus, false),
    ("fentry.s", K::Fentry, Plus, true),
    ("fmod_ret.s", K::FmodRet, Plus, true),
    ("fexit.s", K::Fexit, Plus, true),
    ("fentry", K::Fentry, Plus, false),
    ("fmod_ret", K::FmodRet, Plus, false),
    ("fexit", K::Fexit, Plus, false),
    ("freplace", K::Freplace, Plus, false),
    ("lsm.s", K::Lsm, Plus, true),
    ("lsm_cgroup", K::LsmCgroup, Plus, false),
    ("lsm", K::Lsm, Plus, false),
    ("iter.s", K::Iter, Plus, true),
    ("iter", K::Iter, Plus, false),
    ("syscall", K::Syscall, Exact, true),
    ("xdp.frags/devmap", K::XdpDevmap, Exact, false),
    ("xdp/devmap", K::XdpDevmap, Exact, false),
    ("xdp.frags/cpumap", K::XdpCpumap, Exact, false),
    ("xdp/cpumap", K::XdpCpumap, Exact, false),
    ("xdp.frags", K::XdpFrags, Exact, false),
    ("xdp", K::Xdp, Exact, false),
    ("perf_event", K::PerfEvent, Exact, false),
    ("lwt_in", K::LwtIn, Exact, false),
    ("lwt_out", K::LwtOut, Exact, false),
    ("lwt_xmit", K::LwtXmit, Exact, false),
    ("lwt_seg6local", K::LwtSeg6local, Exact, false),
    ("sockops", K::SockOps, Exact, false),
    ("sk_skb/stream_parser", K::SkSkb, Exact, false),
    ("sk_skb/stream_verdict", K::SkSkb, Exact, false),
    ("sk_skb/verdict", K::SkSkb, Exact, false),
    ("sk_skb", K::SkSkb, Plus, false),
    ("sk_msg", K::SkMsg, Exact, false),
    ("lirc_mode2", K::LircMode2, Exact, false),
    ("flow_dissector", K::FlowDissector, Exact, false),
    ("cgroup_skb/ingress", K::CgroupSkb, Exact, false),
    ("cgroup_skb/egress", K::CgroupSkb, Exact, false),
    ("cgroup/skb", K::CgroupSkb, Exact, false),
    ("cgroup/sock_create", K::CgroupSock, Exact, false),
    ("cgroup/sock_release", K::CgroupSock, Exact, false),
    ("cgroup/sock", K::CgroupSock, Exact, false),
    ("cgroup/post_bind4", K::CgroupSock, Exact, false),
    ("cgroup/post_bind6", K::CgroupSock, Exact, false),
    ("cgroup/bind4", K::CgroupSockAddr, Exact, false),
    ("cgroup/bind6", K::CgroupSockAddr, Exact, false),
    ("cgroup/connect4", K::CgroupSockAddr, Exact, false),
    ("cgroup/connect6", K::CgroupSockAddr, Exact, false),
    ("cgroup/connect_unix", K::CgroupSockAddr, Exact, false),
    ("cgroup/sendmsg4", K::CgroupSockAddr, Exact, false),
    ("cgroup/sendmsg6", K::CgroupSockAddr, Exact, false),
    ("cgroup/sendmsg_unix", K::CgroupSockAddr, Exact, false),
    ("cgroup/recvmsg4", K::CgroupSockAddr, Exact, false),
    ("cgroup/recvmsg6", K::CgroupSockAddr, Exact, false),
    ("cgroup/recvmsg_unix", K::CgroupSockAddr, Exact, false),
    ("cgroup/getpeername4", K::CgroupSockAddr, Exact, false),
    ("cgroup/getpeername6", K::CgroupSockAddr, Exact, false),
    ("cgroup/getpeername_unix", K::CgroupSockAddr, Exact, false),
    ("cgroup/getsockname4", K::CgroupSockAddr, Exact, false),
    ("cgroup/getsockname6", K::CgroupSockAddr, Exact, false),
    ("cgroup/getsockname_unix", K::CgroupSockAddr, Exact, false),
    ("cgroup/sysctl", K::CgroupSysctl, Exact, false),
    ("cgroup/getsockopt", K::CgroupSockopt, Exact, false),
    ("cgroup/setsockopt", K::CgroupSockopt, Exact, false),
    ("cgroup/dev", K::CgroupDevice, Exact, false),
    ("struct_ops.s", K::StructOps, Plus, true),
    ("struct_ops", K::StructOps, Plus, false),
    ("sk_lookup", K::SkLookup, Exact, false),
    ("netfilter", K::Netfilter, Exact, false),
];

/// Section names aya-based tooling writes that libbpf does not know: the
/// kind is the first `/`-separated segment and the rest names the program
/// (aya-obj's `ProgramSection::from_str`; `xdp/<name>` is what aya wrote
/// before it followed libbpf).
const AYA_PREFIXES: &[(&str, SectionKind)] = &[
    ("xdp", K::Xdp),
    ("xdp.frags", K::XdpFrags),
    ("sk_msg", K::SkMsg),
    ("sockops", K::SockOps),
    ("sk_lookup", K::SkLookup),
    ("lirc_mode2", K::LircMode2),
    ("perf_event", K::PerfEvent),
    ("flow_dissector", K::FlowDissector),
    ("cgroup_skb", K::CgroupSkb),
];

impl ProgramSection {
    /// Parses an ELF section name the way libbpf does, then as aya-based
    /// tooling names sections. `None` means neither would know it.
    pub fn parse(section: &str) -> Option<Self> {
        Self::parse_libbpf(section).or_else(|| Self::parse_aya(section))
    }

    /// libbpf's names only.
    pub fn parse_libbpf(section: &str) -> Option<Self> {
        SECTIONS.iter().find_map(|&(name, kind, how, sleepable)| {
            let target = if section == name {
                None
            } else {
                match how {
                    Exact => return None,
                    Plus => {
                        let rest = section.strip_prefix(name)?.strip_prefix('/')?;
                        (!rest.is_empty()).then(|| rest.to_string())
                    }
                }
            };
            Some(Self {
                kind,
                target,
                sleepable,
                aya_style: false,
            })
        })
    }

    fn parse_aya(section: &str) -> Option<Self> {
        let (first, rest) = section.split_once('/')?;
        if rest.is_empty() {
            return None;
        }
        let kind = match AYA_PREFIXES.iter().find(|(p, _)| *p == first) {
            Some(&(_, kind)) => kind,
            // `cgroup/<kind>/<name>`: libbpf's two-segment name plus a name.
            None if first == "cgroup" => {
                let (second, name) = rest.split_once('/')?;
                if name.is_empty() {
                    return None;
                }
                Self::parse_libbpf(&format!("cgroup/{second}"))?.kind
            }
            None => return None,
        };
        Some(Self {
            kind,
            target: None,
            sleepable: false,
            aya_style: true,
        })
    }
}

impl SectionKind {
    /// The coarse type written to the image label.
    pub fn program_type(self) -> ProgramType {
        use ProgramType as T;
        match self {
            K::Xdp | K::XdpFrags | K::XdpDevmap | K::XdpCpumap => T::Xdp,
            K::Tc => T::Tc,
            K::TcAction => T::SchedAct,
            K::TcxIngress | K::TcxEgress => T::Tcx,
            K::NetkitPrimary | K::NetkitPeer => T::Netkit,
            K::Tracepoint => T::Tracepoint,
            K::RawTracepoint => T::RawTracepoint,
            K::RawTracepointWritable => T::RawTracepointWritable,
            K::Kprobe
            | K::Kretprobe
            | K::KprobeMulti
            | K::KretprobeMulti
            | K::Ksyscall
            | K::Kretsyscall
            | K::Uprobe
            | K::Uretprobe
            | K::UprobeMulti
            | K::UretprobeMulti
            | K::Usdt => T::Probe,
            K::TpBtf | K::Fentry | K::Fexit | K::FmodRet | K::Iter => T::Tracing,
            K::Freplace => T::Ext,
            K::Lsm | K::LsmCgroup => T::Lsm,
            K::StructOps => T::StructOps,
            K::SocketFilter => T::SocketFilter,
            K::SkReuseport => T::SkReuseport,
            K::PerfEvent => T::PerfEvent,
            K::LwtIn => T::LwtIn,
            K::LwtOut => T::LwtOut,
            K::LwtXmit => T::LwtXmit,
            K::LwtSeg6local => T::LwtSeg6local,
            K::SockOps => T::SockOps,
            K::SkSkb => T::SkSkb,
            K::SkMsg => T::SkMsg,
            K::LircMode2 => T::LircMode2,
            K::FlowDissector => T::FlowDissector,
            K::CgroupSkb => T::CgroupSkb,
            K::CgroupSock => T::CgroupSock,
            K::CgroupSockAddr => T::CgroupSockAddr,
            K::CgroupSysctl => T::CgroupSysctl,
            K::CgroupSockopt => T::CgroupSockopt,
            K::CgroupDevice => T::CgroupDevice,
            K::SkLookup => T::SkLookup,
            K::Syscall => T::Syscall,
            K::Netfilter => T::Netfilter,
        }
    }
}

impl SectionKind {
    /// The `io.ebpf.programs` spelling upstream bpfman's image builder
    /// writes for this kind (`platform/ebpf/convert.go` `inferProgramType`
    /// and `program.go`): the fine names `kprobe`, `kretprobe`, `uprobe`,
    /// `uretprobe`, `fentry`, `fexit`; `tc` for every classifier section,
    /// `tc/ingress` and `tc/egress` included; `tcx` only for `tcx/...`.
    /// Kinds upstream's Go builder leaves out get the name its Rust
    /// builder (`bpfman/src/types.rs` `BpfProgType`) gives them, which is
    /// the coarse [`ProgramType`].
    pub fn label(self, section_name: &str) -> &'static str {
        match self {
            K::Kprobe | K::KprobeMulti | K::Ksyscall => "kprobe",
            K::Kretprobe | K::KretprobeMulti | K::Kretsyscall => "kretprobe",
            K::Uprobe | K::UprobeMulti | K::Usdt => "uprobe",
            K::Uretprobe | K::UretprobeMulti => "uretprobe",
            K::Fentry => "fentry",
            K::Fexit => "fexit",
            K::TcxIngress | K::TcxEgress if !section_name.starts_with("tcx") => "tc",
            other => other.program_type().name(),
        }
    }

    /// Whether a label value other tools write agrees with this kind: our
    /// coarse name, upstream's spelling, or a name from the same kernel
    /// program family (upstream's `sectionFamily`: `tc` and `tcx` are both
    /// classifiers; its Rust builder wrote `tracepoint` for `tp_btf`).
    pub fn agrees_with_label(self, section_name: &str, label: &str) -> bool {
        let norm = label.trim().to_ascii_lowercase().replace('-', "_");
        if norm == self.label(section_name) || norm == self.program_type().name() {
            return true;
        }
        let Ok(labelled) = norm.parse::<ProgramType>() else {
            return false;
        };
        let family = |t: ProgramType| match t {
            ProgramType::Tcx => ProgramType::Tc,
            t => t,
        };
        // A fine name ("kprobe") must name this very kind, checked above.
        let fine = matches!(
            norm.as_str(),
            "kprobe" | "kretprobe" | "uprobe" | "uretprobe" | "fentry" | "fexit"
        );
        let same_family = family(labelled) == family(self.program_type()) && !fine;
        same_family || (self == K::TpBtf && labelled == ProgramType::Tracepoint)
    }
}

/// The coarse program type of the `io.ebpf.programs` label, named as bpfman
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgramType {
    Xdp,
    Tc,
    Tcx,
    Tracepoint,
    /// kprobe, kretprobe, uprobe, uretprobe, usdt.
    Probe,
    /// fentry, fexit, fmod_ret, tp_btf, iter.
    Tracing,
    SchedAct,
    Netkit,
    RawTracepoint,
    RawTracepointWritable,
    Ext,
    Lsm,
    StructOps,
    SocketFilter,
    SkReuseport,
    PerfEvent,
    LwtIn,
    LwtOut,
    LwtXmit,
    LwtSeg6local,
    SockOps,
    SkSkb,
    SkMsg,
    LircMode2,
    FlowDissector,
    CgroupSkb,
    CgroupSock,
    CgroupSockAddr,
    CgroupSysctl,
    CgroupSockopt,
    CgroupDevice,
    SkLookup,
    Syscall,
    Netfilter,
}

const TYPE_NAMES: &[(ProgramType, &str)] = &[
    (ProgramType::Xdp, "xdp"),
    (ProgramType::Tc, "tc"),
    (ProgramType::Tcx, "tcx"),
    (ProgramType::Tracepoint, "tracepoint"),
    (ProgramType::Probe, "probe"),
    (ProgramType::Tracing, "tracing"),
    (ProgramType::SchedAct, "sched_act"),
    (ProgramType::Netkit, "netkit"),
    (ProgramType::RawTracepoint, "raw_tracepoint"),
    (
        ProgramType::RawTracepointWritable,
        "raw_tracepoint_writable",
    ),
    (ProgramType::Ext, "ext"),
    (ProgramType::Lsm, "lsm"),
    (ProgramType::StructOps, "struct_ops"),
    (ProgramType::SocketFilter, "socket_filter"),
    (ProgramType::SkReuseport, "sk_reuseport"),
    (ProgramType::PerfEvent, "perf_event"),
    (ProgramType::LwtIn, "lwt_in"),
    (ProgramType::LwtOut, "lwt_out"),
    (ProgramType::LwtXmit, "lwt_xmit"),
    (ProgramType::LwtSeg6local, "lwt_seg6local"),
    (ProgramType::SockOps, "sock_ops"),
    (ProgramType::SkSkb, "sk_skb"),
    (ProgramType::SkMsg, "sk_msg"),
    (ProgramType::LircMode2, "lirc_mode2"),
    (ProgramType::FlowDissector, "flow_dissector"),
    (ProgramType::CgroupSkb, "cgroup_skb"),
    (ProgramType::CgroupSock, "cgroup_sock"),
    (ProgramType::CgroupSockAddr, "cgroup_sock_addr"),
    (ProgramType::CgroupSysctl, "cgroup_sysctl"),
    (ProgramType::CgroupSockopt, "cgroup_sockopt"),
    (ProgramType::CgroupDevice, "cgroup_device"),
    (ProgramType::SkLookup, "sk_lookup"),
    (ProgramType::Syscall, "syscall"),
    (ProgramType::Netfilter, "netfilter"),
];

/// Finer names other tools write into the label, folded onto the coarse type.
const TYPE_ALIASES: &[(&str, ProgramType)] = &[
    ("kprobe", ProgramType::Probe),
    ("kretprobe", ProgramType::Probe),
    ("uprobe", ProgramType::Probe),
    ("uretprobe", ProgramType::Probe),
    ("usdt", ProgramType::Probe),
    ("fentry", ProgramType::Tracing),
    ("fexit", ProgramType::Tracing),
    ("classifier", ProgramType::Tc),
];

/// A label value that names no program type we know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown program type '{name}'")]
pub struct UnknownProgramType {
    pub name: String,
}

impl ProgramType {
    /// The label spelling, e.g. `xdp`, `probe`.
    pub fn name(self) -> &'static str {
        TYPE_NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("unknown", |(_, n)| n)
    }
}

impl fmt::Display for ProgramType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProgramType {
    type Err = UnknownProgramType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        TYPE_NAMES
            .iter()
            .find(|(_, n)| *n == norm)
            .map(|(t, _)| *t)
            .or_else(|| {
                TYPE_ALIASES
                    .iter()
                    .find(|(n, _)| *n == norm)
                    .map(|(_, t)| *t)
            })
            .ok_or_else(|| UnknownProgramType { name: s.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<SectionKind> {
        ProgramSection::parse(s).map(|p| p.kind)
    }

    #[test]
    fn libbpf_section_names() {
        assert_eq!(kind("xdp"), Some(K::Xdp));
        assert_eq!(kind("xdp.frags"), Some(K::XdpFrags));
        assert_eq!(kind("xdp/devmap"), Some(K::XdpDevmap));
        assert_eq!(kind("tc"), Some(K::Tc));
        assert_eq!(kind("classifier"), Some(K::Tc));
        assert_eq!(kind("classifier/foo"), Some(K::Tc));
        assert_eq!(kind("tcx/ingress"), Some(K::TcxIngress));
        assert_eq!(kind("tc/egress"), Some(K::TcxEgress));
        assert_eq!(kind("kretprobe/do_sys_openat2"), Some(K::Kretprobe));
        assert_eq!(kind("uprobe.s/libc.so.6:malloc"), Some(K::Uprobe));
        assert_eq!(kind("uprobe.multi"), Some(K::UprobeMulti));
        assert_eq!(kind("fexit/do_unlinkat"), Some(K::Fexit));
        assert_eq!(kind("cgroup/connect4"), Some(K::CgroupSockAddr));
        // Unknown names, and prefixes without the '/' separator, are not programs.
        assert_eq!(kind("xdpfoo"), None);
        assert_eq!(kind("kprobefoo"), None);
        assert_eq!(kind("xdp/"), None);
        assert_eq!(kind(".text"), None);
        assert_eq!(kind("license"), None);
    }

    #[test]
    fn aya_style_sections_are_programs() {
        for (name, want) in [
            ("xdp/my_prog", K::Xdp),
            ("xdp.frags/my_prog", K::XdpFrags),
            ("sk_msg/redirect", K::SkMsg),
            ("sockops/counter", K::SockOps),
            ("cgroup/sock/mine", K::CgroupSock),
        ] {
            let p = ProgramSection::parse(name).expect(name);
            assert_eq!(
                (p.kind, p.aya_style, p.target),
                (want, true, None),
                "{name}"
            );
        }
        // What libbpf knows is read as libbpf reads it.
        let p = ProgramSection::parse("kprobe/do_sys_open").expect("libbpf");
        assert!(!p.aya_style);
        assert_eq!(p.target.as_deref(), Some("do_sys_open"));
        assert_eq!(
            ProgramSection::parse("xdp/devmap").map(|p| p.kind),
            Some(K::XdpDevmap)
        );
        for unknown in ["xdp/", "warp/drive", "cgroup/bogus/x", "cgroup/sock/"] {
            assert_eq!(ProgramSection::parse(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn labels_as_upstream_spells_them() {
        for (section, want) in [
            ("xdp", "xdp"),
            ("xdp/my_prog", "xdp"),
            ("tc", "tc"),
            ("classifier/x", "tc"),
            ("tc/ingress", "tc"),
            ("tcx/egress", "tcx"),
            ("tracepoint/a/b", "tracepoint"),
            ("tp/a/b", "tracepoint"),
            ("kprobe/f", "kprobe"),
            ("kretprobe/f", "kretprobe"),
            ("ksyscall/openat", "kprobe"),
            ("uprobe/bin:f", "uprobe"),
            ("uretprobe/bin:f", "uretprobe"),
            ("fentry/f", "fentry"),
            ("fexit/f", "fexit"),
            ("lsm/file_open", "lsm"),
            ("tp_btf/sched_switch", "tracing"),
            ("socket", "socket_filter"),
        ] {
            let p = ProgramSection::parse(section).expect(section);
            assert_eq!(p.kind.label(section), want, "{section}");
            assert!(p.kind.agrees_with_label(section, want), "{section}");
        }
        // What upstream's tools wrote for the same sections agrees too.
        assert!(K::TcxIngress.agrees_with_label("tcx/ingress", "tc"));
        assert!(K::Tc.agrees_with_label("tc", "tcx"));
        assert!(K::TpBtf.agrees_with_label("tp_btf/x", "tracepoint"));
        assert!(K::Kretprobe.agrees_with_label("kretprobe/f", "probe"));
        assert!(K::Fentry.agrees_with_label("fentry/f", "tracing"));
        // What disagrees does not.
        assert!(!K::Kretprobe.agrees_with_label("kretprobe/f", "kprobe"));
        assert!(!K::Xdp.agrees_with_label("xdp", "tc"));
        assert!(!K::Xdp.agrees_with_label("xdp", "warp"));
    }

    #[test]
    fn targets_and_sleepable() {
        let p = ProgramSection::parse("tracepoint/syscalls/sys_enter_getpid").expect("known");
        assert_eq!(p.target.as_deref(), Some("syscalls/sys_enter_getpid"));
        assert!(!p.sleepable);
        let p = ProgramSection::parse("fentry.s/do_unlinkat").expect("known");
        assert_eq!((p.kind, p.sleepable), (K::Fentry, true));
        assert_eq!(ProgramSection::parse("uprobe").expect("known").target, None);
    }

    #[test]
    fn every_kind_maps_to_a_named_type() {
        for &(sec, kind, _, _) in SECTIONS {
            let t = kind.program_type();
            assert_ne!(t.name(), "unknown", "{sec}");
            assert_eq!(t.name().parse::<ProgramType>(), Ok(t));
        }
    }

    #[test]
    fn coarse_labels_and_aliases() {
        assert_eq!(K::Kretprobe.program_type().name(), "probe");
        assert_eq!(K::Fentry.program_type().name(), "tracing");
        assert_eq!("kprobe".parse::<ProgramType>(), Ok(ProgramType::Probe));
        assert_eq!(
            "Socket-Filter".parse::<ProgramType>(),
            Ok(ProgramType::SocketFilter)
        );
        assert!("warp_drive".parse::<ProgramType>().is_err());
    }
}
