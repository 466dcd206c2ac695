//! Dispatcher chains: adding a program to a hook's chain, removing it, and
//! finishing a change a crash interrupted. The protocol and the records
//! are in [`crate::dispatcher`]; the kernel is reached only through
//! [`Kernel`].
//!
//! A change is planned first ([`plan_add`], [`plan_remove`]: pure, which
//! slots in which order, what is retired), then carried out by
//! [`Chain::rebuild`]: pin the next revision, commit it with the old
//! revision's pins marked retiring, swap it onto the hook, retire the old
//! pins. Until the commit an [`Undo`] guard holds what was pinned and
//! removes it if anything fails.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::bpffs::{self, Bpffs};
use crate::dispatcher::{
    self, ChainHook, DEFAULT_PRIORITY, DispatcherRecord, HookAttachment, SLOTS, Slot, action_names,
    order,
};
use crate::kernel::{
    ExtensionSpec, Feature, Interface, Kernel, KernelError, Support, Undo, XdpMode, fault,
};
use crate::loader::{parse_global, record};
use crate::sections;
use crate::state::{Attachment, LinkRecord, ProgramRecord, State};

/// The options of a dispatcher slot, as the CLI takes them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainArgs {
    /// Lower runs first [default: the program's .xdp_run_config, else 50].
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Actions after which the next program runs, comma-separated [default:
    /// the program's .xdp_run_config, else pass (XDP) or pipe,unspec (TC)].
    #[arg(long, value_delimiter = ',', value_name = "ACTION,...")]
    pub proceed_on: Vec<String>,
}

impl ChainArgs {
    pub fn request(
        &self,
        hook: ChainHook,
        interface: &str,
        netns: Option<PathBuf>,
        xdp_mode: XdpMode,
        clsact: bool,
    ) -> Result<ChainRequest> {
        let proceed_on = if self.proceed_on.is_empty() {
            None
        } else {
            Some(dispatcher::parse_actions(hook, &self.proceed_on).map_err(anyhow::Error::msg)?)
        };
        Ok(ChainRequest {
            hook,
            interface: interface.to_string(),
            netns,
            priority: self.priority,
            proceed_on,
            xdp_mode,
            clsact,
            libxdp: None,
        })
    }
}

/// Where a program goes in a dispatcher's chain.
#[derive(Debug, Clone)]
pub struct ChainRequest {
    pub hook: ChainHook,
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
    /// XDP only: share the hook with libxdp, making a new chain in its
    /// layout at this dispatcher version (an interface that holds a
    /// libxdp dispatcher is joined whatever this says).
    pub libxdp: Option<u8>,
}

/// A program's slot in a dispatcher, as its link record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotAttachment {
    pub hook: ChainHook,
    pub interface: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    pub priority: i32,
    pub proceed_on: Vec<String>,
    /// The dispatcher record's key.
    pub key: String,
    /// The program is the chain's only one and runs alone on the hook,
    /// without a dispatcher: its verdict is final.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alone: bool,
}

impl fmt::Display for SlotAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}{} priority {} proceed-on {}",
            self.hook.name(),
            if self.alone {
                "chain (alone, no dispatcher)"
            } else {
                "dispatcher"
            },
            self.interface,
            crate::attach::tc::in_ns(&self.netns),
            self.priority,
            self.proceed_on.join(",")
        )
    }
}

/// One change of a chain, decided before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The next revision's slots, in run order.
    pub slots: Vec<Slot>,
    /// The pins the change retires once the new revision is on the hook.
    pub retiring: Vec<PathBuf>,
    /// The slot that leaves, if one does.
    pub leaving: Option<Slot>,
}

/// The current revision's own pins: what any change retires. A program
/// running alone has none: the hook's link stays, and the program's own
/// pin is its record's.
fn current_pins(current: &DispatcherRecord) -> Vec<PathBuf> {
    if current.revision == 0 || current.alone {
        return Vec::new();
    }
    std::iter::once(current.program.clone())
        .chain(current.freplace.iter().cloned())
        .collect()
}

