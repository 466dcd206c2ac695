//! The VM tier: what the host kernel refuses (kprobes, fentry, freplace)
//! runs on a real kernel under qemu.
//!
//! `tests/vm/prepare.sh` (run by `.ci/run`) puts Debian 12's two kernel
//! lines, 6.12 and its own 6.1, with the modules the tests need, in
//! `target/vm/<line>/`. Every guest test runs on both: one boot per kernel
//! runs them all (a guest test that a kernel cannot run says so in its
//! code, and checks the refusal instead). Each boot here
//! builds an initramfs holding busybox, this very test binary, the
//! `bpfman-load` under test, `ip`, `bpftool` and `ping`, the shared
//! libraries `ldd` lists for them, and `testdata/`, every file at the same
//! absolute path as on the host, so the tests find what they expect. Its
//! init mounts proc, sysfs, devtmpfs, bpffs and tracefs, loads the modules,
//! and runs the guest tests: `#[ignore]`d tests named `guest_*`, which a
//! plain `cargo test` leaves alone. The results come back over the serial
//! console, and the guest's exit status in a `BPFMAN-VM-EXIT=` line.
//!
//! qemu runs with TCG (KVM does not work on these machines), so guest
//! timings are emulated: compare ratios within one run only.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{load_bin, repo_root, skip};

/// What a boot printed, and the guest tests' exit status.
#[derive(Debug)]
pub struct GuestRun {
    pub status: Option<i32>,
    pub console: String,
}

fn vm_dir(line: &str) -> PathBuf {
    repo_root().join("target/vm").join(line)
}

/// True when the kernel and qemu are there; otherwise skips (CI fails).
pub fn available(test: &str, line: &str) -> bool {
    let ready = vm_dir(line).join("vmlinuz").exists()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        && Path::new("/bin/busybox").exists();
    ready
        || skip(
            test,
            &format!(
                "no {line} VM kernel: run tests/vm/prepare.sh (needs qemu-system-x86, busybox-static, cpio)"
            ),
        )
}

