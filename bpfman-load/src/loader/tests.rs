//! The loader's logic on the fake kernel, without root: commit ordering
//! and undo at every step, crashes at every step followed by
//! reconciliation, every inconsistency reconciliation handles, and the
//! dispatcher rebuild.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use bpfman_image_spec::program::SectionKind;
use tempfile::TempDir;

use super::*;
use crate::attach::tc::{Direction, TcRequest};
use crate::attach::tcx::TcxRequest;
use crate::attach::tracepoint::TracepointRequest;
use crate::attach::xdp::XdpRequest;
use crate::cache::Cache;
use crate::chain::{ChainArgs, plan_add, plan_remove};
use crate::dispatcher::{ChainHook, Config, HookAttachment, SLOTS, Slot};
use crate::kernel::fake::{Crash, Failure, Fake, Obj};
use crate::kernel::{Feature, KernelError, XdpMode};

/// A state root on the fake kernel.
struct Rig {
    dir: TempDir,
    state: State,
    fake: Fake,
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/bpf")
        .join(name)
}

impl Rig {
    fn new() -> Self {
        let dir = TempDir::new().expect("tmp");
        let cache = Cache::open(dir.path()).expect("cache");
        Self {
            state: State::open(&cache).expect("state"),
            dir,
            fake: Fake::new(),
        }
    }

    /// A new process: a loader on the same state and kernel.
    fn loader(&self) -> Loader<Fake> {
        let fs = Bpffs::open(&self.fake, Path::new("/bpffs"), self.dir.path()).expect("bpffs");
        Loader::new(self.fake.clone(), self.state.clone(), fs)
    }

    fn load(&self, l: &Loader<Fake>, object: &str) -> Vec<ProgramRecord> {
        l.load_file(&testdata(object), &LoadOptions::default())
            .expect("load")
    }

    /// Every record's pins exist, every pin of ours is claimed, every
    /// dispatcher is on its hook with nothing left to retire, and every
    /// slot link is a slot.
    fn assert_consistent(&self, l: &Loader<Fake>) {
        let records = l.state().all().expect("records");
        let dispatchers = l.state().dispatchers().expect("dispatchers");
        let claimed: BTreeSet<PathBuf> = records
            .iter()
            .flat_map(ProgramRecord::pins)
            .chain(dispatchers.iter().flat_map(DispatcherRecord::pins))
            .cloned()
            .collect();
        let pins = self.fake.pins(l.bpffs().root()).expect("pins");
        assert_eq!(pins, claimed, "pins and records disagree");
        let w = self.fake.world();
        for d in &dispatchers {
            assert!(d.retiring.is_empty(), "{} has pins to retire", d.key);
            assert!(!d.swapping, "{} is not on its hook yet", d.key);
            let hook = format!("{}@{}", d.hook.name(), d.ifindex);
            // A chain of one runs its program alone, without a dispatcher.
            let runs = if d.alone {
                assert_eq!(d.slots.len(), 1, "{d:?}");
                assert!(d.freplace.is_empty() && d.slots[0].ext_id == 0, "{d:?}");
                d.slots[0].program
            } else {
                d.program_id
            };
            assert_eq!(w.hooks.get(&hook), Some(&runs), "{hook} runs {d:?}");
        }
        for r in &records {
            for link in &r.links {
                if let Some(key) = link.attachment.dispatcher_key() {
                    let d = dispatchers
                        .iter()
                        .find(|d| d.key == key)
                        .expect("dispatcher");
                    assert!(d.slots.iter().any(|s| s.program == r.id), "{key}: {}", r.id);
                }
            }
        }
    }
}

fn xdp(priority: i32) -> AttachRequest {
    AttachRequest::Xdp(XdpRequest {
        iface: "veth1".into(),
        netns: None,
        mode: XdpMode::Default,
        exclusive: false,
        chain: ChainArgs {
            priority: Some(priority),
            proceed_on: Vec::new(),
        },
        libxdp: false,
        libxdp_version: 2,
    })
}

fn tracepoint() -> AttachRequest {
    AttachRequest::Tracepoint(TracepointRequest {
        tracepoint: "syscalls/sys_enter_openat".into(),
    })
}

/// The object a program was loaded from (a file, in these tests).
fn object(r: &ProgramRecord) -> Result<Vec<u8>> {
    match &r.source {
        Source::File { path, .. } => Ok(std::fs::read(path)?),
        Source::Image { .. } => unreachable!("the tests load files"),
    }
}

/// The run priorities in a dispatcher's config bytes.
fn priorities(config: &[u8]) -> Vec<u32> {
    let n = config[2] as usize;
    let at = 4 + 4 * SLOTS;
    (0..n)
        .map(|i| u32::from_ne_bytes(config[at + 4 * i..at + 4 * i + 4].try_into().expect("4")))
        .collect()
}

