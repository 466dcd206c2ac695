//! Loading programs into the kernel, attaching them, and undoing both;
//! pins in bpffs and records in sled so all of it outlives us. Every
//! kernel and bpffs effect goes through [`Kernel`].
//!
//! Crash safety comes from one ordering rule: pins first, the state record
//! last (the commit point). A run killed before the commit leaves pins the
//! state does not account for; [`Loader::reconcile`], which every command
//! runs first, removes them. A run killed after it leaves a consistent
//! record. Kernel objects that were never pinned die with our file
//! descriptors. Until the commit, an [`Undo`] guard holds what was pinned
//! and removes it if anything fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::elf::{ObjectInfo, ProgramInfo as ObjProgram};
use bpfman_image_spec::program::SectionKind;

use crate::attach::{AttachRequest, Context, Route, kprobe, tracing as tracing_hook};
use crate::bpffs::Bpffs;
use crate::cache::now;
use crate::chain::{Chain, Joining};
use crate::dispatcher::{ChainHook, DispatcherRecord};
use crate::kernel::{
    Kernel, KernelProgram, LoadedObject, ObjectSpec, ProgramSpec, Role, Sys, Undo, fault,
};
use crate::libxdp::Shared;
use crate::loadable::Loadable;
use crate::sections;
use crate::state::{Attachment, LinkRecord, MapPin, ProgramRecord, Source, State};

/// What to load from one object.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Program (function) names; empty means every program in the object.
    pub programs: Vec<String>,
    /// Global data: `(name, bytes)`.
    pub globals: Vec<(String, Vec<u8>)>,
    /// Reuse the maps of this already loaded program (by name).
    pub share_maps_with: Option<u32>,
    /// The desired-state deployment these programs belong to.
    pub deployment: Option<crate::state::Deployed>,
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

/// The kernel side of one state root.
#[derive(Debug)]
pub struct Loader<K: Kernel = Sys> {
    kernel: K,
    state: State,
    fs: Bpffs,
    /// libxdp's bpffs directory, for interfaces shared with libxdp.
    libxdp: PathBuf,
}

