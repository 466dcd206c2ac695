//! Sharing an interface's XDP hook with libxdp (xdp-loader, xdp-filter,
//! xdp-dump, and every application linking libxdp), both ways.
//!
//! On such an interface the chain is libxdp's: a dispatcher named
//! `xdp_dispatcher` with one read-only map holding its configuration
//! (libxdp's v2 or v3 layout), attached through netlink, its programs'
//! extensions and freplace links pinned under
//! `${LIBXDP_BPFFS:-/sys/fs/bpf}/xdp/dispatch-<ifindex>-<dispatcher id>/`
//! as `prog<i>-prog` and `prog<i>-link`, every change made under a `flock`
//! of that `xdp` directory. We change it as libxdp does: under the lock,
//! read the dispatcher's configuration and pins, load the next dispatcher
//! of the same version with every program in its slot (priorities,
//! proceed-on actions and flags as they were), re-attach the existing
//! extensions and ours, pin them in libxdp's layout, swap with one netlink
//! request that names the dispatcher expected on the hook, and remove the
//! old dispatcher's pins.
//!
//! Nothing of the chain is in our state: the kernel and libxdp's pins are
//! the truth, read again for every change. We record only our own
//! programs' places in it (their extensions, pinned in our directory too),
//! and reconciliation reports, never undoes, a change another tool made.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::bpffs::{self, Bpffs};
use crate::chain::{ChainRequest, Joining, load_extension, run_config};
use crate::dispatcher::{self, ChainHook, Config, DEFAULT_PRIORITY, SLOTS, XDP_MAGIC};
use crate::kernel::{Interface, Kernel, KernelError, ProgramView, Undo, XdpMode, fault};
use crate::state::{Attachment, LinkRecord, State};

pub use crate::attach::xdp::LibxdpAttachment;

/// The versions of libxdp's dispatcher configuration we speak.
pub const VERSIONS: [u8; 2] = [2, 3];
/// The flag in `program_flags` of a program that handles multi-buffer
/// packets (`BPF_F_XDP_HAS_FRAGS`).
const XDP_HAS_FRAGS: u32 = 1 << 5;

/// libxdp's bpffs directory: `$LIBXDP_BPFFS/xdp`, by default
/// `/sys/fs/bpf/xdp`.
pub fn default_root() -> PathBuf {
    std::env::var_os("LIBXDP_BPFFS")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/sys/fs/bpf"), PathBuf::from)
        .join("xdp")
}

/// Which libxdp understands a dispatcher configuration version.
fn speaks(version: u8) -> &'static str {
    match version {
        1 => "libxdp 1.0 to 1.2",
        2 => "libxdp 1.3 to 1.5",
        3 => "libxdp 1.6 and later",
        _ => "a libxdp newer than this bpfman-load knows",
    }
}

/// Checks a configuration read from a dispatcher on `iface` against the
/// versions we speak, as libxdp does: we never rewrite a dispatcher at
/// another version, so one we do not speak is refused.
pub fn check(config: Option<Config>, size: usize, iface: &str) -> Result<Config> {
    let Some(config) = config else {
        // v1 had no magic and no version: 84 bytes.
        if size == 84 {
            bail!(
                "the libxdp dispatcher on {iface} has a version 1 configuration, which {} wrote; bpfman-load speaks versions 2 and 3 ({} and {}). Manage this interface with xdp-loader, or unload its programs and attach again",
                speaks(1),
                speaks(2),
                speaks(3)
            );
        }
        bail!(
            "the XDP dispatcher on {iface} has a {size}-byte configuration, which is no libxdp layout bpfman-load knows (v2 is {} bytes, v3 {}); it was not made by libxdp or bpfman-load",
            Config::SIZE,
            Config::V3_SIZE
        );
    };
    if config.magic != XDP_MAGIC {
        bail!(
            "the program named xdp_dispatcher on {iface} has configuration magic {}, not libxdp's {XDP_MAGIC}: it is not a libxdp dispatcher; refusing to change it",
            config.magic
        );
    }
    let v = config.dispatcher_version;
    let size_fits = if v >= 3 {
        config.is_xdp_devbound.is_some()
    } else {
        config.is_xdp_devbound.is_none()
    };
    if !VERSIONS.contains(&v) || !size_fits {
        bail!(
            "the libxdp dispatcher on {iface} is version {v}, which {} writes; bpfman-load speaks versions 2 ({}) and 3 ({}). Manage this interface with a libxdp that understands it (xdp-loader of that version), or unload its programs first",
            speaks(v),
            speaks(2),
            speaks(3)
        );
    }
    if config.is_xdp_devbound == Some(1) {
        bail!(
            "the libxdp dispatcher on {iface} is bound to the device (is_xdp_devbound), which bpfman-load cannot rebuild; manage this interface with xdp-loader ({})",
            speaks(3)
        );
    }
    if usize::from(config.num_progs_enabled) > SLOTS {
        bail!(
            "the libxdp dispatcher on {iface} says it runs {} programs, more than its {SLOTS} slots",
            config.num_progs_enabled
        );
    }
    Ok(config)
}

