//! Multi-program dispatchers: many programs on one XDP or TC hook, ordered
//! by priority, none aware of the others (the libxdp protocol; see
//! docs/dispatcher-protocol.md).
//!
//! Our dispatchers (`bpf/xdp_dispatcher.bpf.c`, `bpf/tc_dispatcher.bpf.c`,
//! committed and embedded) have ten stub slots. A user program is loaded
//! again as `BPF_PROG_TYPE_EXT` replacing one slot, sharing the maps of
//! the program the user loaded. Every change builds a new dispatcher
//! revision with the slots in order, attaches every extension to it, and
//! swaps it in with one `BPF_LINK_UPDATE` on the hook's link: traffic sees
//! the old chain or the new one, never half of one.
//!
//! Crash safety: the new revision is pinned, then recorded with the old
//! revision's pins listed as `retiring` (the commit point), then swapped
//! in, then the retiring pins go. Reconciliation finishes a swap that a
//! crash interrupted, so the next run finds the old or the new chain, and
//! no stray pin.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Slots in a dispatcher.
pub const SLOTS: usize = 10;
pub const XDP_MAGIC: u8 = 236;
pub const TC_MAGIC: u8 = 237;
pub const VERSION: u8 = 2;
/// Set in every slot's chain_call_actions: the stubs return the action of
/// this bit, so an empty slot never stops the chain.
const STUB_BIT: u32 = 1 << 31;
/// libxdp's default priority.
pub const DEFAULT_PRIORITY: i32 = 50;

#[cfg(target_endian = "little")]
const XDP_OBJECT: &[u8] = include_bytes!("../dispatchers/xdp_dispatcher.bpfel.o");
#[cfg(target_endian = "big")]
const XDP_OBJECT: &[u8] = include_bytes!("../dispatchers/xdp_dispatcher.bpfeb.o");
#[cfg(target_endian = "little")]
const XDP_V3_OBJECT: &[u8] = include_bytes!("../dispatchers/xdp_dispatcher_v3.bpfel.o");
#[cfg(target_endian = "big")]
const XDP_V3_OBJECT: &[u8] = include_bytes!("../dispatchers/xdp_dispatcher_v3.bpfeb.o");
#[cfg(target_endian = "little")]
const TC_OBJECT: &[u8] = include_bytes!("../dispatchers/tc_dispatcher.bpfel.o");
#[cfg(target_endian = "big")]
const TC_OBJECT: &[u8] = include_bytes!("../dispatchers/tc_dispatcher.bpfeb.o");

/// The hooks a dispatcher serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainHook {
    Xdp,
    TcIngress,
    TcEgress,
}

impl ChainHook {
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::TcIngress => "tc-ingress",
            Self::TcEgress => "tc-egress",
        }
    }

    pub fn object(self) -> &'static [u8] {
        match self {
            Self::Xdp => XDP_OBJECT,
            Self::TcIngress | Self::TcEgress => TC_OBJECT,
        }
    }

    /// The dispatcher object whose configuration `config` fits: libxdp's
    /// v3 layout has its own build of the XDP dispatcher.
    pub fn object_for(self, config: &[u8]) -> &'static [u8] {
        if self == Self::Xdp && config.len() == Config::V3_SIZE {
            XDP_V3_OBJECT
        } else {
            self.object()
        }
    }

    /// What works on a kernel that refuses freplace, for a program of
    /// this hook.
    pub fn without_freplace(self) -> &'static str {
        match self {
            Self::Xdp => {
                "Without freplace an interface's XDP hook runs one program, alone: detach the one there first, or use 'attach ID xdp --exclusive' on a free interface."
            }
            Self::TcIngress | Self::TcEgress => {
                "On this kernel use 'attach ID tcx' (tcx orders many TC programs natively, Linux 6.6+)."
            }
        }
    }

    /// The dispatcher's function name in its object.
    pub fn program(self) -> &'static str {
        match self {
            Self::Xdp => "xdp_dispatcher",
            Self::TcIngress | Self::TcEgress => "tc_dispatcher",
        }
    }

    fn magic(self) -> u8 {
        match self {
            Self::Xdp => XDP_MAGIC,
            Self::TcIngress | Self::TcEgress => TC_MAGIC,
        }
    }

    /// The actions a program proceeds on unless told otherwise: XDP_PASS,
    /// or TC's pipe and unspec (libxdp's and bpfman's defaults).
    pub fn default_proceed_on(self) -> u32 {
        match self {
            Self::Xdp => action_bit(self, 2),
            Self::TcIngress | Self::TcEgress => action_bit(self, 3) | action_bit(self, -1),
        }
    }

    /// The action names, with their return values.
    pub fn actions(self) -> &'static [(&'static str, i32)] {
        match self {
            Self::Xdp => &[
                ("aborted", 0),
                ("drop", 1),
                ("pass", 2),
                ("tx", 3),
                ("redirect", 4),
            ],
            Self::TcIngress | Self::TcEgress => &[
                ("unspec", -1),
                ("ok", 0),
                ("reclassify", 1),
                ("shot", 2),
                ("pipe", 3),
                ("stolen", 4),
                ("queued", 5),
                ("repeat", 6),
                ("redirect", 7),
                ("trap", 8),
            ],
        }
    }
}

