//! A simulated fleet on this machine: eight "hosts", each a network
//! namespace with its own veth, state root and bpffs, all pulling from one
//! `docker-registry`. Every host runs `bpfman-load` in a mount namespace
//! of its own where [`HOST_NETNS`] is its network namespace, so one file
//! (`netns = HOST_NETNS`) means "this host's veth1" on each, while the
//! registry stays reachable on the machine's loopback. They apply one desired-state file at once (cold: the
//! registry serves each blob once per host), converge and count their own
//! pings; a new signed image is pushed to the tag and every host rolls
//! forward; a rollback by digest follows without a request; then the
//! registry stops and a host "reboots" (its bpffs unmounted) and restores
//! from its cache.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::kernel::{Host, Netns, counter};
use crate::registry_harness::TestRegistry;
use crate::signing::{Keys, push_built, xdp};
use crate::support::{Run, load_bin};

const HOSTS: u8 = 8;

/// What each host's network namespace is called inside its own view.
const HOST_NETNS: &str = "/run/bpfman-fleet-test/host";

struct Member {
    host: Host,
    ns: Netns,
}

impl Member {
    /// `bpfman-load ARGS` as this host: its root, its bpffs, and its
    /// network namespace at [`HOST_NETNS`].
    fn run_in(&self, policy: &str, args: &[&str]) -> Run {
        let root = self.host.dir.path().join("root").display().to_string();
        let bpf = self.host.bpf.path().display().to_string();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind /run/netns/{} {HOST_NETNS} && exec \"$0\" \"$@\"",
                self.ns.name
            ))
            .arg(load_bin())
            .args(["--root", &root, "--bpffs", &bpf, "--policy", policy])
            .args(args);
        let out = cmd.output().expect("bpfman-load");
        Run::from(&cmd, out)
    }

    /// The one program the fleet file declares, as this host records it.
    fn counter_program(&self) -> Value {
        let listed = self.host.listed();
        assert_eq!(listed.len(), 1, "exactly the declared programs: {listed:?}");
        assert_eq!(listed[0]["deployment"]["name"], "counter");
        listed[0].clone()
    }
}

/// Every member applies `file` at once; all must succeed.
fn apply_all(fleet: &[Member], policy: &str, file: &Path) {
    let f = file.display().to_string();
    std::thread::scope(|s| {
        let runs: Vec<_> = fleet
            .iter()
            .map(|m| s.spawn(|| m.run_in(policy, &["apply", "-f", &f])))
            .collect();
        for r in runs {
            r.join().expect("apply thread").ok();
        }
    });
}

fn write_file(file: &Path, image: &str) {
    fs::write(
        file,
        format!(
            "[deployment.counter]\nimage = \"{image}\"\npull-policy = \"always\"\n\n[[deployment.counter.attach]]\nhook = \"xdp\"\niface = \"veth1\"\nnetns = \"{HOST_NETNS}\"\nexclusive = true\n"
        ),
    )
    .expect("desired state");
}

#[test]
fn a_fleet_converges_rolls_forward_rolls_back_and_restores() {
    let test = "a_fleet_converges_rolls_forward_rolls_back_and_restores";
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let mut fleet = Vec::new();
    for i in 0..HOSTS {
        let Some(host) = Host::new(test) else {
            return;
        };
        // Each host mounts its bpffs before it works inside its namespace.
        assert!(host.listed().is_empty());
        fleet.push(Member {
            host,
            ns: Netns::new(&format!("fl{i}"), 60 + i),
        });
    }
    // The mount point each host's own view puts its namespace on.
    let point = Path::new(HOST_NETNS);
    fs::create_dir_all(point.parent().expect("parent")).expect("dir");
    fs::write(point, "").expect("mount point");
    let keys = Keys::new();
    let work = TempDir::new().expect("tmp");
    let policy = keys.policy_for_all(work.path());
    let image = reg.repo("fleet/counter:stable");
    let first = push_built(&xdp(), &image, &["--sign-key", &keys.private("a")]);

    // What one host's pull costs, measured on a scratch root.
    let scratch = TempDir::new().expect("tmp");
    let blobs_before = reg.count("GET", "/blobs/");
    Command::new(load_bin())
        .args(["--root", &scratch.path().join("root").display().to_string()])
        .args(["--policy", &policy, "pull", &image])
        .status()
        .expect("pull");
    let per_host = reg.count("GET", "/blobs/") - blobs_before;
    assert!(per_host >= 2, "a pull fetches config and layer: {per_host}");

    // Cold, all at once: each host fetches each blob once.
    let file = work.path().join("fleet.toml");
    write_file(&file, &image);
    let blobs_before = reg.count("GET", "/blobs/");
    apply_all(&fleet, &policy, &file);
    assert_eq!(
        reg.count("GET", "/blobs/") - blobs_before,
        per_host * usize::from(HOSTS),
        "each host fetches each blob exactly once"
    );
    for m in &fleet {
        let p = m.counter_program();
        assert_eq!(p["source"]["image"], first);
        assert!(m.ns.ping(2));
        assert!(counter(&Host::map_pin(&p, "xdp_stats_map")) >= 2);
    }

    // A new signed image at the tag: every host rolls forward.
    let second = push_built(
        &xdp(),
        &image,
        &[
            "--sign-key",
            &keys.private("a"),
            "--source-date-epoch",
            "11",
        ],
    );
    assert_ne!(first, second);
    apply_all(&fleet, &policy, &file);
    for m in &fleet {
        let p = m.counter_program();
        assert_eq!(p["source"]["image"], second);
        let status = m.run_in(&policy, &["status", "-f", &file.display().to_string()]);
        assert_eq!(status.status, 0, "{}", status.stdout);
        assert!(status.stdout.contains(&second[..19]), "{}", status.stdout);
        assert!(m.ns.ping(1));
    }

    // Rollback by digest: the cached image, no request at all.
    write_file(&file, &format!("{}@{first}", reg.repo("fleet/counter")));
    let requests = reg.log().lines().count();
    apply_all(&fleet, &policy, &file);
    assert_eq!(
        reg.log().lines().count(),
        requests,
        "a rollback by digest made a request"
    );
    for m in &fleet {
        assert_eq!(m.counter_program()["source"]["image"], first);
    }

    // The registry gone, one host reboots: its bpffs is empty, and apply
    // restores from the verified cache.
    drop(reg);
    let m = &fleet[3];
    assert!(
        Command::new("umount")
            .arg(m.host.bpf.path())
            .status()
            .expect("umount")
            .success()
    );
    assert!(m.host.listed().is_empty(), "bpffs lost, the state forgets");
    // The kernel frees a link whose last pin went in deferred work; a real
    // reboot starts with the interface clean, so wait for that here.
    let mut clean = false;
    for _ in 0..100 {
        if !m.ns.link_show("veth1").contains("prog/xdp") {
            clean = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        clean,
        "the unpinned link still holds veth1: {}",
        m.ns.link_show("veth1")
    );
    m.run_in(&policy, &["apply", "-f", &file.display().to_string()])
        .ok();
    let p = m.counter_program();
    assert_eq!(p["source"]["image"], first);
    assert!(m.ns.ping(2));
    assert!(counter(&Host::map_pin(&p, "xdp_stats_map")) >= 2);
}