/// One program of a libxdp chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its extension's id.
    pub id: u32,
    pub name: String,
    pub priority: u32,
    /// Proceed-on actions, without the stub bit.
    pub proceed_on: u32,
    pub flags: u32,
    /// Where the extension is pinned now: `prog<i>-prog` of the current
    /// dispatcher, or, for the newcomer, our own pin.
    pub pin: PathBuf,
    /// Our program record's id when the member is the one joining.
    pub ours: bool,
}

/// libxdp's dispatcher on one interface, as read under its lock.
#[derive(Debug, Clone)]
pub struct Current {
    pub dispatcher: u32,
    pub mode: XdpMode,
    pub config: Config,
    /// `dispatch-<ifindex>-<dispatcher id>`.
    pub dir: PathBuf,
    /// In slot order.
    pub members: Vec<Member>,
}

/// What is on an interface's XDP hook, for libxdp's purposes.
#[derive(Debug)]
pub enum Found {
    Empty,
    Libxdp(Current),
    /// Some other program (a lone program, ours or anyone's).
    Other(u32, String),
}

/// The chain order libxdp keeps: ascending priority, then name; stable,
/// so programs already in the chain keep their order among equals.
pub fn order(members: &mut [Member]) {
    members.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
}

/// The configuration for a chain of `members` at `version`.
pub fn config(version: u8, members: &[Member]) -> Config {
    let mut c = Config::for_slots(ChainHook::Xdp, &[]);
    c.dispatcher_version = version;
    c.num_progs_enabled = u8::try_from(members.len().min(SLOTS)).unwrap_or(0);
    // Multi-buffer only if every program handles it; the dispatcher we
    // load is not a frags program, so ours never claims it.
    c.is_xdp_frags = 0;
    c.is_xdp_devbound = (version >= 3).then_some(0);
    for (i, m) in members.iter().take(SLOTS).enumerate() {
        c.chain_call_actions[i] |= m.proceed_on;
        c.run_prios[i] = m.priority;
        c.program_flags[i] = m.flags & !XDP_HAS_FRAGS;
    }
    c
}

/// The key our records use for a shared interface (for messages).
fn place(at: &Interface) -> String {
    format!("{}{}", at.name, crate::attach::tc::in_ns(&at.netns))
}

/// Sharing XDP hooks with libxdp, for one state root.
#[derive(Debug)]
pub struct Shared<'a, K: Kernel> {
    kernel: &'a K,
    state: &'a State,
    fs: &'a Bpffs,
    /// libxdp's directory (`/sys/fs/bpf/xdp`).
    root: PathBuf,
}

impl<'a, K: Kernel> Shared<'a, K> {
    pub fn new(kernel: &'a K, state: &'a State, fs: &'a Bpffs, root: PathBuf) -> Self {
        Self {
            kernel,
            state,
            fs,
            root,
        }
    }