/// The bit a return value sets in chain_call_actions: XDP actions are
/// bit `ret`; TC's start at TC_ACT_UNSPEC = -1, so bit `ret + 1`.
pub fn action_bit(hook: ChainHook, ret: i32) -> u32 {
    let bit = match hook {
        ChainHook::Xdp => ret,
        ChainHook::TcIngress | ChainHook::TcEgress => ret + 1,
    };
    1u32.checked_shl(u32::try_from(bit).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Parses proceed-on action names (`pass,drop`) into a bitmap.
pub fn parse_actions(hook: ChainHook, names: &[String]) -> Result<u32, String> {
    let mut bits = 0;
    for n in names {
        let Some(&(_, ret)) = hook.actions().iter().find(|(a, _)| a == n) else {
            let known: Vec<&str> = hook.actions().iter().map(|(a, _)| *a).collect();
            return Err(format!(
                "'{n}' is not a {} action; use: {}",
                hook.name(),
                known.join(", ")
            ));
        };
        bits |= action_bit(hook, ret);
    }
    Ok(bits)
}

/// The names of the actions in a bitmap.
pub fn action_names(hook: ChainHook, bits: u32) -> Vec<&'static str> {
    hook.actions()
        .iter()
        .filter(|(_, ret)| bits & action_bit(hook, *ret) != 0)
        .map(|(a, _)| *a)
        .collect()
}

/// The dispatcher's configuration: `struct dispatcher_config` of
/// `bpf/dispatcher.h` (libxdp's v2 layout), set as read-only data before
/// load so the verifier prunes the disabled slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub magic: u8,
    pub dispatcher_version: u8,
    pub num_progs_enabled: u8,
    pub is_xdp_frags: u8,
    pub chain_call_actions: [u32; SLOTS],
    pub run_prios: [u32; SLOTS],
    pub program_flags: [u32; SLOTS],
    /// libxdp's v3 layout only (`dispatcher_version` 3): whether the
    /// dispatcher is bound to one device. `None` in the v2 layout.
    pub is_xdp_devbound: Option<u8>,
}

