//! `bpfman-load apply` and `status` on the host kernel: a host converging
//! to desired-state files from a signed registry image and a local object,
//! idempotent without a kernel change or a registry request, replacing
//! under traffic without losing a packet, following a moving tag, keeping
//! failures contained, touching nothing it did not make, and restoring
//! everything from its cache after a "reboot" (bpffs unmounted) with the
//! registry gone.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kernel::{Host, Netns, counter};
use crate::registry_harness::TestRegistry;
use crate::signing::{Keys, push_built, xdp};
use crate::support::{load_bin, testdata};

/// A desired-state file: a counter from `image` on the namespace's veth1
/// (exclusive XDP, `verdict` as given), and a tracepoint from a file.
fn desired(image: &str, ns: &Netns, verdict: &str, extra: &str) -> String {
    format!(
        r#"
[deployment.counter]
image = "{image}"
globals = {{ verdict = "{verdict}" }}

[[deployment.counter.attach]]
hook = "xdp"
iface = "veth1"
netns = "{ns}"
exclusive = true

[deployment.tracer]
file = "{tp}"

[[deployment.tracer.attach]]
hook = "tracepoint"
tracepoint = "syscalls/sys_enter_getpid"
{extra}"#,
        ns = ns.name,
        tp = testdata("bpf/tracepoint.bpfel.o").display()
    )
}

/// A policy that admits no image, for tests that deploy local files only;
/// returns its path.
fn reject_all(host: &Host) -> String {
    let policy = host.dir.path().join("none.toml");
    fs::write(&policy, "[default]\nrule = \"reject\"\n").expect("policy");
    policy.display().to_string()
}

/// A deployment `name` of the test object `<object>.bpfel.o` (with the
/// `globals` line, if any) in the XDP chain of the namespace's veth1.
fn chained(name: &str, object: &str, globals: &str, ns: &Netns, priority: i32) -> String {
    format!(
        r#"
[deployment.{name}]
file = "{file}"
{globals}
[[deployment.{name}.attach]]
hook = "xdp"
iface = "veth1"
netns = "{ns}"
priority = {priority}
"#,
        file = testdata(&format!("bpf/{object}.bpfel.o")).display(),
        ns = ns.name
    )
}