/// Runs `f` on a fresh loader, crashing at step `n` of it: true if it
/// crashed there (false: it finished before step `n`).
fn crash_at<T>(rig: &Rig, n: usize, how: Failure, f: impl FnOnce(&Loader<Fake>) -> T) -> bool {
    let l = rig.loader();
    rig.fake.fail_at(n, how);
    let out = catch_unwind(AssertUnwindSafe(|| f(&l)));
    rig.fake.revive();
    match out {
        Ok(_) => false,
        Err(p) => {
            assert!(p.downcast_ref::<Crash>().is_some(), "a real panic");
            true
        }
    }
}

#[test]
fn a_load_pins_programs_then_maps_then_records() {
    let rig = Rig::new();
    let l = rig.loader();
    let start = rig.fake.world().log.len();
    let recs = rig.load(&l, "xdp_counter.bpfel.o");
    let log = rig.fake.world().log[start..].join("\n");
    let open = log.find("open_object").expect("open");
    let prog = log.find("load_program xdp_stats").expect("program");
    let map = log.find("pin_map").expect("map");
    assert!(open < prog && prog < map, "{log}");
    assert_eq!(recs.len(), 1);
    assert!(recs[0].maps.iter().all(|m| rig.fake.is_pinned(&m.pin)));
    assert_eq!(l.state().all().expect("all"), recs);
    rig.assert_consistent(&l);
}

#[test]
fn a_failure_at_any_step_of_a_load_leaves_nothing() {
    let rig = Rig::new();
    let before = rig.fake.pin_set();
    let l = rig.loader();
    let steps = {
        let s = rig.fake.steps();
        let recs = rig.load(&l, "tcx.bpfel.o");
        let n = rig.fake.steps() - s;
        for r in &recs {
            l.unload(r.id).expect("unload");
        }
        n
    };
    assert!(steps >= 4, "{steps} steps");
    for n in 1..=steps {
        rig.fake.fail_at(n, Failure::Error);
        let err = l
            .load_file(&testdata("tcx.bpfel.o"), &LoadOptions::default())
            .expect_err("injected");
        assert!(format!("{err:#}").contains("fault injected"), "{err:#}");
        rig.fake.revive();
        assert_eq!(rig.fake.pin_set(), before, "step {n} left pins");
        assert!(
            l.state().all().expect("all").is_empty(),
            "step {n} left records"
        );
    }
}

#[test]
fn a_crash_at_any_step_of_a_load_is_undone_or_kept_whole_by_reconciliation() {
    let rig = Rig::new();
    for (n, how) in (1..).flat_map(|n| [(n, Failure::Crash), (n, Failure::CrashAfter)]) {
        let crashed = crash_at(&rig, n, how, |l| {
            l.load_file(&testdata("tcx.bpfel.o"), &LoadOptions::default())
        });
        let l = rig.loader();
        let report = l.reconcile().expect("reconcile");
        rig.assert_consistent(&l);
        let recs = l.state().all().expect("all");
        if crashed {
            // Before the commit nothing is kept; the pins made were strays.
            assert!(recs.is_empty(), "step {n} {how:?}: {recs:?}");
            assert!(report.vanished.is_empty());
        } else {
            let programs = bpfman_image_spec::elf::inspect(
                &std::fs::read(testdata("tcx.bpfel.o")).expect("read"),
            )
            .expect("inspect")
            .programs
            .len();
            assert_eq!(recs.len(), programs, "the whole load");
            break;
        }
    }
}

#[test]
fn a_crash_at_any_step_of_an_unload_leaves_the_program_or_nothing() {
    let rig = Rig::new();
    for (n, how) in (1..).flat_map(|n| [(n, Failure::Crash), (n, Failure::CrashAfter)]) {
        let l = rig.loader();
        let r = rig.load(&l, "tracepoint.bpfel.o")[0].clone();
        l.attach(r.id, &tracepoint(), object).expect("attach");
        let crashed = crash_at(&rig, n, how, |l| l.unload(r.id));
        let l = rig.loader();
        l.reconcile().expect("reconcile");
        rig.assert_consistent(&l);
        if !crashed {
            assert!(l.state().all().expect("all").is_empty());
            break;
        }
        // Whatever is left is whole, and unloads.
        if l.state().get(r.id).expect("get").is_some() {
            l.unload(r.id).expect("unload");
        }
        assert!(
            rig.fake.pins(l.bpffs().root()).expect("pins").is_empty(),
            "step {n} {how:?}"
        );
    }
}