impl Config {
    pub const SIZE: usize = 124;
    /// libxdp's v3 layout: v2 and `u8 is_xdp_devbound`, padded to the
    /// struct's 4-byte alignment.
    pub const V3_SIZE: usize = 128;
    /// Each field's name, offset and size, as the C header lays them out
    /// (a unit test checks this against the dispatchers' BTF).
    pub const FIELDS: [(&'static str, usize, usize); 7] = [
        ("magic", 0, 1),
        ("dispatcher_version", 1, 1),
        ("num_progs_enabled", 2, 1),
        ("is_xdp_frags", 3, 1),
        ("chain_call_actions", 4, 4 * SLOTS),
        ("run_prios", 4 + 4 * SLOTS, 4 * SLOTS),
        ("program_flags", 4 + 8 * SLOTS, 4 * SLOTS),
    ];

    /// The configuration for `slots`, in run order.
    pub fn for_slots(hook: ChainHook, slots: &[Slot]) -> Self {
        let mut c = Self {
            magic: hook.magic(),
            dispatcher_version: VERSION,
            num_progs_enabled: u8::try_from(slots.len().min(SLOTS)).unwrap_or(0),
            is_xdp_frags: 0,
            chain_call_actions: [STUB_BIT; SLOTS],
            run_prios: [0; SLOTS],
            program_flags: [0; SLOTS],
            is_xdp_devbound: None,
        };
        for (i, s) in slots.iter().take(SLOTS).enumerate() {
            c.chain_call_actions[i] = s.proceed_on | STUB_BIT;
            c.run_prios[i] = s.priority as u32;
        }
        c
    }

    /// The bytes of the C struct, in this host's byte order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.magic,
            self.dispatcher_version,
            self.num_progs_enabled,
            self.is_xdp_frags,
        ];
        for arr in [
            &self.chain_call_actions,
            &self.run_prios,
            &self.program_flags,
        ] {
            for v in arr {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        if let Some(devbound) = self.is_xdp_devbound {
            out.extend_from_slice(&[devbound, 0, 0, 0]);
        }
        out
    }

    /// Reads a configuration back (a dispatcher's read-only map, as the
    /// kernel holds it): the v2 layout, or v3 when the value is v3's size.
    /// `None` for any other size.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::SIZE && bytes.len() != Self::V3_SIZE {
            return None;
        }
        let array = |at: usize| -> [u32; SLOTS] {
            std::array::from_fn(|i| {
                let o = at + 4 * i;
                u32::from_ne_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
            })
        };
        Some(Self {
            magic: bytes[0],
            dispatcher_version: bytes[1],
            num_progs_enabled: bytes[2],
            is_xdp_frags: bytes[3],
            chain_call_actions: array(4),
            run_prios: array(4 + 4 * SLOTS),
            program_flags: array(4 + 8 * SLOTS),
            is_xdp_devbound: (bytes.len() == Self::V3_SIZE).then(|| bytes[Self::SIZE]),
        })
    }

    /// A slot's proceed-on actions, without the stub's bit.
    pub fn proceed_on(&self, slot: usize) -> u32 {
        self.chain_call_actions[slot] & !STUB_BIT
    }
}

/// One program in a dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Our id of the program the user loaded (its maps are shared).
    pub program: u32,
    pub name: String,
    pub priority: i32,
    /// The chain_call_actions bitmap, without the stub bit.
    pub proceed_on: u32,
    /// The extension program: the user's program loaded as
    /// BPF_PROG_TYPE_EXT, pinned, re-attached to every revision; `ext_id`
    /// is 0 while the program runs alone on the hook (no extension).
    pub ext: PathBuf,
    pub ext_id: u32,
    /// The attachment's id as users see it, fixed when the program joined
    /// the chain: its extension's id, or the hook link's when it joined
    /// alone. 0 in records that predate it (the extension's id is shown).
    #[serde(default)]
    pub link_id: u32,
}

impl Slot {
    /// The id `list` shows and `detach` takes for this slot.
    pub fn shown_id(&self) -> u32 {
        if self.link_id != 0 {
            self.link_id
        } else {
            self.ext_id
        }
    }

    /// Whether the slot's extension is loaded (and pinned at `ext`).
    pub fn has_extension(&self) -> bool {
        self.ext_id != 0
    }
}

/// Orders slots: ascending priority, then program name, then our program
/// id (load order). Deterministic: the same programs always run in the
/// same order, whoever attached them first.
pub fn order(slots: &mut [Slot]) {
    slots.sort_by(|a, b| (a.priority, &a.name, a.program).cmp(&(b.priority, &b.name, b.program)));
}

/// One dispatcher on one hook of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredDispatcher")]
pub struct DispatcherRecord {
    pub key: String,
    pub hook: ChainHook,
    pub interface: String,
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Bumped by every change.
    pub revision: u64,
    /// A chain of one on a link hook: the program itself is on the hook,
    /// with no dispatcher in front of it (and no `program`, no extension,
    /// no `freplace`). Its verdict is final.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alone: bool,
    /// This revision's dispatcher program (empty when `alone`).
    pub program: PathBuf,
    pub program_id: u32,
    /// How the dispatcher sits on its hook.
    pub attachment: HookAttachment,
    /// In run order; `freplace[i]` attaches `slots[i]`.
    pub slots: Vec<Slot>,
    pub freplace: Vec<PathBuf>,
    /// Pins of the revision being replaced: removed once the swap is done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<PathBuf>,
    /// Committed, and maybe not yet on the hook: the next run swaps it in
    /// (a change with nothing to retire needs this to be finished).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swapping: bool,
}

/// How a dispatcher is attached to its hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum HookAttachment {
    /// A bpf_link (XDP, or tcx for TC), pinned, and pointed at each new
    /// revision by `BPF_LINK_UPDATE`; `id` is 0 until it is made.
    Link { pin: PathBuf, id: u32 },
    /// Classic TC, for kernels without tcx: a cls_bpf filter under the
    /// clsact qdisc, nothing to pin; once made, its program is replaced in
    /// place by netlink.
    Clsact {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<TcFilter>,
    },
}