impl Host {
    fn apply(&self, policy: &str, file: &Path, extra: &[&str]) -> crate::support::Run {
        let f = file.display().to_string();
        let mut args = vec!["--policy", policy, "apply", "-f", f.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The JSON report of an apply (or a plan).
    fn applied(&self, policy: &str, file: &Path, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        let out = self.apply(policy, file, &args).ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("json");
        v["steps"].as_array().expect("steps").clone()
    }

    /// deployment -> program record, from `list`.
    fn deployed(&self, name: &str) -> Vec<Value> {
        self.listed()
            .into_iter()
            .filter(|r| r["deployment"]["name"] == name)
            .collect()
    }
}

fn changes(steps: &[Value]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| {
            (
                s["deployment"].as_str().unwrap_or_default().to_string(),
                s["change"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Pings continuously from the peer namespace (every 10 ms) while
/// `during` runs; returns (sent, received).
fn ping_through(ns: &Netns, during: impl FnOnce()) -> (u64, u64) {
    let (sent, received, stat) = ns.ping_during("0.01", during);
    assert!(sent > 20, "too few pings to tell: {stat}");
    (sent, received)
}

#[test]
fn apply_converges_replaces_under_traffic_and_restores_after_a_reboot() {
    let test = "apply_converges_replaces_under_traffic_and_restores_after_a_reboot";
    let Some(host) = Host::new(test) else {
        return;
    };
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let net = 40;
    let ns = Netns::new("apply", net);
    let keys = Keys::new();
    let policy = keys.policy_for_all(host.dir.path());
    let image = reg.repo("ebpf/counter:v1");
    let digest = push_built(&xdp(), &image, &["--sign-key", &keys.private("a")]);
    let file = host.dir.path().join("apply.toml");
    fs::write(&file, desired(&image, &ns, "02000000", "")).expect("file");

    // A program loaded by hand is never apply's.
    let by_hand = host.load_file("xdp_pass.bpfel.o", &[]);

    // The plan first: it changes nothing.
    let plan = host.applied(&policy, &file, &["--dry-run"]);
    assert_eq!(
        changes(&plan),
        pairs(&[("counter", "create"), ("tracer", "create")]),
    );
    assert_eq!(
        plan[0]["desired"],
        Value::Null,
        "not pulled, so no digest yet"
    );
    assert_eq!(host.listed().len(), 1);

    let steps = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&steps),
        pairs(&[("counter", "create"), ("tracer", "create")])
    );
    assert_eq!(steps[0]["desired"], digest);
    let counter_rec = host.deployed("counter")[0].clone();
    let stats = Host::map_pin(&counter_rec, "xdp_stats_map");
    assert!(ns.ping(3));
    assert!(counter(&stats) >= 3);

    // Nothing changed: no kernel change, no registry request.
    let ids = |h: &Host| -> Vec<Value> { h.listed().iter().map(|r| r["id"].clone()).collect() };
    let before = ids(&host);
    let requests = reg.log().lines().count();
    let again = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&again),
        pairs(&[("counter", "keep"), ("tracer", "keep")])
    );
    assert_eq!(ids(&host), before);
    assert_eq!(
        reg.log().lines().count(),
        requests,
        "the registry saw a request"
    );
    host.run(&["status", "-f", &file.display().to_string()])
        .ok();

    // A changed global, replaced under continuous traffic: the exclusive
    // link moves to the new program in place, and no ping is lost.
    fs::write(
        &file,
        desired(&image, &ns, "02000000", "").replace(
            "globals = { verdict = \"02000000\" }",
            "globals = { verdict = \"02000000\" }\nprograms = [\"xdp_stats\"]",
        ),
    )
    .expect("file");
    let status = host.run(&["status", "-f", &file.display().to_string()]);
    assert_eq!(status.status, 2, "drift is exit status 2");
    assert!(status.stdout.contains("drifted"), "{}", status.stdout);
    let link = counter_rec["links"][0]["id"].clone();
    let mut replaced = Vec::new();
    let (sent, received) = ping_through(&ns, || {
        replaced = host.applied(&policy, &file, &[]);
    });
    assert_eq!(
        changes(&replaced),
        pairs(&[("counter", "replace"), ("tracer", "keep")])
    );
    assert_eq!(received, sent, "pings lost across the replacement");
    let new = host.deployed("counter");
    assert_eq!(new.len(), 1);
    assert_ne!(new[0]["id"], counter_rec["id"]);
    assert_eq!(new[0]["links"][0]["id"], link, "the link moved in place");

    // Pinned by digest: an apply makes no registry request.
    let pinned = format!("{}@{digest}", reg.repo("ebpf/counter"));
    fs::write(&file, desired(&pinned, &ns, "02000000", "")).expect("file");
    host.applied(&policy, &file, &[]);
    let requests = reg.log().lines().count();
    let kept = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&kept),
        pairs(&[("counter", "keep"), ("tracer", "keep")])
    );
    assert_eq!(
        reg.log().lines().count(),
        requests,
        "the registry saw a request"
    );

    // A reboot with the registry gone: bpffs is empty, and apply restores
    // every deployment from the verified cache.
    drop(reg);
    let out = Command::new("umount")
        .arg(host.bpf.path())
        .status()
        .expect("umount");
    assert!(out.success());
    assert!(!ns.link_show("veth1").contains("prog/xdp"));
    let restored = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&restored),
        pairs(&[("counter", "create"), ("tracer", "create")]),
        "{restored:?}"
    );
    let rec = host.deployed("counter")[0].clone();
    assert!(ns.ping(3));
    assert!(counter(&Host::map_pin(&rec, "xdp_stats_map")) >= 3);

    // Removing a deployment from the file unloads it, and only it: the
    // program loaded by hand was lost with bpffs, like any other.
    let _ = by_hand;
    fs::write(
        &file,
        desired(&pinned, &ns, "02000000", "")
            .split("[deployment.tracer]")
            .next()
            .expect("counter part"),
    )
    .expect("file");
    let mine = host.load_file("xdp_pass.bpfel.o", &[]);
    let removed = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&removed),
        pairs(&[("counter", "keep"), ("tracer", "remove")])
    );
    assert!(host.deployed("tracer").is_empty());
    assert!(
        host.listed().iter().any(|r| r["id"] == mine[0]["id"]),
        "a program loaded by hand was touched"
    );
    host.unload(&mine);
    fs::write(&file, "").expect("file");
    host.apply(&policy, &file, &[])
        .fails_with("holds no deployments");
}

