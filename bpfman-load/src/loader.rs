//! Loading programs into the kernel with aya, attaching them, and undoing
//! both; pins in bpffs and records in sled so all of it outlives us.
//!
//! Crash safety comes from one ordering rule: pins first, the state record
//! last (the commit point). A run killed before the commit leaves pins the
//! state does not account for; [`Loader::reconcile`], which every command
//! runs first, removes them. A run killed after it leaves a consistent
//! record. Kernel objects that were never pinned die with our file
//! descriptors.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::{TcAttachOptions, TcAttachType};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{
    FEntry, FExit, KProbe, Program, ProgramError, ProgramInfo, SchedClassifier, TracePoint, UProbe,
    Xdp, XdpMode,
};
use aya::{Btf, EbpfLoader};
use aya_obj::programs::XdpAttachType;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::elf::{ObjectInfo, ProgramInfo as ObjProgram};
use bpfman_image_spec::program::SectionKind;

use crate::bpffs::{self, Bpffs};
use crate::cache::now;
use crate::dispatcher::DispatcherRecord;
use crate::loadable::Loadable;
use crate::probe;
use crate::sections;
use crate::state::{Attachment, LinkRecord, MapPin, ProgramRecord, Source, State};

/// What to load from one object.
#[derive(Debug, Default)]
pub struct LoadOptions {
    /// Program (function) names; empty means every program in the object.
    pub programs: Vec<String>,
    /// Global data: `(name, bytes)`.
    pub globals: Vec<(String, Vec<u8>)>,
    /// Reuse the maps of this already loaded program (by name).
    pub share_maps_with: Option<u32>,
}

/// Where to attach a program, as asked.
#[derive(Debug, Clone)]
pub enum AttachRequest {
    Xdp {
        interface: String,
        netns: Option<PathBuf>,
        mode: XdpMode,
    },
    Tcx {
        interface: String,
        netns: Option<PathBuf>,
        ingress: bool,
        order: TcxOrder,
    },
    Tracepoint {
        category: String,
        name: String,
    },
    Kprobe {
        function: String,
        offset: u64,
    },
    Uprobe {
        target: PathBuf,
        function: Option<String>,
        offset: u64,
        pid: Option<u32>,
    },
    /// fentry and fexit attach where their load pointed them.
    Tracing,
}

/// Where a tcx program goes among the others on the hook.
#[derive(Debug, Clone, Copy, Default)]
pub enum TcxOrder {
    First,
    #[default]
    Last,
    /// Before or after one of our programs, by id.
    Before(u32),
    After(u32),
}

impl std::fmt::Display for TcxOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::First => f.write_str("first"),
            Self::Last => f.write_str("last"),
            Self::Before(id) => write!(f, "before {id}"),
            Self::After(id) => write!(f, "after {id}"),
        }
    }
}

/// What reconciliation found and cleaned.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Programs in the state that the kernel or bpffs no longer has.
    pub vanished: Vec<(ProgramRecord, String)>,
    /// Links whose pin disappeared, with the program they belonged to.
    pub links_gone: Vec<(u32, LinkRecord)>,
    /// Pins in our bpffs directory that no record accounts for.
    pub strays: Vec<PathBuf>,
    /// Dispatcher changes finished or forgotten.
    pub dispatchers: Vec<String>,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        self.vanished.is_empty()
            && self.links_gone.is_empty()
            && self.strays.is_empty()
            && self.dispatchers.is_empty()
    }
}

/// A program in the kernel, for `list --all`.
#[derive(Debug, serde::Serialize)]
pub struct KernelProgram {
    pub id: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: String,
    pub ours: bool,
}

#[derive(Debug)]
pub struct Loader {
    pub(crate) state: State,
    pub(crate) fs: Bpffs,
}

pub(crate) fn tag_hex(tag: u64) -> String {
    format!("{tag:016x}")
}

