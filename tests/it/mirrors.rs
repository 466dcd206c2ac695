//! registries.conf mirrors with two real registries: pulls go to the
//! mirror first and fall back to the source, pushes never go to a mirror,
//! blocked registries are refused, and signatures are judged under the
//! reference as written, not the mirror's name. Both tools.

use std::fs;

use tempfile::TempDir;

use crate::registry_harness::TestRegistry;
use crate::signing::{Keys, img, push_built, xdp};
use crate::support::{load_bin, run};

/// A root of bpfman-load's own, with a policy trusting key `a` for
/// exactly `scope`.
fn load(dir: &TempDir, keys: &Keys, scope: &str, args: &[&str]) -> crate::support::Run {
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[default]\nrule = \"reject\"\n[[scope]]\nmatch = \"{scope}\"\nrule = \"require-signature\"\nkeys = [\"{}\"]\n",
            keys.public("a")
        ),
    )
    .expect("policy");
    let root = dir.path().join("root").display().to_string();
    let policy = policy.display().to_string();
    let mut all = vec!["--root", root.as_str(), "--policy", policy.as_str()];
    all.extend_from_slice(args);
    run(&load_bin(), &all, &[])
}

#[test]
fn pulls_go_through_mirrors_and_signatures_stay_the_sources() {
    let test = "pulls_go_through_mirrors_and_signatures_stay_the_sources";
    let Some(source) = TestRegistry::plain(test) else {
        return;
    };
    let Some(mirror) = TestRegistry::plain(test) else {
        return;
    };
    let keys = Keys::new();
    let image = source.repo("ebpf/xdp:v1");
    let digest = push_built(&xdp(), &image, &["--sign-key", &keys.private("a")]);
    // The mirror holds a copy, signatures included, under another path.
    img(&["copy", &image, &mirror.repo("cache/ebpf/xdp:v1")]).ok();

    let dir = TempDir::new().expect("tmp");
    let conf = dir.path().join("registries.conf");
    fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"{src}/ebpf\"\nlocation = \"{src}/ebpf\"\n\n[[registry.mirror]]\nlocation = \"{m}/cache/ebpf\"\n",
            src = source.addr,
            m = mirror.addr
        ),
    )
    .expect("conf");
    let conf = conf.display().to_string();
    let scope = format!("{}/ebpf", source.addr);

    // bpfman-load reads from the mirror; the source sees no manifest
    // request; the policy judges the source's name.
    let before = source.count("GET", "/manifests/");
    let out = load(
        &dir,
        &keys,
        &scope,
        &["pull", &image, "--registries-conf", &conf],
    )
    .ok();
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    assert_eq!(source.count("GET", "/manifests/"), before);
    assert!(mirror.count("GET", "/manifests/") > 0);

    // A policy that trusts only the mirror's name admits nothing: the
    // image is the source's.
    let other = TempDir::new().expect("tmp");
    load(
        &other,
        &keys,
        &format!("{}/cache", mirror.addr),
        &["pull", &image, "--registries-conf", &conf],
    )
    .fails_with("reject");

    // bpfman-image reads through the mirror too.
    let layout = dir.path().join("layout");
    let before = source.count("GET", "/manifests/");
    img(&[
        "pull",
        &image,
        "--output",
        &format!("oci:{}", layout.display()),
        "--registries-conf",
        &conf,
    ])
    .ok();
    assert_eq!(source.count("GET", "/manifests/"), before);

    // Pushes never go to a mirror.
    let pushes = mirror.count("PUT", "/manifests/");
    push_built(
        &xdp(),
        &source.repo("ebpf/xdp:v2"),
        &["--registries-conf", &conf],
    );
    assert_eq!(mirror.count("PUT", "/manifests/"), pushes);

    // The mirror gone: the source answers.
    drop(mirror);
    let before = source.count("GET", "/manifests/");
    load(
        &dir,
        &keys,
        &scope,
        &["pull", &image, "--registries-conf", &conf],
    )
    .ok();
    assert!(source.count("GET", "/manifests/") > before);

    // A blocked registry is refused, naming the file.
    let blocked = dir.path().join("blocked.conf");
    fs::write(
        &blocked,
        format!(
            "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
            source.addr
        ),
    )
    .expect("conf");
    let blocked = blocked.display().to_string();
    load(
        &dir,
        &keys,
        &scope,
        &["pull", &image, "--registries-conf", &blocked],
    )
    .fails_with("blocked by registries.conf");
    img(&["inspect", &image, "--registries-conf", &blocked]).fails_with("blocked");
}