    /// Our directory for an interface shared with libxdp: our extensions'
    /// own pins, and the next dispatcher until the hook holds it.
    fn ours(&self, at: &Interface) -> PathBuf {
        let ns = at.netns.as_ref().map_or_else(
            || "host".to_string(),
            |n| bpffs::pin_name(&n.display().to_string()),
        );
        self.fs.dispatcher(&format!("libxdp-{ns}-{}", at.ifindex))
    }

    /// What is on `at`'s XDP hook.
    pub fn find(&self, at: &Interface) -> Result<Found> {
        let k = self.kernel;
        let Some(on) = k.xdp_attached(at)? else {
            return Ok(Found::Empty);
        };
        let view = k.program_view(on.program)?;
        if view.name != ChainHook::Xdp.program() {
            return Ok(Found::Other(on.program, view.name));
        }
        Ok(Found::Libxdp(self.read(at, on.program, on.mode, &view)?))
    }

    /// Reads libxdp's dispatcher `id` on `at`: its configuration and the
    /// pins of its programs.
    fn read(&self, at: &Interface, id: u32, mode: XdpMode, view: &ProgramView) -> Result<Current> {
        let iface = place(at);
        let Some(value) = view.map_value.as_deref().filter(|_| view.maps == 1) else {
            bail!(
                "the program named xdp_dispatcher on {iface} (id {id}) has {} maps, not libxdp's one configuration map: it is not a libxdp dispatcher; refusing to change it",
                view.maps
            );
        };
        let config = check(Config::decode(value), value.len(), &iface)?;
        let dir = self.root.join(format!("dispatch-{}-{id}", at.ifindex));
        let mut members = Vec::new();
        for i in 0..usize::from(config.num_progs_enabled) {
            let pin = dir.join(format!("prog{i}-prog"));
            let p = self.kernel.program(&pin).map_err(|e| {
                anyhow!(
                    "the XDP dispatcher on {iface} (id {id}) has no program pinned at '{}' ({e}): it is not libxdp's, or its pins were removed; refusing to change it (xdp-loader status {} shows what libxdp sees)",
                    pin.display(),
                    at.name
                )
            })?;
            let name = self
                .kernel
                .program_view(p.id)
                .map(|v| v.name)
                .unwrap_or_default();
            members.push(Member {
                id: p.id,
                name,
                priority: config.run_prios[i],
                proceed_on: config.proceed_on(i),
                flags: config.program_flags[i],
                pin,
                ours: false,
            });
        }
        Ok(Current {
            dispatcher: id,
            mode,
            config,
            dir,
            members,
        })
    }

    /// Whether a request for `at` goes to libxdp's chain: the hook holds
    /// a libxdp dispatcher, or it is empty and the request asks for one.
    /// Our own chains (recorded) are not libxdp's.
    pub fn wants(&self, req: &ChainRequest, at: &Interface) -> Result<bool> {
        if req.hook != ChainHook::Xdp {
            return Ok(false);
        }
        let key = crate::chain::key(req.hook, at.netns.as_deref(), at.ifindex);
        if self.state.dispatcher(&key)?.is_some() {
            if req.libxdp.is_some() {
                bail!(
                    "{} has a bpfman-load dispatcher already, in our own layout; --libxdp applies to an interface whose chain starts with it (detach its programs first)",
                    place(at)
                );
            }
            return Ok(false);
        }
        let Some(on) = self.kernel.xdp_attached(at)? else {
            return Ok(req.libxdp.is_some());
        };
        let name = self.kernel.program_view(on.program)?.name;
        if name == ChainHook::Xdp.program() {
            return Ok(true);
        }
        if req.libxdp.is_some() {
            bail!(
                "{} has XDP program {} ({name}) attached, which is not a dispatcher; libxdp cannot share the hook with it. Detach it first",
                place(at),
                on.program
            );
        }
        Ok(false)
    }