#[test]
fn a_failing_deployment_leaves_the_others_converged() {
    let test = "a_failing_deployment_leaves_the_others_converged";
    let Some(host) = Host::new(test) else {
        return;
    };
    let ns = Netns::new("afail", 41);
    let object = testdata("bpf/xdp_counter.bpfel.o").display().to_string();
    let file = host.dir.path().join("apply.toml");
    let write = |iface: &str, verdict: &str| {
        let text = desired("unused", &ns, verdict, "")
            .replace("image = \"unused\"", &format!("file = \"{object}\""))
            .replace("iface = \"veth1\"", &format!("iface = \"{iface}\""));
        fs::write(&file, text).expect("file");
    };
    write("veth1", "02000000");
    let policy = host.dir.path().join("none.toml").display().to_string();
    fs::write(&policy, "[default]\nrule = \"reject\"\n").expect("policy");
    host.applied(&policy, &file, &[]);
    let old = host.deployed("counter")[0]["id"].clone();

    // The counter now names a missing interface and another verdict; the
    // tracer changes too. The tracer converges, the counter fails and its
    // previous program keeps counting.
    write("nope0", "01000000");
    let text = fs::read_to_string(&file)
        .expect("file")
        .replace("sys_enter_getpid", "sys_enter_getppid");
    fs::write(&file, text).expect("file");
    let out = host.apply(&policy, &file, &[]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("deployment 'counter' failed") && out.stderr.contains("nope0"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("replace"), "{}", out.stdout);
    assert_eq!(host.deployed("counter")[0]["id"], old);
    assert!(
        ns.ping(2),
        "the previous counter's verdict (pass) still holds"
    );
    let tracer = host.deployed("tracer");
    assert_eq!(
        tracer[0]["links"][0]["attachment"]["name"], "sys_enter_getppid",
        "{tracer:?}"
    );
    // Nothing of the failed attempt is left.
    assert_eq!(host.listed().len(), 2);

    // Invalid files are refused whole, naming file, line and field.
    fs::write(&file, "[deployment.x]\nfile = \"a.o\"\n[[deployment.x.attach]]\nhook = \"xdp\"\nifac = \"veth1\"\n").expect("file");
    host.apply(&policy, &file, &[])
        .fails_with(&format!("{}:3", file.display()));
    assert_eq!(host.listed().len(), 2);
}

#[test]
fn watch_follows_a_moving_tag_and_stops_cleanly_on_sigterm() {
    let test = "watch_follows_a_moving_tag_and_stops_cleanly_on_sigterm";
    let Some(host) = Host::new(test) else {
        return;
    };
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let ns = Netns::new("awatch", 42);
    let keys = Keys::new();
    let policy = keys.policy_for_all(host.dir.path());
    let image = reg.repo("ebpf/watched:stable");
    let first = push_built(&xdp(), &image, &["--sign-key", &keys.private("a")]);
    let file = host.dir.path().join("apply.toml");
    fs::write(&file, desired(&image, &ns, "02000000", "")).expect("file");

    let root = host.dir.path().join("root").display().to_string();
    let bpf = host.bpf.path().display().to_string();
    let mut child = Command::new(load_bin())
        .args(["--root", &root, "--bpffs", &bpf, "--policy", &policy])
        .args(["apply", "-f", &file.display().to_string()])
        .args(["--watch", "--interval", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    let image_of = |h: &Host| -> Option<Value> {
        h.deployed("counter")
            .first()
            .map(|r| r["source"]["image"].clone())
    };
    let wait_for = |want: &str| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if image_of(&host).is_some_and(|d| d == want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("the watch did not converge on {want}");
    };
    wait_for(&first);
    // The tag moves to a new signed image: the watch rolls forward.
    let second = push_built(
        &xdp(),
        &image,
        &["--sign-key", &keys.private("a"), "--source-date-epoch", "7"],
    );
    assert_ne!(first, second);
    wait_for(&second);
    // A tag moved to an image the policy refuses: the old one runs on.
    let refused = push_built(&xdp(), &image, &["--source-date-epoch", "9"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(image_of(&host), Some(Value::from(second.clone())));
    assert_ne!(refused, second);

    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the watch did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stopped on a signal"), "{stderr}");
    assert!(
        stderr.contains("refused") || stderr.contains("signature"),
        "{stderr}"
    );
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_apply_replaces_a_dispatcher_slot_under_traffic() {
    let Some(host) = crate::kernel::guest("guest_apply_replaces_a_dispatcher_slot_under_traffic")
    else {
        return;
    };
    let net = 19;
    let ns = Netns::new("gapply", net);
    let policy = reject_all(&host);
    let file = host.dir.path().join("apply.toml");
    let write = |globals: &str| {
        let text = chained("first", "xdp_counter", globals, &ns, 10)
            + &chained("second", "xdp_pass", "", &ns, 20);
        fs::write(&file, text).expect("file");
    };
    write("");
    let created = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&created),
        pairs(&[("first", "create"), ("second", "create")])
    );
    let second = host.deployed("second")[0]["id"].clone();
    assert!(ns.ping(2));

    // The first deployment changes: its replacement takes its slot in one
    // swap of the dispatcher, under a continuous ping.
    write("globals = { verdict = \"02000000\" }");
    let mut replaced = Vec::new();
    let (sent, received) = ping_through(&ns, || {
        replaced = host.applied(&policy, &file, &[]);
    });
    assert_eq!(
        changes(&replaced),
        pairs(&[("first", "replace"), ("second", "keep")])
    );
    assert_eq!(received, sent, "pings lost across the replacement");
    let first = host.deployed("first");
    assert_eq!(first.len(), 1);
    let slot = &first[0]["links"][0]["attachment"];
    assert_eq!(slot["type"], "dispatcher");
    assert_eq!(slot["priority"], 10);
    assert_eq!(host.deployed("second")[0]["id"], second);
    let counted = counter(&Host::map_pin(&first[0], "xdp_stats_map"));
    assert!(counted > 0, "the new first program runs in the chain");

    // Dropped from the file: its slot goes, the other stays.
    let text = fs::read_to_string(&file).expect("file");
    let rest = &text[text.find("[deployment.second]").expect("second")..];
    fs::write(&file, rest).expect("file");
    let removed = host.applied(&policy, &file, &[]);
    assert_eq!(
        changes(&removed),
        pairs(&[("second", "keep"), ("first", "remove")])
    );
    assert!(ns.ping(1));
    host.unload(&host.listed());
    assert!(!ns.link_show("veth1").contains("prog/xdp"));
    host.assert_clean();
}

/// A deployment alone on an interface's XDP chain runs without a
/// dispatcher, so this host (which refuses freplace) runs it; replacing it
/// points the hook's link at the new program in one update, under a
/// continuous ping, and the attachment keeps its id.
#[test]
fn apply_replaces_a_lone_chain_program_in_place_under_traffic() {
    let test = "apply_replaces_a_lone_chain_program_in_place_under_traffic";
    let Some(host) = Host::new(test) else {
        return;
    };
    let ns = Netns::new("alone", 41);
    let policy = reject_all(&host);
    let file = host.dir.path().join("apply.toml");
    let write = |globals: &str| {
        let text = chained("counter", "xdp_counter", globals, &ns, 10);
        fs::write(&file, text).expect("file");
    };
    write("");
    let created = host.applied(&policy, &file, &[]);
    assert_eq!(changes(&created), pairs(&[("counter", "create")]));
    let old = host.deployed("counter")[0].clone();
    let link = &old["links"][0];
    assert_eq!(link["attachment"]["type"], "dispatcher");
    assert_eq!(link["attachment"]["alone"], true, "{link}");
    assert!(ns.ping(2));

    write("globals = { verdict = \"02000000\" }");
    let mut replaced = Vec::new();
    let (sent, received) = ping_through(&ns, || {
        replaced = host.applied(&policy, &file, &[]);
    });
    assert_eq!(changes(&replaced), pairs(&[("counter", "replace")]));
    assert_eq!(received, sent, "pings lost across the replacement");
    let new = host.deployed("counter");
    assert_eq!(new.len(), 1);
    assert_ne!(new[0]["id"], old["id"]);
    assert_eq!(
        new[0]["links"][0]["id"], link["id"],
        "the link moved in place"
    );
    assert_eq!(new[0]["links"][0]["attachment"]["alone"], true);
    let before = counter(&Host::map_pin(&new[0], "xdp_stats_map"));
    assert!(ns.ping(2));
    assert!(counter(&Host::map_pin(&new[0], "xdp_stats_map")) >= before + 2);

    host.unload(&new);
    assert!(!ns.link_show("veth1").contains("prog/xdp"));
    host.assert_clean();
}