#[test]
fn a_direct_attach_pins_the_link_before_recording_it_and_undoes_it_on_failure() {
    let rig = Rig::new();
    let l = rig.loader();
    let recs = rig.load(&l, "tracepoint.bpfel.o");
    let id = recs[0].id;
    let before = rig.fake.pin_set();
    rig.fake.fail_at(1, Failure::Error);
    l.attach(id, &tracepoint(), object).expect_err("injected");
    rig.fake.revive();
    assert_eq!(rig.fake.pin_set(), before);
    assert!(l.record(id).expect("record").links.is_empty());

    // Killed after the link is pinned, before the record: the next run
    // removes the stray link (which detaches it).
    assert!(crash_at(&rig, 1, Failure::CrashAfter, |l| {
        l.attach(id, &tracepoint(), object)
    }));
    assert_ne!(rig.fake.pin_set(), before, "the crash left the link");
    let l = rig.loader();
    let report = l.reconcile().expect("reconcile");
    assert_eq!(report.strays.len(), 1, "{report:?}");
    assert_eq!(rig.fake.pin_set(), before);
    let link = l.attach(id, &tracepoint(), object).expect("attach");
    assert!(matches!(
        link.attachment,
        crate::attach::Attachment::Tracepoint(_)
    ));
    assert!(rig.fake.is_pinned(&link.pin));
    rig.assert_consistent(&l);
    let (owner, gone) = l.detach(link.id).expect("detach");
    assert_eq!((owner, gone.id), (id, link.id));
    assert_eq!(rig.fake.pin_set(), before);
}

#[test]
fn reconciliation_handles_every_inconsistency() {
    let rig = Rig::new();
    let l = rig.loader();
    let a = rig.load(&l, "tracepoint.bpfel.o")[0].clone();
    let b = rig.load(&l, "tracepoint.bpfel.o")[0].clone();
    let c = rig.load(&l, "tracepoint.bpfel.o")[0].clone();
    let link = l.attach(c.id, &tracepoint(), object).expect("attach");

    // a's pin is gone (a reboot, or someone else unpinned it).
    rig.fake.world().pins.remove(&a.pin);
    // b's pin now holds another program.
    rig.fake.world().pins.insert(
        b.pin.clone(),
        Obj::Program {
            id: 9999,
            name: "other".into(),
        },
    );
    // c's link pin is gone.
    rig.fake.world().pins.remove(&link.pin);
    // A stray pin no record accounts for.
    let stray = l.bpffs().root().join("links/4242");
    rig.fake.world().pins.insert(
        stray.clone(),
        Obj::Link {
            id: 4242,
            program: c.id,
            target: "x".into(),
        },
    );

    let l = rig.loader();
    let report = l.reconcile().expect("reconcile");
    let vanished: Vec<(u32, &str)> = report
        .vanished
        .iter()
        .map(|(r, why)| (r.id, why.as_str()))
        .collect();
    assert_eq!(vanished.len(), 2, "{vanished:?}");
    // a's maps are still pinned: this is what an interrupted unload leaves.
    assert!(
        vanished
            .iter()
            .any(|(id, why)| *id == a.id && why.contains("an unload of it was interrupted")),
        "{vanished:?}"
    );
    assert!(
        vanished
            .iter()
            .any(|(id, why)| *id == b.id && why.contains("another program (id 9999)"))
    );
    assert_eq!(report.links_gone.len(), 1);
    assert_eq!(report.links_gone[0].0, c.id);
    assert!(report.strays.contains(&stray), "{:?}", report.strays);
    // a's and b's maps went with them; c keeps its own.
    assert!(a.maps.iter().all(|m| !rig.fake.is_pinned(&m.pin)));
    assert!(c.maps.iter().all(|m| rig.fake.is_pinned(&m.pin)));
    let left: Vec<u32> = l.state().all().expect("all").iter().map(|r| r.id).collect();
    assert_eq!(left, [c.id]);
    assert!(l.record(c.id).expect("c").links.is_empty());
    rig.assert_consistent(&l);
    assert!(rig.loader().reconcile().expect("again").is_empty());

    // Every pin of ours gone at once: a reboot, and it says so.
    for p in rig.fake.pin_set() {
        rig.fake.world().pins.remove(&p);
    }
    let report = rig.loader().reconcile().expect("reconcile");
    assert!(
        report.vanished[0].1.contains("a reboot"),
        "{:?}",
        report.vanished
    );
}

#[test]
fn a_shared_map_stays_until_its_last_user_goes() {
    let rig = Rig::new();
    let l = rig.loader();
    let a = rig.load(&l, "xdp_counter.bpfel.o")[0].clone();
    let b = l
        .load_file(
            &testdata("xdp_counter.bpfel.o"),
            &LoadOptions {
                share_maps_with: Some(a.id),
                ..Default::default()
            },
        )
        .expect("share")[0]
        .clone();
    let shared: Vec<&MapPin> = b.maps.iter().filter(|m| m.shared).collect();
    assert!(!shared.is_empty());
    l.unload(a.id).expect("unload a");
    assert!(shared.iter().all(|m| rig.fake.is_pinned(&m.pin)));
    l.unload(b.id).expect("unload b");
    assert!(rig.fake.pins(l.bpffs().root()).expect("pins").is_empty());
}