/// A short user-facing name for a section kind ("tcx_ingress" -> "tcx").
pub(crate) fn kind_name(kind: SectionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// The record of one of our programs, or an error that says how to find
/// the right id.
pub(crate) fn record(state: &State, id: u32) -> Result<ProgramRecord> {
    state.get(id)?.ok_or_else(|| {
        anyhow!("no program with id {id} was loaded by bpfman-load; see bpfman-load list")
    })
}

impl<K: Kernel> Loader<K> {
    pub fn new(kernel: K, state: State, fs: Bpffs) -> Self {
        Self {
            kernel,
            state,
            fs,
            libxdp: crate::libxdp::default_root(),
        }
    }

    /// The same loader, with libxdp's directory at `dir` (the default is
    /// `$LIBXDP_BPFFS/xdp`, else `/sys/fs/bpf/xdp`).
    pub fn with_libxdp_root(mut self, dir: PathBuf) -> Self {
        self.libxdp = dir;
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    pub fn bpffs(&self) -> &Bpffs {
        &self.fs
    }

    fn chain(&self) -> Chain<'_, K> {
        Chain::new(&self.kernel, &self.state, &self.fs)
    }

    fn libxdp(&self) -> Shared<'_, K> {
        Shared::new(&self.kernel, &self.state, &self.fs, self.libxdp.clone())
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
        let bytes = bpfman_trust::file::read_regular(
            path,
            bpfman_image_spec::layer::MAX_OBJECT_SIZE,
            bpfman_trust::file::Links::Follow,
        )
        .with_context(|| format!("cannot read '{}'", path.display()))?;
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

    /// Loads the selected programs of an object: programs pinned, then
    /// maps, then the records (the commit point).
    pub fn load(
        &self,
        object: &[u8],
        source: Source,
        opts: &LoadOptions,
    ) -> Result<Vec<ProgramRecord>> {
        let k = &self.kernel;
        let info = bpfman_image_spec::elf::inspect(object).context("cannot read the object")?;
        let selected = select(&info, &opts.programs)?;
        check_globals(object, &opts.globals)?;
        for p in &selected {
            match p.section.kind {
                SectionKind::Kprobe | SectionKind::Kretprobe => kprobe::can_load(k, &p.name)?,
                SectionKind::Fentry | SectionKind::Fexit => {
                    tracing_hook::can_load(k, p.section.kind, &p.name)?
                }
                SectionKind::Lsm => crate::attach::lsm::can_load(k, &p.name)?,
                _ => {}
            }
        }
        let shared = match opts.share_maps_with {
            None => Vec::new(),
            Some(id) => shared_maps(&self.record(id)?, &info)?,
        };

        let names: Vec<&str> = selected.iter().map(|p| p.name.as_str()).collect();
        let bytes =
            sections::for_aya(object, &names).context("cannot prepare the object for aya")?;
        let load_id = self.state.next_load_id()?;
        let maps_dir = self.fs.maps_dir(load_id);
        let mut undo = Undo::new(k);
        k.create_dir(&maps_dir)?;
        undo.tree(&maps_dir);
        let shared_pins: Vec<(String, PathBuf)> = shared
            .iter()
            .map(|m| (m.name.clone(), m.pin.clone()))
            .collect();
        let mut obj = k.open_object(&ObjectSpec {
            bytes: &bytes,
            globals: &opts.globals,
            map_dir: &maps_dir,
            shared_maps: &shared_pins,
        })?;
        let mut loaded = Vec::new();
        for p in &selected {
            let spec = ProgramSpec {
                name: &p.name,
                kind: p.section.kind,
                section: &p.section_name,
                target: p.section.target.as_deref(),
            };
            let (id, pin) = obj.load_program(&spec, &self.fs.programs_dir())?;
            undo.pin(&pin);
            loaded.push((p, id, pin));
        }
        fault("load:programs-pinned");
        let skip: Vec<&str> = shared.iter().map(|m| m.name.as_str()).collect();
        let mut maps = shared.clone();
        for (name, pin) in obj.pin_maps(&maps_dir, &skip)? {
            maps.push(MapPin {
                name,
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
            .map(|(p, id, pin)| ProgramRecord {
                id: id.id,
                name: p.name.clone(),
                kind: p.section.kind,
                section: p.section_name.clone(),
                tag: id.tag_hex(),
                pin,
                source: source.clone(),
                maps: maps.clone(),
                globals: globals.clone(),
                links: Vec::new(),
                loaded_at,
                deployment: opts.deployment.clone(),
            })
            .collect();
        self.state.put(&records)?;
        undo.commit();
        Ok(records)
    }

    /// The record of one of our programs, or an error that says how to find
    /// the right id.
    pub fn record(&self, id: u32) -> Result<ProgramRecord> {
        record(&self.state, id)
    }

    /// Attaches one of our programs where `request` says: a link of its
    /// own, pinned and recorded, or a slot in a dispatcher chain, for
    /// which `object` gives the bytes the program was loaded from
    /// (verified again by the caller).
    pub fn attach(
        &self,
        id: u32,
        request: &AttachRequest,
        object: impl Fn(&ProgramRecord) -> Result<Vec<u8>>,
    ) -> Result<LinkRecord> {
        let k = &self.kernel;
        let mut record = self.record(id)?;
        let cx = Context {
            kernel: k,
            state: &self.state,
            record: &record,
        };
        let (target, attachment) = match request.route(&cx)? {
            Route::Chain(req) => {
                let bytes = object(&record)?;
                let joining = Joining {
                    record: &record,
                    object: &bytes,
                };
                if req.hook == ChainHook::Xdp {
                    let at = k.interface(&req.interface, req.netns.as_deref())?;
                    let shared = self.libxdp();
                    if shared.wants(&req, &at)? {
                        if record.links.iter().any(|l| {
                            crate::libxdp::attachment(l)
                                .is_some_and(|a| a.ifindex == at.ifindex && a.netns == at.netns)
                        }) {
                            bail!(
                                "program {} is already in the libxdp dispatcher on {}",
                                record.id,
                                req.interface
                            );
                        }
                        return shared.join(&req, joining);
                    }
                }
                return self.chain().add(&req, joining, &object);
            }
            Route::Direct(target, attachment) => (target, attachment),
        };
        let (link_id, pin) = k.attach(&record.pin, &target, &self.fs.links_dir())?;
        let mut undo = Undo::new(k);
        undo.pin(&pin);
        fault("attach:link-pinned");
        let l = LinkRecord {
            id: link_id,
            pin,
            attachment,
            attached_at: now(),
        };
        record.links.push(l.clone());
        self.state.put(std::slice::from_ref(&record))?;
        undo.commit();
        Ok(l)
    }

    /// Moves program `from`'s attachment at the place `request` names to
    /// program `to`, without a moment where neither or both run: a
    /// dispatcher slot is replaced in one swap of the hook, an exclusive
    /// XDP or tcx link is updated in place. `None` when `from` is not
    /// attached there or the hook cannot swap (attach `to` instead, then
    /// let `from` go).
    pub fn take_over(
        &self,
        from: u32,
        to: u32,
        request: &AttachRequest,
        object: impl Fn(&ProgramRecord) -> Result<Vec<u8>>,
    ) -> Result<Option<LinkRecord>> {
        let k = &self.kernel;
        let mut old = self.record(from)?;
        let mut new = self.record(to)?;
        let cx = Context {
            kernel: k,
            state: &self.state,
            record: &new,
        };
        match request.route(&cx)? {
            Route::Chain(req) => {
                let at = k.interface(&req.interface, req.netns.as_deref())?;
                let key = crate::chain::key(req.hook, req.netns.as_deref(), at.ifindex);
                if !old
                    .links
                    .iter()
                    .any(|l| l.attachment.dispatcher_key() == Some(key.as_str()))
                {
                    return Ok(None);
                }
                let bytes = object(&new)?;
                let joining = Joining {
                    record: &new,
                    object: &bytes,
                };
                self.chain().replace(&req, from, joining, &object).map(Some)
            }
            Route::Direct(_, attachment) => {
                let Some((pos, hook)) = old
                    .links
                    .iter()
                    .enumerate()
                    .find_map(|(i, l)| l.attachment.updatable_as(&attachment).map(|h| (i, h)))
                else {
                    return Ok(None);
                };
                k.update_link(hook, &old.links[pos].pin, &new.pin)?;
                // The link now runs `to`: the records follow in one batch.
                let mut link = old.links.remove(pos);
                link.attachment = attachment;
                link.attached_at = now();
                new.links.push(link.clone());
                self.state.put(&[old, new])?;
                Ok(Some(link))
            }
        }
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
            self.chain().remove(key, record.id)?;
            return Ok((record.id, link));
        }
        if let Some(a) = crate::libxdp::attachment(&record.links[pos])
            && let Some(note) = self.libxdp().leave(a, link_id)?
        {
            tracing::warn!("{note}");
        }
        let link = record.links.remove(pos);
        self.kernel.unpin(&link.pin)?;
        self.state.put(std::slice::from_ref(record))?;
        Ok((record.id, link))
    }

    /// Detaches and unloads one of our programs, removing its pins (maps
    /// only when no other program of ours uses them).
    pub fn unload(&self, id: u32) -> Result<ProgramRecord> {
        let first = self.record(id)?;
        for l in &first.links {
            if let Some(key) = l.attachment.dispatcher_key() {
                self.chain().remove(key, id)?;
            }
            if let Some(a) = crate::libxdp::attachment(l)
                && let Some(note) = self.libxdp().leave(a, l.id)?
            {
                tracing::warn!("{note}");
            }
        }
        let record = self.record(id)?;
        let others = self.state.all()?;
        self.release(&record, &others)?;
        self.state.remove(id)?;
        self.fs.tidy(&self.kernel);
        Ok(record)
    }

    /// Removes a record's pins: links, the program, and the maps no other
    /// record uses.
    fn release(&self, record: &ProgramRecord, all: &[ProgramRecord]) -> Result<()> {
        let k = &self.kernel;
        for l in &record.links {
            k.unpin(&l.pin)?;
        }
        fault("unload:links-unpinned");
        k.unpin(&record.pin)?;
        for m in &record.maps {
            let used = all
                .iter()
                .any(|r| r.id != record.id && r.maps.iter().any(|o| o.pin == m.pin));
            if !used {
                k.unpin(&m.pin)?;
            }
        }
        Ok(())
    }

    /// Compares the state with the kernel and bpffs, and cleans what is
    /// stale: programs that vanished, links whose pin went, and pins no
    /// record accounts for. Touches nothing outside our bpffs directory.
    pub fn reconcile(&self) -> Result<Reconciled> {
        let k = &self.kernel;
        let mut report = Reconciled {
            dispatchers: self.chain().reconcile()?,
            ..Default::default()
        };
        report.dispatchers.extend(self.libxdp().reconcile()?);
        let mut keep = Vec::new();
        // No pin of ours at all: bpffs was emptied (a reboot, a remount).
        // Walked only when a program's pin is gone.
        let bpffs_empty = std::cell::OnceCell::new();
        for mut r in self.state.all()? {
            match k.program(&r.pin) {
                Ok(p) if p.id == r.id && p.tag_hex() == r.tag => {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        r.links.drain(..).partition(|l| !k.is_pinned(&l.pin));
                    r.links = kept;
                    if !gone.is_empty() {
                        self.state.put(std::slice::from_ref(&r))?;
                        report
                            .links_gone
                            .extend(gone.into_iter().map(|l| (r.id, l)));
                    }
                    keep.push(r);
                }
                Ok(p) => {
                    let why = format!("its pin now holds another program (id {})", p.id);
                    report.vanished.push((r, why));
                }
                Err(e) => {
                    let why = if k.is_pinned(&r.pin) {
                        format!("its pin is unreadable ({e})")
                    } else if *bpffs_empty
                        .get_or_init(|| k.pins(self.fs.root()).is_ok_and(|p| p.is_empty()))
                    {
                        "its pin is gone (bpffs holds none of ours: a reboot, or it was remounted)"
                            .to_string()
                    } else if r.maps.iter().any(|m| !m.shared && k.is_pinned(&m.pin)) {
                        // Unload unpins the program, then its maps, then the
                        // record goes: this one stopped in between.
                        "its pin is gone: an unload of it was interrupted; finished now".to_string()
                    } else {
                        "its pin is gone (an interrupted unload, or someone else unpinned it)"
                            .to_string()
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
        for pin in k.pins(self.fs.root())? {
            if !claimed.contains(&pin) {
                k.unpin(&pin)?;
                report.strays.push(pin);
            }
        }
        self.fs.tidy(k);
        Ok(report)
    }

    /// Every program in the kernel, marking ours.
    pub fn kernel_programs(&self) -> Result<Vec<KernelProgram>> {
        let mut roles = BTreeMap::new();
        for r in self.state.all()? {
            roles.insert(r.id, Role::Program);
            for l in &r.links {
                // A slot in libxdp's chain is our extension program's id.
                if let Attachment::Libxdp(_) = l.attachment {
                    roles.insert(l.id, Role::Extension { of: r.id });
                }
            }
        }
        for d in self.state.dispatchers()? {
            if !d.alone {
                roles.insert(d.program_id, Role::Dispatcher);
            }
            for s in d.slots.iter().filter(|s| s.ext_id != 0) {
                roles.insert(s.ext_id, Role::Extension { of: s.program });
            }
        }
        let mut out = self.kernel.programs()?;
        for p in &mut out {
            p.role = roles.get(&p.id).copied();
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }
}

/// The maps of `other` this object uses by name, to reuse.
fn shared_maps(other: &ProgramRecord, info: &ObjectInfo) -> Result<Vec<MapPin>> {
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
            "program {} ({}) has no map with a name this object uses ({}); nothing to share",
            other.id,
            other.name,
            info.maps
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(shared)
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
                    match info.skipped.iter().find(|s| &s.name == n) {
                        Some(s) => anyhow!(
                            "program '{n}' is in section '{}', which neither libbpf nor aya knows as a program section, so it cannot be loaded; the object's programs are: {}",
                            s.section_name,
                            available()
                        ),
                        None => anyhow!(
                            "program '{n}' is not in the object; it has: {}",
                            available()
                        ),
                    }
                })
            })
            .collect::<Result<_>>()?
    };
    if selected.is_empty() {
        bail!("the object has no programs");
    }
    for p in &selected {
        if !AttachRequest::loadable(p.section.kind) {
            bail!(
                "program '{}' is a {} program (section '{}'), which bpfman-load cannot load yet; it loads xdp, tc/tcx, tracepoint, kprobe, uprobe, fentry, fexit and lsm programs",
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

#[cfg(test)]
mod tests;