impl HookAttachment {
    /// The pin this attachment holds, if it has one.
    pub fn pin(&self) -> Option<&PathBuf> {
        match self {
            Self::Link { pin, .. } => Some(pin),
            Self::Clsact { .. } => None,
        }
    }
}

/// A dispatcher record as stored, in this layout (`attachment`) or in
/// the older flat one (`link`, `link_id`, `clsact`, `filter`), so state
/// written before the change still reads.
#[derive(Deserialize)]
struct StoredDispatcher {
    key: String,
    hook: ChainHook,
    interface: String,
    ifindex: u32,
    #[serde(default)]
    netns: Option<PathBuf>,
    revision: u64,
    #[serde(default)]
    alone: bool,
    program: PathBuf,
    program_id: u32,
    #[serde(default)]
    attachment: Option<HookAttachment>,
    #[serde(default)]
    link: Option<PathBuf>,
    #[serde(default)]
    link_id: u32,
    #[serde(default)]
    clsact: bool,
    #[serde(default)]
    filter: Option<TcFilter>,
    slots: Vec<Slot>,
    freplace: Vec<PathBuf>,
    #[serde(default)]
    retiring: Vec<PathBuf>,
    #[serde(default)]
    swapping: bool,
}

impl From<StoredDispatcher> for DispatcherRecord {
    fn from(s: StoredDispatcher) -> Self {
        let attachment = match (s.attachment, s.clsact, s.link) {
            (Some(a), _, _) => a,
            (None, true, _) => HookAttachment::Clsact { filter: s.filter },
            (None, false, link) => HookAttachment::Link {
                pin: link.unwrap_or_default(),
                id: s.link_id,
            },
        };
        Self {
            key: s.key,
            hook: s.hook,
            interface: s.interface,
            ifindex: s.ifindex,
            netns: s.netns,
            revision: s.revision,
            alone: s.alone,
            program: s.program,
            program_id: s.program_id,
            attachment,
            slots: s.slots,
            freplace: s.freplace,
            retiring: s.retiring,
            swapping: s.swapping,
        }
    }
}

/// A cls_bpf filter: what netlink needs to replace or delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcFilter {
    pub priority: u16,
    pub handle: u32,
}

impl DispatcherRecord {
    pub fn pins(&self) -> impl Iterator<Item = &PathBuf> {
        (!self.alone)
            .then_some(&self.program)
            .into_iter()
            .chain(self.attachment.pin())
            .chain(
                self.slots
                    .iter()
                    .filter(|s| s.has_extension())
                    .map(|s| &s.ext),
            )
            .chain(&self.freplace)
            .chain(&self.retiring)
    }

    /// Whether a chain of one here runs without a dispatcher: on a link
    /// (XDP or tcx), which can be pointed at the program itself and later
    /// at a dispatcher in one atomic update. A classic clsact filter keeps
    /// the dispatcher.
    pub fn can_run_alone(&self) -> bool {
        matches!(self.attachment, HookAttachment::Link { .. })
    }
}

#[cfg(test)]
mod tests {
    use bpfman_image_spec::arch::Endianness;
    use bpfman_image_spec::btf::Btf;
    use object::{Object, ObjectSection};

    use super::*;

    fn slot(program: u32, name: &str, priority: i32) -> Slot {
        Slot {
            program,
            name: name.into(),
            priority,
            proceed_on: 0,
            ext: PathBuf::new(),
            ext_id: 0,
            link_id: 0,
        }
    }

    /// `struct dispatcher_config` as an object's BTF lays it out: each
    /// member's name, offset and size.
    fn c_layout(obj: &[u8]) -> Vec<(String, usize, usize)> {
        let file = object::File::parse(obj).expect("elf");
        let btf = file
            .section_by_name(".BTF")
            .expect(".BTF")
            .data()
            .expect("data");
        let btf = Btf::parse(btf, Endianness::host()).expect("btf");
        btf.struct_layout("dispatcher_config")
            .expect("btf")
            .expect("struct dispatcher_config")
            .iter()
            .map(|m| (m.name.clone(), m.offset as usize, m.size as usize))
            .collect()
    }