fn slot(program: u32, name: &str, priority: i32) -> Slot {
    Slot {
        program,
        name: name.into(),
        priority,
        proceed_on: 4,
        ext: PathBuf::from(format!("/d/ext-{program}")),
        ext_id: program + 1000,
        link_id: program + 1000,
    }
}

#[test]
fn the_rebuild_plan_orders_slots_and_retires_the_old_revision() {
    let mut d = DispatcherRecord {
        key: "xdp-host-7".into(),
        hook: ChainHook::Xdp,
        interface: "veth1".into(),
        ifindex: 7,
        netns: None,
        revision: 0,
        alone: false,
        program: PathBuf::new(),
        program_id: 0,
        attachment: HookAttachment::Link {
            pin: "/d/link".into(),
            id: 0,
        },
        slots: Vec::new(),
        freplace: Vec::new(),
        retiring: Vec::new(),
        swapping: false,
    };
    // A new chain retires nothing.
    let p = plan_add(Some(&d), slot(1, "b", 20), "veth1").expect("plan");
    assert!(p.retiring.is_empty() && p.leaving.is_none());

    d.revision = 3;
    d.program = "/d/rev-3/dispatcher".into();
    d.slots = vec![slot(1, "b", 20), slot(2, "c", 30)];
    d.freplace = vec!["/d/rev-3/slot0".into(), "/d/rev-3/slot1".into()];
    let p = plan_add(Some(&d), slot(3, "a", 25), "veth1").expect("plan");
    let order: Vec<u32> = p.slots.iter().map(|s| s.program).collect();
    assert_eq!(order, [1, 3, 2], "by priority");
    let retiring: Vec<&str> = p.retiring.iter().filter_map(|p| p.to_str()).collect();
    assert_eq!(
        retiring,
        ["/d/rev-3/dispatcher", "/d/rev-3/slot0", "/d/rev-3/slot1"]
    );
    assert!(
        plan_add(Some(&d), slot(2, "c", 1), "veth1")
            .expect_err("twice")
            .to_string()
            .contains("already in the xdp dispatcher on veth1")
    );

    let p = plan_remove(&d, 1).expect("plan");
    assert_eq!(p.slots, [slot(2, "c", 30)]);
    assert_eq!(p.leaving, Some(slot(1, "b", 20)));
    assert_eq!(
        p.retiring.last(),
        Some(&PathBuf::from("/d/ext-1")),
        "its extension too"
    );
    assert!(plan_remove(&d, 9).is_err());

    d.slots = (0..SLOTS as u32).map(|i| slot(i, "x", 50)).collect();
    assert!(
        plan_add(Some(&d), slot(99, "y", 1), "veth1")
            .expect_err("full")
            .to_string()
            .contains("already holds 10 programs, its limit")
    );
}

#[test]
fn a_chain_is_rebuilt_in_priority_order_and_swapped_atomically() {
    let rig = Rig::new();
    let l = rig.loader();
    let ids: Vec<u32> = (0..3)
        .map(|_| rig.load(&l, "xdp_counter.bpfel.o")[0].id)
        .collect();
    let mut dispatchers = Vec::new();
    for (id, prio) in ids.iter().zip([30, 10, 20]) {
        let link = l.attach(*id, &xdp(prio), object).expect("chain");
        assert!(matches!(
            link.attachment,
            crate::attach::Attachment::Dispatcher(_)
        ));
        let d = l.state().dispatchers().expect("d").remove(0);
        dispatchers.push(d.program_id);
        rig.assert_consistent(&l);
        // The first runs alone; from the second on, the newest revision.
        let runs = if d.alone { *id } else { d.program_id };
        assert_eq!(d.alone, *id == ids[0], "{d:?}");
        assert_eq!(rig.fake.world().hooks.get("xdp@7"), Some(&runs));
    }
    let d = l.state().dispatchers().expect("d").remove(0);
    assert_eq!(d.revision, 3);
    let order: Vec<u32> = d.slots.iter().map(|s| s.program).collect();
    assert_eq!(order, [ids[1], ids[2], ids[0]]);
    let config = rig.fake.config_of(d.program_id).expect("config");
    assert_eq!(priorities(&config), [10, 20, 30]);
    assert_eq!(config, Config::for_slots(ChainHook::Xdp, &d.slots).encode());
    // One link on the hook, made once and updated since.
    let log = rig.fake.world().log.join("\n");
    assert_eq!(log.matches("attach_dispatcher").count(), 1, "{log}");
    assert_eq!(log.matches("update_link").count(), 2, "{log}");
    // Older revisions are gone.
    for old in &dispatchers[..2] {
        assert!(rig.fake.config_of(*old).is_none(), "revision {old} retired");
    }

    // The middle one leaves; the last one out takes the dispatcher along.
    l.unload(ids[2]).expect("unload");
    let d = l.state().dispatchers().expect("d").remove(0);
    assert_eq!(
        priorities(&rig.fake.config_of(d.program_id).expect("c")),
        [10, 30]
    );
    rig.assert_consistent(&l);
    for id in [ids[0], ids[1]] {
        l.unload(id).expect("unload");
    }
    assert!(l.state().dispatchers().expect("d").is_empty());
    assert!(rig.fake.world().hooks.is_empty(), "the hook is clean");
    assert!(rig.fake.pins(l.bpffs().root()).expect("pins").is_empty());
}