/// Adding `slot` to the chain `current` (none: a new chain).
pub fn plan_add(current: Option<&DispatcherRecord>, slot: Slot, interface: &str) -> Result<Plan> {
    let hook_name = current.map_or("", |c| c.hook.name());
    let mut slots = current.map(|d| d.slots.clone()).unwrap_or_default();
    if slots.iter().any(|s| s.program == slot.program) {
        bail!(
            "program {} is already in the {hook_name} dispatcher on {interface}",
            slot.program
        );
    }
    if slots.len() >= SLOTS {
        bail!(
            "the {hook_name} dispatcher on {interface} already holds {SLOTS} programs, its limit; detach one first (or use tcx, which has no such limit)"
        );
    }
    slots.push(slot);
    order(&mut slots);
    Ok(Plan {
        slots,
        retiring: current.map(current_pins).unwrap_or_default(),
        leaving: None,
    })
}

/// Removing `program` from the chain `current`.
pub fn plan_remove(current: &DispatcherRecord, program: u32) -> Result<Plan> {
    let leaving = current
        .slots
        .iter()
        .find(|s| s.program == program)
        .cloned()
        .ok_or_else(|| anyhow!("program {program} is not in dispatcher {}", current.key))?;
    let slots = current
        .slots
        .iter()
        .filter(|s| s.program != program)
        .cloned()
        .collect();
    let mut retiring = current_pins(current);
    if leaving.has_extension() {
        retiring.push(leaving.ext.clone());
    }
    Ok(Plan {
        slots,
        retiring,
        leaving: Some(leaving),
    })
}

/// Putting `slot` where `program` is in the chain `current`, in one
/// revision: the newcomer takes the old program's position (among slots
/// of equal priority it keeps the old one's place), the old one leaves.
pub fn plan_replace(current: &DispatcherRecord, program: u32, slot: Slot) -> Result<Plan> {
    let mut plan = plan_remove(current, program)?;
    if plan.slots.iter().any(|s| s.program == slot.program) {
        bail!(
            "program {} is already in dispatcher {}",
            slot.program,
            current.key
        );
    }
    let at = current
        .slots
        .iter()
        .position(|s| s.program == program)
        .unwrap_or(plan.slots.len());
    plan.slots.insert(at, slot);
    // Stable: equal priorities keep their places.
    plan.slots.sort_by_key(|s| s.priority);
    Ok(plan)
}

/// The dispatcher record's key: hook, namespace and interface index.
pub fn key(hook: ChainHook, netns: Option<&Path>, ifindex: u32) -> String {
    let ns = netns.map_or_else(
        || "host".to_string(),
        |n| bpffs::pin_name(&n.display().to_string()),
    );
    format!("{}-{ns}-{ifindex}", hook.name())
}

/// The program's own `.xdp_run_config` (libxdp's BTF-defined
/// `_<function>` struct: `priority` and one member per proceed-on action).
pub fn run_config(hook: ChainHook, object: &[u8], name: &str) -> (Option<i32>, Option<u32>) {
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
            if hook == ChainHook::Xdp {
                "XDP"
            } else {
                "TC_ACT"
            },
            action.to_uppercase()
        );
        if def.get(&upper).is_some_and(|v| v != 0) {
            bits |= dispatcher::action_bit(hook, *ret);
            any = true;
        }
    }
    (priority, any.then_some(bits))
}

/// A program joining the chain: its record and the bytes it was loaded
/// from, to load it again as an extension.
#[derive(Debug, Clone, Copy)]
pub struct Joining<'a> {
    pub record: &'a ProgramRecord,
    pub object: &'a [u8],
}

/// The bytes a program of ours was loaded from (verified again), for a
/// program that ran alone and now moves into a dispatcher.
pub type ObjectOf<'a> = &'a dyn Fn(&ProgramRecord) -> Result<Vec<u8>>;

/// For changes that never move a lone program into a dispatcher.
fn no_object(r: &ProgramRecord) -> Result<Vec<u8>> {
    bail!("program {} has no extension to re-attach", r.id)
}

/// Loads `j`'s program as an extension of slot `i` of `dispatcher`, with
/// its recorded globals and its maps shared, pinned at `ext` and attached
/// by a link pinned at `link`. A kernel that refuses freplace gets an
/// error saying what works instead.
pub(crate) fn load_extension<K: Kernel>(
    k: &K,
    hook: ChainHook,
    j: Joining<'_>,
    dispatcher: &Path,
    i: usize,
    ext: &Path,
    link: &Path,
) -> Result<crate::kernel::ProgramId> {
    let bytes = sections::for_aya(j.object, &[j.record.name.as_str()])
        .context("cannot prepare the object for aya")?;
    let globals = j
        .record
        .globals
        .iter()
        .map(|g| parse_global(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("program {}'s recorded globals: {e}", j.record.id))?;
    let maps: Vec<(String, PathBuf)> = j
        .record
        .maps
        .iter()
        .map(|m| (m.name.clone(), m.pin.clone()))
        .collect();
    let spec = ExtensionSpec {
        bytes: &bytes,
        name: &j.record.name,
        globals: &globals,
        maps: &maps,
    };
    Ok(k.load_extension(hook, &spec, dispatcher, i, ext, link)?)
}

/// The dispatcher chains of one state root.
#[derive(Debug)]
pub struct Chain<'a, K: Kernel> {
    kernel: &'a K,
    state: &'a State,
    fs: &'a Bpffs,
}