/// Copies `file` into the image at its own absolute path (stripped if it
/// is an ELF executable), with the shared libraries it needs.
fn add_binary(root: &Path, file: &Path) {
    let dst = root.join(file.strip_prefix("/").expect("absolute"));
    fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&dst)
        .arg(file)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        fs::copy(file, &dst).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    let ldd = Command::new("ldd").arg(file).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dst = root.join(lib.strip_prefix("/").expect("absolute"));
            if !dst.exists() {
                fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
                fs::copy(&lib, &dst).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
            }
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy");
        }
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
# The real tools first; busybox fills in the rest.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp stays on the initramfs: the checkout may live under it.
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
for m in /lib/modules/*.ko; do insmod "$m" || echo "insmod $m failed"; done
ip link set dev lo up
export BPFMAN_IN_VM=1 BPFMAN_TEST_NO_SKIP=1 RUST_BACKTRACE=1 HOME=/tmp
@ENV@
echo "BPFMAN-VM-START $(uname -r)"
cd @REPO@
@TEST@ --ignored --test-threads=1 @FILTER@
echo "BPFMAN-VM-EXIT=$?"
poweroff -f
"#;

/// The host's `BENCH_*` settings (numbers: rounds, repeats), passed on to
/// the benchmarks in the guest.
fn bench_env() -> String {
    std::env::vars()
        .filter(|(k, v)| {
            k.starts_with("BENCH_")
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !v.is_empty()
                && v.chars().all(|c| c.is_ascii_digit())
        })
        .map(|(k, v)| format!("export {k}={v}\n"))
        .collect()
}

/// Boots the VM on kernel `line` and runs the guest tests matching
/// `filter` (a libtest filter over this binary's tests) in it.
pub fn run_guest(line: &str, filter: &str, timeout: Duration) -> GuestRun {
    let dir = TempDir::new().expect("tmp");
    let root = dir.path().join("root");
    for d in ["bin", "sbin", "lib/modules", "etc", "var"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::os::unix::fs::symlink("../run", root.join("var/run")).expect("symlink");
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    let exe = std::env::current_exe().expect("test binary");
    for bin in [
        exe.clone(),
        load_bin(),
        PathBuf::from("/usr/sbin/ip"),
        PathBuf::from("/usr/sbin/bpftool"),
        PathBuf::from("/usr/bin/ping"),
    ] {
        add_binary(&root, &bin);
    }
    // libxdp's loader and dispatcher, for the dispatcher benchmark.
    let xdp_loader = Path::new("/usr/sbin/xdp-loader");
    let libxdp_dispatcher = Path::new("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o");
    if xdp_loader.exists() && libxdp_dispatcher.exists() {
        add_binary(&root, xdp_loader);
        let dst = root.join(libxdp_dispatcher.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        fs::copy(libxdp_dispatcher, &dst).expect("xdp-dispatcher.o");
    }
    let testdata = repo_root().join("testdata");
    copy_tree(
        &testdata,
        &root.join(testdata.strip_prefix("/").expect("absolute")),
    );
    copy_tree(&vm_dir(line).join("modules"), &root.join("lib/modules"));
    let init = INIT
        .replace("@REPO@", &repo_root().display().to_string())
        .replace("@TEST@", &exe.display().to_string())
        .replace("@FILTER@", filter)
        .replace("@ENV@", &bench_env());
    let init_path = root.join("init");
    fs::write(&init_path, init).expect("init");
    fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755)).expect("chmod");

    let initrd = dir.path().join("initrd.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet | gzip -1 > \"$0\"")
        .arg(&initrd)
        .current_dir(&root)
        .status()
        .expect("cpio");
    assert!(packed.success(), "cannot pack the initramfs");

    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "2048",
            // One vCPU: under TCG, a second one can execute kernel text
            // while the kernel patches it (static keys flipped by the first
            // XDP attach), which ends in an int3 oops that real hardware
            // never shows. The guest tests run one at a time anyway.
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vm_dir(line).join("vmlinuz"))
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            // bpf among the LSMs, for the BPF LSM tests.
            "console=ttyS0 panic=-1 quiet lsm=lockdown,yama,bpf",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let timed_out = loop {
        if child.try_wait().expect("wait").is_some() {
            break false;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = reader.join().unwrap_or_default();
    eprintln!("---- VM console ----\n{console}\n---- end of VM console ----");
    assert!(!timed_out, "the VM did not finish within {timeout:?}");
    let status = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("BPFMAN-VM-EXIT="))
        .and_then(|s| s.trim().parse().ok());
    GuestRun { status, console }
}

/// True inside the VM (set by its init).
pub fn in_guest() -> bool {
    std::env::var_os("BPFMAN_IN_VM").is_some()
}

/// The guest's kernel release, as (major, minor).
pub fn guest_kernel() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

#[test]
fn guest_tests_pass_on_linux_6_12() {
    guest_tests_pass("6.12");
}

#[test]
fn guest_tests_pass_on_linux_6_1() {
    guest_tests_pass("6.1");
}

/// Boots kernel `line` once and runs every guest test in that boot.
fn guest_tests_pass(line: &str) {
    let test = format!("guest_tests_pass_on_linux_{}", line.replace('.', "_"));
    if !available(&test, line) {
        return;
    }
    // BPFMAN_VM_FILTER narrows the guest tests (a libtest filter), for
    // working on one of them.
    let filter = std::env::var("BPFMAN_VM_FILTER").unwrap_or_else(|_| "guest_".into());
    // Benchmarks print their figures: let them reach the console.
    let args = if filter.starts_with("vmbench_") {
        format!("{filter} --nocapture")
    } else {
        filter.clone()
    };
    let run = run_guest(line, &args, Duration::from_secs(1800));
    assert!(
        run.console.contains(&format!("BPFMAN-VM-START {line}.")),
        "the VM did not reach the tests on {line}"
    );
    assert_eq!(
        run.status,
        Some(0),
        "guest tests failed on {line} (console above)"
    );
    let passed: usize = run
        .console
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    // Every guest test the filter names ran and passed.
    let listed = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--list", "--ignored"])
        .args(filter.split_whitespace())
        .output()
        .expect("--list");
    let expected = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .count();
    assert!(expected >= 1, "no guest test matches '{filter}'");
    assert_eq!(passed, expected, "guest tests that passed on {line}");
}
