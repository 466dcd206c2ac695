//! `bpfman-load` against the host kernel: programs loaded, attached inside
//! fresh network namespaces with veth pairs, counting real packets (ping);
//! a tracepoint and a uprobe firing; detach and unload leaving nothing in
//! bpffs or the kernel; bad input; `kill -9` at every step; and the whole
//! path from a registry.
//!
//! Each test mounts its own bpffs (via `--bpffs`) and uses its own state
//! root, so tests run in parallel without seeing each other's pins.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::registry_harness::TestRegistry;
use crate::signing::{Keys, push_built, xdp};
use crate::support::{BpfMount, Run, have_tool, load_bin, privileged, run, testdata};

/// A state root and a bpffs of the test's own.
pub(crate) struct Host {
    pub(crate) dir: TempDir,
    pub(crate) bpf: BpfMount,
}

impl Host {
    pub(crate) fn new(test: &str) -> Option<Self> {
        if !privileged(test)
            || !have_tool(test, "bpftool", "apt-get install bpftool")
            || !have_tool_with_version(test, "ping", "apt-get install iputils-ping")
        {
            return None;
        }
        Some(Self {
            dir: TempDir::new().expect("tmp"),
            bpf: BpfMount::new(),
        })
    }

    pub(crate) fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let root = self.dir.path().join("root").display().to_string();
        let bpf = self.bpf.path().display().to_string();
        let mut all = vec![
            "--root",
            root.as_str(),
            "--bpffs",
            bpf.as_str(),
            "--lock-timeout",
            "5",
        ];
        all.extend_from_slice(args);
        run(&load_bin(), &all, envs)
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Loads a test object and returns the records.
    pub(crate) fn load_file(&self, object: &str, extra: &[&str]) -> Vec<Value> {
        let path = testdata(&format!("bpf/{object}")).display().to_string();
        let mut args = vec!["load", "file", path.as_str(), "--output", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args).ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("json");
        v.as_array().expect("array").clone()
    }

    pub(crate) fn attach(&self, id: &Value, hook: &[&str]) -> String {
        let id = id.to_string();
        let mut args = vec!["attach", id.as_str()];
        args.extend_from_slice(hook);
        self.run(&args).ok().stdout.trim().to_string()
    }

    /// Unloads these records' programs, in one run.
    pub(crate) fn unload<'a>(&self, records: impl IntoIterator<Item = &'a Value>) {
        let ids: Vec<String> = records.into_iter().map(|r| r["id"].to_string()).collect();
        let mut args = vec!["unload"];
        args.extend(ids.iter().map(String::as_str));
        self.run(&args).ok();
    }

    /// Our directory in the test's bpffs.
    pub(crate) fn ours(&self) -> PathBuf {
        let entries: Vec<PathBuf> = fs::read_dir(self.bpf.path())
            .expect("bpffs")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("bpfman-load"))
            })
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].clone()
    }

    /// Every pin under our directory.
    pub(crate) fn pins(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.ours()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("dir").flatten() {
                if e.file_type().expect("type").is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    pub(crate) fn listed(&self) -> Vec<Value> {
        let out = self.run(&["list", "--output", "json"]).ok();
        serde_json::from_str::<Value>(&out.stdout)
            .expect("json")
            .as_array()
            .expect("array")
            .clone()
    }

    /// Nothing of ours is left: no record, no pin.
    pub(crate) fn assert_clean(&self) {
        assert!(self.listed().is_empty(), "{:?}", self.listed());
        assert!(self.pins().is_empty(), "{:?}", self.pins());
    }

    /// The pin of a record's map.
    pub(crate) fn map_pin(record: &Value, name: &str) -> PathBuf {
        let maps = record["maps"].as_array().expect("maps");
        let m = maps
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no map {name} in {record}"));
        PathBuf::from(m["pin"].as_str().expect("pin"))
    }
}

fn have_tool_with_version(test: &str, tool: &str, install: &str) -> bool {
    crate::support::have_tool_with(test, tool, "-V", install)
}

/// The sum over CPUs of a per-CPU counter (a u64, or a struct whose first
/// field is the packet count), read with bpftool from its pin. bpftool
/// prints raw bytes ("0x38", ...) for maps without BTF, as aya makes them.
pub(crate) fn counter(pin: &Path) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pin)
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut total = 0;
    for entry in v.as_array().expect("entries") {
        for cpu in entry["values"].as_array().expect("values") {
            let value = &cpu["value"];
            total += value
                .as_u64()
                .or_else(|| value["packets"].as_u64())
                .or_else(|| first_u64(value))
                .unwrap_or_else(|| panic!("unexpected value {value}"));
        }
    }
    total
}

/// The first 8 of bpftool's hex bytes as a host-order (little-endian) u64.
fn first_u64(bytes: &Value) -> Option<u64> {
    let b: Vec<u8> = bytes
        .as_array()?
        .iter()
        .take(8)
        .map(|h| u8::from_str_radix(h.as_str()?.trim_start_matches("0x"), 16).ok())
        .collect::<Option<_>>()?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Whether the kernel has a program or link with this id.
pub(crate) fn kernel_has(kind: &str, id: &Value) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .output()
        .expect("bpftool")
        .status
        .success()
}

