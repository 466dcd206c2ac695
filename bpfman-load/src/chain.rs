//! The kernel side of the dispatchers: adding a program to a hook's chain,
//! removing it, and finishing a change a crash interrupted. The protocol
//! and the records are in [`crate::dispatcher`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aya::EbpfLoader;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{
    NlOptions, SchedClassifierLink, TcAttachOptions, TcAttachType, TcHandle, qdisc_add_clsact,
};
use aya::programs::xdp::XdpLink;
use aya::programs::{Extension, ProgramError, ProgramFd, SchedClassifier, Xdp, XdpMode};
use aya_obj::programs::XdpAttachType;
use bpfman_image_spec::program::SectionKind;

use crate::bpffs;
use crate::dispatcher::{
    self, DEFAULT_PRIORITY, DispatcherRecord, Hook, SLOTS, Slot, TcFilter, action_names, order,
};
use crate::loader::{Loader, Pins, fault, ifindex, in_netns, parse_global};
use crate::probe;
use crate::sections;
use crate::state::{Attachment, LinkRecord, ProgramRecord};

/// Where a program goes in a dispatcher's chain.
#[derive(Debug, Clone)]
pub struct ChainRequest {
    pub hook: Hook,
    pub interface: String,
    pub netns: Option<PathBuf>,
    /// Lower runs first; default: the program's `.xdp_run_config`, else 50.
    pub priority: Option<i32>,
    /// Bitmap of actions after which the chain goes on; default: the
    /// program's `.xdp_run_config`, else the hook's default.
    pub proceed_on: Option<u32>,
    pub xdp_mode: XdpMode,
    /// TC only: attach a new dispatcher with clsact + cls_bpf even where
    /// the kernel has tcx (kernels without tcx always get clsact).
    pub clsact: bool,
}

/// A program joining the chain: its object's bytes, to load it again as an
/// extension.
struct Joining<'a> {
    record: &'a ProgramRecord,
    object: &'a [u8],
}

fn key(hook: Hook, netns: Option<&Path>, ifindex: u32) -> String {
    let ns = netns.map_or_else(
        || "host".to_string(),
        |n| bpffs::pin_name(&n.display().to_string()),
    );
    format!("{}-{ns}-{ifindex}", hook.name())
}

/// The program's own `.xdp_run_config` (libxdp's BTF-defined
/// `_<function>` struct: `priority` and one member per proceed-on action).
fn run_config(hook: Hook, object: &[u8], name: &str) -> (Option<i32>, Option<u32>) {
    let Ok(file) = bpfman_image_spec::elf::btf_struct_defs(object, ".xdp_run_config") else {
        return (None, None);
    };
    let Some(def) = file.into_iter().find(|d| d.name == format!("_{name}")) else {
        return (None, None);
    };
    let priority = def.get("priority").map(|p| p as i32);
    let mut bits = 0;
    let mut any = false;
    for (action, ret) in hook.actions() {
        let upper = format!(
            "{}_{}",
            if hook == Hook::Xdp { "XDP" } else { "TC_ACT" },
            action.to_uppercase()
        );
        if def.get(&upper).is_some_and(|v| v != 0) {
            bits |= dispatcher::action_bit(hook, *ret);
            any = true;
        }
    }
    (priority, any.then_some(bits))
}

/// The TC attach point of a TC hook.
fn tc_direction(hook: Hook) -> TcAttachType {
    if hook == Hook::TcIngress {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    }
}

fn explain_ext(e: ProgramError, name: &str) -> anyhow::Error {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
        && io_error.raw_os_error() == Some(1)
        && format!("{verifier_log:?}").trim().is_empty()
    {
        return anyhow!(
            "the kernel refused to load '{name}' as an extension program (BPF_PROG_TYPE_EXT, freplace): EPERM before the verifier ran, which is what kernel lockdown does. The multi-program dispatcher needs freplace (Linux 5.10+ without lockdown). On this kernel use what works: 'attach ID xdp --exclusive' (one XDP program owns the interface) or 'attach ID tcx' (tcx orders many TC programs natively, Linux 6.6+)."
        );
    }
    probe::explain_load(e, SectionKind::Freplace, name)
}

