//! `bpfman-load`'s image side against the real registry: pull with
//! signatures into the cache, pull policies (Never makes no request),
//! offline re-verification under the policy in force, corruption and fsck,
//! rmi and prune, and the lock.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::registry_harness::TestRegistry;
use crate::signing::{Keys, push_built, tc, xdp};
use crate::support::{BpfMount, Run, load_bin, run};

/// A cache root, a policy trusting key `a` for everything, and the keys.
struct Host {
    dir: TempDir,
    keys: Keys,
    /// prune and rmi look at what is loaded, so they reconcile with bpffs.
    bpf: BpfMount,
}

impl Host {
    fn new() -> Self {
        let host = Self {
            dir: TempDir::new().expect("tmp"),
            keys: Keys::new(),
            bpf: BpfMount::new(),
        };
        host.policy("trusts-a.toml", "a");
        host.policy("trusts-b.toml", "b");
        host
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes a policy requiring a signature by `key` for every image.
    fn policy(&self, name: &str, key: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(
            &path,
            format!(
                "[default]\nrule = \"require-signature\"\nkeys = [\"{}\"]\n",
                self.keys.public(key)
            ),
        )
        .expect("policy");
        path
    }

    /// Runs bpfman-load with this root and `policy` (a file name in the
    /// host directory, or None for no --policy).
    fn load(&self, policy: Option<&str>, args: &[&str]) -> Run {
        let root = self.root().display().to_string();
        let bpf = self.bpf.path().display().to_string();
        let mut all = vec![
            "--root",
            root.as_str(),
            "--bpffs",
            bpf.as_str(),
            "--lock-timeout",
            "2",
        ];
        let p;
        if let Some(name) = policy {
            p = self.dir.path().join(name).display().to_string();
            all.extend(["--policy", p.as_str()]);
        }
        all.extend_from_slice(args);
        run(&load_bin(), &all, &[])
    }

    /// The layer digest of the one cached image.
    fn layer(&self) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.load(None, &["images", "--output", "json"]).ok().stdout)
                .expect("json");
        v[0]["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .find(|b| b["mediaType"].as_str().is_some_and(|m| m.contains("layer")))
            .expect("layer")["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    }

    fn blob(&self, digest: &str) -> PathBuf {
        self.root()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

/// Lines in the registry's access log.
fn requests(reg: &TestRegistry) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains(" HTTP/1.1\" "))
        .count()
}

#[test]
fn pull_caches_verifies_and_never_needs_no_network() {
    let Some(reg) = TestRegistry::plain("pull_caches_verifies_and_never_needs_no_network") else {
        return;
    };
    let host = Host::new();
    let image = reg.repo("ebpf/xdp:v1");
    let digest = push_built(&xdp(), &image, &["--sign-key", &host.keys.private("a")]);

    let out = host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("{}@{digest}", reg.repo("ebpf/xdp"))
    );
    assert!(out.stderr.contains("verified: scope '*'"), "{}", out.stderr);
    assert!(
        out.stderr.contains("for this host: linux/amd64") && out.stderr.contains("xdp_stats (xdp)"),
        "{}",
        out.stderr
    );
    assert!(host.blob(&digest).exists());
    let listed = host.load(None, &["images", "--output", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(v[0]["digest"], digest);
    assert_eq!(v[0]["signatures"].as_array().expect("array").len(), 1);
    assert!(
        v[0]["admitted"]["scope"]
            .as_str()
            .expect("scope")
            .contains("require-signature")
    );

    // Warm cache: Never and IfNotPresent make no request at all.
    let before = requests(&reg);
    for policy in ["never", "if-not-present"] {
        host.load(
            Some("trusts-a.toml"),
            &["pull", "--pull-policy", policy, &image],
        )
        .ok();
    }
    host.load(Some("trusts-a.toml"), &["verify", &image]).ok();
    assert_eq!(
        requests(&reg),
        before,
        "the registry was contacted:\n{}",
        reg.log()
    );
    // Always resolves again.
    host.load(
        Some("trusts-a.toml"),
        &["pull", "--pull-policy", "always", &image],
    )
    .ok();
    assert!(requests(&reg) > before);

    // Cold cache and Never: a clear error, and still no request.
    let cold = Host::new();
    let before = requests(&reg);
    cold.load(
        Some("trusts-a.toml"),
        &["pull", "--pull-policy", "never", &image],
    )
    .fails_with("is not in the cache and the pull policy is Never");
    assert_eq!(requests(&reg), before);
}

#[test]
fn a_policy_change_applies_to_cached_images() {
    let Some(reg) = TestRegistry::plain("a_policy_change_applies_to_cached_images") else {
        return;
    };
    let host = Host::new();
    let image = reg.repo("ebpf/xdp:v1");
    push_built(&xdp(), &image, &["--sign-key", &host.keys.private("a")]);
    host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    drop(reg); // offline from here on

    host.load(Some("trusts-b.toml"), &["verify", &image])
        .fails_with("no trusted key verifies it");
    host.load(
        Some("trusts-b.toml"),
        &["pull", "--pull-policy", "never", &image],
    )
    .fails_with("no trusted key verifies it");
    // No policy at all: nothing is admitted.
    host.load(None, &["verify", &image])
        .fails_with("no public key is trusted");
    host.load(Some("trusts-a.toml"), &["verify", &image]).ok();
}

#[test]
fn a_corrupt_blob_is_refused_and_fsck_quarantines_it() {
    let Some(reg) = TestRegistry::plain("a_corrupt_blob_is_refused_and_fsck_quarantines_it") else {
        return;
    };
    let host = Host::new();
    let image = reg.repo("ebpf/xdp:v1");
    push_built(&xdp(), &image, &["--sign-key", &host.keys.private("a")]);
    host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    // Corrupt the layer (the object) on disk.
    let layer = host.layer();
    let path = host.blob(&layer);
    let mut bytes = fs::read(&path).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).expect("write");

    host.load(Some("trusts-a.toml"), &["verify", &image])
        .fails_with(&format!("blob {layer} is corrupt on disk"));
    let fsck = host.load(None, &["fsck"]).fails_with("corrupt entries");
    assert!(
        fsck.stdout.contains(&format!("corrupt {layer}")),
        "{}",
        fsck.stdout
    );
    assert!(
        host.root()
            .join("quarantine")
            .join(layer.trim_start_matches("sha256:"))
            .exists()
    );
    assert!(!path.exists());
    let listed = host.load(None, &["images", "--output", "json"]).ok();
    assert_eq!(listed.stdout.trim(), "[]");
    host.load(None, &["fsck"]).ok();
    // Pulling again repairs it.
    host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    host.load(Some("trusts-a.toml"), &["verify", &image]).ok();
}

#[test]
fn rmi_and_prune_free_what_nothing_uses() {
    let Some(reg) = TestRegistry::plain("rmi_and_prune_free_what_nothing_uses") else {
        return;
    };
    let host = Host::new();
    let key = host.keys.private("a");
    let sign = ["--sign-key", key.as_str()];
    let xdp_ref = reg.repo("ebpf/prog:v1");
    let old = push_built(&xdp(), &xdp_ref, &sign);
    host.load(Some("trusts-a.toml"), &["pull", &xdp_ref]).ok();
    // The tag moves; pulling it again leaves the old image unnamed.
    let new = push_built(&tc(), &xdp_ref, &sign);
    host.load(Some("trusts-a.toml"), &["pull", &xdp_ref]).ok();
    let other = reg.repo("ebpf/other:v1");
    push_built(
        &crate::registry::obj("amd64", "kprobe.bpfel.o"),
        &other,
        &sign,
    );
    host.load(Some("trusts-a.toml"), &["pull", &other]).ok();
    assert!(host.blob(&old).exists() && host.blob(&new).exists());

    let pruned = host.load(None, &["prune"]).ok();
    assert!(
        pruned.stdout.contains(&format!("removed {old}")),
        "{}",
        pruned.stdout
    );
    assert!(!host.blob(&old).exists());
    assert!(host.blob(&new).exists());

    host.load(None, &["rmi", &xdp_ref]).ok();
    assert!(!host.blob(&new).exists());
    host.load(
        None,
        &[
            "rmi",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    )
    .fails_with("no cached image matches");

    host.load(None, &["prune", "--all"]).ok();
    let left: Vec<_> = fs::read_dir(host.root().join("blobs/sha256"))
        .expect("dir")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_held_lock_makes_the_next_invocation_wait_and_give_up() {
    let host = Host::new();
    let root = host.root();
    fs::create_dir_all(&root).expect("root");
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(root.join("lock"))
        .expect("lock");
    lock.lock().expect("flock");
    fs::write(
        root.join("lock"),
        "pid 4242 (bpfman-load pull example) since 0",
    )
    .expect("holder");
    let out = host.load(None, &["images"]).fails_with("gave up after");
    assert!(
        out.stderr
            .contains("held by pid 4242 (bpfman-load pull example)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("waiting for the lock"),
        "{}",
        out.stderr
    );
    drop(lock);
    host.load(None, &["images"]).ok();
    assert_no_temp(&root);
}

fn assert_no_temp(root: &Path) {
    let tmp: Vec<_> = fs::read_dir(root.join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn an_image_without_this_hosts_platform_is_refused_before_loading() {
    let Some(reg) = TestRegistry::plain("an_image_without_this_hosts_platform_is_refused") else {
        return;
    };
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    let host = Host::new();
    let image = reg.repo("ebpf/s390x-only:v1");
    push_built(
        &crate::registry::obj("s390x", "xdp_counter.bpfeb.o"),
        &image,
        &["--index", "--sign-key", &host.keys.private("a")],
    );
    host.load(Some("trusts-a.toml"), &["pull", &image])
        .fails_with("no linux/amd64 entry (it has: linux/s390x)");
}

/// Regression: pulling the same digest from another repository (here an
/// unsigned mirror) wiped the signatures cached from the first, so an
/// offline host could no longer load its signed image. The cache keeps
/// the union, each signature with where it came from.
#[test]
fn the_same_digest_from_another_repository_keeps_the_cached_signatures() {
    let Some(reg) =
        TestRegistry::plain("the_same_digest_from_another_repository_keeps_the_cached_signatures")
    else {
        return;
    };
    let host = Host::new();
    let signed = reg.repo("ebpf/signed:v1");
    let mirror = reg.repo("mirror/unsigned:v1");
    let digest = push_built(&xdp(), &signed, &["--sign-key", &host.keys.private("a")]);
    crate::signing::img(&["copy", "--no-signatures", &signed, &mirror]).ok();

    host.load(Some("trusts-a.toml"), &["pull", &signed]).ok();
    // The mirror has no signature of its own; the one cached for the
    // digest stays, and (it signs these very bytes) admits the mirror too.
    host.load(Some("trusts-a.toml"), &["pull", &mirror]).ok();
    let listed = host.load(None, &["images", "--output", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let record = v
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["digest"] == digest.as_str())
        .expect("cached");
    let sigs = record["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0]["source"], reg.repo("ebpf/signed").as_str());
    // Offline, the signed reference still verifies.
    host.load(
        Some("trusts-a.toml"),
        &["pull", "--pull-policy", "never", &signed],
    )
    .ok();
    host.load(Some("trusts-a.toml"), &["verify", &signed]).ok();
}

/// Regression: a pull the policy refused stayed cached under its name,
/// and `images` showed it as admitted. Refused content is not named; its
/// blobs wait for `prune`; a name that named admitted content before keeps
/// naming it.
#[test]
fn a_refused_pull_leaves_no_name_in_the_cache() {
    let Some(reg) = TestRegistry::plain("a_refused_pull_leaves_no_name_in_the_cache") else {
        return;
    };
    let host = Host::new();
    let image = reg.repo("ebpf/refused:v1");
    let first = push_built(&xdp(), &image, &["--sign-key", &host.keys.private("a")]);
    let images = || -> Vec<serde_json::Value> {
        let out = host.load(None, &["images", "--output", "json"]).ok();
        serde_json::from_str(&out.stdout).expect("json")
    };
    // Signed by a, and b is trusted: refused, and nothing is named.
    host.load(Some("trusts-b.toml"), &["pull", &image])
        .fails_with("");
    for r in images() {
        assert!(r["references"].as_array().expect("refs").is_empty(), "{r}");
        assert!(r["admitted"].is_null(), "{r}");
    }
    host.load(
        Some("trusts-b.toml"),
        &["pull", "--pull-policy", "never", &image],
    )
    .fails_with("not in the cache");
    host.load(None, &["prune"]).ok();
    assert!(images().is_empty(), "prune freed the refused image");

    // Admitted under a; then the tag moves to an image a did not sign: the
    // refused pull leaves the name on what a admitted.
    host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    push_built(&tc(), &image, &["--sign-key", &host.keys.private("b")]);
    host.load(
        Some("trusts-a.toml"),
        &["pull", "--pull-policy", "always", &image],
    )
    .fails_with("");
    let named: Vec<String> = images()
        .iter()
        .filter(|r| !r["references"].as_array().expect("refs").is_empty())
        .map(|r| r["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(named, std::slice::from_ref(&first));
    let out = host
        .load(
            Some("trusts-a.toml"),
            &["pull", "--pull-policy", "never", &image],
        )
        .ok();
    assert!(out.stdout.contains(&first), "{}", out.stdout);
}

/// Runs `bin` with `args` under `timeout 60`: a hang is a failure of its
/// own (status 124), not a stuck test run.
fn bounded(bin: &Path, args: &[&str]) -> Run {
    let bin = bin.display().to_string();
    let mut all = vec!["60", bin.as_str()];
    all.extend_from_slice(args);
    let out = run(Path::new("timeout"), &all, &[]);
    assert_ne!(out.status, 124, "it hung: {args:?}");
    out
}

/// Regression: a cached blob replaced by a link to /dev/zero grew the
/// loader to gigabytes, and a FIFO hung it (fsck too), as did a FIFO or
/// /dev/zero given as a policy, key, object or `load file`. Every such
/// read now wants a regular file and stops at the size expected.
#[test]
fn files_that_are_not_regular_are_refused_at_once() {
    let Some(reg) = TestRegistry::plain("files_that_are_not_regular_are_refused_at_once") else {
        return;
    };
    let host = Host::new();
    let image = reg.repo("ebpf/xdp:v1");
    push_built(&xdp(), &image, &["--sign-key", &host.keys.private("a")]);
    host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    let layer = host.layer();
    let fifo = host.dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let fifo_arg = fifo.display().to_string();
    let root = host.root().display().to_string();
    let bpf = host.bpf.path().display().to_string();
    let policy = host.dir.path().join("trusts-a.toml").display().to_string();
    let loader = |args: &[&str]| {
        let mut all = vec!["--root", root.as_str(), "--bpffs", bpf.as_str()];
        all.extend_from_slice(args);
        bounded(&load_bin(), &all)
    };

    for target in [Path::new("/dev/zero"), fifo.as_path()] {
        let blob = host.blob(&layer);
        fs::remove_file(&blob).ok();
        std::os::unix::fs::symlink(target, &blob).expect("symlink");
        loader(&["--policy", &policy, "verify", &image]).fails_with("");
        loader(&["fsck"]).fails_with("corrupt entries");
        assert!(fs::symlink_metadata(&blob).is_err(), "quarantined");
        host.load(Some("trusts-a.toml"), &["pull", &image]).ok();
    }
    // A FIFO or /dev/zero as the policy, a key, an object.
    for bad in [fifo_arg.as_str(), "/dev/zero"] {
        loader(&["--policy", bad, "verify", &image]).fails_with("not a regular file");
        bounded(
            &crate::support::image_bin(),
            &["verify", "--key", bad, &image],
        )
        .fails_with("not a regular file");
        bounded(
            &crate::support::image_bin(),
            &["build", "--object", bad, "--output", "oci:/nonexistent/x"],
        )
        .fails_with("not a regular file");
    }
}

/// Regression: a state root another user could change let them make the
/// loader (root) delete or overwrite files: `tmp/` replaced by a link made
/// fsck empty the target, `lock` replaced by a link made the lock write
/// clobber it. Such roots are refused, and the targets are left alone.
#[test]
fn a_root_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("tmp");
    let victim = dir.path().join("victim");
    fs::create_dir(&victim).expect("mkdir");
    fs::write(victim.join("precious"), "keep").expect("write");
    let root = dir.path().join("root");
    let root_arg = root.display().to_string();
    let load = |args: &[&str]| {
        let mut all = vec!["--root", root_arg.as_str()];
        all.extend_from_slice(args);
        run(&load_bin(), &all, &[])
    };
    load(&["images"]).ok();

    // Links where our own files go.
    fs::remove_dir_all(root.join("tmp")).expect("rm tmp");
    std::os::unix::fs::symlink(&victim, root.join("tmp")).expect("symlink");
    load(&["fsck"]).fails_with("is a symbolic link");
    fs::remove_file(root.join("tmp")).expect("rm link");
    fs::remove_file(root.join("lock")).expect("rm lock");
    std::os::unix::fs::symlink(victim.join("precious"), root.join("lock")).expect("symlink");
    load(&["images"]).fails_with("is a symbolic link");
    assert_eq!(fs::read(victim.join("precious")).expect("kept"), b"keep");
    fs::remove_file(root.join("lock")).expect("rm link");

    // A root others can write to.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).expect("chmod");
    load(&["images"]).fails_with("others can write to it");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).expect("chmod");
    load(&["images"]).ok();

    // A root owned by someone else (only root can make one).
    let chowned = std::process::Command::new("chown")
        .arg("65534")
        .arg(&root)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if chowned {
        load(&["images"]).fails_with("is owned by uid 65534");
    }
}
