//! The README's main command on a machine that lacks what it needs.

use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{repo_root, run};

/// Regression: on a fresh machine `scripts/demo.sh` built for three
/// minutes, then failed at `exec of "ping"`. It now checks everything it
/// needs before it builds anything, and names the packages to install.
#[test]
fn the_demo_names_what_is_missing_before_building_anything() {
    // A PATH with the basics and nothing the demo needs.
    let bin = TempDir::new().expect("tmp");
    for tool in [
        "bash", "dirname", "id", "mktemp", "head", "cat", "tee", "grep", "env",
    ] {
        let Some(path) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.exists())
        else {
            continue;
        };
        std::os::unix::fs::symlink(path, bin.path().join(tool)).expect("symlink");
    }
    let started = Instant::now();
    let out = run(
        Path::new("/usr/bin/env"),
        &[
            &format!("PATH={}", bin.path().display()),
            "BPFMAN_DEMO_NO_INSTALL=1",
            &repo_root().join("scripts/demo.sh").display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.status, 1, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it built first"
    );
    assert!(out.stderr.contains("cargo"), "{}", out.stderr);
    assert!(!out.stdout.contains("== keygen"), "{}", out.stdout);
    if is_root() {
        for pkg in ["iproute2", "iputils-ping", "bpftool"] {
            assert!(out.stderr.contains(pkg), "names {pkg}: {}", out.stderr);
        }
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