impl Loader {
    /// Adds one of our programs to the dispatcher on a hook (making the
    /// dispatcher if there is none). `object` is the bytes the program was
    /// loaded from, verified again by the caller.
    pub fn attach_chained(&self, id: u32, req: &ChainRequest, object: &[u8]) -> Result<LinkRecord> {
        let record = self.record(id)?;
        let fits = match req.hook {
            Hook::Xdp => matches!(record.kind, SectionKind::Xdp | SectionKind::XdpFrags),
            Hook::TcIngress | Hook::TcEgress => matches!(
                record.kind,
                SectionKind::Tc | SectionKind::TcxIngress | SectionKind::TcxEgress
            ),
        };
        if !fits {
            bail!(
                "program {id} ({}) is of type {}; it cannot join the {} dispatcher",
                record.name,
                crate::loader::kind_name(record.kind),
                req.hook.name()
            );
        }
        // TC: tcx where the kernel has it, clsact + cls_bpf otherwise.
        let clsact = req.hook != Hook::Xdp && (req.clsact || probe::tcx().is_err());
        let netns = req.netns.as_deref();
        let ifindex = in_netns(netns, || ifindex(&req.interface, netns))?;
        let key = key(req.hook, netns, ifindex);
        let current = self.state.dispatcher(&key)?;
        let mut slots = current
            .as_ref()
            .map(|d| d.slots.clone())
            .unwrap_or_default();
        if slots.iter().any(|s| s.program == id) {
            bail!(
                "program {id} is already in the {} dispatcher on {}",
                req.hook.name(),
                req.interface
            );
        }
        if slots.len() >= SLOTS {
            bail!(
                "the {} dispatcher on {} already holds {SLOTS} programs, its limit; detach one first (or use tcx, which has no such limit)",
                req.hook.name(),
                req.interface
            );
        }
        let (own_priority, own_actions) = run_config(req.hook, object, &record.name);
        slots.push(Slot {
            program: id,
            name: record.name.clone(),
            priority: req.priority.or(own_priority).unwrap_or(DEFAULT_PRIORITY),
            proceed_on: req
                .proceed_on
                .or(own_actions)
                .unwrap_or_else(|| req.hook.default_proceed_on()),
            ext: self.fs.dispatcher(&key).join(format!("ext-{id}")),
            ext_id: 0,
        });
        order(&mut slots);
        let base = current.unwrap_or_else(|| DispatcherRecord {
            key: key.clone(),
            hook: req.hook,
            interface: req.interface.clone(),
            ifindex,
            netns: req.netns.clone(),
            revision: 0,
            program: PathBuf::new(),
            program_id: 0,
            link: self.fs.dispatcher(&key).join("link"),
            link_id: 0,
            slots: Vec::new(),
            freplace: Vec::new(),
            retiring: Vec::new(),
            clsact,
            filter: None,
        });
        let joining = Joining {
            record: &record,
            object,
        };
        let done = self.rebuild(&base, slots, Some(&joining), None, req.xdp_mode)?;
        let done = done.ok_or_else(|| anyhow!("the dispatcher vanished while adding to it"))?;
        let updated = self.record(id)?;
        updated
            .links
            .into_iter()
            .find(|l| l.attachment.dispatcher_key() == Some(done.key.as_str()))
            .ok_or_else(|| anyhow!("program {id} is not in the chain after adding it"))
    }

    /// Removes a program from the dispatcher `key`; the last one out takes
    /// the dispatcher with it, leaving the hook clean.
    pub fn detach_chained(&self, key: &str, program: u32) -> Result<()> {
        let current = self
            .state
            .dispatcher(key)?
            .ok_or_else(|| anyhow!("no dispatcher {key} in the state"))?;
        let removed = current
            .slots
            .iter()
            .find(|s| s.program == program)
            .cloned()
            .ok_or_else(|| anyhow!("program {program} is not in dispatcher {key}"))?;
        let slots: Vec<Slot> = current
            .slots
            .iter()
            .filter(|s| s.program != program)
            .cloned()
            .collect();
        self.rebuild(&current, slots, None, Some(&removed), XdpMode::Default)?;
        Ok(())
    }