impl<'a, K: Kernel> Chain<'a, K> {
    pub fn new(kernel: &'a K, state: &'a State, fs: &'a Bpffs) -> Self {
        Self { kernel, state, fs }
    }

    /// The slot `joining` would take for `req` in dispatcher `key`.
    fn slot(req: &ChainRequest, joining: Joining<'_>, dir: &Path) -> Slot {
        let record = joining.record;
        let (own_priority, own_actions) = run_config(req.hook, joining.object, &record.name);
        Slot {
            program: record.id,
            name: record.name.clone(),
            priority: req.priority.or(own_priority).unwrap_or(DEFAULT_PRIORITY),
            proceed_on: req
                .proceed_on
                .or(own_actions)
                .unwrap_or_else(|| req.hook.default_proceed_on()),
            ext: dir.join(format!("ext-{}", record.id)),
            ext_id: 0,
            link_id: 0,
        }
    }

    /// Replaces `old` in the dispatcher on `req`'s hook with `joining`, in
    /// one atomic swap of the hook: no packet sees neither or both.
    pub fn replace(
        &self,
        req: &ChainRequest,
        old: u32,
        joining: Joining<'_>,
        object: ObjectOf<'_>,
    ) -> Result<LinkRecord> {
        let at = self
            .kernel
            .interface(&req.interface, req.netns.as_deref())?;
        let key = key(req.hook, req.netns.as_deref(), at.ifindex);
        let current = self
            .state
            .dispatcher(&key)?
            .ok_or_else(|| anyhow!("no dispatcher {key} in the state"))?;
        let slot = Self::slot(req, joining, &self.fs.dispatcher(&key));
        let plan = plan_replace(&current, old, slot)?;
        self.rebuild(&current, plan, Some(joining), object, req.xdp_mode)?
            .ok_or_else(|| anyhow!("the dispatcher vanished while replacing in it"))?;
        self.slot_link(joining.record.id, &key)
    }

    /// Program `id`'s link to dispatcher `key`.
    fn slot_link(&self, id: u32, key: &str) -> Result<LinkRecord> {
        crate::loader::record(self.state, id)?
            .links
            .into_iter()
            .find(|l| l.attachment.dispatcher_key() == Some(key))
            .ok_or_else(|| anyhow!("program {id} is not in the chain after adding it"))
    }

    /// Adds a program to the chain on a hook: alone on the hook's link if
    /// it is the first (and the hook has a link), else in a dispatcher
    /// built for the chain.
    pub fn add(
        &self,
        req: &ChainRequest,
        joining: Joining<'_>,
        object: ObjectOf<'_>,
    ) -> Result<LinkRecord> {
        let k = self.kernel;
        let at = k.interface(&req.interface, req.netns.as_deref())?;
        let key = key(req.hook, req.netns.as_deref(), at.ifindex);
        let current = self.state.dispatcher(&key)?;
        let dir = self.fs.dispatcher(&key);
        let slot = Self::slot(req, joining, &dir);
        let base = current.unwrap_or_else(|| {
            // TC: tcx where the kernel has it, clsact + cls_bpf otherwise.
            let clsact =
                req.hook != ChainHook::Xdp && (req.clsact || k.probe(Feature::Tcx) == Support::No);
            DispatcherRecord {
                key: key.clone(),
                hook: req.hook,
                interface: req.interface.clone(),
                ifindex: at.ifindex,
                netns: req.netns.clone(),
                revision: 0,
                alone: false,
                program: PathBuf::new(),
                program_id: 0,
                attachment: if clsact {
                    HookAttachment::Clsact { filter: None }
                } else {
                    HookAttachment::Link {
                        pin: dir.join("link"),
                        id: 0,
                    }
                },
                slots: Vec::new(),
                freplace: Vec::new(),
                retiring: Vec::new(),
                swapping: false,
            }
        });
        let plan = plan_add(Some(&base), slot, &req.interface)?;
        let done = self
            .rebuild(&base, plan, Some(joining), object, req.xdp_mode)
            .map_err(|e| match e.downcast::<KernelError>() {
                Ok(k) if k.not_supported() == Some(Feature::Freplace) => {
                    anyhow!(k.instead(req.hook.without_freplace()))
                }
                Ok(k) => anyhow!(k),
                Err(e) => e,
            })?
            .ok_or_else(|| anyhow!("the dispatcher vanished while adding to it"))?;
        self.slot_link(joining.record.id, &done.key)
    }