/// Whether the kernel let go of a program or link. It frees them after an
/// RCU grace period, so this waits for up to five seconds.
pub(crate) fn kernel_freed(kind: &str, id: &Value) -> bool {
    for _ in 0..50 {
        if !kernel_has(kind, id) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A fresh network namespace holding veth1 (10.201.N.2), where programs
/// attach, and a peer namespace holding veth0 (10.201.N.1), where pings
/// start. Both deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
    pub(crate) peer: String,
    net: u8,
}

pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    pub(crate) fn new(tag: &str, net: u8) -> Self {
        let name = format!("bpfl-{tag}-{}", std::process::id());
        let peer = format!("{name}-peer");
        ip(&["netns", "add", &name]);
        ip(&["netns", "add", &peer]);
        let ns = Self { name, peer, net };
        let (n, p) = (ns.name.as_str(), ns.peer.as_str());
        ip(&[
            "-n", n, "link", "add", "name", "veth1", "type", "veth", "peer", "name", "veth0",
            "netns", p,
        ]);
        ip(&[
            "-n",
            p,
            "addr",
            "add",
            &format!("10.201.{net}.1/24"),
            "dev",
            "veth0",
        ]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("10.201.{net}.2/24"),
            "dev",
            "veth1",
        ]);
        for (ns, dev) in [(n, "lo"), (p, "lo"), (p, "veth0"), (n, "veth1")] {
            ip(&["-n", ns, "link", "set", "dev", dev, "up"]);
        }
        ns
    }

    /// Pings veth1 from the peer namespace (the requests arrive on veth1's
    /// ingress, the replies leave by its egress); true if all came back.
    pub(crate) fn ping(&self, count: u32) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.peer,
                "ping",
                "-q",
                "-c",
                &count.to_string(),
            ])
            .args(["-i", "0.05", "-W", "1"])
            .arg(format!("10.201.{}.2", self.net))
            .output()
            .expect("ping")
            .status
            .success()
    }

    /// Pings veth1 continuously (every `interval` seconds) from before
    /// `during` runs until it returns; returns (sent, received) and the
    /// summary line. A request still in flight when ping is stopped (the
    /// last one, unanswered only because ping stopped waiting) is not
    /// counted as sent: every other request must have its reply.
    pub(crate) fn ping_during(&self, interval: &str, during: impl FnOnce()) -> (u64, u64, String) {
        // Replies go to a file: thousands of lines would fill a pipe that
        // nobody reads until the end.
        let log = tempfile::NamedTempFile::new().expect("tmp");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.peer, "ping", "-i", interval])
            .arg(format!("10.201.{}.2", self.net))
            .stdout(log.reopen().expect("reopen"))
            .spawn()
            .expect("ping");
        std::thread::sleep(std::time::Duration::from_millis(300));
        during();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SIGINT: ping prints its statistics and exits.
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        let out = child.wait_with_output().expect("ping output");
        assert!(out.status.code().is_some(), "ping died: {:?}", out.status);
        let text = fs::read_to_string(log.path()).expect("ping log");
        let stat = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping statistics: {text}"))
            .to_string();
        let nums: Vec<u64> = stat
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let (mut sent, received) = (nums[0], nums[1]);
        let answered: std::collections::BTreeSet<u64> = text
            .lines()
            .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        if sent == received + 1 && !answered.contains(&sent) {
            sent -= 1;
        }
        (sent, received, stat)
    }

    pub(crate) fn link_show(&self, dev: &str) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-d", "link", "show", "dev", dev])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.name, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn xdp_exclusive_counts_pings_then_unload_leaves_nothing() {
    let Some(host) = Host::new("xdp_exclusive_counts_pings_then_unload_leaves_nothing") else {
        return;
    };
    let ns = Netns::new("xdp", 1);
    let records = host.load_file("xdp_counter.bpfel.o", &[]);
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec["name"], "xdp_stats");
    let id = &rec["id"];
    assert!(kernel_has("prog", id));
    let stats = Host::map_pin(rec, "xdp_stats_map");

    let link = host.attach(
        id,
        &[
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
    );
    assert!(
        ns.link_show("veth1").contains("xdp"),
        "{}",
        ns.link_show("veth1")
    );
    assert!(ns.ping(5));
    assert!(counter(&stats) >= 5, "counted {}", counter(&stats));

    // Exclusive: a second XDP program on the interface is refused, and the
    // refused attach leaves no link behind.
    let second = host.load_file("xdp_pass.bpfel.o", &[]);
    let pins_before = host.pins();
    host.run(&[
        "attach",
        &second[0]["id"].to_string(),
        "xdp",
        "--exclusive",
        "--iface",
        "veth1",
        "--netns",
        &ns.name,
    ])
    .fails_with("already has an XDP program");
    assert_eq!(host.pins(), pins_before);

    // list shows the link; list --all marks ours among the kernel's.
    let listed = host.listed();
    let first = listed.iter().find(|r| r["id"] == *id).expect("listed");
    assert_eq!(first["links"][0]["id"].to_string(), link);
    let all = host.run(&["list", "--all", "--output", "json"]).ok();
    let all: Value = serde_json::from_str(&all.stdout).expect("json");
    let mine = all
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["id"] == *id)
        .expect("in the kernel list");
    assert_eq!(mine["ours"], true);
    assert_eq!(mine["role"], "program");
    let get = host.run(&["get", &id.to_string()]).ok();
    assert!(get.stdout.contains("xdp veth1"), "{}", get.stdout);

    host.run(&["unload", &id.to_string(), &second[0]["id"].to_string()])
        .ok();
    assert!(
        !ns.link_show("veth1").contains("prog/xdp"),
        "{}",
        ns.link_show("veth1")
    );
    assert!(kernel_freed("prog", id));
    assert!(kernel_freed(
        "link",
        &Value::from(link.parse::<u64>().expect("link id"))
    ));
    host.assert_clean();
}

/// `load ... attach HOOK` loads and attaches in one process; when the
/// attach fails, or the load made more than one program, nothing stays.
#[test]
fn load_then_attach_in_one_command() {
    let Some(host) = Host::new("load_then_attach_in_one_command") else {
        return;
    };
    let ns = Netns::new("loadattach", 9);
    let object = testdata("bpf/xdp_counter.bpfel.o").display().to_string();
    let out = host
        .run(&[
            "load",
            "file",
            &object,
            "--output",
            "json",
            "attach",
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ])
        .ok();
    let recs: Value = serde_json::from_str(&out.stdout).expect("json");
    let rec = &recs[0];
    assert_eq!(rec["links"].as_array().map(Vec::len), Some(1), "{rec}");
    assert!(ns.ping(3));
    assert!(counter(&Host::map_pin(rec, "xdp_stats_map")) >= 3);
    host.unload([rec]);
    host.assert_clean();

    host.run(&[
        "load",
        "file",
        &object,
        "attach",
        "xdp",
        "--exclusive",
        "--iface",
        "nope",
        "--netns",
        &ns.name,
    ])
    .fails_with("no network interface named 'nope'");
    host.assert_clean();
    let tcx = testdata("bpf/tcx.bpfel.o").display().to_string();
    host.run(&[
        "load",
        "file",
        &tcx,
        "attach",
        "tcx",
        "--iface",
        "veth1",
        "--direction",
        "ingress",
        "--netns",
        &ns.name,
    ])
    .fails_with("name one with --program");
    host.assert_clean();
}