    /// Builds the next revision of a dispatcher with `slots` (in order),
    /// commits it, swaps it in, and retires the old one. With no slots, the
    /// dispatcher goes.
    fn rebuild(
        &self,
        current: &DispatcherRecord,
        slots: Vec<Slot>,
        joining: Option<&Joining<'_>>,
        leaving: Option<&Slot>,
        mode: XdpMode,
    ) -> Result<Option<DispatcherRecord>> {
        let old_pins: Vec<PathBuf> = if current.revision == 0 {
            Vec::new()
        } else {
            std::iter::once(current.program.clone())
                .chain(current.freplace.iter().cloned())
                .chain(leaving.map(|s| s.ext.clone()))
                .collect()
        };
        if slots.is_empty() {
            return self.tear_down(current, leaving).map(|()| None);
        }
        let hook = current.hook;
        let revision = current.revision + 1;
        let dir = current
            .link
            .parent()
            .ok_or_else(|| anyhow!("bad dispatcher pin path"))?
            .join(format!("rev-{revision}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create '{}'", dir.display()))?;
        let mut pins = Pins::default();
        let built = (|| -> Result<DispatcherRecord> {
            let cfg = dispatcher::Config::for_slots(hook, &slots).encode();
            let mut ebpf = EbpfLoader::new()
                .override_global("conf", cfg.as_slice(), true)
                .load(hook.object())
                .context("cannot load the dispatcher object")?;
            let prog = ebpf
                .program_mut(hook.program())
                .ok_or_else(|| anyhow!("the dispatcher object lacks {}", hook.program()))?;
            match prog {
                aya::programs::Program::Xdp(p) => p.load(),
                aya::programs::Program::SchedClassifier(p) => p.load(),
                _ => bail!("the dispatcher object has the wrong program type"),
            }
            .map_err(|e| probe::explain_load(e, SectionKind::Xdp, hook.program()))?;
            let program_pin = dir.join("dispatcher");
            prog.pin(&program_pin)
                .context("cannot pin the dispatcher")?;
            pins.0.push(program_pin.clone());
            let program_id = prog.info()?.id();
            let target: ProgramFd = prog.fd()?.try_clone()?;

            let mut slots = slots.clone();
            let mut freplace = Vec::new();
            for (i, slot) in slots.iter_mut().enumerate() {
                let func = format!("prog{i}");
                let link = match joining {
                    Some(j) if j.record.id == slot.program => {
                        let (ext_id, link) = load_extension(j, &target, &func, &slot.ext)?;
                        pins.0.push(slot.ext.clone());
                        slot.ext_id = ext_id;
                        link
                    }
                    _ => {
                        let mut ext = Extension::from_pin(&slot.ext).with_context(|| {
                            format!(
                                "cannot open the extension of program {} ('{}')",
                                slot.program,
                                slot.ext.display()
                            )
                        })?;
                        let link = ext.attach_to_program(&target, &func).with_context(|| {
                            format!(
                                "cannot attach program {} to {func} of the new dispatcher",
                                slot.program
                            )
                        })?;
                        FdLink::from(ext.take_link(link)?)
                    }
                };
                let pin = dir.join(format!("slot{i}"));
                link.pin(&pin)
                    .with_context(|| format!("cannot pin '{}'", pin.display()))?;
                pins.0.push(pin.clone());
                freplace.push(pin);
            }
            Ok(DispatcherRecord {
                revision,
                program: program_pin,
                program_id,
                slots,
                freplace,
                retiring: old_pins.clone(),
                ..current.clone()
            })
        })();
        let mut next = match built {
            Ok(n) => n,
            Err(e) => {
                pins.undo();
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        fault("dispatcher:built");
        let programs = self.chain_links(&next, leaving)?;
        if let Err(e) = self.state.commit(&programs, &next.key, Some(&next)) {
            pins.undo();
            let _ = std::fs::remove_dir(&dir);
            return Err(e.into());
        }
        fault("dispatcher:committed");
        if let Err(e) = self.swap(&mut next, mode) {
            // Put the old chain's record back; the hook still runs it.
            let restore = self.chain_links(current, None)?;
            let back = (current.revision > 0).then_some(current);
            self.state.commit(&restore, &current.key, back)?;
            pins.undo();
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        fault("dispatcher:swapped");
        self.retire(&mut next)?;
        Ok(Some(next))
    }

    /// The program records with their link to this dispatcher as `d` has
    /// it (one per slot), and `leaving`'s link removed.
    fn chain_links(
        &self,
        d: &DispatcherRecord,
        leaving: Option<&Slot>,
    ) -> Result<Vec<ProgramRecord>> {
        let mut out = Vec::new();
        for (i, slot) in d.slots.iter().enumerate() {
            let mut r = self.record(slot.program)?;
            r.links
                .retain(|l| l.attachment.dispatcher_key() != Some(d.key.as_str()));
            // The id users see is the extension program's: it stays the
            // same while the chain around it is rebuilt (the freplace
            // link under it is new with every revision).
            r.links.push(LinkRecord {
                id: slot.ext_id,
                pin: d.freplace[i].clone(),
                attachment: Attachment::Dispatcher {
                    hook: d.hook,
                    interface: d.interface.clone(),
                    netns: d.netns.clone(),
                    priority: slot.priority,
                    proceed_on: action_names(d.hook, slot.proceed_on)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    key: d.key.clone(),
                },
                attached_at: crate::cache::now(),
            });
            out.push(r);
        }
        if let Some(s) = leaving
            && let Some(mut r) = self.state.get(s.program)?
        {
            r.links
                .retain(|l| l.attachment.dispatcher_key() != Some(d.key.as_str()));
            out.push(r);
        }
        Ok(out)
    }

    /// Points the hook at `d`'s dispatcher: one BPF_LINK_UPDATE on the
    /// existing link, or a new link (pinned) for a new dispatcher.
    fn swap(&self, d: &mut DispatcherRecord, mode: XdpMode) -> Result<()> {
        if d.clsact {
            return self.swap_clsact(d);
        }
        if d.link.exists() {
            let link =
                FdLink::from(PinnedLink::from_pin(&d.link).context("cannot open the hook's link")?);
            match d.hook {
                Hook::Xdp => {
                    let mut p = Xdp::from_pin(&d.program, XdpAttachType::Interface)?;
                    p.attach_to_link(XdpLink::try_from(link)?)
                        .context("cannot swap the XDP dispatcher")?;
                }
                Hook::TcIngress | Hook::TcEgress => {
                    let mut p = SchedClassifier::from_pin(&d.program)?;
                    p.attach_to_link(SchedClassifierLink::try_from(link)?)
                        .context("cannot swap the TC dispatcher")?;
                }
            }
            return Ok(());
        }
        let netns = d.netns.clone();
        let (program, interface, ifindex, hook) =
            (d.program.clone(), d.interface.clone(), d.ifindex, d.hook);
        let link = in_netns(netns.as_deref(), move || -> Result<FdLink> {
            match hook {
                Hook::Xdp => {
                    let mut p = Xdp::from_pin(&program, XdpAttachType::Interface)?;
                    let id = p
                        .attach_to_if_index(ifindex, mode)
                        .map_err(|e| anyhow!(e).context(format!("cannot attach the XDP dispatcher to {interface} (another XDP program owns it?)")))?;
                    FdLink::try_from(p.take_link(id)?)
                        .map_err(|_| anyhow!("no XDP bpf_link on this kernel (Linux 5.9+)"))
                }
                Hook::TcIngress | Hook::TcEgress => {
                    let mut p = SchedClassifier::from_pin(&program)?;
                    let dir = tc_direction(hook);
                    let id = p
                        .attach_with_options(
                            &interface,
                            dir,
                            TcAttachOptions::TcxOrder(LinkOrder::last()),
                        )
                        .with_context(|| {
                            format!("cannot attach the TC dispatcher to {interface}")
                        })?;
                    FdLink::try_from(p.take_link(id)?)
                        .map_err(|_| anyhow!("the kernel did not give a tcx link"))
                }
            }
        })?;
        d.link_id = link.info()?.id();
        if let Some(parent) = d.link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        link.pin(&d.link).context("cannot pin the hook's link")?;
        self.state.commit(&[], &d.key, Some(d))?;
        Ok(())
    }

    /// The classic TC path: the first dispatcher gets a clsact qdisc (if
    /// the interface has none) and a cls_bpf filter in direct-action mode;
    /// later ones replace that filter's program in place (one netlink
    /// request, atomic for traffic). Netlink works per namespace, so this
    /// runs in the interface's.
    fn swap_clsact(&self, d: &mut DispatcherRecord) -> Result<()> {
        let dir = tc_direction(d.hook);
        let (program, interface, filter) = (d.program.clone(), d.interface.clone(), d.filter);
        let made = in_netns(d.netns.as_deref(), move || -> Result<TcFilter> {
            let mut p = SchedClassifier::from_pin(&program)?;
            let id = match filter {
                Some(f) => {
                    let link = SchedClassifierLink::attached(
                        &interface,
                        dir,
                        f.priority,
                        TcHandle::from(f.handle),
                        None,
                    )?;
                    p.attach_to_link(link)
                        .context("cannot replace the TC dispatcher's cls_bpf filter")?
                }
                None => {
                    if let Err(e) = qdisc_add_clsact(&interface) {
                        // EEXIST: the interface has its clsact already.
                        tracing::debug!("clsact on {interface}: {e}");
                    }
                    p.attach_with_options(
                        &interface,
                        dir,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .with_context(|| {
                        format!("cannot add the TC dispatcher's filter to {interface}")
                    })?
                }
            };
            let link = p.take_link(id)?;
            let made = TcFilter {
                priority: link.priority()?,
                handle: link.handle()?.into(),
            };
            // Dropping the link would delete the filter: it must outlive
            // us, held by the kernel alone.
            std::mem::forget(link);
            Ok(made)
        })?;
        if d.filter != Some(made) {
            d.filter = Some(made);
            self.state.commit(&[], &d.key, Some(d))?;
        }
        Ok(())
    }

    /// Deletes a clsact dispatcher's filter.
    fn remove_filter(d: &DispatcherRecord) -> Result<()> {
        let Some(f) = d.filter else { return Ok(()) };
        let dir = tc_direction(d.hook);
        let interface = d.interface.clone();
        in_netns(d.netns.as_deref(), move || -> Result<()> {
            // Dropping the link detaches it: the filter goes.
            let _link = SchedClassifierLink::attached(
                &interface,
                dir,
                f.priority,
                TcHandle::from(f.handle),
                None,
            )
            .with_context(|| format!("cannot find {interface} to remove the TC dispatcher"))?;
            Ok(())
        })
    }

    /// Removes the pins of the replaced revision.
    fn retire(&self, d: &mut DispatcherRecord) -> Result<()> {
        for p in d.retiring.drain(..) {
            bpffs::unpin(&p)?;
            if let Some(dir) = p.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        self.state.commit(&[], &d.key, Some(d))?;
        Ok(())
    }

    /// The last program left: the record goes (commit), then every pin,
    /// the hook's link first, which takes the dispatcher off the hook.
    fn tear_down(&self, d: &DispatcherRecord, leaving: Option<&Slot>) -> Result<()> {
        let programs = self.chain_links(
            &DispatcherRecord {
                slots: Vec::new(),
                ..d.clone()
            },
            leaving,
        )?;
        self.state.commit(&programs, &d.key, None)?;
        if d.clsact {
            Self::remove_filter(d)?;
        }
        for p in d.pins().chain(leaving.map(|s| &s.ext)) {
            bpffs::unpin(p)?;
        }
        if let Some(dir) = d.link.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    /// Finishes what a crash interrupted: a committed revision whose swap
    /// or cleanup did not happen is swapped in and its old pins go; a
    /// dispatcher whose pins are gone (reboot) is forgotten. Returns what
    /// it did, for the report.
    pub(crate) fn reconcile_dispatchers(&self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for mut d in self.state.dispatchers()? {
            if !d.program.exists() {
                let mut programs = Vec::new();
                for s in &d.slots {
                    if let Some(mut r) = self.state.get(s.program)? {
                        r.links
                            .retain(|l| l.attachment.dispatcher_key() != Some(d.key.as_str()));
                        programs.push(r);
                    }
                }
                self.state.commit(&programs, &d.key, None)?;
                for p in d.pins() {
                    bpffs::unpin(p)?;
                }
                done.push(format!(
                    "the {} dispatcher on {} vanished (its pin is gone); forgotten",
                    d.hook.name(),
                    d.interface
                ));
                continue;
            }
            let unattached = if d.clsact {
                d.filter.is_none()
            } else {
                !d.link.exists()
            };
            if !d.retiring.is_empty() || unattached {
                self.swap(&mut d, XdpMode::Default)?;
                self.retire(&mut d)?;
                done.push(format!(
                    "finished an interrupted change of the {} dispatcher on {} (revision {})",
                    d.hook.name(),
                    d.interface,
                    d.revision
                ));
            }
        }
        Ok(done)
    }
}

/// Loads the joining program again as an extension replacing `func` of
/// `target`, sharing the maps of the program the user loaded, pins it at
/// `pin`, and attaches it. Returns its id and the freplace link.
fn load_extension(
    j: &Joining<'_>,
    target: &ProgramFd,
    func: &str,
    pin: &Path,
) -> Result<(u32, FdLink)> {
    let r = j.record;
    let bytes = sections::for_aya(j.object).context("cannot rename libbpf sections for aya")?;
    let globals = r
        .globals
        .iter()
        .map(|g| parse_global(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("program {}'s recorded globals: {e}", r.id))?;
    let mut loader = EbpfLoader::new();
    loader.extension(&r.name);
    for (n, v) in &globals {
        loader.override_global(n, v.as_slice(), true);
    }
    // The user's maps, so the extension counts where the program does.
    // Internal maps (.rodata, .bss) are the extension's own, with the same
    // globals.
    for m in r.maps.iter().filter(|m| !m.name.starts_with('.')) {
        loader.map_pin_path(&m.name, m.pin.as_path());
    }
    let mut ebpf = loader
        .load(&bytes)
        .context("cannot load the program's object again")?;
    let ext: &mut Extension = ebpf
        .program_mut(&r.name)
        .ok_or_else(|| anyhow!("program {} is not in its object any more", r.name))?
        .try_into()?;
    ext.load(target.try_clone()?, func)
        .map_err(|e| explain_ext(e, &r.name))?;
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent)?;
    }
    ext.pin(pin).context("cannot pin the extension")?;
    let id = ext.info()?.id();
    let link = ext.attach();
    let link = match link {
        Ok(l) => FdLink::from(ext.take_link(l)?),
        Err(e) => {
            let _ = bpffs::unpin(pin);
            return Err(anyhow!(e).context("cannot attach the extension"));
        }
    };
    Ok((id, link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::test_object as object;

    #[test]
    fn a_programs_own_run_config_is_read() {
        for name in ["xdp_run_config.bpfel.o", "xdp_run_config.bpfeb.o"] {
            let obj = object(name);
            let (priority, actions) = run_config(Hook::Xdp, &obj, "xdp_first");
            assert_eq!(priority, Some(5), "{name}");
            assert_eq!(
                actions.map(|a| action_names(Hook::Xdp, a)),
                Some(vec!["drop", "pass"]),
                "{name}"
            );
            // Another function's config is not this one's.
            assert_eq!(run_config(Hook::Xdp, &obj, "other"), (None, None));
        }
        assert_eq!(
            run_config(Hook::Xdp, &object("xdp_counter.bpfel.o"), "xdp_stats"),
            (None, None)
        );
    }

    #[test]
    fn keys_name_hook_namespace_and_interface() {
        assert_eq!(key(Hook::Xdp, None, 3), "xdp-host-3");
        assert_eq!(
            key(Hook::TcEgress, Some(Path::new("/run/netns/a.b")), 7),
            "tc-egress-_run_netns_a_b-7"
        );
    }
}