    /// Adds `joining` to the libxdp chain on `req`'s interface (making the
    /// chain, in libxdp's layout, if the hook is empty).
    pub fn join(&self, req: &ChainRequest, joining: Joining<'_>) -> Result<LinkRecord> {
        let k = self.kernel;
        let at = k.interface(&req.interface, req.netns.as_deref())?;
        let _lock = k.lock_dir(&self.root)?;
        let current = match self.find(&at)? {
            Found::Empty => None,
            Found::Libxdp(c) => Some(c),
            Found::Other(id, name) => bail!(
                "{} has XDP program {id} ({name}) attached, which is not a dispatcher; libxdp cannot share the hook with it",
                place(&at)
            ),
        };
        if let Some(c) = &current
            && req.xdp_mode != XdpMode::Default
            && req.xdp_mode != c.mode
        {
            bail!(
                "the libxdp dispatcher on {} runs in {} mode; a program joins it in that mode (drop --mode {}, or unload its programs to change the mode)",
                place(&at),
                c.mode.name(),
                req.xdp_mode.name()
            );
        }
        let version = current
            .as_ref()
            .map_or(req.libxdp.unwrap_or(2), |c| c.config.dispatcher_version);
        if !VERSIONS.contains(&version) {
            bail!(
                "--libxdp-version {version}: bpfman-load writes versions 2 ({}) and 3 ({})",
                speaks(2),
                speaks(3)
            );
        }
        let mut members = current
            .as_ref()
            .map(|c| c.members.clone())
            .unwrap_or_default();
        if members.len() >= SLOTS {
            bail!(
                "the libxdp dispatcher on {} already holds {SLOTS} programs, its limit; remove one first (xdp-loader unload, or bpfman-load detach)",
                place(&at)
            );
        }
        let record = joining.record;
        let (own_priority, own_actions) = run_config(ChainHook::Xdp, joining.object, &record.name);
        let priority = req.priority.or(own_priority).unwrap_or(DEFAULT_PRIORITY);
        let Ok(run_prio) = u32::try_from(priority) else {
            bail!("priority {priority}: libxdp's run priorities are 0 and up");
        };
        let proceed_on = req
            .proceed_on
            .or(own_actions)
            .unwrap_or_else(|| ChainHook::Xdp.default_proceed_on());
        let ours = self.ours(&at);
        members.push(Member {
            id: 0,
            name: record.name.clone(),
            priority: run_prio,
            proceed_on,
            flags: 0,
            pin: PathBuf::new(),
            ours: true,
        });
        order(&mut members);
        let mode = current.as_ref().map_or(req.xdp_mode, |c| c.mode);

        let mut undo = Undo::new(k);
        let (next, dir) = self.stage(&at, version, &members, &mut undo)?;
        let mut ext = None;
        for (i, m) in members.iter_mut().enumerate() {
            let link = dir.join(format!("prog{i}-link"));
            let prog = dir.join(format!("prog{i}-prog"));
            if m.ours {
                // Our pin is made after the id is known; load under a
                // fixed name first.
                let own = ours.join("joining");
                k.unpin(&own)?;
                let id = load_extension(k, ChainHook::Xdp, joining, &next, i, &own, &link)
                    .map_err(|e| match e.downcast::<KernelError>() {
                        Ok(k) if k.not_supported().is_some() => {
                            anyhow!(k.instead(ChainHook::Xdp.without_freplace()))
                        }
                        Ok(k) => anyhow!(k),
                        Err(e) => e,
                    })?;
                undo.pin(&own);
                undo.pin(&link);
                let pin = ours.join(format!("ext-{}", id.id));
                k.pin_again(&own, &pin)?;
                undo.pin(&pin);
                k.unpin(&own)?;
                k.pin_again(&pin, &prog)?;
                undo.pin(&prog);
                m.id = id.id;
                m.pin = pin.clone();
                ext = Some((id.id, pin));
            } else {
                k.attach_extension(ChainHook::Xdp, &m.pin, &next, i, &link)
                    .with_context(|| {
                        format!(
                            "cannot attach {} program {} ({}) to slot {i} of the new dispatcher",
                            "libxdp's", m.id, m.name
                        )
                    })?;
                undo.pin(&link);
                k.pin_again(&m.pin, &prog)?;
                undo.pin(&prog);
            }
        }
        let (ext_id, ext_pin) = ext.ok_or_else(|| anyhow!("the newcomer has no slot"))?;
        fault("libxdp:built");

        // The commit point: our record names the attachment; then the
        // hook swaps to the new dispatcher.
        let mut r = record.clone();
        let link = LinkRecord {
            id: ext_id,
            pin: ext_pin,
            attachment: Attachment::Libxdp(LibxdpAttachment {
                interface: at.name.clone(),
                ifindex: at.ifindex,
                netns: at.netns.clone(),
                priority,
                proceed_on: dispatcher::action_names(ChainHook::Xdp, proceed_on)
                    .into_iter()
                    .map(String::from)
                    .collect(),
                version,
            }),
            attached_at: crate::cache::now(),
        };
        r.links.push(link.clone());
        self.state.put(std::slice::from_ref(&r))?;
        fault("libxdp:committed");
        let expected = current.as_ref().map(|c| c.dispatcher);
        if let Err(e) = k.xdp_netlink(&at, Some(&next), expected, mode) {
            let back = record.clone();
            if let Err(re) = self.state.put(std::slice::from_ref(&back)) {
                return Err(anyhow!(e).context(format!("and restoring the record: {re}")));
            }
            return Err(e.into());
        }
        undo.commit();
        fault("libxdp:swapped");
        // The hook holds the new dispatcher; the old one's pins go (which
        // frees it and its links), and our staging pin.
        self.retire(current.as_ref().map(|c| c.dir.as_path()));
        if let Err(e) = k.unpin(&next) {
            tracing::warn!("{e}");
        }
        Ok(link)
    }