    /// The Rust encoding matches `struct dispatcher_config` of
    /// bpf/dispatcher.h field by field, as the compiled dispatchers' BTF
    /// describes it, in both objects.
    #[test]
    fn config_encoding_matches_the_c_header() {
        for (hook, obj) in [
            (ChainHook::Xdp, XDP_OBJECT),
            (ChainHook::TcIngress, TC_OBJECT),
        ] {
            let c = c_layout(obj);
            let rust: Vec<(String, usize, usize)> = Config::FIELDS
                .iter()
                .map(|(n, o, s)| ((*n).to_string(), *o, *s))
                .collect();
            assert_eq!(c, rust, "{}", hook.name());

            // And encode() puts each value where the C struct has it.
            let mut slots = vec![slot(1, "a", 7), slot(2, "b", 9)];
            slots[0].proceed_on = 0x5;
            let cfg = Config::for_slots(hook, &slots);
            let bytes = cfg.encode();
            assert_eq!(bytes.len(), Config::SIZE);
            let u32_at =
                |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            assert_eq!(bytes[0], hook.magic());
            assert_eq!(bytes[1], VERSION);
            assert_eq!(bytes[2], 2);
            assert_eq!(u32_at(4), 0x5 | STUB_BIT);
            assert_eq!(u32_at(8), STUB_BIT);
            assert_eq!(u32_at(4 + 4 * SLOTS), 7);
            assert_eq!(u32_at(4 + 4 * SLOTS + 4), 9);
            assert_eq!(u32_at(4 + 8 * SLOTS), 0);
            assert_eq!(Config::decode(&bytes), Some(cfg));
        }
    }

    #[test]
    fn the_v3_build_has_libxdps_v3_layout_and_round_trips() {
        let c = c_layout(XDP_V3_OBJECT);
        let mut rust: Vec<(String, usize, usize)> = Config::FIELDS
            .iter()
            .map(|(n, o, s)| ((*n).to_string(), *o, *s))
            .collect();
        rust.push(("is_xdp_devbound".into(), Config::SIZE, 1));
        assert_eq!(c, rust);

        let mut cfg = Config::for_slots(ChainHook::Xdp, &[slot(1, "a", 7)]);
        cfg.dispatcher_version = 3;
        cfg.is_xdp_devbound = Some(0);
        let bytes = cfg.encode();
        assert_eq!(bytes.len(), Config::V3_SIZE);
        assert_eq!(Config::decode(&bytes), Some(cfg.clone()));
        assert_eq!(ChainHook::Xdp.object_for(&bytes), XDP_V3_OBJECT);
        assert_eq!(
            ChainHook::Xdp.object_for(&bytes[..Config::SIZE]),
            XDP_OBJECT
        );
        // Any other size is no layout we know.
        assert_eq!(Config::decode(&bytes[..84]), None);
    }

    #[test]
    fn the_dispatchers_have_ten_global_stubs() {
        for obj in [XDP_OBJECT, TC_OBJECT] {
            let info = bpfman_image_spec::elf::inspect(obj).expect("inspect");
            assert_eq!(info.programs.len(), 1);
            let file = object::File::parse(obj).expect("elf");
            for i in 0..SLOTS {
                let name = format!("prog{i}");
                assert!(
                    file.symbols().any(|s| {
                        use object::ObjectSymbol;
                        s.name() == Ok(name.as_str()) && s.is_global()
                    }),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn order_is_priority_then_name_then_load_order() {
        let mut s = vec![
            slot(5, "b", 50),
            slot(3, "a", 50),
            slot(9, "z", 10),
            slot(2, "a", 50),
        ];
        order(&mut s);
        let got: Vec<u32> = s.iter().map(|s| s.program).collect();
        assert_eq!(got, [9, 2, 3, 5]);
    }

    #[test]
    fn actions_are_bits_of_their_return_values() {
        assert_eq!(ChainHook::Xdp.default_proceed_on(), 1 << 2);
        assert_eq!(ChainHook::TcIngress.default_proceed_on(), (1 << 4) | 1);
        assert_eq!(
            parse_actions(ChainHook::Xdp, &["pass".into(), "drop".into()]),
            Ok((1 << 2) | (1 << 1))
        );
        assert_eq!(
            parse_actions(ChainHook::TcEgress, &["ok".into()]),
            Ok(1 << 1)
        );
        assert!(parse_actions(ChainHook::Xdp, &["ok".into()]).is_err_and(|e| e.contains("pass")));
        assert_eq!(
            action_names(ChainHook::TcIngress, (1 << 4) | 1),
            ["unspec", "pipe"]
        );
    }
}
