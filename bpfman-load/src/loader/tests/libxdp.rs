//! Sharing an XDP hook with libxdp, on the fake kernel: joining a chain
//! libxdp made (v2 and v3), making one in its layout, leaving it, the
//! version rules, undo at every step, and a change another tool made.

use super::*;
use crate::libxdp::{self, Member};
use crate::state::Attachment;

const ROOT: &str = "/bpffs/xdp";
/// veth1's index in the fake.
const IFINDEX: u32 = 7;

fn xdp_libxdp(priority: i32, libxdp: bool) -> AttachRequest {
    let mut req = xdp(priority);
    if let AttachRequest::Xdp(x) = &mut req {
        x.libxdp = libxdp;
    }
    req
}

fn loader(rig: &Rig) -> Loader<Fake> {
    rig.loader().with_libxdp_root(ROOT.into())
}

/// Puts a chain on veth1 the way xdp-loader leaves one: a dispatcher of
/// `version` attached through netlink in driver mode, running `progs`
/// (extension id, name, priority) in that order, each pinned with its
/// link in libxdp's layout. Extensions with id 0 are made; the previous
/// dispatcher's directory goes, as libxdp removes it. Returns the
/// dispatcher's id and the extensions' ids.
fn libxdp_chain(fake: &Fake, version: u8, progs: &[(u32, &str, u32)]) -> (u32, Vec<u32>) {
    let mut w = fake.world();
    let dispatcher = 9000 + u32::try_from(w.log.len()).expect("small");
    let old: Vec<PathBuf> = w
        .pins
        .keys()
        .filter(|p| p.starts_with(ROOT))
        .cloned()
        .collect();
    let mut exts = Vec::new();
    for (i, (id, name, _)) in progs.iter().enumerate() {
        let id = if *id == 0 {
            dispatcher + 1 + i as u32
        } else {
            *id
        };
        exts.push((id, *name));
    }
    for p in old {
        w.pins.remove(&p);
    }
    let dir = Path::new(ROOT).join(format!("dispatch-{IFINDEX}-{dispatcher}"));
    w.dirs.insert(ROOT.into());
    w.dirs.insert(dir.clone());
    let members: Vec<Member> = progs
        .iter()
        .zip(&exts)
        .map(|((_, name, prio), (id, _))| Member {
            id: *id,
            name: (*name).into(),
            priority: *prio,
            proceed_on: ChainHook::Xdp.default_proceed_on(),
            flags: 0,
            pin: PathBuf::new(),
            ours: false,
        })
        .collect();
    let config = libxdp::config(version, &members).encode();
    for (i, (id, name)) in exts.iter().enumerate() {
        let ext = Obj::Extension {
            id: *id,
            name: (*name).into(),
        };
        w.pins.insert(dir.join(format!("prog{i}-prog")), ext);
        w.pins.insert(
            dir.join(format!("prog{i}-link")),
            Obj::Link {
                id: dispatcher + 100 + i as u32,
                program: *id,
                target: format!("{dispatcher}/prog{i}"),
            },
        );
    }
    let key = format!("xdp@{IFINDEX}");
    if let Some(previous) = w.hooks.insert(key.clone(), dispatcher) {
        w.held.remove(&previous);
    }
    w.netlink.insert(key, XdpMode::Driver);
    w.held.insert(
        dispatcher,
        Obj::Dispatcher {
            id: dispatcher,
            hook: ChainHook::Xdp,
            config,
        },
    );
    (dispatcher, exts.into_iter().map(|(id, _)| id).collect())
}