    /// Loads the next dispatcher for `members` at `version`, pinned in our
    /// directory (`next`) until the hook holds it, and makes its pin
    /// directory in libxdp's layout; `undo` holds both. Returns the
    /// dispatcher's pin and that directory.
    fn stage(
        &self,
        at: &Interface,
        version: u8,
        members: &[Member],
        undo: &mut Undo<'_, K>,
    ) -> Result<(PathBuf, PathBuf)> {
        let k = self.kernel;
        let ours = self.ours(at);
        k.create_dir(&ours)?;
        undo.dir(&ours);
        let next = ours.join("next");
        k.unpin(&next)?;
        let cfg = config(version, members).encode();
        let loaded = k.load_dispatcher(ChainHook::Xdp, &cfg, &next)?;
        undo.pin(&next);
        let dir = self
            .root
            .join(format!("dispatch-{}-{}", at.ifindex, loaded.id));
        k.create_dir(&dir)?;
        undo.tree(&dir);
        Ok((next, dir))
    }

    /// Removes the pins of the dispatcher that was on the hook before a
    /// change (`dir`), which frees it and its links. Only that directory:
    /// libxdp's directories name the interface by index alone, so another
    /// `dispatch-<ifindex>-*` may be a live dispatcher in another network
    /// namespace. Failures only warn.
    fn retire(&self, dir: Option<&Path>) {
        let Some(dir) = dir else { return };
        for p in self.kernel.pins(dir).unwrap_or_default() {
            if let Err(e) = self.kernel.unpin(&p) {
                tracing::warn!("cannot remove libxdp's old pin: {e}");
            }
        }
        self.kernel.remove_empty_dirs(dir);
    }