/// A lone program runs without a dispatcher; a second one brings the
/// dispatcher in with one update of the hook's link, and the chain
/// dropping back to one swaps the program itself back in. Nothing is
/// reloaded but the first program's extension, and the ids users hold
/// stay valid across both swaps.
#[test]
fn a_lone_program_runs_without_a_dispatcher_and_crosses_to_two_and_back() {
    let rig = Rig::new();
    let l = rig.loader();
    let [a, b] = [0, 1].map(|_| rig.load(&l, "xdp_counter.bpfel.o")[0].id);
    let log_from = |start: usize| rig.fake.world().log[start..].join("\n");

    let start = rig.fake.world().log.len();
    let la = l.attach(a, &xdp(10), object).expect("alone");
    let log = log_from(start);
    assert!(
        !log.contains("load_dispatcher") && !log.contains("load_extension"),
        "{log}"
    );
    let d = l.state().dispatchers().expect("d").remove(0);
    assert!(d.alone && d.program_id == 0, "{d:?}");
    assert_eq!(rig.fake.world().hooks.get("xdp@7"), Some(&a));
    let HookAttachment::Link { id: hook_link, .. } = d.attachment else {
        panic!("{d:?}")
    };
    assert_eq!(
        la.id, hook_link,
        "a lone program is known by the hook's link"
    );
    rig.assert_consistent(&l);

    // 1 -> 2: one dispatcher, two extensions (a's first), one update.
    let start = rig.fake.world().log.len();
    let lb = l.attach(b, &xdp(20), object).expect("second");
    let log = log_from(start);
    assert_eq!(log.matches("load_dispatcher").count(), 1, "{log}");
    assert_eq!(log.matches("load_extension").count(), 2, "{log}");
    assert_eq!(log.matches("update_link").count(), 1, "{log}");
    assert!(!log.contains("attach_dispatcher"), "{log}");
    let d = l.state().dispatchers().expect("d").remove(0);
    assert!(!d.alone);
    assert_eq!(rig.fake.world().hooks.get("xdp@7"), Some(&d.program_id));
    let ids = |p: u32| -> Vec<u32> { l.record(p).expect("r").links.iter().map(|k| k.id).collect() };
    assert_eq!(ids(a), [la.id], "a keeps the id it was given alone");
    assert_eq!(ids(b), [lb.id]);
    rig.assert_consistent(&l);

    // 2 -> 1: a alone again, by its old id; the dispatcher and both
    // extensions go, a's own program is not touched.
    let start = rig.fake.world().log.len();
    l.detach(lb.id).expect("detach b");
    let log = log_from(start);
    assert!(!log.contains("load_"), "{log}");
    assert_eq!(log.matches("update_link").count(), 1, "{log}");
    let d = l.state().dispatchers().expect("d").remove(0);
    assert!(d.alone && d.slots[0].program == a, "{d:?}");
    assert_eq!(rig.fake.world().hooks.get("xdp@7"), Some(&a));
    assert!(rig.fake.is_pinned(&l.record(a).expect("a").pin));
    assert_eq!(ids(a), [la.id]);
    rig.assert_consistent(&l);
    let pins = rig.fake.pin_set();
    assert!(
        !pins.iter().any(|p| p.to_string_lossy().contains("/rev-")),
        "{pins:?}"
    );

    // And again, as often as it takes: the same link all along.
    for _ in 0..3 {
        let lb = l.attach(b, &xdp(20), object).expect("again");
        l.detach(lb.id).expect("and out");
    }
    let log = rig.fake.world().log.join("\n");
    assert_eq!(log.matches("attach_dispatcher").count(), 1, "{log}");
    l.detach(la.id).expect("detach a");
    assert!(rig.fake.world().hooks.is_empty());
    assert!(l.state().dispatchers().expect("d").is_empty());
    rig.assert_consistent(&l);
}