/// What runs on veth1's hook: the dispatcher's id, its config, and the
/// extension in each slot, read from libxdp's pins.
fn on_hook(fake: &Fake) -> Option<(u32, Config, Vec<u32>)> {
    let w = fake.world();
    let id = *w.hooks.get(&format!("xdp@{IFINDEX}"))?;
    let Some(Obj::Dispatcher { config, .. }) = w.held.get(&id) else {
        panic!("the hook holds {id}, not a netlink-held dispatcher");
    };
    let config = Config::decode(config).expect("config");
    let dir = Path::new(ROOT).join(format!("dispatch-{IFINDEX}-{id}"));
    let slots = (0..usize::from(config.num_progs_enabled))
        .map(|i| match w.pins.get(&dir.join(format!("prog{i}-prog"))) {
            Some(Obj::Extension { id, .. }) => *id,
            other => panic!("slot {i}: {other:?}"),
        })
        .collect();
    for i in 0..usize::from(config.num_progs_enabled) {
        assert!(
            w.pins.contains_key(&dir.join(format!("prog{i}-link"))),
            "slot {i} has its link pinned"
        );
    }
    Some((id, config, slots))
}

fn libxdp_dirs(fake: &Fake) -> Vec<PathBuf> {
    fake.world()
        .pins
        .keys()
        .filter(|p| p.starts_with(ROOT))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn joining_libxdps_chain_keeps_its_programs_in_their_slots() {
    let rig = Rig::new();
    let (old, theirs) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10), (0, "c", 60)]);
    let l = loader(&rig);
    let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
    // No flag: the dispatcher on the hook decides.
    let link = l.attach(id, &xdp_libxdp(50, false), object).expect("join");
    let (now, config, slots) = on_hook(&rig.fake).expect("a dispatcher");
    assert_ne!(now, old, "a new dispatcher");
    assert_eq!(config.dispatcher_version, 2);
    assert_eq!(config.is_xdp_devbound, None, "v2 stays v2");
    assert_eq!(config.run_prios[..3], [10, 50, 60]);
    assert_eq!(slots, vec![theirs[0], link.id, theirs[1]]);
    // Swapped against the dispatcher that was there, in its mode.
    assert_eq!(
        rig.fake.world().netlink.get(&format!("xdp@{IFINDEX}")),
        Some(&XdpMode::Driver)
    );
    // libxdp's old directory is gone; only the new one holds pins.
    assert_eq!(
        libxdp_dirs(&rig.fake),
        vec![Path::new(ROOT).join(format!("dispatch-{IFINDEX}-{now}"))]
    );
    assert!(rig.fake.world().locked.iter().all(|d| d == Path::new(ROOT)));
    let Attachment::Libxdp(a) = &link.attachment else {
        panic!("{link:?}")
    };
    assert_eq!((a.priority, a.version), (50, 2));
    assert!(link.attachment.to_string().contains("libxdp"), "{link:?}");
    rig.assert_consistent(&l);

    // Detach: theirs stay, in order, under a newer dispatcher.
    l.detach(link.id).expect("detach");
    let (after, config, slots) = on_hook(&rig.fake).expect("theirs still run");
    assert_ne!(after, now);
    assert_eq!(config.run_prios[..2], [10, 60]);
    assert_eq!(config.num_progs_enabled, 2);
    assert_eq!(slots, theirs);
    assert!(
        !rig.fake.is_pinned(&link.pin),
        "our extension's pin is gone"
    );
    assert!(l.record(id).expect("record").links.is_empty());
    rig.assert_consistent(&l);
}