    /// Removes a program from the chain `key`: one left runs alone (on a
    /// link); the last one out takes the chain with it, leaving the hook
    /// clean.
    pub fn remove(&self, key: &str, program: u32) -> Result<()> {
        let current = self
            .state
            .dispatcher(key)?
            .ok_or_else(|| anyhow!("no dispatcher {key} in the state"))?;
        let plan = plan_remove(&current, program)?;
        self.rebuild(&current, plan, None, &no_object, XdpMode::Default)?;
        Ok(())
    }

    /// The hook a dispatcher is on, for the kernel.
    fn interface(d: &DispatcherRecord) -> Interface {
        Interface {
            name: d.interface.clone(),
            ifindex: d.ifindex,
            netns: d.netns.clone(),
        }
    }

    /// Builds the next revision of a chain with the plan's slots, commits
    /// it, swaps it onto the hook, and retires the old one. With no slots,
    /// the chain goes; with one, on a link, the program runs alone (no
    /// dispatcher); with more, a dispatcher runs them. `joining` gives the
    /// newcomer's bytes; `object` those of a program that ran alone and
    /// now needs an extension.
    pub fn rebuild(
        &self,
        current: &DispatcherRecord,
        plan: Plan,
        joining: Option<Joining<'_>>,
        object: ObjectOf<'_>,
        mode: XdpMode,
    ) -> Result<Option<DispatcherRecord>> {
        let k = self.kernel;
        if plan.slots.is_empty() {
            return self
                .tear_down(current, plan.leaving.as_ref())
                .map(|()| None);
        }
        let top = self.fs.dispatcher(&current.key);
        let mut undo = Undo::new(k);
        let mut next = if plan.slots.len() == 1 && current.can_run_alone() {
            k.create_dir(&top)?;
            undo.dir(&top);
            Self::alone(current, plan.slots, plan.retiring)
        } else {
            self.build(
                current,
                plan.slots,
                plan.retiring,
                joining,
                object,
                &mut undo,
            )?
        };
        fault("dispatcher:built");
        next.swapping = true;
        let programs = self.chain_links(&next, plan.leaving.as_ref())?;
        self.state.commit(&programs, &next.key, Some(&next))?;
        fault("dispatcher:committed");
        if let Err(e) = self.swap(&mut next, mode) {
            // Put the old chain's records back, the newcomer's without its
            // slot; the hook still runs the old chain.
            let joined = next
                .slots
                .iter()
                .find(|s| !current.slots.iter().any(|c| c.program == s.program))
                .cloned();
            let restore = self.chain_links(current, joined.as_ref())?;
            let back = (current.revision > 0).then_some(current);
            if let Err(re) = self.state.commit(&restore, &current.key, back) {
                // The state still names the new revision: keep its pins
                // for reconciliation to finish the change.
                undo.commit();
                return Err(e.context(format!("and the old chain's record: {re}")));
            }
            return Err(e);
        }
        undo.commit();
        fault("dispatcher:swapped");
        // The change is made; the old revision's pins stay listed as
        // retiring until they are gone, so the next run finishes this.
        if let Err(e) = self.retire(&mut next) {
            tracing::warn!(
                "the old revision of dispatcher {} stays until the next run: {e:#}",
                next.key
            );
        }
        Ok(Some(next))
    }

    /// The next revision for a chain of one on a link: the program itself
    /// goes on the hook. Nothing is loaded; an extension it had retires
    /// with the old dispatcher.
    fn alone(
        current: &DispatcherRecord,
        mut slots: Vec<Slot>,
        mut retiring: Vec<PathBuf>,
    ) -> DispatcherRecord {
        let slot = &mut slots[0];
        if slot.link_id == 0 {
            slot.link_id = match (slot.ext_id, &current.attachment) {
                (0, HookAttachment::Link { id, .. }) => *id,
                (ext, _) => ext,
            };
        }
        if slot.has_extension() {
            retiring.push(slot.ext.clone());
            slot.ext_id = 0;
        }
        DispatcherRecord {
            revision: current.revision + 1,
            alone: true,
            program: PathBuf::new(),
            program_id: 0,
            slots,
            freplace: Vec::new(),
            retiring,
            ..current.clone()
        }
    }

