//! `deploy/`: the systemd units pass `systemd-analyze verify`, the
//! Kubernetes manifests validate against the Kubernetes schemas and their
//! embedded policy and desired state parse, and the container image, built
//! with podman, applies a deployment on the host's kernel that counts
//! pings through a veth.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::kernel::{Host, Netns, counter};
use crate::support::{Run, have_tool, have_tool_with, load_bin, repo_root, testdata};

fn deploy(rel: &str) -> PathBuf {
    repo_root().join("deploy").join(rel)
}

fn command(program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run::from(&cmd, out)
}

#[test]
fn systemd_units_verify_cleanly() {
    let test = "systemd_units_verify_cleanly";
    if !have_tool(test, "systemd-analyze", "apt-get install systemd") {
        return;
    }
    let dir = TempDir::new().expect("tmp");
    let bin = load_bin().display().to_string();
    let mut units = Vec::new();
    for name in ["bpfman-load-apply.service", "bpfman-load-watch.service"] {
        let text = fs::read_to_string(deploy(&format!("systemd/{name}"))).expect("unit");
        assert!(text.contains("/usr/local/bin/bpfman-load apply -f /etc/bpfman-load/apply.d"));
        // Verified with the binary under test where the unit expects it.
        let path = dir.path().join(name);
        fs::write(&path, text.replace("/usr/local/bin/bpfman-load", &bin)).expect("write");
        units.push(path.display().to_string());
    }
    let args: Vec<&str> = std::iter::once("verify")
        .chain(units.iter().map(String::as_str))
        .collect();
    let out = command("systemd-analyze", &args).ok();
    assert!(
        out.stderr.trim().is_empty(),
        "systemd-analyze warned:\n{}",
        out.stderr
    );
}

/// The manifests' documents, as JSON (via Python's yaml, which
/// kubernetes-validate brings).
fn documents(file: &Path) -> Vec<Value> {
    let out = command(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            &file.display().to_string(),
        ],
    )
    .ok();
    serde_json::from_str(&out.stdout).expect("json")
}

