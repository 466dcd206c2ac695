//! `apply` on the fake kernel: planning, idempotence, make-before-break
//! replacement, ownership, and failures that stay contained.

use std::path::PathBuf;

use tempfile::TempDir;

use super::*;
use crate::host::HostOptions;
use crate::kernel::fake::Fake;

fn testdata(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/bpf")
        .join(name)
        .display()
        .to_string()
}

struct Rig {
    dir: TempDir,
    fake: Fake,
}

impl Rig {
    fn new() -> Self {
        Self {
            dir: TempDir::new().expect("tmp"),
            fake: Fake::new(),
        }
    }

    /// A new invocation on the same root and kernel.
    fn host(&self) -> Host<Fake> {
        let opts = HostOptions {
            root: self.dir.path().join("root"),
            bpffs: "/bpffs".into(),
            ..Default::default()
        };
        Host::with_kernel(opts, self.fake.clone(), |_| {}).expect("host")
    }

    fn apply(&self, text: &str) -> Report {
        self.run(text, false)
    }

    fn run(&self, text: &str, dry_run: bool) -> Report {
        let desired =
            Desired::parse(&[(self.dir.path().join("apply.toml"), text.into())]).expect("valid");
        let opts = ApplyOptions {
            dry_run,
            ..Default::default()
        };
        apply(&self.host(), &desired, &opts, &|| false).expect("apply")
    }
}

/// The kernel effects so far, but for opening the pin directories
/// (every invocation makes sure they exist).
fn effects(rig: &Rig) -> Vec<String> {
    rig.fake
        .world()
        .log
        .iter()
        .filter(|l| !l.contains(" create_dir "))
        .cloned()
        .collect()
}

fn changes(r: &Report) -> Vec<(String, Change)> {
    r.steps
        .iter()
        .map(|s| (s.deployment.clone(), s.change))
        .collect()
}

fn counter(verdict: &str, attach: &str) -> String {
    format!(
        "[deployment.counter]\nfile = \"{}\"\nglobals = {{ verdict = \"{verdict}\" }}\n[[deployment.counter.attach]]\nhook = \"xdp\"\niface = \"veth1\"\n{attach}\n",
        testdata("xdp_counter.bpfel.o")
    )
}

fn tracer() -> String {
    format!(
        "[deployment.tracer]\nfile = \"{}\"\n[[deployment.tracer.attach]]\nhook = \"tracepoint\"\ntracepoint = \"syscalls/sys_enter_getpid\"\n",
        testdata("tracepoint.bpfel.o")
    )
}

#[test]
fn a_second_apply_with_nothing_changed_changes_nothing() {
    let rig = Rig::new();
    let text = counter("02000000", "priority = 20") + &tracer();
    let first = rig.apply(&text);
    assert_eq!(
        changes(&first),
        [
            ("counter".into(), Change::Create),
            ("tracer".into(), Change::Create)
        ]
    );
    let before = effects(&rig);
    let second = rig.apply(&text);
    assert_eq!(
        changes(&second),
        [
            ("counter".into(), Change::Keep),
            ("tracer".into(), Change::Keep)
        ]
    );
    assert_eq!(effects(&rig), before, "a kept deployment touches nothing");
    let ids =
        |r: &Report| -> Vec<Vec<u32>> { r.steps.iter().map(|s| s.programs.clone()).collect() };
    assert_eq!(ids(&first), ids(&second));
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let rig = Rig::new();
    let text = counter("02000000", "");
    let plan = rig.run(&text, true);
    assert_eq!(changes(&plan), [("counter".into(), Change::Create)]);
    assert!(effects(&rig).is_empty());
    assert!(rig.host().programs().expect("programs").is_empty());
    rig.apply(&text);
    let before = effects(&rig);
    let plan = rig.run(&counter("01000000", ""), true);
    assert_eq!(changes(&plan), [("counter".into(), Change::Replace)]);
    assert!(
        plan.steps[0].reason.contains("declaration changed"),
        "{plan:?}"
    );
    assert_eq!(effects(&rig), before);
}