#[test]
fn a_new_chain_in_libxdps_layout_and_the_last_one_out_leaves_the_hook_clean() {
    let rig = Rig::new();
    let l = loader(&rig);
    let recs = rig.load(&l, "xdp_counter.bpfel.o");
    let first = l
        .attach(recs[0].id, &xdp_libxdp(20, true), object)
        .expect("attach");
    // A lone program still goes through a dispatcher here.
    let (_, config, slots) = on_hook(&rig.fake).expect("a dispatcher");
    assert_eq!(
        (config.dispatcher_version, config.num_progs_enabled),
        (2, 1)
    );
    assert_eq!(slots, vec![first.id]);
    // A second one (no flag needed now) joins the same chain.
    let second_rec = rig.load(&l, "xdp_pass.bpfel.o");
    let second = l
        .attach(second_rec[0].id, &xdp_libxdp(10, false), object)
        .expect("join");
    let (_, config, slots) = on_hook(&rig.fake).expect("a dispatcher");
    assert_eq!(config.run_prios[..2], [10, 20]);
    assert_eq!(slots, vec![second.id, first.id]);
    rig.assert_consistent(&l);
    // `list --all` says which extension is whose.
    let roles: Vec<_> = l
        .kernel_programs()
        .expect("programs")
        .into_iter()
        .filter(|p| p.id == first.id || p.id == second.id)
        .map(|p| (p.id, p.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            (first.id, Some(Role::Extension { of: recs[0].id })),
            (
                second.id,
                Some(Role::Extension {
                    of: second_rec[0].id
                })
            ),
        ]
    );

    l.unload(second_rec[0].id).expect("unload");
    l.detach(first.id).expect("detach");
    assert_eq!(on_hook(&rig.fake).map(|h| h.0), None, "the hook is empty");
    assert!(libxdp_dirs(&rig.fake).is_empty(), "no libxdp pins left");
    assert!(rig.fake.world().held.is_empty());
    rig.assert_consistent(&l);
}

#[test]
fn a_v3_chain_stays_v3() {
    let rig = Rig::new();
    libxdp_chain(&rig.fake, 3, &[(0, "a", 10)]);
    let l = loader(&rig);
    let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
    l.attach(id, &xdp_libxdp(50, false), object).expect("join");
    let (_, config, _) = on_hook(&rig.fake).expect("a dispatcher");
    assert_eq!(config.dispatcher_version, 3);
    assert_eq!(config.is_xdp_devbound, Some(0));
    assert_eq!(config.encode().len(), Config::V3_SIZE);
}

#[test]
fn versions_we_do_not_speak_are_refused_naming_the_libxdp_that_does() {
    type Change = Box<dyn Fn(&mut Config)>;
    let cases: [(Change, &str); 4] = [
        (Box::new(|c| c.dispatcher_version = 4), "version 4"),
        (Box::new(|c| c.magic = 7), "not a libxdp dispatcher"),
        (
            Box::new(|c| {
                c.dispatcher_version = 3;
                c.is_xdp_devbound = Some(1);
            }),
            "bound to the device",
        ),
        (
            Box::new(|c| {
                c.dispatcher_version = 3;
                c.is_xdp_devbound = None;
            }),
            "version 3",
        ),
    ];
    for (change, says) in cases {
        let rig = Rig::new();
        let (d, _) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10)]);
        {
            let mut w = rig.fake.world();
            let Some(Obj::Dispatcher { config, .. }) = w.held.get_mut(&d) else {
                panic!()
            };
            let mut c = Config::decode(config).expect("config");
            change(&mut c);
            *config = c.encode();
        }
        let l = loader(&rig);
        let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
        let pins = rig.fake.pin_set();
        let e = l
            .attach(id, &xdp_libxdp(50, false), object)
            .expect_err(says);
        assert!(format!("{e:#}").contains(says), "{e:#}");
        assert_eq!(on_hook(&rig.fake).map(|h| h.0), Some(d), "untouched");
        assert_eq!(rig.fake.pin_set(), pins, "nothing pinned");
    }
    // Version 1 (84 bytes, no magic): libxdp before 1.3.
    let e = libxdp::check(None, 84, "veth1").expect_err("v1");
    assert!(format!("{e}").contains("libxdp 1.0 to 1.2"), "{e}");
    let e = libxdp::check(None, 100, "veth1").expect_err("odd size");
    assert!(format!("{e}").contains("100-byte"), "{e}");
}