/// The program types this loader can load and attach.
fn supported(kind: SectionKind) -> bool {
    use SectionKind as K;
    matches!(
        kind,
        K::Xdp
            | K::XdpFrags
            | K::Tc
            | K::TcxIngress
            | K::TcxEgress
            | K::Tracepoint
            | K::Kprobe
            | K::Kretprobe
            | K::Uprobe
            | K::Uretprobe
            | K::Fentry
            | K::Fexit
    )
}

fn probe_kind(kind: SectionKind) -> aya::programs::ProbeKind {
    use aya::programs::ProbeKind as P;
    match kind {
        SectionKind::Kretprobe | SectionKind::Uretprobe => P::Return,
        _ => P::Entry,
    }
}

/// A short user-facing name for a section kind ("tcx_ingress" -> "tcx").
pub(crate) fn kind_name(kind: SectionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

impl Loader {
    pub fn new(state: State, fs: Bpffs) -> Self {
        Self { state, fs }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Loads programs of a verified image.
    pub fn load_image(
        &self,
        loadable: &Loadable,
        reference: &str,
        image: &Digest,
        opts: &LoadOptions,
    ) -> Result<Vec<ProgramRecord>> {
        let source = Source::Image {
            reference: reference.to_string(),
            image: image.clone(),
            manifest: loadable.manifest().digest.clone(),
            admitted_by: loadable.proof().admitted_by().to_string(),
        };
        self.load(&loadable.image().object, source, opts)
    }

    /// Loads programs of a local object file.
    pub fn load_file(&self, path: &Path, opts: &LoadOptions) -> Result<Vec<ProgramRecord>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
        let host = bpfman_image_spec::arch::Endianness::host();
        let endianness = bpfman_image_spec::elf::identify(&bytes)
            .with_context(|| format!("'{}' is not an eBPF object", path.display()))?;
        if endianness != host {
            bail!(
                "'{}' is a {endianness} object; this host is {host}: build it for this byte order",
                path.display()
            );
        }
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let source = Source::File {
            sha256: Digest::of(&bytes),
            path,
        };
        self.load(&bytes, source, opts)
    }

    fn load(
        &self,
        object: &[u8],
        source: Source,
        opts: &LoadOptions,
    ) -> Result<Vec<ProgramRecord>> {
        let info = bpfman_image_spec::elf::inspect(object).context("cannot read the object")?;
        let selected = select(&info, &opts.programs)?;
        check_globals(object, &opts.globals)?;
        for p in &selected {
            probe::can_load(p.section.kind, &p.name)?;
        }
        let shared = match opts.share_maps_with {
            None => Vec::new(),
            Some(id) => {
                let other = self.record(id)?;
                let names: BTreeSet<&str> = info.maps.iter().map(|m| m.name.as_str()).collect();
                let shared: Vec<MapPin> = other
                    .maps
                    .iter()
                    .filter(|m| names.contains(m.name.as_str()))
                    .map(|m| MapPin {
                        shared: true,
                        ..m.clone()
                    })
                    .collect();
                if shared.is_empty() {
                    bail!(
                        "program {id} ({}) has no map with a name this object uses ({}); nothing to share",
                        other.name,
                        info.maps
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                shared
            }
        };

        let bytes = sections::for_aya(object).context("cannot rename libbpf sections for aya")?;
        let load_id = self.state.next_load_id()?;
        let maps_dir = self.fs.maps_dir(load_id)?;
        let mut pins = Pins::default();
        let result = (|| {
            let mut loader = EbpfLoader::new();
            loader.default_map_pin_directory(&maps_dir);
            for (name, value) in &opts.globals {
                loader.override_global(name, value.as_slice(), true);
            }
            for m in &shared {
                loader.map_pin_path(&m.name, m.pin.as_path());
            }
            let mut ebpf = loader.load(&bytes).map_err(explain_object)?;

            let btf = if selected
                .iter()
                .any(|p| matches!(p.section.kind, SectionKind::Fentry | SectionKind::Fexit))
            {
                Some(
                    Btf::from_sys_fs()
                        .context("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux)")?,
                )
            } else {
                None
            };
            let mut loaded = Vec::new();
            for p in &selected {
                let prog = ebpf
                    .program_mut(&p.name)
                    .ok_or_else(|| anyhow!("aya did not find program {} in the object", p.name))?;
                load_one(prog, p, btf.as_ref())?;
                let info = prog.info()?;
                let pin = self.fs.program(info.id());
                prog.pin(&pin).with_context(|| {
                    format!("cannot pin program {} at '{}'", p.name, pin.display())
                })?;
                pins.0.push(pin.clone());
                loaded.push((p, info.id(), tag_hex(info.tag()), pin));
            }

            fault("load:programs-pinned");
            let mut maps = shared.clone();
            for (name, map) in ebpf.maps() {
                if shared.iter().any(|m| m.name == name) {
                    continue;
                }
                let pin = maps_dir.join(bpffs::pin_name(name));
                // Maps the object asks to pin by name are pinned already.
                if !pin.exists() {
                    map.pin(&pin)
                        .with_context(|| format!("cannot pin map {name} at '{}'", pin.display()))?;
                }
                pins.0.push(pin.clone());
                maps.push(MapPin {
                    name: name.to_string(),
                    pin,
                    shared: false,
                });
            }
            maps.sort_by(|a, b| a.name.cmp(&b.name));
            fault("load:maps-pinned");

            let loaded_at = now();
            let globals: Vec<String> = opts
                .globals
                .iter()
                .map(|(n, v)| format!("{n}={}", hex(v)))
                .collect();
            let records: Vec<ProgramRecord> = loaded
                .into_iter()
                .map(|(p, id, tag, pin)| ProgramRecord {
                    id,
                    name: p.name.clone(),
                    kind: p.section.kind,
                    section: p.section_name.clone(),
                    tag,
                    pin,
                    source: source.clone(),
                    maps: maps.clone(),
                    globals: globals.clone(),
                    links: Vec::new(),
                    loaded_at,
                })
                .collect();
            self.state.put(&records)?;
            Ok(records)
        })();
        match result {
            Ok(records) => Ok(records),
            Err(e) => {
                pins.undo();
                self.fs.tidy();
                Err(e)
            }
        }
    }

    /// The record of one of our programs, or an error that says how to find
    /// the right id.
    pub fn record(&self, id: u32) -> Result<ProgramRecord> {
        self.state.get(id)?.ok_or_else(|| {
            anyhow!("no program with id {id} was loaded by bpfman-load; see bpfman-load list")
        })
    }

    /// Attaches one of our programs; the link is pinned and recorded.
    pub fn attach(&self, id: u32, request: &AttachRequest) -> Result<LinkRecord> {
        let mut record = self.record(id)?;
        check_kind(&record, request)?;
        let (link, attachment) = match request {
            AttachRequest::Xdp {
                interface,
                netns,
                mode,
            } => in_netns(netns.as_deref(), || {
                let ifindex = ifindex(interface, netns.as_deref())?;
                let mut prog = Xdp::from_pin(&record.pin, XdpAttachType::Interface)?;
                let link_id = prog
                    .attach_to_if_index(ifindex, *mode)
                    .map_err(|e| explain_xdp(e, interface))?;
                let link = FdLink::try_from(prog.take_link(link_id)?).map_err(|_| {
                    anyhow!(
                        "this kernel attached XDP through netlink, which cannot be pinned; bpfman-load needs XDP bpf_links (Linux 5.9 or later)"
                    )
                })?;
                Ok((
                    link,
                    Attachment::Xdp {
                        interface: interface.clone(),
                        ifindex,
                        netns: netns.clone(),
                        mode: format!("{mode:?}").to_lowercase(),
                    },
                ))
            })?,
            AttachRequest::Tcx {
                interface,
                netns,
                ingress,
                order,
            } => {
                probe::tcx()?;
                let anchor = match order {
                    TcxOrder::Before(other) | TcxOrder::After(other) => {
                        let r = self.record(*other)?;
                        if !r
                            .links
                            .iter()
                            .any(|l| matches!(l.attachment, Attachment::Tcx { .. }))
                        {
                            bail!(
                                "program {other} is not attached with tcx; it cannot anchor an order"
                            );
                        }
                        Some(SchedClassifier::from_pin(&r.pin)?)
                    }
                    _ => None,
                };
                in_netns(netns.as_deref(), || {
                    let ifindex = ifindex(interface, netns.as_deref())?;
                    let link_order = match (order, &anchor) {
                        (TcxOrder::First, _) => LinkOrder::first(),
                        (TcxOrder::Before(_), Some(a)) => LinkOrder::before_program(a)?,
                        (TcxOrder::After(_), Some(a)) => LinkOrder::after_program(a)?,
                        _ => LinkOrder::last(),
                    };
                    let mut prog = SchedClassifier::from_pin(&record.pin)?;
                    let direction = if *ingress {
                        TcAttachType::Ingress
                    } else {
                        TcAttachType::Egress
                    };
                    let link_id = prog
                        .attach_with_options(
                            interface,
                            direction,
                            TcAttachOptions::TcxOrder(link_order),
                        )
                        .with_context(|| format!("cannot attach tcx to {interface}"))?;
                    let link = FdLink::try_from(prog.take_link(link_id)?)
                        .map_err(|_| anyhow!("the kernel did not give a tcx link"))?;
                    Ok((
                        link,
                        Attachment::Tcx {
                            interface: interface.clone(),
                            ifindex,
                            netns: netns.clone(),
                            direction: if *ingress { "ingress" } else { "egress" }.into(),
                            order: Some(order.to_string()),
                        },
                    ))
                })?
            }
            AttachRequest::Tracepoint { category, name } => {
                bpffs::ensure_tracefs()?;
                let mut prog = TracePoint::from_pin(&record.pin)?;
                let link_id = prog.attach(category, name).map_err(|e| {
                    anyhow!(e).context(format!(
                        "cannot attach to tracepoint {category}/{name} (see /sys/kernel/tracing/events/ for the ones this kernel has)"
                    ))
                })?;
                let link = FdLink::try_from(prog.take_link(link_id)?).map_err(|_| {
                    anyhow!("the kernel cannot make tracepoint links (Linux 5.15 or later)")
                })?;
                (
                    link,
                    Attachment::Tracepoint {
                        category: category.clone(),
                        name: name.clone(),
                    },
                )
            }
            AttachRequest::Kprobe { function, offset } => {
                probe::kprobes()?;
                let mut prog = KProbe::from_pin(&record.pin, probe_kind(record.kind))?;
                let link_id = prog
                    .attach(function, *offset)
                    .with_context(|| format!("cannot attach a kprobe to {function}"))?;
                let link = FdLink::try_from(prog.take_link(link_id)?).map_err(|_| {
                    anyhow!("the kernel cannot make kprobe links (Linux 5.15 or later)")
                })?;
                (
                    link,
                    Attachment::Kprobe {
                        function: function.clone(),
                        offset: *offset,
                        ret: record.kind == SectionKind::Kretprobe,
                    },
                )
            }
            AttachRequest::Uprobe {
                target,
                function,
                offset,
                pid,
            } => {
                let mut prog = UProbe::from_pin(&record.pin, probe_kind(record.kind))?;
                let location = match function {
                    Some(f) if *offset == 0 => UProbeAttachLocation::Symbol(f),
                    Some(f) => UProbeAttachLocation::SymbolOffset(f, *offset),
                    None => UProbeAttachLocation::AbsoluteOffset(*offset),
                };
                let scope = match pid.and_then(std::num::NonZeroU32::new) {
                    Some(p) => UProbeScope::OneProcess(p),
                    None => UProbeScope::AllProcesses,
                };
                let point = UProbeAttachPoint {
                    location,
                    cookie: None,
                };
                let link_id = prog
                    .attach(point, target, scope)
                    .with_context(|| format!("cannot attach a uprobe to '{}'", target.display()))?;
                let link = FdLink::try_from(prog.take_link(link_id)?).map_err(|_| {
                    anyhow!("the kernel cannot make uprobe links (Linux 5.15 or later)")
                })?;
                (
                    link,
                    Attachment::Uprobe {
                        target: target.clone(),
                        function: function.clone(),
                        offset: *offset,
                        pid: *pid,
                        ret: record.kind == SectionKind::Uretprobe,
                    },
                )
            }
            AttachRequest::Tracing => {
                let function = record
                    .section
                    .split_once('/')
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                if record.kind == SectionKind::Fentry {
                    let mut prog = FEntry::from_pin(&record.pin)?;
                    let id = prog.attach()?;
                    (
                        FdLink::from(prog.take_link(id)?),
                        Attachment::Fentry { function },
                    )
                } else {
                    let mut prog = FExit::from_pin(&record.pin)?;
                    let id = prog.attach()?;
                    (
                        FdLink::from(prog.take_link(id)?),
                        Attachment::Fexit { function },
                    )
                }
            }
        };
        let link_id = link.info().context("cannot read the new link's id")?.id();
        let pin = self.fs.link(link_id);
        // Dropping an unpinned FdLink detaches it: an error here leaves
        // nothing behind.
        link.pin(&pin)
            .with_context(|| format!("cannot pin link {link_id} at '{}'", pin.display()))?;
        fault("attach:link-pinned");
        let l = LinkRecord {
            id: link_id,
            pin: pin.clone(),
            attachment,
            attached_at: now(),
        };
        record.links.push(l.clone());
        if let Err(e) = self.state.put(std::slice::from_ref(&record)) {
            let _ = bpffs::unpin(&pin);
            return Err(e.into());
        }
        Ok(l)
    }

    /// Detaches one link, by its kernel id.
    pub fn detach(&self, link_id: u32) -> Result<(u32, LinkRecord)> {
        let mut records = self.state.all()?;
        let holders = records
            .iter()
            .filter(|r| r.links.iter().any(|l| l.id == link_id))
            .count();
        if holders > 1 {
            // A dispatcher attachment's id is its extension program's id,
            // which may equal another attachment's link id.
            bail!(
                "link id {link_id} is ambiguous (a link and a dispatcher attachment); detach by unloading the program instead"
            );
        }
        let Some(record) = records
            .iter_mut()
            .find(|r| r.links.iter().any(|l| l.id == link_id))
        else {
            bail!("no link with id {link_id} was made by bpfman-load; see bpfman-load list");
        };
        let pos = record
            .links
            .iter()
            .position(|l| l.id == link_id)
            .unwrap_or_default();
        if let Some(key) = record.links[pos].attachment.dispatcher_key() {
            let link = record.links[pos].clone();
            self.detach_chained(key, record.id)?;
            return Ok((record.id, link));
        }
        let link = record.links.remove(pos);
        bpffs::unpin(&link.pin)?;
        self.state.put(std::slice::from_ref(record))?;
        Ok((record.id, link))
    }

    /// Detaches and unloads one of our programs, removing its pins (maps
    /// only when no other program of ours uses them).
    pub fn unload(&self, id: u32) -> Result<ProgramRecord> {
        let first = self.record(id)?;
        for l in &first.links {
            if let Some(key) = l.attachment.dispatcher_key() {
                self.detach_chained(key, id)?;
            }
        }
        let record = self.record(id)?;
        let others = self.state.all()?;
        self.release(&record, &others)?;
        self.state.remove(id)?;
        self.fs.tidy();
        Ok(record)
    }

    /// Removes a record's pins: links, the program, and the maps no other
    /// record uses.
    fn release(&self, record: &ProgramRecord, all: &[ProgramRecord]) -> Result<()> {
        for l in &record.links {
            bpffs::unpin(&l.pin)?;
        }
        fault("unload:links-unpinned");
        bpffs::unpin(&record.pin)?;
        for m in &record.maps {
            let used = all
                .iter()
                .any(|r| r.id != record.id && r.maps.iter().any(|o| o.pin == m.pin));
            if !used {
                bpffs::unpin(&m.pin)?;
            }
        }
        Ok(())
    }

    /// Compares the state with the kernel and bpffs, and cleans what is
    /// stale: programs that vanished, links whose pin went, and pins no
    /// record accounts for. Touches nothing outside our bpffs directory.
    pub fn reconcile(&self) -> Result<Reconciled> {
        let mut report = Reconciled {
            dispatchers: self.reconcile_dispatchers()?,
            ..Default::default()
        };
        let mut records = self.state.all()?;
        let mut keep = Vec::new();
        for mut r in records.drain(..) {
            match ProgramInfo::from_pin(&r.pin) {
                Ok(info) if info.id() == r.id && tag_hex(info.tag()) == r.tag => {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        r.links.drain(..).partition(|l| !l.pin.exists());
                    r.links = kept;
                    if !gone.is_empty() {
                        self.state.put(std::slice::from_ref(&r))?;
                        report
                            .links_gone
                            .extend(gone.into_iter().map(|l| (r.id, l)));
                    }
                    keep.push(r);
                }
                Ok(info) => {
                    let why = format!("its pin now holds another program (id {})", info.id());
                    report.vanished.push((r, why));
                }
                Err(e) => {
                    let why = if r.pin.exists() {
                        format!("its pin is unreadable ({e})")
                    } else {
                        "its pin is gone (reboot, or unpinned by someone else)".to_string()
                    };
                    report.vanished.push((r, why));
                }
            }
        }
        for (r, _) in &report.vanished {
            self.release(r, &keep)?;
            self.state.remove(r.id)?;
        }
        let dispatchers = self.state.dispatchers()?;
        let claimed: BTreeSet<&PathBuf> = keep
            .iter()
            .flat_map(ProgramRecord::pins)
            .chain(dispatchers.iter().flat_map(DispatcherRecord::pins))
            .collect();
        for pin in self.fs.pins()? {
            if !claimed.contains(&pin) {
                bpffs::unpin(&pin)?;
                report.strays.push(pin);
            }
        }
        self.fs.tidy();
        Ok(report)
    }

    /// Every program in the kernel, marking ours.
    pub fn kernel_programs(&self) -> Result<Vec<KernelProgram>> {
        let ours: BTreeSet<u32> = self.state.all()?.iter().map(|r| r.id).collect();
        let mut out = Vec::new();
        for info in aya::programs::loaded_programs() {
            let info = info.context("cannot list the kernel's programs")?;
            out.push(KernelProgram {
                id: info.id(),
                name: info.name_as_str().unwrap_or("").to_string(),
                kind: prog_type_name(info.program_type()),
                tag: tag_hex(info.tag()),
                ours: ours.contains(&info.id()),
            });
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }
}

/// Fault injection for the crash tests: `BPFMAN_LOAD_FAULT=<step>` makes
/// the process SIGKILL itself at that step, as `kill -9` would, with no
/// destructor or cleanup running. Steps: `load:programs-pinned`,
/// `load:maps-pinned`, `attach:link-pinned`, `unload:links-unpinned`.
pub(crate) fn fault(step: &str) {
    if std::env::var("BPFMAN_LOAD_FAULT").is_ok_and(|v| v == step) {
        tracing::warn!("fault injection: killing ourselves at {step}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Pins made so far by a load, removed if the load fails.
#[derive(Default)]
pub(crate) struct Pins(pub(crate) Vec<PathBuf>);

impl Pins {
    pub(crate) fn undo(&mut self) {
        for p in self.0.drain(..) {
            if let Err(e) = bpffs::unpin(&p) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Parses `NAME=HEX` (an optional `0x` prefix; an even number of hex
/// digits): what `--global` takes and what records keep.
pub fn parse_global(s: &str) -> Result<(String, Vec<u8>), String> {
    let (name, hex) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=HEX"))?;
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    if name.is_empty() || hex.is_empty() || hex.len() % 2 != 0 {
        return Err(format!(
            "'{s}': the value must be an even number of hex digits"
        ));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("'{s}': '{hex}' is not hex"))?;
    Ok((name.to_string(), bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The programs to load: the named ones (all must exist), or all.
fn select<'a>(info: &'a ObjectInfo, names: &[String]) -> Result<Vec<&'a ObjProgram>> {
    let available = || {
        info.programs
            .iter()
            .map(|p| format!("{} ({})", p.name, p.section_name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let selected: Vec<&ObjProgram> = if names.is_empty() {
        info.programs.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                info.programs.iter().find(|p| &p.name == n).ok_or_else(|| {
                    anyhow!(
                        "program '{n}' is not in the object; it has: {}",
                        available()
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    if selected.is_empty() {
        bail!("the object has no programs");
    }
    for p in &selected {
        if !supported(p.section.kind) {
            bail!(
                "program '{}' is a {} program (section '{}'), which bpfman-load cannot load yet; it loads xdp, tc/tcx, tracepoint, kprobe, uprobe, fentry and fexit programs",
                p.name,
                kind_name(p.section.kind),
                p.section_name
            );
        }
    }
    Ok(selected)
}

/// Every `--global` names a variable of the object, with its exact size.
fn check_globals(object: &[u8], globals: &[(String, Vec<u8>)]) -> Result<()> {
    if globals.is_empty() {
        return Ok(());
    }
    let vars =
        bpfman_image_spec::elf::globals(object).context("cannot read the object's globals")?;
    let available = || {
        if vars.is_empty() {
            return "none".to_string();
        }
        vars.iter()
            .map(|v| format!("{} ({} bytes, {})", v.name, v.size, v.section))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, value) in globals {
        let Some(var) = vars.iter().find(|v| &v.name == name) else {
            bail!(
                "--global {name}: the object has no global variable '{name}'; it has: {}",
                available()
            );
        };
        if var.size != value.len() as u64 {
            bail!(
                "--global {name}: '{name}' is {} bytes, the value given is {}; give exactly {} hex digits, in the object's byte order",
                var.size,
                value.len(),
                var.size * 2
            );
        }
    }
    Ok(())
}

fn load_one(prog: &mut Program, p: &ObjProgram, btf: Option<&Btf>) -> Result<()> {
    let target = || {
        p.section.target.clone().ok_or_else(|| {
            anyhow!(
                "program '{}' (section '{}') does not name the kernel function to trace; write SEC(\"{}/<function>\")",
                p.name,
                p.section_name,
                kind_name(p.section.kind)
            )
        })
    };
    let result = match prog {
        Program::Xdp(x) => x.load(),
        Program::SchedClassifier(x) => x.load(),
        Program::TracePoint(x) => x.load(),
        Program::KProbe(x) => x.load(),
        Program::UProbe(x) => x.load(),
        Program::FEntry(x) => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
            x.load(&target()?, btf)
        }
        Program::FExit(x) => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF"))?;
            x.load(&target()?, btf)
        }
        other => bail!(
            "program '{}' is a {:?} program, which bpfman-load cannot load yet",
            p.name,
            other.prog_type()
        ),
    };
    result.map_err(|e| probe::explain_load(e, p.section.kind, &p.name))
}

/// The attach matches the program's type, or a clear error.
fn check_kind(record: &ProgramRecord, request: &AttachRequest) -> Result<()> {
    use SectionKind as K;
    let ok = match request {
        AttachRequest::Xdp { .. } => matches!(record.kind, K::Xdp | K::XdpFrags),
        AttachRequest::Tcx { .. } => matches!(record.kind, K::Tc | K::TcxIngress | K::TcxEgress),
        AttachRequest::Tracepoint { .. } => record.kind == K::Tracepoint,
        AttachRequest::Kprobe { .. } => matches!(record.kind, K::Kprobe | K::Kretprobe),
        AttachRequest::Uprobe { .. } => matches!(record.kind, K::Uprobe | K::Uretprobe),
        AttachRequest::Tracing => matches!(record.kind, K::Fentry | K::Fexit),
    };
    if ok {
        return Ok(());
    }
    let asked = match request {
        AttachRequest::Xdp { .. } => "xdp",
        AttachRequest::Tcx { .. } => "tcx",
        AttachRequest::Tracepoint { .. } => "tracepoint",
        AttachRequest::Kprobe { .. } => "kprobe",
        AttachRequest::Uprobe { .. } => "uprobe",
        AttachRequest::Tracing => "fentry/fexit",
    };
    bail!(
        "program {} ({}) is of type {} (section '{}'); it cannot attach as {asked}",
        record.id,
        record.name,
        kind_name(record.kind),
        record.section
    )
}

/// Runs `f` on a thread inside the network namespace (a name under
/// /run/netns or a path), or here when there is none. The namespace is the
/// thread's alone, and ends with it.
pub(crate) fn in_netns<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let Some(ns) = netns else { return f() };
    let path = netns_path(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).with_context(|| {
                format!(
                    "no network namespace '{}' (looked for '{}')",
                    ns.display(),
                    path.display()
                )
            })?;
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(io::Error::from)
            .with_context(|| format!("cannot enter network namespace '{}'", path.display()))?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("the attach thread panicked"))?
    })
}

/// A bare name means `ip netns`'s /run/netns/NAME.
pub fn netns_path(ns: &Path) -> PathBuf {
    if ns.components().count() == 1 && !ns.is_absolute() {
        Path::new("/run/netns").join(ns)
    } else {
        ns.to_path_buf()
    }
}

/// The interface's index in the calling thread's network namespace.
pub(crate) fn ifindex(name: &str, netns: Option<&Path>) -> Result<u32> {
    let where_ = netns
        .map(|n| format!(" in network namespace '{}'", n.display()))
        .unwrap_or_default();
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(io::Error::from)
    .context("cannot open a socket to look up interfaces")?;
    rustix::net::netdevice::name_to_index(&sock, name)
        .map_err(|_| anyhow!("no network interface named '{name}'{where_}; see ip link"))
}

fn explain_object(e: aya::EbpfError) -> anyhow::Error {
    let text = e.to_string();
    anyhow!(e).context(if text.contains("global") {
        "cannot load the object: a --global names no variable in it, or has the wrong size"
    } else {
        "cannot load the object's maps"
    })
}

fn explain_xdp(e: ProgramError, interface: &str) -> anyhow::Error {
    // EBUSY (another link) or EEXIST (another netlink-attached program).
    if matches!(probe::errno(&e), Some(16 | 17)) {
        anyhow!(e).context(format!(
            "interface {interface} already has an XDP program: in exclusive mode one program owns the interface; detach the other one first"
        ))
    } else {
        anyhow!(e).context(format!("cannot attach XDP to {interface}"))
    }
}

/// `BPF_PROG_TYPE_SCHED_CLS` -> `sched_cls`.
fn prog_type_name(t: impl std::fmt::Debug) -> String {
    let raw = format!("{t:?}");
    raw.strip_prefix("BPF_PROG_TYPE_")
        .unwrap_or(&raw)
        .to_lowercase()
}