/// A crash at any step of either crossing (alone to two, two to alone)
/// leaves, after reconciliation, the chain as it was or as it was going
/// to be, consistent with the kernel.
#[test]
fn a_crash_at_any_step_across_the_lone_boundary_leaves_one_chain_or_the_other() {
    for up in [true, false] {
        let rig = Rig::new();
        let l = rig.loader();
        let [a, b] = [0, 1].map(|_| rig.load(&l, "xdp_counter.bpfel.o")[0].id);
        l.attach(a, &xdp(10), object).expect("a");
        if !up {
            l.attach(b, &xdp(20), object).expect("b");
        }
        let (before, after) = if up {
            (vec![a], vec![a, b])
        } else {
            (vec![a, b], vec![a])
        };
        for (n, how) in (1..).flat_map(|n| [(n, Failure::Crash), (n, Failure::CrashAfter)]) {
            let crashed = crash_at(&rig, n, how, |l| {
                if up {
                    l.attach(b, &xdp(20), object).map(|_| ())
                } else {
                    let link = l.record(b).expect("b").links[0].id;
                    l.detach(link).map(|_| ())
                }
            });
            let l = rig.loader();
            l.reconcile().expect("reconcile");
            rig.assert_consistent(&l);
            let d = l.state().dispatchers().expect("d").remove(0);
            let now: Vec<u32> = d.slots.iter().map(|s| s.program).collect();
            assert!(now == before || now == after, "step {n} {how:?}: {now:?}");
            assert_eq!(d.alone, now.len() == 1, "step {n} {how:?}");
            if !crashed {
                assert_eq!(now, after);
                break;
            }
            if now != before {
                if up {
                    let link = l.record(b).expect("b").links[0].id;
                    l.detach(link).expect("back");
                } else {
                    l.attach(b, &xdp(20), object).expect("back");
                }
            }
        }
    }
}

/// Adds a third program to a chain of two, failing or crashing at step n.
fn chain_of_two(rig: &Rig) -> (Vec<u32>, DispatcherRecord) {
    let l = rig.loader();
    let ids: Vec<u32> = (0..3)
        .map(|_| rig.load(&l, "xdp_counter.bpfel.o")[0].id)
        .collect();
    l.attach(ids[0], &xdp(10), object).expect("first");
    l.attach(ids[1], &xdp(20), object).expect("second");
    (ids, l.state().dispatchers().expect("d").remove(0))
}

#[test]
fn a_failure_at_any_step_of_a_chain_change_keeps_the_old_chain() {
    let rig = Rig::new();
    let (ids, old) = chain_of_two(&rig);
    let before = rig.fake.pin_set();
    for n in 1.. {
        let l = rig.loader();
        rig.fake.fail_at(n, Failure::Error);
        let result = l.attach(ids[2], &xdp(15), object);
        rig.fake.revive();
        if result.is_ok() {
            assert!(n > 5, "the change took {n} steps");
            break;
        }
        assert_eq!(rig.fake.pin_set(), before, "step {n} left pins");
        assert_eq!(
            l.state().dispatchers().expect("d"),
            std::slice::from_ref(&old),
            "step {n}"
        );
        assert_eq!(rig.fake.world().hooks.get("xdp@7"), Some(&old.program_id));
        assert!(l.record(ids[2]).expect("r").links.is_empty());
        rig.assert_consistent(&l);
    }
}

#[test]
fn a_crash_at_any_step_of_a_chain_change_leaves_the_old_chain_or_the_new() {
    for remove in [false, true] {
        let rig = Rig::new();
        let (ids, old) = chain_of_two(&rig);
        let old_slots: Vec<u32> = old.slots.iter().map(|s| s.program).collect();
        for (n, how) in (1..).flat_map(|n| [(n, Failure::Crash), (n, Failure::CrashAfter)]) {
            let crashed = crash_at(&rig, n, how, |l| {
                if remove {
                    l.unload(ids[0]).map(|_| ())
                } else {
                    l.attach(ids[2], &xdp(15), object).map(|_| ())
                }
            });
            let l = rig.loader();
            l.reconcile().expect("reconcile");
            rig.assert_consistent(&l);
            let now: Vec<u32> = l
                .state()
                .dispatchers()
                .expect("d")
                .first()
                .map(|d| d.slots.iter().map(|s| s.program).collect())
                .unwrap_or_default();
            let new = if remove {
                vec![ids[1]]
            } else {
                vec![ids[0], ids[2], ids[1]]
            };
            assert!(now == old_slots || now == new, "step {n} {how:?}: {now:?}");
            if !crashed {
                assert_eq!(now, new);
                break;
            }
            // Put the old chain back for the next step.
            if now != old_slots {
                if remove {
                    // The program itself may be gone with its record.
                    if l.state().get(ids[0]).expect("get").is_none() {
                        return;
                    }
                    l.attach(ids[0], &xdp(10), object).expect("back");
                } else {
                    let link = l.record(ids[2]).expect("r").links[0].id;
                    l.detach(link).expect("detach");
                }
            }
        }
    }
}