#[test]
fn kubernetes_manifests_validate_and_what_they_carry_parses() {
    let test = "kubernetes_manifests_validate_and_what_they_carry_parses";
    if !have_tool(
        test,
        "kubernetes-validate",
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let Some(host) = Host::new(test) else {
        return;
    };
    let dir = deploy("kubernetes");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let mut args = vec!["--strict"];
    args.extend(files.iter().map(String::as_str));
    let out = command("kubernetes-validate", &args).ok();
    assert!(!out.stdout.contains("ERROR") && !out.stderr.contains("ERROR"));

    // The DaemonSet mounts what the tool needs, and runs apply --watch.
    let ds = documents(&dir.join("daemonset.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    for want in [
        "/sys/fs/bpf",
        "/var/lib/bpfman-load",
        "/etc/bpfman-load/apply.d",
        "/etc/bpfman-load/registry",
    ] {
        assert!(mounts.contains(&want), "{want} not mounted: {mounts:?}");
    }
    let container_args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    assert!(container_args.iter().any(|a| a == "--watch"));

    // Lay the ConfigMaps out as the kubelet would, and check that the
    // policy and the desired state they carry parse with this build.
    let etc = host.dir.path().join("etc");
    for cm in documents(&dir.join("config.yaml")) {
        let data = cm["data"].as_object().expect("data");
        match cm["metadata"]["name"].as_str() {
            Some("bpfman-load-policy") => {
                let p = etc.join("policy");
                fs::create_dir_all(p.join("keys")).expect("dir");
                fs::write(
                    p.join("policy.toml"),
                    data["policy.toml"].as_str().expect("policy"),
                )
                .expect("write");
                fs::write(
                    p.join("keys/release.pub"),
                    data["release.pub"].as_str().expect("key"),
                )
                .expect("write");
            }
            Some("bpfman-load-apply") => {
                let a = etc.join("apply.d");
                fs::create_dir_all(&a).expect("dir");
                for (k, v) in data {
                    fs::write(a.join(k), v.as_str().expect("toml")).expect("write");
                }
            }
            other => panic!("unexpected ConfigMap {other:?}"),
        }
    }
    let policy = etc.join("policy/policy.toml").display().to_string();
    let apply_d = etc.join("apply.d").display().to_string();
    // The policy parses: verifying fails only because nothing is cached.
    host.run(&[
        "--policy",
        &policy,
        "verify",
        "registry.example.com/net/xdp-counter:v3",
    ])
    .fails_with("not in the cache");
    // The desired state parses: status (offline) finds every deployment
    // missing on this host.
    let status = host.run(&["--policy", &policy, "status", &format!("--file={apply_d}")]);
    assert_eq!(status.status, 2, "{}", status.stderr);
    assert!(status.stdout.contains("counter") && status.stdout.contains("missing"));
}

/// podman as this machine runs it (environment.md): vfs storage, runc
/// with cgroupfs, no default ulimits; storage of the test's own.
fn podman(work: &Path, args: &[&str]) -> Run {
    let conf = work.join("containers.conf");
    if !conf.exists() {
        fs::write(&conf, "[containers]\ndefault_ulimits = []\n").expect("conf");
    }
    let root = work.join("storage").display().to_string();
    let runroot = work.join("run").display().to_string();
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", &conf)
        .args(["--root", &root, "--runroot", &runroot])
        .args(["--storage-driver", "vfs", "--runtime", "runc"])
        .args(["--cgroup-manager", "cgroupfs"])
        .args(args);
    let out = cmd.output().expect("podman");
    Run::from(&cmd, out)
}

#[test]
fn the_container_image_applies_and_counts_pings() {
    let test = "the_container_image_applies_and_counts_pings";
    if !have_tool(test, "podman", "apt-get install podman runc")
        || !have_tool_with(test, "runc", "--version", "apt-get install runc")
    {
        return;
    }
    let Some(host) = Host::new(test) else {
        return;
    };
    let ns = Netns::new("ctr", 43);
    let work = TempDir::new().expect("tmp");
    let ctx = work.path().join("ctx");
    let out = command(
        &deploy("container/rootfs.sh").display().to_string(),
        &[
            &load_bin().display().to_string(),
            &ctx.display().to_string(),
        ],
    )
    .ok();
    assert!(out.stdout.contains("ctx"));
    let tag = format!("localhost/bpfman-load-test:{}", std::process::id());
    let containerfile = deploy("container/Containerfile").display().to_string();
    podman(
        work.path(),
        &[
            "build",
            "-t",
            &tag,
            "-f",
            &containerfile,
            &ctx.display().to_string(),
        ],
    )
    .ok();

    let apply_d = work.path().join("apply.d");
    fs::create_dir_all(&apply_d).expect("dir");
    fs::write(
        apply_d.join("counter.toml"),
        format!(
            "[deployment.counter]\nfile = \"/objects/xdp_counter.o\"\n[[deployment.counter.attach]]\nhook = \"xdp\"\niface = \"veth1\"\nnetns = \"{}\"\nexclusive = true\n",
            ns.name
        ),
    )
    .expect("apply");
    // The host mounts its bpffs (here: the test's) before the container
    // gets it, as systemd does at boot.
    assert!(host.listed().is_empty());
    let root = host.dir.path().join("root");
    let vol = |from: &Path, to: &str, ro: bool| {
        format!("{}:{to}{}", from.display(), if ro { ":ro" } else { "" })
    };
    let bpffs = vol(host.bpf.path(), "/sys/fs/bpf", false);
    let state = vol(&root, "/var/lib/bpfman-load", false);
    let netns = vol(Path::new("/run/netns"), "/run/netns", false);
    let desired = vol(&apply_d, "/etc/bpfman-load/apply.d", true);
    let object = vol(
        &testdata("bpf/xdp_counter.bpfel.o"),
        "/objects/xdp_counter.o",
        true,
    );
    let in_container = |args: &[&str]| {
        let mut all = vec![
            "run",
            "--rm",
            "--privileged",
            "--network",
            "host",
            "-v",
            &bpffs,
            "-v",
            &state,
            "-v",
            &netns,
            "-v",
            &desired,
            "-v",
            &object,
            &tag,
        ];
        all.extend_from_slice(args);
        podman(work.path(), &all).ok()
    };
    let run = in_container(&["apply", "-f", "/etc/bpfman-load/apply.d"]);
    assert!(run.stdout.contains("create"), "{}", run.stdout);

    // What the container loaded outlives it, and counts on the host. (Its
    // pins are named as the container sees bpffs.)
    let listed = in_container(&["list", "--output", "json"]);
    let records: Vec<Value> = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["deployment"]["name"], "counter");
    let pin = Host::map_pin(&records[0], "xdp_stats_map");
    let pin = host
        .bpf
        .path()
        .join(pin.strip_prefix("/sys/fs/bpf").expect("under /sys/fs/bpf"));
    assert!(ns.ping(3));
    assert!(counter(&pin) >= 3);
    // A second apply from a new container keeps it: nothing changed.
    let again = in_container(&["apply", "-f", "/etc/bpfman-load/apply.d"]);
    assert!(again.stdout.contains("keep"), "{}", again.stdout);
    in_container(&["unload", &records[0]["id"].to_string()]);
    assert!(ns.ping(1));
    assert!(!ns.link_show("veth1").contains("prog/xdp"));
    podman(work.path(), &["rmi", "-f", &tag]);
}