    /// The next revision with a dispatcher: loaded with the slots'
    /// configuration and pinned, each slot's extension attached to it
    /// (loaded first where the program has none yet: the newcomer, and a
    /// program that ran alone). What it pins, `undo` holds.
    fn build(
        &self,
        current: &DispatcherRecord,
        mut slots: Vec<Slot>,
        retiring: Vec<PathBuf>,
        joining: Option<Joining<'_>>,
        object: ObjectOf<'_>,
        undo: &mut Undo<'_, K>,
    ) -> Result<DispatcherRecord> {
        let k = self.kernel;
        let hook = current.hook;
        let revision = current.revision + 1;
        let top = self.fs.dispatcher(&current.key);
        let dir = top.join(format!("rev-{revision}"));
        k.create_dir(&dir)?;
        undo.dir(&top);
        let cfg = dispatcher::Config::for_slots(hook, &slots).encode();
        let program = dir.join("dispatcher");
        let loaded = k.load_dispatcher(hook, &cfg, &program)?;
        undo.pin(&program);

        let mut freplace = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let link = dir.join(format!("slot{i}"));
            if slot.has_extension() {
                k.attach_extension(hook, &slot.ext, &program, i, &link)
                    .with_context(|| {
                        format!(
                            "cannot attach program {} to prog{i} of the new dispatcher",
                            slot.program
                        )
                    })?;
            } else {
                let fetched;
                let j = match joining {
                    Some(j) if j.record.id == slot.program => j,
                    _ => {
                        let record = record(self.state, slot.program)?;
                        let bytes = object(&record)?;
                        fetched = (record, bytes);
                        Joining {
                            record: &fetched.0,
                            object: &fetched.1,
                        }
                    }
                };
                let ext = load_extension(k, hook, j, &program, i, &slot.ext, &link)?.id;
                undo.pin(&slot.ext);
                slot.ext_id = ext;
                if slot.link_id == 0 {
                    slot.link_id = ext;
                }
            }
            undo.pin(&link);
            freplace.push(link);
        }
        Ok(DispatcherRecord {
            revision,
            alone: false,
            program,
            program_id: loaded.id,
            slots,
            freplace,
            retiring,
            ..current.clone()
        })
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
            let mut r = record(self.state, slot.program)?;
            r.links
                .retain(|l| l.attachment.dispatcher_key() != Some(d.key.as_str()));
            // The id users see is the extension program's: it stays the
            // same while the chain around it is rebuilt (the freplace
            // link under it is new with every revision).
            let pin = if d.alone {
                d.attachment.pin().cloned().unwrap_or_default()
            } else {
                d.freplace[i].clone()
            };
            r.links.push(LinkRecord {
                id: slot.shown_id(),
                pin,
                attachment: Attachment::Dispatcher(SlotAttachment {
                    hook: d.hook,
                    interface: d.interface.clone(),
                    netns: d.netns.clone(),
                    priority: slot.priority,
                    proceed_on: action_names(d.hook, slot.proceed_on)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    key: d.key.clone(),
                    alone: d.alone,
                }),
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

    /// The program `d` puts on its hook: its dispatcher, or the program
    /// running alone (`None` when that program's record is gone).
    fn on_hook(&self, d: &DispatcherRecord) -> Result<Option<PathBuf>> {
        if !d.alone {
            return Ok(Some(d.program.clone()));
        }
        let Some(slot) = d.slots.first() else {
            return Ok(None);
        };
        Ok(self.state.get(slot.program)?.map(|r| r.pin))
    }

    /// Points the hook at `d`'s dispatcher (or its lone program): one
    /// update of the existing link or filter (atomic for traffic), or a
    /// new one for a new chain, recorded at once.
    fn swap(&self, d: &mut DispatcherRecord, mode: XdpMode) -> Result<()> {
        let k = self.kernel;
        let at = Self::interface(d);
        let program = self
            .on_hook(d)?
            .ok_or_else(|| anyhow!("the program of chain {} has no record", d.key))?;
        match &d.attachment {
            HookAttachment::Link { pin, .. } if k.is_pinned(pin) => {
                k.update_link(d.hook, pin, &program)?;
            }
            HookAttachment::Link { pin, .. } => {
                let pin = pin.clone();
                let id = k.attach_dispatcher(d.hook, &program, &at, mode, &pin)?;
                let mut undo = Undo::new(k);
                undo.pin(&pin);
                d.attachment = HookAttachment::Link { pin, id };
                // A program that joined alone is known by the link's id.
                let mut programs = Vec::new();
                if d.alone && d.slots[0].link_id == 0 {
                    d.slots[0].link_id = id;
                    programs = self.chain_links(d, None)?;
                }
                self.state.commit(&programs, &d.key, Some(d))?;
                undo.commit();
            }
            HookAttachment::Clsact { filter } => {
                let existing = *filter;
                let made = k.clsact_attach(d.hook, &d.program, &at, existing)?;
                if existing != Some(made) {
                    d.attachment = HookAttachment::Clsact { filter: Some(made) };
                    self.state.commit(&[], &d.key, Some(d))?;
                }
            }
        }
        Ok(())
    }

    /// Removes the pins of the replaced revision; the change is done.
    fn retire(&self, d: &mut DispatcherRecord) -> Result<()> {
        d.swapping = false;
        for p in d.retiring.drain(..) {
            self.kernel.unpin(&p)?;
            if let Some(dir) = p.parent() {
                self.kernel.remove_empty_dirs(dir);
            }
        }
        self.state.commit(&[], &d.key, Some(d))?;
        Ok(())
    }

    /// The last program left: the record goes (commit), then the hook's
    /// filter or link (which takes the dispatcher off the hook), then
    /// every other pin.
    fn tear_down(&self, d: &DispatcherRecord, leaving: Option<&Slot>) -> Result<()> {
        let k = self.kernel;
        let programs = self.chain_links(
            &DispatcherRecord {
                slots: Vec::new(),
                ..d.clone()
            },
            leaving,
        )?;
        self.state.commit(&programs, &d.key, None)?;
        if let HookAttachment::Clsact {
            filter: Some(filter),
        } = d.attachment
        {
            k.clsact_detach(d.hook, &Self::interface(d), filter)?;
        }
        let leaving_ext = leaving.filter(|s| s.has_extension()).map(|s| &s.ext);
        for p in d.pins().chain(leaving_ext) {
            k.unpin(p)?;
        }
        k.remove_empty_dirs(&self.fs.dispatcher(&d.key));
        Ok(())
    }

    /// Finishes what a crash interrupted: a committed revision whose swap
    /// or cleanup did not happen is swapped in and its old pins go; a
    /// dispatcher whose pins are gone (reboot) is forgotten. Returns what
    /// it did, for the report.
    pub fn reconcile(&self) -> Result<Vec<String>> {
        let k = self.kernel;
        let mut done = Vec::new();
        for mut d in self.state.dispatchers()? {
            if !self.on_hook(&d)?.is_some_and(|p| k.is_pinned(&p)) {
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
                    k.unpin(p)?;
                }
                done.push(format!(
                    "the {} dispatcher on {} vanished (its pin is gone); forgotten",
                    d.hook.name(),
                    d.interface
                ));
                continue;
            }
            let unattached = match &d.attachment {
                HookAttachment::Link { pin, .. } => !k.is_pinned(pin),
                HookAttachment::Clsact { filter } => filter.is_none(),
            };
            if !d.retiring.is_empty() || unattached || d.swapping {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::test_object as object;

    #[test]
    fn a_programs_own_run_config_is_read() {
        for name in ["xdp_run_config.bpfel.o", "xdp_run_config.bpfeb.o"] {
            let obj = object(name);
            let (priority, actions) = run_config(ChainHook::Xdp, &obj, "xdp_first");
            assert_eq!(priority, Some(5), "{name}");
            assert_eq!(
                actions.map(|a| action_names(ChainHook::Xdp, a)),
                Some(vec!["drop", "pass"]),
                "{name}"
            );
            // Another function's config is not this one's.
            assert_eq!(run_config(ChainHook::Xdp, &obj, "other"), (None, None));
        }
        assert_eq!(
            run_config(ChainHook::Xdp, &object("xdp_counter.bpfel.o"), "xdp_stats"),
            (None, None)
        );
    }

    #[test]
    fn keys_name_hook_namespace_and_interface() {
        assert_eq!(key(ChainHook::Xdp, None, 3), "xdp-host-3");
        assert_eq!(
            key(ChainHook::TcEgress, Some(Path::new("/run/netns/a.b")), 7),
            "tc-egress-_run_netns_a_b-7"
        );
    }
}