#[test]
fn reconciliation_finishes_or_forgets_interrupted_dispatchers() {
    let rig = Rig::new();
    let (_, d) = chain_of_two(&rig);
    // A revision committed but not yet retired: the next run retires it.
    let mut pending = d.clone();
    let leftover = d.program.parent().expect("rev").join("leftover");
    rig.fake.world().pins.insert(
        leftover.clone(),
        Obj::Program {
            id: 5,
            name: "x".into(),
        },
    );
    pending.retiring = vec![leftover.clone()];
    rig.state
        .commit(&[], &d.key, Some(&pending))
        .expect("commit");
    let l = rig.loader();
    let report = l.reconcile().expect("reconcile");
    assert!(report.dispatchers[0].contains("finished an interrupted change"));
    assert!(!rig.fake.is_pinned(&leftover));
    rig.assert_consistent(&l);

    // The hook's link pin is gone: the dispatcher is attached again.
    let link = d.attachment.pin().expect("link").clone();
    rig.fake.unpin(&link).expect("unpin");
    assert!(rig.fake.world().hooks.is_empty());
    let l = rig.loader();
    let report = l.reconcile().expect("reconcile");
    assert_eq!(report.dispatchers.len(), 1);
    rig.assert_consistent(&l);

    // The dispatcher's own pin is gone (a reboot): it is forgotten, and
    // its programs keep no slot.
    rig.fake.world().pins.remove(&d.program);
    let l = rig.loader();
    let report = l.reconcile().expect("reconcile");
    assert!(report.dispatchers[0].contains("vanished"), "{report:?}");
    assert!(l.state().dispatchers().expect("d").is_empty());
    for r in l.state().all().expect("all") {
        assert!(r.links.is_empty());
    }
    rig.assert_consistent(&l);
}

#[test]
fn tc_chains_use_clsact_where_the_kernel_has_no_tcx() {
    let rig = Rig::new();
    rig.fake.without(Feature::Tcx);
    let l = rig.loader();
    let a = rig.load(&l, "tc_libbpf.bpfel.o")[0].id;
    let b = rig.load(&l, "tc_libbpf.bpfel.o")[0].id;
    let tc = |p| {
        AttachRequest::Tc(TcRequest {
            iface: "veth1".into(),
            direction: Direction::Ingress,
            netns: None,
            clsact: false,
            chain: ChainArgs {
                priority: Some(p),
                proceed_on: Vec::new(),
            },
        })
    };
    l.attach(a, &tc(10), object).expect("a");
    let d = l.state().dispatchers().expect("d").remove(0);
    let HookAttachment::Clsact { filter: Some(f) } = d.attachment else {
        panic!("{:?}", d.attachment);
    };
    l.attach(b, &tc(20), object).expect("b");
    let d2 = l.state().dispatchers().expect("d").remove(0);
    assert_eq!(
        d2.attachment,
        HookAttachment::Clsact { filter: Some(f) },
        "the filter is replaced in place"
    );
    assert_eq!(
        rig.fake.world().hooks.get("tc-ingress@7"),
        Some(&d2.program_id)
    );
    rig.assert_consistent(&l);
    l.unload(a).expect("a");
    l.unload(b).expect("b");
    assert!(
        rig.fake.world().filters.is_empty(),
        "the last one out removes the filter"
    );
    assert!(rig.fake.world().hooks.is_empty());

    // And tcx itself is refused, naming the kernel that has it.
    let err = l
        .attach(
            rig.load(&l, "tcx.bpfel.o")[0].id,
            &AttachRequest::Tcx(TcxRequest {
                iface: "veth1".into(),
                direction: Direction::Ingress,
                netns: None,
                first: false,
                before: None,
                after: None,
            }),
            object,
        )
        .expect_err("no tcx");
    let k = err.downcast_ref::<KernelError>().expect("a kernel error");
    assert_eq!(k.not_supported(), Some(Feature::Tcx));
    assert!(err.to_string().contains("Linux 6.6"), "{err}");
}

/// Without freplace there is no dispatcher: the first program on a hook
/// runs alone, and a second is refused with advice for its type, leaving
/// the first running and nothing else behind.
#[test]
fn a_kernel_without_freplace_runs_one_program_alone_and_advises_on_the_second() {
    let rig = Rig::new();
    rig.fake.without(Feature::Freplace);
    let l = rig.loader();
    let load = |o| -> [u32; 2] { [0, 1].map(|_| rig.load(&l, o)[0].id) };
    let x = load("xdp_counter.bpfel.o");
    let t = load("tc_libbpf.bpfel.o");
    let tc = AttachRequest::Tc(TcRequest {
        iface: "veth1".into(),
        direction: Direction::Egress,
        netns: None,
        clsact: false,
        chain: ChainArgs::default(),
    });
    for (ids, req, hook, fits, not) in [
        (x, xdp(1), "xdp@7", "xdp --exclusive", "tcx"),
        (t, tc, "tc-egress@7", "attach ID tcx", "--exclusive"),
    ] {
        let first = l.attach(ids[0], &req, object).expect("alone");
        assert!(first.attachment.to_string().contains("alone"), "{first:?}");
        let before = rig.fake.pin_set();
        let dispatchers = l.state().dispatchers().expect("d");
        let err = l.attach(ids[1], &req, object).expect_err("refused");
        let k = err.downcast_ref::<KernelError>().expect("kernel error");
        assert_eq!(k.not_supported(), Some(Feature::Freplace));
        let msg = err.to_string();
        assert!(msg.contains(fits) && !msg.contains(not), "{msg}");
        assert_eq!(rig.fake.pin_set(), before, "a refused attach left pins");
        assert_eq!(l.state().dispatchers().expect("d"), dispatchers);
        assert_eq!(rig.fake.world().hooks.get(hook), Some(&ids[0]));
        assert!(l.record(ids[1]).expect("r").links.is_empty());
        rig.assert_consistent(&l);
        let revs: Vec<PathBuf> = rig
            .fake
            .world()
            .dirs
            .iter()
            .filter(|d| d.to_string_lossy().contains("/rev-"))
            .cloned()
            .collect();
        assert!(revs.is_empty(), "a refused attach left {revs:?}");
        l.detach(first.id).expect("detach");
        assert!(!rig.fake.world().hooks.contains_key(hook));
    }
    rig.assert_consistent(&l);
}