#[test]
fn a_failure_at_any_step_of_a_join_leaves_libxdps_chain_running() {
    let mut n = 1;
    loop {
        let rig = Rig::new();
        let (d, theirs) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10), (0, "c", 60)]);
        let l = loader(&rig);
        let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
        let pins = rig.fake.pin_set();
        rig.fake.fail_at(n, Failure::Error);
        let out = l.attach(id, &xdp_libxdp(50, false), object);
        rig.fake.revive();
        if out.is_ok() {
            assert!(n > 5, "the join has more than {n} steps");
            break;
        }
        assert_eq!(
            on_hook(&rig.fake).map(|h| (h.0, h.2)),
            Some((d, theirs)),
            "step {n}: libxdp's chain still runs"
        );
        assert_eq!(rig.fake.pin_set(), pins, "step {n}: nothing left pinned");
        assert!(
            l.record(id).expect("record").links.is_empty(),
            "step {n}: nothing recorded"
        );
        n += 1;
    }
}

#[test]
fn a_program_another_tool_removed_is_reported_not_put_back() {
    let rig = Rig::new();
    let (_, theirs) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10)]);
    let l = loader(&rig);
    let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
    let link = l.attach(id, &xdp_libxdp(50, false), object).expect("join");
    // xdp-loader unload --id <ours>: libxdp rebuilds without it.
    libxdp_chain(&rig.fake, 2, &[(theirs[0], "a", 10)]);
    let before = on_hook(&rig.fake).expect("theirs");
    let report = loader(&rig).reconcile().expect("reconcile");
    assert!(
        report
            .dispatchers
            .iter()
            .any(|n| n.contains("no longer in the libxdp dispatcher")),
        "{report:?}"
    );
    let after = on_hook(&rig.fake).expect("theirs");
    assert_eq!((after.0, after.2), (before.0, before.2), "not undone");
    let r = l.record(id).expect("the program stays loaded");
    assert!(r.links.is_empty());
    assert!(!rig.fake.is_pinned(&link.pin));
    // And a detach of what is gone says so instead of failing.
    assert!(l.detach(link.id).is_err(), "no such link any more");
    rig.assert_consistent(&l);
}

#[test]
fn a_hook_with_a_lone_foreign_program_is_not_libxdps() {
    let rig = Rig::new();
    {
        // Someone's program, alone on the hook through netlink.
        let mut w = rig.fake.world();
        w.hooks.insert(format!("xdp@{IFINDEX}"), 4242);
        w.netlink.insert(format!("xdp@{IFINDEX}"), XdpMode::Skb);
        w.held.insert(
            4242,
            Obj::Program {
                id: 4242,
                name: "xdp_firewall".into(),
            },
        );
    }
    let l = loader(&rig);
    let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
    let pins = rig.fake.pin_set();
    let e = l
        .attach(id, &xdp_libxdp(50, true), object)
        .expect_err("busy");
    assert!(format!("{e:#}").contains("not a dispatcher"), "{e:#}");
    assert_eq!(rig.fake.pin_set(), pins);
    assert_eq!(
        rig.fake.world().hooks.get(&format!("xdp@{IFINDEX}")),
        Some(&4242)
    );
}

#[test]
fn a_change_removes_only_the_replaced_dispatchers_directory() {
    let rig = Rig::new();
    let (old, theirs) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10)]);
    // Another dispatcher directory under the same interface index: libxdp
    // names interfaces by index alone, so it may be a live chain in
    // another network namespace. It is not ours to touch.
    let other = Path::new(ROOT).join(format!("dispatch-{IFINDEX}-555"));
    {
        let mut w = rig.fake.world();
        w.dirs.insert(other.clone());
        w.pins.insert(
            other.join("prog0-prog"),
            Obj::Extension {
                id: theirs[0],
                name: "a".into(),
            },
        );
    }
    let l = loader(&rig);
    let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
    let link = l.attach(id, &xdp_libxdp(50, false), object).expect("join");
    let (now, _, _) = on_hook(&rig.fake).expect("a dispatcher");
    let here = |d: u32| Path::new(ROOT).join(format!("dispatch-{IFINDEX}-{d}"));
    let sorted = |mut v: Vec<PathBuf>| {
        v.sort();
        v
    };
    assert_eq!(
        libxdp_dirs(&rig.fake),
        sorted(vec![other.clone(), here(now)])
    );
    assert!(!libxdp_dirs(&rig.fake).contains(&here(old)));
    l.detach(link.id).expect("detach");
    let (after, _, _) = on_hook(&rig.fake).expect("a dispatcher");
    assert_eq!(libxdp_dirs(&rig.fake), sorted(vec![other, here(after)]));
}