#[test]
fn a_replaced_slot_keeps_its_place_in_one_swap() {
    let rig = Rig::new();
    let other = format!(
        "[deployment.pass]\nfile = \"{}\"\n[[deployment.pass.attach]]\nhook = \"xdp\"\niface = \"veth1\"\npriority = 30\n",
        testdata("xdp_pass.bpfel.o")
    );
    let before = rig.apply(&(counter("02000000", "priority = 20") + &other));
    let old = before.steps[0].programs.clone();
    let host = rig.host();
    let hook_runs = |rig: &Rig| rig.fake.world().hooks.get("xdp@7").copied();
    let dispatcher_before = hook_runs(&rig);
    drop(host);
    let logged = rig.fake.world().log.len();
    let after = rig.apply(&(counter("01000000", "priority = 20") + &other));
    assert_eq!(
        changes(&after),
        [
            ("counter".into(), Change::Replace),
            ("pass".into(), Change::Keep)
        ]
    );
    let new = after.steps[0].programs.clone();
    assert_ne!(old, new);
    // One new dispatcher revision: the swap is a single link update.
    let log = rig.fake.world().log[logged..].to_vec();
    let updates = log.iter().filter(|l| l.contains("update_link")).count();
    assert_eq!(updates, 1, "{log:#?}");
    assert_ne!(hook_runs(&rig), dispatcher_before);
    let host = rig.host();
    let loader = host.loader().expect("loader");
    let d = &loader.state().dispatchers().expect("dispatchers")[0];
    let order: Vec<u32> = d.slots.iter().map(|s| s.program).collect();
    assert_eq!(order, [new[0], after.steps[1].programs[0]]);
    // The old program is gone, with its pins.
    assert!(host.program(old[0]).is_err());
    assert!(
        !rig.fake
            .pin_set()
            .iter()
            .any(|p| p.display().to_string().contains(&format!("ext-{}", old[0])))
    );
}

#[test]
fn an_exclusive_link_moves_to_the_new_program_in_place() {
    let rig = Rig::new();
    let first = rig.apply(&counter("02000000", "exclusive = true"));
    let host = rig.host();
    let old = host.program(first.steps[0].programs[0]).expect("old");
    drop(host);
    let link = old.links[0].clone();
    let second = rig.apply(&counter("01000000", "exclusive = true"));
    assert_eq!(changes(&second), [("counter".into(), Change::Replace)]);
    let new = rig
        .host()
        .program(second.steps[0].programs[0])
        .expect("new");
    assert_eq!(new.links.len(), 1);
    assert_eq!((new.links[0].id, &new.links[0].pin), (link.id, &link.pin));
    let runs = match rig.fake.world().pins.get(&link.pin) {
        Some(crate::kernel::fake::Obj::Link { program, .. }) => *program,
        other => panic!("{other:?}"),
    };
    assert_eq!(runs, new.id);
    assert!(rig.host().program(old.id).is_err());
}

#[test]
fn only_what_apply_made_is_its_to_remove() {
    let rig = Rig::new();
    let by_hand = {
        let host = rig.host();
        host.load_file(
            std::path::Path::new(&testdata("xdp_pass.bpfel.o")),
            &LoadOptions::default(),
        )
        .expect("load")[0]
            .id
    };
    rig.apply(&(counter("02000000", "") + &tracer()));
    let report = rig.apply(&tracer());
    assert_eq!(
        changes(&report),
        [
            ("tracer".into(), Change::Keep),
            ("counter".into(), Change::Remove)
        ]
    );
    let left: Vec<u32> = rig
        .host()
        .programs()
        .expect("programs")
        .iter()
        .map(|r| r.id)
        .collect();
    assert!(left.contains(&by_hand), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn a_failing_deployment_keeps_its_programs_and_stops_no_other() {
    let rig = Rig::new();
    let first = rig.apply(&(counter("02000000", "") + &tracer()));
    let old = first.steps[0].programs.clone();
    // The counter now names an interface that does not exist; the tracer
    // changes too.
    let broken = counter("01000000", "").replace("veth1", "nope0");
    let traced = tracer().replace("sys_enter_getpid", "sys_enter_getppid");
    let report = rig.apply(&(broken + &traced));
    assert_eq!(
        changes(&report),
        [
            ("counter".into(), Change::Failed),
            ("tracer".into(), Change::Replace)
        ]
    );
    assert!(
        report.steps[0].reason.contains("nope0") && report.steps[0].reason.contains("keep running"),
        "{}",
        report.steps[0].reason
    );
    let host = rig.host();
    let running = host.program(old[0]).expect("the old counter runs on");
    assert_eq!(running.links.len(), 1);
    // Nothing of the failed attempt is left behind.
    let programs = host.programs().expect("programs");
    assert_eq!(programs.len(), 2, "{programs:#?}");
}

#[test]
fn lost_programs_are_made_again() {
    let rig = Rig::new();
    let text = counter("02000000", "") + &tracer();
    rig.apply(&text);
    // A reboot: bpffs is empty again.
    {
        let mut w = rig.fake.world();
        w.pins.clear();
        w.hooks.clear();
        w.dirs
            .retain(|d| d == std::path::Path::new("/bpffs") || d.starts_with("/sys"));
    }
    let report = rig.apply(&text);
    assert_eq!(
        changes(&report),
        [
            ("counter".into(), Change::Create),
            ("tracer".into(), Change::Create)
        ]
    );
    assert_eq!(rig.host().programs().expect("programs").len(), 2);
}