#[test]
fn missing_features_are_refused_before_anything_is_loaded() {
    let rig = Rig::new();
    rig.fake
        .without(Feature::Kprobes)
        .without(Feature::KernelBtf);
    let l = rig.loader();
    let before = rig.fake.pin_set();
    for (object, feature) in [
        ("kprobe.bpfel.o", Feature::Kprobes),
        ("fentry.bpfel.o", Feature::KernelBtf),
    ] {
        let err = l
            .load_file(&testdata(object), &LoadOptions::default())
            .expect_err("refused");
        let k = err.downcast_ref::<KernelError>().expect("kernel error");
        assert_eq!(k.not_supported(), Some(feature), "{err}");
        assert!(err.to_string().contains(feature.since()), "{err}");
        assert_eq!(rig.fake.pin_set(), before);
    }
}

#[test]
fn an_attach_that_does_not_fit_the_program_is_refused() {
    let rig = Rig::new();
    let l = rig.loader();
    let r = rig.load(&l, "tracepoint.bpfel.o")[0].clone();
    assert_eq!(r.kind, SectionKind::Tracepoint);
    let err = l.attach(r.id, &xdp(1), object).expect_err("no");
    assert!(err.to_string().contains("it cannot attach as xdp"), "{err}");
    let err = l.attach(r.id, &xdp(1), |_| unreachable!()).expect_err("no");
    assert!(err.to_string().contains("cannot attach as xdp"));
}

#[test]
fn dispatcher_records_in_the_older_flat_layout_still_read() {
    let old = serde_json::json!({
        "key": "tc-ingress-host-3", "hook": "tc_ingress", "interface": "eth0",
        "ifindex": 3, "revision": 2, "program": "/b/rev-2/dispatcher", "program_id": 9,
        "link": "/b/link", "link_id": 0, "slots": [], "freplace": [],
        "clsact": true, "filter": {"priority": 1, "handle": 5}
    });
    let d: DispatcherRecord = serde_json::from_value(old).expect("reads");
    assert_eq!(
        d.attachment,
        HookAttachment::Clsact {
            filter: Some(crate::dispatcher::TcFilter {
                priority: 1,
                handle: 5
            })
        }
    );
    let linked = serde_json::json!({
        "key": "xdp-host-3", "hook": "xdp", "interface": "eth0", "ifindex": 3,
        "revision": 1, "program": "/b/rev-1/dispatcher", "program_id": 9,
        "link": "/b/link", "link_id": 12, "slots": [], "freplace": []
    });
    let d: DispatcherRecord = serde_json::from_value(linked).expect("reads");
    assert_eq!(
        d.attachment,
        HookAttachment::Link {
            pin: "/b/link".into(),
            id: 12
        }
    );
    // And the new layout round-trips.
    let again: DispatcherRecord =
        serde_json::from_str(&serde_json::to_string(&d).expect("json")).expect("reads");
    assert_eq!(again, d);
}

mod libxdp;

#[test]
fn list_all_names_our_dispatchers_and_extensions() {
    let rig = Rig::new();
    let (ids, d) = chain_of_two(&rig);
    let l = rig.loader();
    let roles: BTreeMap<u32, Option<Role>> = l
        .kernel_programs()
        .expect("programs")
        .into_iter()
        .map(|p| {
            let shown = serde_json::to_value(&p).expect("json");
            assert_eq!(shown["ours"], p.role.is_some(), "{shown}");
            (p.id, p.role)
        })
        .collect();
    for id in &ids {
        assert_eq!(roles[id], Some(Role::Program));
    }
    assert_eq!(roles[&d.program_id], Some(Role::Dispatcher));
    for s in &d.slots {
        assert_eq!(roles[&s.ext_id], Some(Role::Extension { of: s.program }));
    }
    assert_eq!(roles.len(), ids.len() + 1 + d.slots.len());
}