/// After a crash at any step of a join or a leave and the next run's
/// reconciliation: libxdp's chain runs (theirs always in it), our record
/// says we are in it exactly when we are, none of our pins is unclaimed,
/// and only the dispatcher on the hook keeps a directory.
#[test]
fn a_crash_at_any_step_of_a_join_or_leave_ends_consistent() {
    for leaving in [false, true] {
        let mut n = 1;
        loop {
            let rig = Rig::new();
            let (_, theirs) = libxdp_chain(&rig.fake, 2, &[(0, "a", 10)]);
            let l = loader(&rig);
            let id = rig.load(&l, "xdp_counter.bpfel.o")[0].id;
            let joined = if leaving {
                Some(l.attach(id, &xdp_libxdp(50, false), object).expect("join"))
            } else {
                None
            };
            let dying = loader(&rig);
            rig.fake.fail_at(n, Failure::Crash);
            let out = catch_unwind(AssertUnwindSafe(|| match &joined {
                Some(link) => dying.detach(link.id).map(drop),
                None => dying.attach(id, &xdp_libxdp(50, false), object).map(drop),
            }));
            rig.fake.revive();
            let crashed = match out {
                Ok(r) => {
                    r.expect("no crash: it succeeds");
                    false
                }
                Err(p) => {
                    assert!(p.downcast_ref::<Crash>().is_some(), "a real panic");
                    true
                }
            };
            let l = loader(&rig);
            l.reconcile().expect("reconcile");
            let (hook, _, slots) = on_hook(&rig.fake).expect("libxdp's chain runs");
            assert!(slots.contains(&theirs[0]), "n={n} leaving={leaving}");
            let links = l.record(id).expect("record").links;
            let ours_in = slots.iter().any(|s| *s != theirs[0]);
            assert_eq!(
                links.len(),
                usize::from(ours_in),
                "n={n} leaving={leaving}: {links:?} vs {slots:?}"
            );
            if let Some(link) = links.first() {
                assert!(slots.contains(&link.id));
            }
            rig.assert_consistent(&l);
            // The next change works, and removes the directory of the
            // dispatcher it replaces. A crash between the new dispatcher's
            // pins and the end of a change may leave one other directory,
            // of a dispatcher on no hook (as a crashed libxdp would).
            if ours_in {
                l.detach(links[0].id).expect("detach");
            } else {
                l.attach(id, &xdp_libxdp(50, false), object)
                    .expect("attach");
            }
            let (hook2, _, _) = on_hook(&rig.fake).expect("libxdp's chain runs");
            assert_ne!(hook2, hook);
            let here = |d: u32| Path::new(ROOT).join(format!("dispatch-{IFINDEX}-{d}"));
            let dirs = libxdp_dirs(&rig.fake);
            assert!(dirs.contains(&here(hook2)), "n={n} leaving={leaving}");
            assert!(!dirs.contains(&here(hook)), "n={n} leaving={leaving}");
            assert!(dirs.len() <= 2, "n={n} leaving={leaving}: {dirs:?}");
            if !crashed {
                break;
            }
            n += 1;
        }
        assert!(n > 5, "leaving={leaving}: only {n} steps");
    }
}