    /// Takes our program (extension `ext`) out of the libxdp chain on the
    /// attachment's interface; the other programs stay in their slots.
    /// Returns a note when another tool had removed it already.
    pub fn leave(&self, a: &LibxdpAttachment, ext: u32) -> Result<Option<String>> {
        let k = self.kernel;
        let at = a.interface();
        let _lock = k.lock_dir(&self.root)?;
        let current = match self.find(&at) {
            Ok(Found::Libxdp(c)) => c,
            Ok(_) => {
                return Ok(Some(format!(
                    "the libxdp dispatcher on {} is gone (another tool removed it)",
                    place(&at)
                )));
            }
            Err(e) => return Err(e),
        };
        if !current.members.iter().any(|m| m.id == ext) {
            return Ok(Some(format!(
                "extension {ext} was no longer in the libxdp dispatcher on {} (another tool removed it)",
                place(&at)
            )));
        }
        let members: Vec<Member> = current
            .members
            .iter()
            .filter(|m| m.id != ext)
            .cloned()
            .collect();
        if members.is_empty() {
            k.xdp_netlink(&at, None, Some(current.dispatcher), current.mode)?;
            self.retire(Some(&current.dir));
            return Ok(None);
        }
        let mut undo = Undo::new(k);
        let (next, dir) =
            self.stage(&at, current.config.dispatcher_version, &members, &mut undo)?;
        for (i, m) in members.iter().enumerate() {
            let link = dir.join(format!("prog{i}-link"));
            k.attach_extension(ChainHook::Xdp, &m.pin, &next, i, &link)
                .with_context(|| {
                    format!(
                        "cannot attach program {} ({}) to slot {i} of the new dispatcher",
                        m.id, m.name
                    )
                })?;
            k.pin_again(&m.pin, &dir.join(format!("prog{i}-prog")))?;
        }
        k.xdp_netlink(&at, Some(&next), Some(current.dispatcher), current.mode)?;
        undo.commit();
        self.retire(Some(&current.dir));
        if let Err(e) = k.unpin(&next) {
            tracing::warn!("{e}");
        }
        Ok(None)
    }

    /// Our programs' places in libxdp chains, checked against the
    /// kernel: an extension no longer in its interface's chain (removed
    /// by another tool, or by a change of ours that a crash interrupted)
    /// is reported and forgotten, never put back. Returns what it found.
    pub fn reconcile(&self) -> Result<Vec<String>> {
        let k = self.kernel;
        let records = self.state.all()?;
        let mut places: Vec<Interface> = Vec::new();
        for a in records
            .iter()
            .flat_map(|r| r.links.iter().filter_map(attachment))
        {
            let at = a.interface();
            if !places.contains(&at) {
                places.push(at);
            }
        }
        if places.is_empty() {
            return Ok(Vec::new());
        }
        let _lock = k.lock_dir(&self.root)?;
        let mut notes = Vec::new();
        // Per interface: the extensions in its chain, or why it is unknown.
        let mut chains = Vec::new();
        for at in &places {
            let members = match self.find(at) {
                Ok(Found::Libxdp(c)) => Ok(c.members.iter().map(|m| m.id).collect::<Vec<_>>()),
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            chains.push((at, members));
        }
        for mut r in records {
            let mut gone = Vec::new();
            r.links.retain(|l| {
                let Some(a) = attachment(l) else { return true };
                let here = a.interface();
                let Some((at, members)) = chains.iter().find(|(at, _)| **at == here) else {
                    return true;
                };
                match members {
                    Ok(ids) if ids.contains(&l.id) => true,
                    Ok(_) => {
                        gone.push((l.clone(), place(at)));
                        false
                    }
                    // Unreadable now (a foreign dispatcher, a version we do
                    // not speak): keep the record, say so.
                    Err(e) => {
                        notes.push(format!(
                            "cannot check program {}'s place in the libxdp chain on {}: {e:#}",
                            r.id,
                            place(at)
                        ));
                        true
                    }
                }
            });
            if gone.is_empty() {
                continue;
            }
            self.state.put(std::slice::from_ref(&r))?;
            for (l, iface) in gone {
                if let Err(e) = k.unpin(&l.pin) {
                    tracing::warn!("{e}");
                }
                notes.push(format!(
                    "program {} ({}) is no longer in the libxdp dispatcher on {iface}: another tool removed it (xdp-loader unload?), or a change of ours was interrupted; its attachment {} is forgotten, not restored (the program stays loaded; attach it again to put it back)",
                    r.id, r.name, l.id
                ));
            }
        }
        Ok(notes)
    }
}

/// The attachment a program of ours has on a shared interface, if any.
pub fn attachment(l: &LinkRecord) -> Option<&LibxdpAttachment> {
    match &l.attachment {
        Attachment::Libxdp(a) => Some(a),
        _ => None,
    }
}