#[test]
fn a_global_set_at_load_changes_the_verdict() {
    let Some(host) = Host::new("a_global_set_at_load_changes_the_verdict") else {
        return;
    };
    let ns = Netns::new("glob", 2);
    // verdict = XDP_DROP (1), little-endian u32.
    let rec = host.load_file("xdp_counter.bpfel.o", &["--global", "verdict=01000000"]);
    let id = &rec[0]["id"];
    host.attach(
        id,
        &[
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
    );
    assert!(!ns.ping(3), "pings passed an XDP_DROP program");
    assert!(counter(&Host::map_pin(&rec[0], "xdp_stats_map")) >= 3);
    host.run(&["unload", &id.to_string()]).ok();
    assert!(ns.ping(1), "traffic flows again after unload");
    host.assert_clean();

    // A global the object does not have, or of the wrong size.
    for bad in ["nonesuch=01000000", "verdict=01"] {
        host.run(&[
            "load",
            "file",
            &testdata("bpf/xdp_counter.bpfel.o").display().to_string(),
            "--global",
            bad,
        ])
        .fails_with("--global");
        host.assert_clean();
    }
}

#[test]
fn tcx_runs_libbpf_tc_objects_in_order_both_directions() {
    let Some(host) = Host::new("tcx_runs_libbpf_tc_objects_in_order_both_directions") else {
        return;
    };
    let ns = Netns::new("tcx", 3);
    // SEC("tcx/ingress") / SEC("tcx/egress") and SEC("tc"): libbpf names
    // aya 0.14 does not know.
    let tcx = host.load_file("tcx.bpfel.o", &[]);
    let tc = host.load_file("tc_libbpf.bpfel.o", &[]);
    let by_name = |name: &str| {
        tcx.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let ingress = by_name("tcx_ingress");
    let egress = by_name("tcx_egress");
    let n = ns.name.as_str();
    host.attach(
        &ingress["id"],
        &[
            "tcx",
            "--iface",
            "veth1",
            "--direction",
            "ingress",
            "--netns",
            n,
        ],
    );
    host.attach(
        &egress["id"],
        &[
            "tcx",
            "--iface",
            "veth1",
            "--direction",
            "egress",
            "--netns",
            n,
        ],
    );
    let seen = |r: &Value, map: &str| counter(&Host::map_pin(r, map));
    assert!(ns.ping(4));
    assert!(seen(&ingress, "tcx_ingress_map") >= 4);
    assert!(seen(&egress, "tcx_egress_map") >= 4);

    // Order: tc_count goes before tcx_ingress. Both return TC_ACT_OK,
    // which in tcx ends the chain, so only the first one runs.
    let ingress_id = ingress["id"].to_string();
    let tc_link = host.attach(
        &tc[0]["id"],
        &[
            "tcx",
            "--iface",
            "veth1",
            "--direction",
            "ingress",
            "--netns",
            n,
            "--before",
            &ingress_id,
        ],
    );
    let ingress_before = seen(&ingress, "tcx_ingress_map");
    assert!(ns.ping(3));
    assert!(seen(&tc[0], "tc_count_map") >= 3);
    assert_eq!(
        seen(&ingress, "tcx_ingress_map"),
        ingress_before,
        "ran after a pass verdict"
    );

    // Detach it: tcx_ingress is first again, tc_count sees nothing.
    host.run(&["detach", &tc_link]).ok();
    let tc_before = seen(&tc[0], "tc_count_map");
    assert!(ns.ping(2));
    assert_eq!(seen(&tc[0], "tc_count_map"), tc_before);
    assert!(seen(&ingress, "tcx_ingress_map") >= ingress_before + 2);

    // An order relative to a program that is not attached with tcx.
    host.run(&[
        "attach",
        &tc[0]["id"].to_string(),
        "tcx",
        "--iface",
        "veth1",
        "--direction",
        "ingress",
        "--netns",
        n,
        "--after",
        "4000000000",
    ])
    .fails_with("no program with id 4000000000");

    host.unload(tcx.iter().chain(&tc));
    for r in tcx.iter().chain(&tc) {
        assert!(kernel_freed("prog", &r["id"]));
    }
    host.assert_clean();
}

#[test]
fn tracepoint_and_uprobe_fire() {
    let Some(host) = Host::new("tracepoint_and_uprobe_fire") else {
        return;
    };
    let tp = host.load_file("tracepoint.bpfel.o", &[]);
    host.attach(&tp[0]["id"], &["tracepoint", "syscalls/sys_enter_getpid"]);
    let probes = host.load_file("uprobe.bpfel.o", &[]);
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    for p in &probes {
        host.attach(
            &p["id"],
            &["uprobe", "--target", libc, "--function", "getpid"],
        );
    }
    // getpid(2) through libc, in a process of its own.
    let status = Command::new("python3")
        .args(["-c", "import os\nfor _ in range(10): os.getpid()"])
        .status()
        .expect("python3");
    assert!(status.success());
    assert!(counter(&Host::map_pin(&tp[0], "getpid_count_map")) >= 10);
    for (p, map) in probes.iter().map(|p| {
        let map = if p["name"] == "uprobe_count" {
            "uprobe_count_map"
        } else {
            "uretprobe_count_map"
        };
        (p, map)
    }) {
        assert!(counter(&Host::map_pin(p, map)) >= 10, "{}", p["name"]);
    }
    // A tracepoint the kernel does not have.
    host.run(&[
        "attach",
        &tp[0]["id"].to_string(),
        "tracepoint",
        "syscalls/sys_enter_nonesuch",
    ])
    .fails_with("/sys/kernel/tracing/events");
    // A function the library does not have: named, with what to do.
    let pins = host.pins();
    host.run(&[
        "attach",
        &probes[0]["id"].to_string(),
        "uprobe",
        "--target",
        libc,
        "--function",
        "no_such_function_here",
    ])
    .fails_with("has no function 'no_such_function_here'");
    assert_eq!(host.pins(), pins);
    host.unload(probes.iter().chain(&tp));
    host.assert_clean();
}

/// On a kernel that refuses kprobes and fentry (this host's: see
/// docs/testing.md), loading says so plainly and leaves nothing. On a
/// kernel that allows them, they load and attach.
#[test]
fn kprobe_and_fentry_load_or_say_plainly_why_not() {
    let Some(host) = Host::new("kprobe_and_fentry_load_or_say_plainly_why_not") else {
        return;
    };
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    let kprobe = testdata("bpf/kprobe.bpfel.o").display().to_string();
    if kprobes {
        let recs = host.load_file("kprobe.bpfel.o", &[]);
        for r in &recs {
            host.attach(&r["id"], &["kprobe", "do_unlinkat"]);
        }
        host.unload(&recs);
    } else {
        let err = host
            .run(&["load", "file", &kprobe])
            .fails_with("CONFIG_KPROBES");
        assert!(
            err.stderr.contains("tracepoint"),
            "offers an alternative: {}",
            err.stderr
        );
    }
    host.assert_clean();

    let fentry = testdata("bpf/fentry.bpfel.o").display().to_string();
    let out = host.run(&["load", "file", &fentry]);
    if out.status == 0 {
        let recs = host.listed();
        for r in &recs {
            host.attach(&r["id"], &["fentry"]);
            host.run(&["unload", &r["id"].to_string()]).ok();
        }
    } else {
        assert!(
            out.stderr.contains("does not allow BPF tracing programs")
                && out.stderr.contains("lockdown")
                && out.stderr.contains("Linux 5.5"),
            "{}",
            out.stderr
        );
    }
    host.assert_clean();

    // BPF LSM: runs where the kernel has it active; here (lockdown, no
    // bpf in lsm=) it is refused with what it takes.
    let lsm = testdata("bpf/lsm.bpfel.o").display().to_string();
    let out = host.run(&["load", "file", &lsm, "--output", "json"]);
    if out.status == 0 {
        let recs: Value = serde_json::from_str(&out.stdout).expect("json");
        host.attach(&recs[0]["id"], &["lsm"]);
        host.unload(recs.as_array().expect("records"));
    } else {
        assert!(
            out.stderr.contains("BPF LSM")
                && out.stderr.contains("lsm=...,bpf")
                && out.stderr.contains("lockdown"),
            "{}",
            out.stderr
        );
    }
    host.assert_clean();
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    let Some(host) = Host::new("bad_input_is_refused_clearly_and_leaves_nothing") else {
        return;
    };
    let ns = Netns::new("bad", 4);
    let xdp_obj = testdata("bpf/xdp_counter.bpfel.o").display().to_string();

    host.run(&["load", "file", &xdp_obj, "--program", "nonesuch"])
        .fails_with("program 'nonesuch' is not in the object; it has: xdp_stats (xdp)");
    host.assert_clean();

    let bad = testdata("bad/verifier_reject.bpfel.o")
        .display()
        .to_string();
    let out = host
        .run(&["load", "file", &bad])
        .fails_with("verifier rejected program 'unchecked_read'");
    assert!(
        out.stderr.contains("invalid access to packet"),
        "the verifier's log: {}",
        out.stderr
    );
    host.assert_clean();

    let big_endian = testdata("bpf/xdp_counter.bpfeb.o").display().to_string();
    host.run(&["load", "file", &big_endian])
        .fails_with("build it for this byte order");
    host.assert_clean();

    let rec = host.load_file("xdp_counter.bpfel.o", &[]);
    let id = rec[0]["id"].to_string();
    let pins = host.pins();
    host.run(&[
        "attach",
        &id,
        "xdp",
        "--exclusive",
        "--iface",
        "nonesuch0",
        "--netns",
        &ns.name,
    ])
    .fails_with("no network interface named 'nonesuch0'");
    host.run(&[
        "attach",
        &id,
        "xdp",
        "--exclusive",
        "--iface",
        "veth1",
        "--netns",
        "bpfl-no-such-ns",
    ])
    .fails_with("no network namespace 'bpfl-no-such-ns'");
    host.run(&["attach", &id, "tracepoint", "syscalls/sys_enter_getpid"])
        .fails_with("it cannot attach as tracepoint");
    host.run(&[
        "attach",
        &id,
        "tcx",
        "--iface",
        "veth1",
        "--direction",
        "ingress",
        "--netns",
        &ns.name,
    ])
    .fails_with("it cannot attach as tcx");
    assert_eq!(host.pins(), pins, "failed attaches left pins");

    host.run(&["unload", "4000000000"])
        .fails_with("no program with id 4000000000 was loaded by bpfman-load");
    host.run(&["detach", "4000000000"])
        .fails_with("no link with id 4000000000");
    host.run(&["unload", &id]).ok();
    host.assert_clean();

    // A bpffs mount point that does not exist.
    let root = host.dir.path().join("root").display().to_string();
    run(
        &load_bin(),
        &["--root", &root, "--bpffs", "/nonexistent/bpf", "list"],
        &[],
    )
    .fails_with("bpffs mount point '/nonexistent/bpf' does not exist");

    // A FIFO or a device given to load file is refused at once.
    let fifo = host.dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for bad in [fifo.display().to_string(), "/dev/zero".to_string()] {
        host.run(&["load", "file", &bad])
            .fails_with("not a regular file");
    }
    host.assert_clean();

    // Regression: --bpffs mounted over a non-empty directory or another
    // mount, hiding what was there. Both are refused, and stay visible.
    let busy = host.dir.path().join("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("mine"), "data").expect("write");
    let busy_arg = busy.display().to_string();
    run(
        &load_bin(),
        &["--root", &root, "--bpffs", &busy_arg, "list"],
        &[],
    )
    .fails_with("it is not empty");
    assert_eq!(fs::read(busy.join("mine")).expect("still visible"), b"data");
    let mounted = host.dir.path().join("tmpfs");
    fs::create_dir(&mounted).expect("mkdir");
    let tmpfs = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mounted)
        .status()
        .expect("mount");
    assert!(tmpfs.success());
    let out = run(
        &load_bin(),
        &[
            "--root",
            &root,
            "--bpffs",
            &mounted.display().to_string(),
            "list",
        ],
        &[],
    );
    let _ = Command::new("umount").arg(&mounted).status();
    out.fails_with("another filesystem is mounted there");
}

#[test]
fn kill_9_at_any_step_is_reconciled_by_the_next_run() {
    let Some(host) = Host::new("kill_9_at_any_step_is_reconciled_by_the_next_run") else {
        return;
    };
    let ns = Netns::new("kill", 5);
    let obj = testdata("bpf/xdp_counter.bpfel.o").display().to_string();
    for step in ["load:programs-pinned", "load:maps-pinned"] {
        let out = host.run_env(&["load", "file", &obj], &[("BPFMAN_LOAD_FAULT", step)]);
        assert_eq!(out.signal, Some(9), "{step}: {out:?}");
        assert!(
            !host.pins().is_empty(),
            "{step}: the crash left pins to clean"
        );
        let next = host.run(&["list"]).ok();
        assert!(
            next.stderr.contains("removed stray pin"),
            "{step}: {}",
            next.stderr
        );
        host.assert_clean();
    }

    // Killed after the link is pinned but before it is recorded: the next
    // run removes the stray link (detaching it), and keeps the program.
    let rec = host.load_file("xdp_counter.bpfel.o", &[]);
    let id = rec[0]["id"].to_string();
    let out = host.run_env(
        &[
            "attach",
            &id,
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
        &[("BPFMAN_LOAD_FAULT", "attach:link-pinned")],
    );
    assert_eq!(out.signal, Some(9), "{out:?}");
    let next = host.run(&["list", "--output", "json"]).ok();
    assert!(next.stderr.contains("removed stray pin"), "{}", next.stderr);
    assert!(
        !ns.link_show("veth1").contains("prog/xdp"),
        "{}",
        ns.link_show("veth1")
    );
    assert_eq!(host.listed().len(), 1);
    // And the interface is free for a real attach.
    host.attach(
        &rec[0]["id"],
        &[
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
    );

    // Killed in the middle of an unload: links gone, program pinned.
    let out = host.run_env(
        &["unload", &id],
        &[("BPFMAN_LOAD_FAULT", "unload:links-unpinned")],
    );
    assert_eq!(out.signal, Some(9), "{out:?}");
    let next = host.run(&["list"]).ok();
    assert!(
        next.stderr.contains("vanished: its pin is gone"),
        "{}",
        next.stderr
    );
    host.run(&["unload", &id]).ok();
    host.assert_clean();
}

#[test]
fn programs_removed_behind_our_back_are_reported_and_forgotten() {
    let Some(host) = Host::new("programs_removed_behind_our_back_are_reported_and_forgotten")
    else {
        return;
    };
    let rec = host.load_file("xdp_pass.bpfel.o", &[]);
    let id = &rec[0]["id"];
    // What a reboot or another tool does: the pin goes, the kernel frees it.
    fs::remove_file(rec[0]["pin"].as_str().expect("pin")).expect("rm pin");
    let out = host.run(&["list"]).ok();
    assert!(
        out.stderr.contains(&format!(
            "program {id} (xdp_pass) vanished: its pin is gone"
        )),
        "{}",
        out.stderr
    );
    host.assert_clean();
    assert!(kernel_freed("prog", id));
}

#[test]
fn from_a_signed_image_in_the_registry_to_traffic_and_back() {
    let Some(host) = Host::new("from_a_signed_image_in_the_registry_to_traffic_and_back") else {
        return;
    };
    let Some(reg) = TestRegistry::plain("from_a_signed_image_in_the_registry_to_traffic_and_back")
    else {
        return;
    };
    let ns = Netns::new("reg", 6);
    let keys = Keys::new();
    let policy = keys.policy_for_all(host.dir.path());
    let image = reg.repo("ebpf/xdp:v1");
    let digest = push_built(&xdp(), &image, &["--sign-key", &keys.private("a")]);

    let out = host
        .run(&[
            "--policy", &policy, "load", "image", &image, "--output", "json",
        ])
        .ok();
    let recs: Value = serde_json::from_str(&out.stdout).expect("json");
    let rec = &recs[0];
    assert_eq!(rec["source"]["image"], digest);
    assert!(
        rec["source"]["admitted_by"]
            .as_str()
            .expect("admitted")
            .contains("require-signature")
    );
    let id = rec["id"].to_string();
    host.attach(
        &rec["id"],
        &[
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
    );
    assert!(ns.ping(3));
    assert!(counter(&Host::map_pin(rec, "xdp_stats_map")) >= 3);

    // prune --all keeps what a loaded program came from; rmi refuses it.
    let pruned = host.run(&["prune", "--all"]).ok();
    assert!(!pruned.stdout.contains(&digest), "{}", pruned.stdout);
    host.run(&["rmi", &image])
        .fails_with("in use by loaded program");
    host.run(&["unload", &id]).ok();
    host.assert_clean();

    // Warm cache and Never: loading makes no request at all.
    let before = reg.log().lines().count();
    let out = host
        .run(&[
            "--policy",
            &policy,
            "load",
            "image",
            &image,
            "--pull-policy",
            "never",
            "--output",
            "json",
        ])
        .ok();
    assert_eq!(
        reg.log().lines().count(),
        before,
        "the registry saw a request"
    );
    let recs: Value = serde_json::from_str(&out.stdout).expect("json");
    host.run(&["unload", &recs[0]["id"].to_string()]).ok();

    // A corrupt cached blob: refused, nothing loaded.
    let blob = host
        .dir
        .path()
        .join("root/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).expect("blob");
    bytes[10] ^= 0xff;
    fs::write(&blob, bytes).expect("corrupt");
    host.run(&[
        "--policy",
        &policy,
        "load",
        "image",
        &image,
        "--pull-policy",
        "never",
    ])
    .fails_with("corrupt");
    host.assert_clean();

    // Without a policy nothing is admitted, so nothing loads.
    host.run(&["load", "image", &image, "--pull-policy", "never"])
        .fails_with("");
    host.assert_clean();
}

#[test]
fn a_second_load_shares_the_first_ones_maps() {
    let Some(host) = Host::new("a_second_load_shares_the_first_ones_maps") else {
        return;
    };
    let ns = Netns::new("share", 7);
    let first = host.load_file("xdp_counter.bpfel.o", &[]);
    let first_id = first[0]["id"].to_string();
    let second = host.load_file("xdp_counter.bpfel.o", &["--share-maps-with", &first_id]);
    let stats = Host::map_pin(&first[0], "xdp_stats_map");
    assert_eq!(Host::map_pin(&second[0], "xdp_stats_map"), stats);
    let shared = second[0]["maps"]
        .as_array()
        .expect("maps")
        .iter()
        .find(|m| m["name"] == "xdp_stats_map")
        .expect("map");
    assert_eq!(shared["shared"], true);

    // The second program counts into the first one's map.
    host.attach(
        &second[0]["id"],
        &[
            "xdp",
            "--exclusive",
            "--iface",
            "veth1",
            "--netns",
            &ns.name,
        ],
    );
    assert!(ns.ping(3));
    assert!(counter(&stats) >= 3);

    // Unloading the first keeps the map the second still uses.
    host.run(&["unload", &first_id]).ok();
    assert!(stats.exists());
    let before = counter(&stats);
    assert!(ns.ping(2));
    assert!(counter(&stats) >= before + 2);

    // Nothing to share with an object that has no map of those names.
    let tp = testdata("bpf/tracepoint.bpfel.o").display().to_string();
    host.run(&[
        "load",
        "file",
        &tp,
        "--share-maps-with",
        &second[0]["id"].to_string(),
    ])
    .fails_with("nothing to share");
    host.unload(&second);
    assert!(!stats.exists());
    host.assert_clean();
}

/// The host for a guest test, inside the VM only (elsewhere the test is a
/// no-op: `vm::guest_tests_pass_on_linux_*` run it in the VMs).
pub(crate) fn guest(test: &str) -> Option<Host> {
    crate::vm::in_guest().then(|| Host::new(test).expect("the VM has the tools"))
}

/// Loads `object`, attaches each program with `hook`, runs `work`, and
/// checks each program's counter (`<prefix>_count_map`, the prefix being
/// the program name's first word) saw it at least `times` times.
fn fires(host: &Host, object: &str, hook: &[&str], times: u64, work: impl Fn()) {
    let recs = host.load_file(object, &[]);
    for r in &recs {
        host.attach(&r["id"], hook);
    }
    work();
    for r in &recs {
        let name = r["name"].as_str().expect("name");
        let map = format!("{}_count_map", name.split('_').next().expect("prefix"));
        let seen = counter(&Host::map_pin(r, &map));
        assert!(seen >= times, "{name}: {seen} < {times}");
    }
    host.unload(&recs);
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_kprobe_and_kretprobe_fire() {
    let Some(host) = guest("guest_kprobe_and_kretprobe_fire") else {
        return;
    };
    fires(
        &host,
        "kprobe.bpfel.o",
        &["kprobe", "do_sys_openat2"],
        10,
        || {
            for _ in 0..10 {
                fs::read("/proc/version").expect("open");
            }
        },
    );
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_fentry_and_fexit_fire() {
    let Some(host) = guest("guest_fentry_and_fexit_fire") else {
        return;
    };
    for hook in ["fentry", "fexit"] {
        // Each object holds both; attach each program with its own kind.
        let recs = host.load_file(
            "fentry.bpfel.o",
            &["--program", &format!("{hook}_unlinkat")],
        );
        host.attach(&recs[0]["id"], &[hook]);
        let dir = TempDir::new().expect("tmp");
        for i in 0..5 {
            let f = dir.path().join(i.to_string());
            fs::write(&f, b"x").expect("write");
            fs::remove_file(&f).expect("unlink");
        }
        let seen = counter(&Host::map_pin(&recs[0], &format!("{hook}_count_map")));
        assert!(seen >= 5, "{hook}: {seen}");
        host.unload(&recs);
    }
    host.assert_clean();
}

/// The guest boots with bpf in its lsm= list: an LSM program on
/// file_open counts the files the test opens, and leaves with its link.
#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_lsm_program_counts_file_opens() {
    let Some(host) = guest("guest_lsm_program_counts_file_opens") else {
        return;
    };
    let security = Path::new("/sys/kernel/security");
    if !security.join("lsm").exists() {
        let mounted = Command::new("mount")
            .args(["-t", "securityfs", "securityfs"])
            .arg(security)
            .status()
            .expect("mount");
        assert!(mounted.success(), "cannot mount securityfs");
    }
    let lsms = fs::read_to_string(security.join("lsm")).expect("active LSMs");
    assert!(lsms.split(',').any(|l| l.trim() == "bpf"), "{lsms}");
    fires(&host, "lsm.bpfel.o", &["lsm"], 5, || {
        for _ in 0..5 {
            fs::read("/proc/version").expect("open");
        }
    });
}

/// A lone program needs no dispatcher, so it runs even where the kernel
/// refuses freplace (this host); a second program on the same hook needs
/// the dispatcher, and is refused with advice for its type, leaving the
/// first running and nothing else behind.
#[test]
fn a_lone_program_runs_where_freplace_is_refused_and_a_second_gets_advice() {
    let Some(host) =
        Host::new("a_lone_program_runs_where_freplace_is_refused_and_a_second_gets_advice")
    else {
        return;
    };
    if crate::vm::in_guest() {
        return;
    }
    let ns = Netns::new("nofr", 8);
    let xdp = [(); 2].map(|()| host.load_file("xdp_counter.bpfel.o", &[]));
    let tc = [(); 2].map(|()| host.load_file("tc_libbpf.bpfel.o", &[]));
    let dispatchers = || {
        fs::read_dir(host.ours().join("dispatchers"))
            .map(|d| {
                d.flatten()
                    .flat_map(|e| fs::read_dir(e.path()).into_iter().flatten().flatten())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rev-"))
                    .count()
            })
            .unwrap_or(0)
    };
    // The advice fits the program's type: --exclusive for XDP, tcx for TC.
    for (recs, hook, map, fits, not) in [
        (
            &xdp,
            &["xdp"][..],
            "xdp_stats_map",
            "xdp --exclusive",
            "tcx",
        ),
        (
            &tc,
            &["tc", "--direction", "ingress"][..],
            "tc_count_map",
            "attach ID tcx",
            "--exclusive",
        ),
    ] {
        let first = chain(&host, &ns, &recs[0], hook[0], &hook[1..]);
        let got = host.run(&["get", &recs[0][0]["id"].to_string()]).ok();
        assert!(
            got.stdout.contains("alone, no dispatcher"),
            "{}",
            got.stdout
        );
        assert!(ns.ping(2));
        assert!(stats(&recs[0], map) >= 2, "the lone program runs");
        let pins = host.pins();
        let id = recs[1][0]["id"].to_string();
        let mut args = vec!["attach", id.as_str()];
        args.extend_from_slice(hook);
        args.extend_from_slice(&["--iface", "veth1", "--netns", &ns.name]);
        let out = host.run(&args);
        if out.status == 0 {
            // A kernel that allows freplace: the dispatcher works here too.
            host.run(&["detach", out.stdout.trim()]).ok();
        } else {
            assert!(
                out.stderr.contains("freplace")
                    && out.stderr.contains(fits)
                    && !out.stderr.contains(not),
                "{}",
                out.stderr
            );
            assert_eq!(host.pins(), pins, "a refused dispatcher left pins");
            assert_eq!(dispatchers(), 0, "a refused dispatcher left a revision");
        }
        let before = stats(&recs[0], map);
        assert!(ns.ping(2));
        assert!(stats(&recs[0], map) >= before + 2, "the first still runs");
        host.run(&["detach", &first]).ok();
        assert!(!ns.link_show("veth1").contains("prog/xdp"));
    }
    host.unload(xdp.iter().chain(&tc).flatten());
    host.assert_clean();
}

/// Attaches through the dispatcher: `hook` is `xdp` or `tc`, `extra` the
/// rest (direction, priority, proceed-on). Returns the link id.
fn chain(host: &Host, ns: &Netns, rec: &[Value], hook: &str, extra: &[&str]) -> String {
    let mut args = vec![hook, "--iface", "veth1", "--netns", ns.name.as_str()];
    args.extend_from_slice(extra);
    host.attach(&rec[0]["id"], &args)
}

fn stats(rec: &[Value], map: &str) -> u64 {
    counter(&Host::map_pin(&rec[0], map))
}

/// The classic tc filters on the namespace's veth1, as bpftool shows them.
fn tc_filters(ns: &Netns) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "bpftool", "net", "show", "dev", "veth1",
        ])
        .output()
        .expect("bpftool net");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tcx arrived in Linux 6.6; the VM tier boots kernels on both sides.
fn guest_has_tcx() -> bool {
    crate::vm::guest_kernel() >= (6, 6)
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_xdp_dispatcher_runs_programs_in_priority_order() {
    let Some(host) = guest("guest_xdp_dispatcher_runs_programs_in_priority_order") else {
        return;
    };
    let ns = Netns::new("gxdp", 11);
    // a counts and passes, b counts and drops, c counts and passes.
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    let b = host.load_file("xdp_counter.bpfel.o", &["--global", "verdict=01000000"]);
    let c = host.load_file("xdp_counter.bpfel.o", &[]);
    let m = "xdp_stats_map";
    // Attached out of order; the priorities decide.
    chain(&host, &ns, &c, "xdp", &["--priority", "30"]);
    chain(&host, &ns, &a, "xdp", &["--priority", "10"]);
    let b_link = chain(&host, &ns, &b, "xdp", &["--priority", "20"]);
    // a passes (proceed), b drops (not a proceed-on action): c never runs.
    // (The peer's ARP requests die there too, so few packets are seen; c
    // saw some while it was alone, so only what comes now counts.)
    let (a0, b0, c0) = (stats(&a, m), stats(&b, m), stats(&c, m));
    assert!(!ns.ping(3), "pings crossed a dropping chain");
    assert!(stats(&a, m) > a0 && stats(&b, m) > b0);
    assert_eq!(stats(&c, m), c0, "c ran after b's drop");

    // b proceeding on drop too: the chain goes on to c, which passes.
    host.run(&["detach", &b_link]).ok();
    let b_link = chain(
        &host,
        &ns,
        &b,
        "xdp",
        &["--priority", "20", "--proceed-on", "pass,drop"],
    );
    assert!(ns.ping(3));
    assert!(stats(&c, m) >= c0 + 3);

    // Remove the middle one: a and c keep running, in order.
    host.run(&["detach", &b_link]).ok();
    let (a0, b0, c0) = (stats(&a, m), stats(&b, m), stats(&c, m));
    assert!(ns.ping(2));
    assert!(stats(&a, m) >= a0 + 2 && stats(&c, m) >= c0 + 2);
    assert_eq!(stats(&b, m), b0);
    let listed = host.listed();
    let order: Vec<i64> = listed
        .iter()
        .filter_map(|r| r["links"][0]["attachment"]["priority"].as_i64())
        .collect();
    assert_eq!(order.len(), 2, "{listed:?}");
    // list --all names the dispatcher and each extension's program.
    let all = host.run(&["list", "--all", "--output", "json"]).ok();
    let all: Value = serde_json::from_str(&all.stdout).expect("json");
    let roles: Vec<(String, Option<u64>)> = all
        .as_array()
        .expect("array")
        .iter()
        .filter(|p| p["ours"] == true)
        .map(|p| {
            (
                p["role"].as_str().expect("role").to_string(),
                p["of"].as_u64(),
            )
        })
        .collect();
    let count = |role: &str| roles.iter().filter(|r| r.0 == role).count();
    assert_eq!(
        (count("program"), count("dispatcher"), count("extension")),
        (3, 1, 2),
        "{roles:?}"
    );
    let ids = |r: &[Value]| r[0]["id"].as_u64();
    assert!(roles.contains(&("extension".into(), ids(&a))), "{roles:?}");
    assert!(roles.contains(&("extension".into(), ids(&c))), "{roles:?}");

    // The last one out takes the dispatcher with it: the interface is clean.
    host.unload(a.iter().chain(&b).chain(&c));
    assert!(
        !ns.link_show("veth1").contains("prog/xdp"),
        "{}",
        ns.link_show("veth1")
    );
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_tc_dispatcher_orders_ingress_and_egress() {
    let Some(host) = guest("guest_tc_dispatcher_orders_ingress_and_egress") else {
        return;
    };
    let ns = Netns::new("gtc", 12);
    // Both return TC_ACT_OK; the default proceed-on (pipe, unspec) stops
    // the chain after the first.
    let x = host.load_file("tc_libbpf.bpfel.o", &[]);
    let y = host.load_file("tc_libbpf.bpfel.o", &[]);
    let eg = host.load_file("tcx.bpfel.o", &["--program", "tcx_egress"]);
    let m = "tc_count_map";
    let x_link = chain(
        &host,
        &ns,
        &x,
        "tc",
        &["--direction", "ingress", "--priority", "10"],
    );
    chain(
        &host,
        &ns,
        &y,
        "tc",
        &["--direction", "ingress", "--priority", "20"],
    );
    chain(&host, &ns, &eg, "tc", &["--direction", "egress"]);
    // Without tcx (6.1) the dispatchers sit in cls_bpf filters under
    // clsact, for real; with it, nothing classic is there.
    let shown = tc_filters(&ns);
    if guest_has_tcx() {
        assert!(!shown.contains("tc_dispatcher"), "{shown}");
    } else {
        assert!(
            shown.contains("clsact/ingress")
                && shown.contains("clsact/egress")
                && shown.matches("tc_dispatcher").count() == 2,
            "{shown}"
        );
    }
    assert!(ns.ping(3));
    assert!(stats(&x, m) >= 3);
    assert_eq!(stats(&y, m), 0, "y ran after x's ok");
    assert!(stats(&eg, "tcx_egress_map") >= 3, "egress replies");

    // x proceeding on ok: y runs after it.
    host.run(&["detach", &x_link]).ok();
    chain(
        &host,
        &ns,
        &x,
        "tc",
        &[
            "--direction",
            "ingress",
            "--priority",
            "10",
            "--proceed-on",
            "ok",
        ],
    );
    assert!(ns.ping(3));
    assert!(stats(&y, m) >= 3);

    host.unload(x.iter().chain(&y).chain(&eg));
    host.assert_clean();
}

/// tcx works from Linux 6.6; before, attaching says which kernel has it,
/// and leaves nothing.
#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_tcx_attaches_or_names_the_kernel_that_has_it() {
    let Some(host) = guest("guest_tcx_attaches_or_names_the_kernel_that_has_it") else {
        return;
    };
    let ns = Netns::new("gtcx", 18);
    let rec = host.load_file("tcx.bpfel.o", &["--program", "tcx_ingress"]);
    let args = ["--direction", "ingress"];
    if guest_has_tcx() {
        chain(&host, &ns, &rec, "tcx", &args);
        assert!(ns.ping(2));
        assert!(stats(&rec, "tcx_ingress_map") >= 2);
    } else {
        let pins = host.pins();
        let id = rec[0]["id"].to_string();
        let out = host
            .run(&[
                "attach",
                &id,
                "tcx",
                "--iface",
                "veth1",
                "--netns",
                &ns.name,
                "--direction",
                "ingress",
            ])
            .fails_with("has no tcx: tcx links need Linux 6.6 or later");
        assert!(out.stderr.contains("attach ID tc"), "{}", out.stderr);
        assert_eq!(host.pins(), pins, "a refused attach left pins");
    }
    host.unload(&rec);
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_an_eleventh_program_is_refused() {
    let Some(host) = guest("guest_an_eleventh_program_is_refused") else {
        return;
    };
    let ns = Netns::new("g11", 13);
    let mut all = Vec::new();
    for i in 0..10 {
        let r = host.load_file("xdp_pass.bpfel.o", &[]);
        chain(&host, &ns, &r, "xdp", &["--priority", &i.to_string()]);
        all.extend(r);
    }
    let eleventh = host.load_file("xdp_pass.bpfel.o", &[]);
    let pins = host.pins();
    host.run(&[
        "attach",
        &eleventh[0]["id"].to_string(),
        "xdp",
        "--iface",
        "veth1",
        "--netns",
        &ns.name,
    ])
    .fails_with("already holds 10 programs, its limit");
    assert_eq!(host.pins(), pins);
    assert!(ns.ping(1));
    all.extend(eleventh);
    host.unload(&all);
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_a_hundred_swaps_under_traffic_drop_nothing() {
    let Some(host) = guest("guest_a_hundred_swaps_under_traffic_drop_nothing") else {
        return;
    };
    let ns = Netns::new("gswap", 14);
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    let b = host.load_file("xdp_counter.bpfel.o", &[]);
    // a runs alone (no dispatcher); every attach of b brings the dispatcher
    // in, every detach swaps a back in alone: each swap crosses 1 <-> 2.
    let a_link = chain(&host, &ns, &a, "xdp", &["--priority", "10"]);
    let alone = |want: bool| {
        let got = host.run(&["get", &a[0]["id"].to_string()]).ok();
        assert_eq!(
            got.stdout.contains("alone, no dispatcher"),
            want,
            "{}",
            got.stdout
        );
        assert!(
            got.stdout.contains(&a_link),
            "a keeps its link id: {}",
            got.stdout
        );
    };
    alone(true);
    let before = stats(&a, "xdp_stats_map");
    let (sent, received, stat) = ns.ping_during("0.02", || {
        for _ in 0..50 {
            let link = chain(&host, &ns, &b, "xdp", &["--priority", "20"]);
            host.run(&["detach", &link]).ok();
        }
    });
    alone(true);
    assert!(sent > 0);
    assert_eq!(received, sent, "the swaps lost packets: {stat}");
    // a saw every request once (lost: fewer; run twice: about double),
    // besides the few ARP packets of the run.
    let seen = stats(&a, "xdp_stats_map") - before;
    assert!(seen >= sent, "{seen} seen by a, {stat}");
    assert!(seen <= sent + sent / 4 + 10, "{seen} seen by a, {stat}");
    host.unload(a.iter().chain(&b));
    host.assert_clean();
}

/// Programs that change packet data (bpf_xdp_adjust_head,
/// bpf_skb_pull_data) take a dispatcher slot like any other: the stubs
/// they replace are marked as changing packet data too, which Linux 6.13
/// and later require of an extension's target.
#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_programs_that_change_packet_data_join_a_chain() {
    let Some(host) = guest("guest_programs_that_change_packet_data_join_a_chain") else {
        return;
    };
    let ns = Netns::new("gedit", 19);
    let count = host.load_file("xdp_counter.bpfel.o", &[]);
    let edit = host.load_file("packet_edit.bpfel.o", &["--program", "xdp_edit"]);
    chain(&host, &ns, &count, "xdp", &["--priority", "10"]);
    chain(&host, &ns, &edit, "xdp", &["--priority", "20"]);
    let tc_count = host.load_file("tc_libbpf.bpfel.o", &[]);
    let tc_edit = host.load_file("packet_edit.bpfel.o", &["--program", "tc_edit"]);
    let ingress = ["--direction", "ingress"];
    chain(
        &host,
        &ns,
        &tc_count,
        "tc",
        &[&ingress[..], &["--priority", "10", "--proceed-on", "ok"]].concat(),
    );
    chain(
        &host,
        &ns,
        &tc_edit,
        "tc",
        &[&ingress[..], &["--priority", "20"]].concat(),
    );
    assert!(ns.ping(3));
    assert!(stats(&count, "xdp_stats_map") >= 3);
    assert!(
        stats(&edit, "xdp_edit_map") >= 3,
        "the XDP editor ran in the chain"
    );
    assert!(stats(&tc_count, "tc_count_map") >= 3);
    assert!(
        stats(&tc_edit, "tc_edit_map") >= 3,
        "the TC editor ran in the chain"
    );
    host.unload(count.iter().chain(&edit).chain(&tc_count).chain(&tc_edit));
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_kill_9_mid_update_leaves_old_or_new_chain() {
    let Some(host) = guest("guest_kill_9_mid_update_leaves_old_or_new_chain") else {
        return;
    };
    let ns = Netns::new("gkill", 15);
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    chain(&host, &ns, &a, "xdp", &["--priority", "10"]);
    for (step, joined) in [
        ("dispatcher:built", false),
        ("dispatcher:committed", true),
        ("dispatcher:swapped", true),
    ] {
        let b = host.load_file("xdp_counter.bpfel.o", &[]);
        let out = host.run_env(
            &[
                "attach",
                &b[0]["id"].to_string(),
                "xdp",
                "--iface",
                "veth1",
                "--netns",
                &ns.name,
                "--priority",
                "20",
            ],
            &[("BPFMAN_LOAD_FAULT", step)],
        );
        assert_eq!(out.signal, Some(9), "{step}: {out:?}");
        // The next run reconciles: the old chain (a) or the new (a, b).
        host.run(&["list"]).ok();
        let b_now = host
            .run(&["get", &b[0]["id"].to_string(), "--output", "json"])
            .ok();
        let b_now: Value = serde_json::from_str(&b_now.stdout).expect("json");
        let in_chain = !b_now["links"].as_array().expect("links").is_empty();
        assert_eq!(in_chain, joined, "{step}: {b_now}");
        let (a0, b0) = (stats(&a, "xdp_stats_map"), stats(&b, "xdp_stats_map"));
        assert!(ns.ping(2), "{step}");
        assert!(stats(&a, "xdp_stats_map") >= a0 + 2, "{step}: a stopped");
        assert_eq!(stats(&b, "xdp_stats_map") > b0, joined, "{step}: b");
        host.unload(&b);
    }
    host.unload(&a);
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_two_loaders_at_once_both_join_the_chain() {
    let Some(host) = guest("guest_two_loaders_at_once_both_join_the_chain") else {
        return;
    };
    let ns = Netns::new("gtwo", 16);
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    let b = host.load_file("xdp_counter.bpfel.o", &[]);
    let root = host.dir.path().join("root").display().to_string();
    let bpf = host.bpf.path().display().to_string();
    let spawn = |id: &Value| {
        Command::new(load_bin())
            .args([
                "--root",
                &root,
                "--bpffs",
                &bpf,
                "--lock-timeout",
                "120",
                "attach",
                &id.to_string(),
            ])
            .args(["xdp", "--iface", "veth1", "--netns", &ns.name])
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| spawn(&a[0]["id"]));
        let tb = s.spawn(|| spawn(&b[0]["id"]));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    for r in [ra, rb] {
        let r = r.expect("run");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let (a0, b0) = (stats(&a, "xdp_stats_map"), stats(&b, "xdp_stats_map"));
    assert!(ns.ping(2));
    assert!(stats(&a, "xdp_stats_map") >= a0 + 2 && stats(&b, "xdp_stats_map") >= b0 + 2);
    host.unload(a.iter().chain(&b));
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_tc_dispatcher_on_clsact_where_there_is_no_tcx() {
    let Some(host) = guest("guest_tc_dispatcher_on_clsact_where_there_is_no_tcx") else {
        return;
    };
    let ns = Netns::new("gcls", 17);
    let filters = || tc_filters(&ns);
    // --clsact forces what kernels before 6.6 get: clsact + cls_bpf.
    let x = host.load_file("tc_libbpf.bpfel.o", &[]);
    let y = host.load_file("tc_libbpf.bpfel.o", &[]);
    let m = "tc_count_map";
    chain(
        &host,
        &ns,
        &x,
        "tc",
        &[
            "--direction",
            "ingress",
            "--clsact",
            "--priority",
            "10",
            "--proceed-on",
            "ok",
        ],
    );
    chain(
        &host,
        &ns,
        &y,
        "tc",
        &["--direction", "ingress", "--priority", "20"],
    );
    let shown = filters();
    assert!(
        shown.contains("clsact/ingress") && shown.contains("tc_dispatcher"),
        "{shown}"
    );
    assert!(ns.ping(3));
    assert!(
        stats(&x, m) >= 3 && stats(&y, m) >= 3,
        "x proceeds on ok to y"
    );

    // The filter's program is replaced in place: y keeps running alone.
    host.unload(&x);
    let y0 = stats(&y, m);
    assert!(ns.ping(2));
    assert!(stats(&y, m) >= y0 + 2);
    assert_eq!(
        filters().matches("tc_dispatcher").count(),
        1,
        "{}",
        filters()
    );

    // The last one out removes the filter.
    host.unload(&y);
    assert!(!filters().contains("tc_dispatcher"), "{}", filters());
    host.assert_clean();
}
