//! The registry transport against real registries (Debian's
//! `docker-registry`, plain and TLS with basic auth), skopeo both ways, and
//! an adversarial in-process registry for faults.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use crate::fake_registry::{FakeRegistry, Fault};
use crate::registry_harness::{PASSWORD, TestRegistry, USER};
use crate::support::{Run, have_tool, image, image_bin, run, testdata, tree};

pub fn sha256(bytes: &[u8]) -> String {
    bpfman_image_spec::digest::Digest::of(bytes).to_string()
}

pub fn obj(arch: &str, file: &str) -> String {
    format!("{arch}={}", testdata(&format!("bpf/{file}")).display())
}

/// Builds the two-arch xdp_counter image into `dir` under `tag`; returns
/// its digest.
fn build_multi(dir: &Path, tag: &str) -> String {
    let out = image(&[
        "build",
        "--object",
        &obj("amd64", "xdp_counter.bpfel.o"),
        "--object",
        &obj("s390x", "xdp_counter.bpfeb.o"),
        "--output",
        &format!("oci:{}:{tag}", dir.display()),
    ])
    .ok();
    pinned_digest(&out.stdout)
}

pub fn pinned_digest(stdout: &str) -> String {
    stdout
        .lines()
        .last()
        .and_then(|l| l.rsplit_once('@'))
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| panic!("no pinned reference in {stdout:?}"))
}

/// Runs bpfman-image with the auth environment confined to `home`.
fn img_env(args: &[&str], home: &Path) -> Run {
    let h = home.display().to_string();
    let docker = home.join(".docker").display().to_string();
    let xdg = home.join("run").display().to_string();
    run(
        &image_bin(),
        args,
        &[
            ("HOME", h.as_str()),
            ("DOCKER_CONFIG", docker.as_str()),
            ("XDG_RUNTIME_DIR", xdg.as_str()),
            ("REGISTRY_AUTH_FILE", ""),
        ],
    )
}

#[test]
fn push_pull_round_trip_and_skip_existing_blobs() {
    let Some(reg) = TestRegistry::plain("push_pull_round_trip_and_skip_existing_blobs") else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let src = tmp.path().join("src");
    let digest = build_multi(&src, "v1");
    let dst = reg.repo("ebpf/xdp-counter:v1");

    let pushed = image(&["push", &format!("oci:{}:v1", src.display()), &dst]).ok();
    assert_eq!(
        pushed.stdout.trim(),
        format!("{}@{digest}", reg.repo("ebpf/xdp-counter"))
    );
    // 2 configs + 2 layers uploaded; the index and 2 manifests put.
    let uploads = reg.count("POST", "/v2/ebpf/xdp-counter/blobs/uploads/");
    assert_eq!(uploads, 4, "{}", reg.log());
    assert!(
        pushed.stderr.contains("uploaded 4 blobs"),
        "{}",
        pushed.stderr
    );

    // Pushing again uploads no blob.
    let again = image(&["push", &format!("oci:{}:v1", src.display()), &dst]).ok();
    assert_eq!(pinned_digest(&again.stdout), digest);
    assert_eq!(
        reg.count("POST", "/v2/ebpf/xdp-counter/blobs/uploads/"),
        uploads,
        "second push started uploads:\n{}",
        reg.log()
    );
    // Small blobs go up in one monolithic PUT each: no PATCH at all.
    let patches = reg.count("PATCH", "/v2/ebpf/xdp-counter/blobs/uploads/");
    assert_eq!(patches, 0, "PATCH requests:\n{}", reg.log());
    let puts = reg.count("PUT", "/v2/ebpf/xdp-counter/blobs/uploads/");
    assert_eq!(puts, 4, "monolithic PUTs:\n{}", reg.log());
    assert!(
        again.stderr.contains("uploaded 0 blobs"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("4 already present"),
        "{}",
        again.stderr
    );

    // Pull the whole index back: identical digest and identical blobs.
    let pulled_dir = tmp.path().join("pulled");
    let pulled = image(&[
        "pull",
        &dst,
        "--output",
        &format!("oci:{}", pulled_dir.display()),
    ])
    .ok();
    assert_eq!(
        pulled.stdout.trim(),
        format!("oci:{}:v1@{digest}", pulled_dir.display())
    );
    let blobs = |d: &Path| {
        tree(&d.join("blobs"))
            .into_iter()
            .map(|(p, b)| (p, sha256(&b)))
            .collect::<Vec<_>>()
    };
    assert_eq!(blobs(&src), blobs(&pulled_dir));

    // By digest, into a new tag; the tag in the reference does not matter.
    let by_digest = format!("{}@{digest}", reg.repo("ebpf/xdp-counter"));
    let out = image(&[
        "pull",
        &by_digest,
        "--output",
        &format!("oci:{}:pinned", pulled_dir.display()),
    ])
    .ok();
    assert_eq!(pinned_digest(&out.stdout), digest);

    // inspect shows the same thing for the registry and the layout.
    let remote = image(&["inspect", "--output", "json", &dst]).ok();
    let local = image(&[
        "inspect",
        "--output",
        "json",
        &format!("oci:{}:v1", src.display()),
    ])
    .ok();
    let mut remote: Value = serde_json::from_str(&remote.stdout).expect("json");
    let mut local: Value = serde_json::from_str(&local.stdout).expect("json");
    assert_eq!(remote["reference"], dst.as_str());
    remote["reference"] = Value::Null;
    local["reference"] = Value::Null;
    assert_eq!(remote, local);
}

#[test]
fn build_push_tag_and_copy_between_repositories() {
    let Some(reg) = TestRegistry::plain("build_push_tag_and_copy_between_repositories") else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    // build --push without a layout.
    let out = image(&[
        "build",
        "--object",
        &obj("amd64", "xdp_counter.bpfel.o"),
        "--push",
        &reg.repo("ebpf/single:v1"),
    ])
    .ok();
    let digest = pinned_digest(&out.stdout);
    assert_eq!(
        digest, "sha256:7796582091bc582f022da1eea5f6f2382890504d037c6d7b7f1dcc0603566f20",
        "the same bytes as a layout build"
    );

    // tag: the new tag names the same manifest.
    let tagged = image(&["tag", &reg.repo("ebpf/single:v1"), "stable", "v1.0.0"]).ok();
    assert_eq!(tagged.stdout.lines().count(), 2);
    let stable = image(&[
        "inspect",
        "--output",
        "json",
        &reg.repo("ebpf/single:stable"),
    ])
    .ok();
    let v: Value = serde_json::from_str(&stable.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());
    // A tag that names another image is not moved from a pinned
    // reference either, without --force.
    image(&[
        "build",
        "--object",
        &obj("amd64", "xdp_pass.bpfel.o"),
        "--push",
        &reg.repo("ebpf/single:other"),
    ])
    .ok();
    let pinned = format!("{}@{digest}", reg.repo("ebpf/single"));
    image(&["tag", &pinned, "other"]).fails_with("pass --force");
    image(&["tag", "--force", &pinned, "other"]).ok();

    // copy registry -> registry (another repository) -> layout.
    let copied = image(&[
        "copy",
        &reg.repo("ebpf/single:stable"),
        &reg.repo("mirror/single:v1"),
    ])
    .ok();
    assert_eq!(pinned_digest(&copied.stdout), digest);
    let dir = tmp.path().join("copy");
    let out = image(&[
        "copy",
        &reg.repo("mirror/single:v1"),
        &format!("oci:{}:m", dir.display()),
    ])
    .ok();
    assert_eq!(pinned_digest(&out.stdout), digest);

    // Unknown tag and unknown repository: clear, specific errors.
    image(&["inspect", &reg.repo("ebpf/single:nope")])
        .fails_with("manifest ebpf/single:nope not found in ebpf/single on");
    image(&[
        "pull",
        &reg.repo("no/such:v1"),
        "--output",
        &format!("oci:{}", tmp.path().join("x").display()),
    ])
    .fails_with("not found");
    assert!(!tmp.path().join("x").exists());
    // A pinned push refuses other bytes.
    let bad = format!("{}@sha256:{}", reg.repo("ebpf/single"), "0".repeat(64));
    image(&["push", &format!("oci:{}:m", dir.display()), &bad])
        .fails_with("is pinned to sha256:000");
}

#[test]
fn tls_registry_with_basic_auth() {
    let Some(reg) = TestRegistry::tls_with_auth("tls_registry_with_basic_auth") else {
        return;
    };
    let ca = reg.ca.clone().expect("ca");
    let ca_s = ca.display().to_string();
    let tmp = TempDir::new().expect("tmp");
    let home = tmp.path().join("home");
    let src = tmp.path().join("src");
    let digest = build_multi(&src, "v1");
    let src_ref = format!("oci:{}:v1", src.display());
    let dst = reg.repo("secure/xdp:v1");
    let no_certs_d = tmp.path().join("empty-certs.d");
    let no_certs_d = no_certs_d.display().to_string();

    // Untrusted CA: a TLS error that says what to do, never a fall back to HTTP.
    img_env(
        &[
            "push",
            &src_ref,
            &dst,
            "--certs-d",
            &no_certs_d,
            "--retries",
            "0",
        ],
        &home,
    )
    .fails_with("--ca-file");
    assert_eq!(reg.count("POST", "/blobs/uploads/"), 0);

    // Trusted, but no credentials.
    img_env(
        &[
            "push",
            &src_ref,
            &dst,
            "--ca-file",
            &ca_s,
            "--certs-d",
            &no_certs_d,
        ],
        &home,
    )
    .fails_with("no credentials for it were found; run bpfman-image login");

    // Wrong password: login fails and stores nothing.
    let login = |password: &str| {
        let mut cmd = std::process::Command::new(image_bin());
        cmd.args([
            "login",
            &reg.addr,
            "-u",
            USER,
            "--password-stdin",
            "--ca-file",
            &ca_s,
        ])
        .env("HOME", &home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("REGISTRY_AUTH_FILE", "")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn login");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("login");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("login -> {:?}\n{stderr}", out.status);
        assert!(!stderr.contains(password), "the password leaked: {stderr}");
        (out.status.success(), stderr)
    };
    let (ok, stderr) = login("wrong");
    assert!(!ok);
    assert!(
        stderr.contains("rejected the user name or password"),
        "{stderr}"
    );
    let config = home.join(".docker/config.json");
    assert!(!config.exists());

    // Right password: stored with mode 0600, and used from then on.
    let (ok, stderr) = login(PASSWORD);
    assert!(ok, "{stderr}");
    let mode = fs::metadata(&config)
        .expect("config.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored: Value = serde_json::from_slice(&fs::read(&config).expect("read")).expect("json");
    assert!(stored["auths"][&reg.addr]["auth"].is_string());

    let pushed = img_env(
        &[
            "push",
            &src_ref,
            &dst,
            "--ca-file",
            &ca_s,
            "--certs-d",
            &no_certs_d,
        ],
        &home,
    )
    .ok();
    assert_eq!(pinned_digest(&pushed.stdout), digest);
    assert!(!pushed.stderr.contains(PASSWORD));

    // The CA from a certs.d directory instead of --ca-file.
    let certs_d = tmp.path().join("certs.d");
    fs::create_dir_all(certs_d.join(&reg.addr)).expect("mkdir");
    fs::copy(&ca, certs_d.join(&reg.addr).join("ca.crt")).expect("copy ca");
    let pulled = tmp.path().join("pulled");
    let out = img_env(
        &[
            "pull",
            &dst,
            "--output",
            &format!("oci:{}", pulled.display()),
            "--certs-d",
            &certs_d.display().to_string(),
        ],
        &home,
    )
    .ok();
    assert_eq!(pinned_digest(&out.stdout), digest);

    // --creds overrides the file; a wrong one is named as the culprit.
    img_env(
        &[
            "inspect",
            &dst,
            "--ca-file",
            &ca_s,
            "--creds",
            &format!("{USER}:nope"),
        ],
        &home,
    )
    .fails_with("the credentials from --creds were rejected");
    // --creds-file works and its secret is not echoed.
    let creds_file = tmp.path().join("creds");
    fs::write(&creds_file, format!("{USER}:{PASSWORD}\n")).expect("creds");
    let out = img_env(
        &[
            "inspect",
            &dst,
            "--ca-file",
            &ca_s,
            "--creds-file",
            &creds_file.display().to_string(),
        ],
        &home,
    )
    .ok();
    assert!(out.stdout.contains(&digest));

    // logout removes the entry; access is refused again.
    img_env(&["logout", &reg.addr], &home).ok();
    img_env(&["inspect", &dst, "--ca-file", &ca_s], &home)
        .fails_with("no credentials for it were found");
    img_env(&["logout", &reg.addr], &home).fails_with("not logged in to");
}

#[test]
fn skopeo_reads_what_we_push_and_we_pull_what_skopeo_pushes() {
    let test = "skopeo_reads_what_we_push_and_we_pull_what_skopeo_pushes";
    if !have_tool(test, "skopeo", "apt-get install skopeo") {
        return;
    }
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let src = tmp.path().join("src");
    let digest = build_multi(&src, "v1");
    image(&[
        "push",
        &format!("oci:{}:v1", src.display()),
        &reg.repo("ours/xdp:v1"),
    ])
    .ok();

    let skopeo = |args: &[&str]| run(Path::new("skopeo"), args, &[]);
    let docker_ref = format!("docker://{}", reg.repo("ours/xdp:v1"));
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &docker_ref]).ok();
    assert_eq!(sha256(raw.stdout.as_bytes()), digest);
    crate::interop::assert_skopeo_sees_xdp_counter(&docker_ref, &["--tls-verify=false"]);
    let copied = tmp.path().join("skopeo-copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &docker_ref,
        &format!("oci:{}:v1", copied.display()),
    ])
    .ok();
    let out = image(&[
        "inspect",
        "--output",
        "json",
        &format!("oci:{}:v1", copied.display()),
    ])
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());

    // skopeo pushes, converting to Docker v2 schema 2 (a layout and media
    // types we did not write); we pull and validate it.
    let single = tmp.path().join("single");
    image(&[
        "build",
        "--object",
        &obj("amd64", "xdp_counter.bpfel.o"),
        "--output",
        &format!("oci:{}:s", single.display()),
    ])
    .ok();
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:s", single.display()),
        &format!("docker://{}", reg.repo("theirs/xdp:v2s2")),
    ])
    .ok();
    let theirs = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}", reg.repo("theirs/xdp:v2s2")),
    ])
    .ok();
    assert!(
        theirs
            .stdout
            .contains("application/vnd.docker.distribution.manifest.v2+json")
    );
    let pulled = tmp.path().join("pulled");
    let out = image(&[
        "pull",
        &reg.repo("theirs/xdp:v2s2"),
        "--output",
        &format!("oci:{}", pulled.display()),
    ])
    .ok();
    assert_eq!(pinned_digest(&out.stdout), sha256(theirs.stdout.as_bytes()));
    let shown = image(&["inspect", &format!("oci:{}:v2s2", pulled.display())]).ok();
    assert!(shown.stdout.contains("xdp_stats"), "{}", shown.stdout);
}

/// The single-arch image, as the fake registry serves it.
struct Served {
    manifest: Vec<u8>,
    blobs: Vec<(String, Vec<u8>)>,
    layer: String,
}

fn served_image(dir: &Path) -> Served {
    image(&[
        "build",
        "--object",
        &obj("amd64", "xdp_counter.bpfel.o"),
        "--output",
        &format!("oci:{}:v1", dir.display()),
    ])
    .ok();
    let index: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index")).expect("json");
    let blob = |d: &str| {
        fs::read(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .expect("blob")
    };
    let mdigest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest = blob(mdigest);
    let m: Value = serde_json::from_slice(&manifest).expect("json");
    let config = m["config"]["digest"].as_str().expect("config").to_string();
    let layer = m["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    Served {
        blobs: vec![
            (config.clone(), blob(&config)),
            (layer.clone(), blob(&layer)),
        ],
        manifest,
        layer,
    }
}

/// Pulls from a fake registry with `fault`; returns the run and whether the
/// output directory's parent holds anything but the source layout.
fn pull_with_fault(fault: Fault, extra: &[&str]) -> (Run, FakeRegistry, Vec<PathBuf>) {
    let tmp = TempDir::new().expect("tmp");
    let served = served_image(&tmp.path().join("src"));
    let fake = FakeRegistry::start(
        fault,
        "v1",
        (
            "application/vnd.oci.image.manifest.v1+json",
            served.manifest,
        ),
        served.blobs,
        &served.layer,
    );
    let out_dir = tmp.path().join("out");
    let mut args = vec![
        "pull".to_string(),
        format!("{}/test/img:v1", fake.addr),
        "--output".into(),
        format!("oci:{}:v1", out_dir.display()),
        "--retry-delay-ms".into(),
        "10".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = image(&args);
    let left: Vec<PathBuf> = fs::read_dir(tmp.path())
        .expect("read")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "src"))
        .collect();
    (r, fake, left)
}

fn assert_fault(fault: Fault, extra: &[&str], needle: &str) -> FakeRegistry {
    let (r, fake, left) = pull_with_fault(fault, extra);
    r.fails_with(needle);
    assert!(left.is_empty(), "{fault:?} left files behind: {left:?}");
    fake
}

#[test]
fn fake_registry_serves_a_good_image() {
    let (r, _, left) = pull_with_fault(Fault::None, &[]);
    r.ok();
    assert_eq!(left.len(), 1, "the pulled layout");
}

#[test]
fn fault_blob_bytes_do_not_match_digest() {
    assert_fault(Fault::BlobWrongBytes, &[], "does not match its digest");
}

#[test]
fn fault_blob_shorter_than_descriptor() {
    assert_fault(Fault::BlobShort, &[], "but its descriptor says");
}

#[test]
fn fault_blob_longer_than_descriptor() {
    assert_fault(Fault::BlobLong, &[], "but its descriptor says");
    assert_fault(Fault::BlobLongChunked, &[], "is more than");
}

/// Registries send blob downloads elsewhere (storage, a CDN): redirects
/// are followed, relative or to another host, and the credentials go to
/// the registry only.
#[test]
fn blob_redirects_are_followed_without_the_credentials() {
    let (r, fake, _) = pull_with_fault(Fault::BlobRedirect, &["--creds", "someone:secret"]);
    r.ok();
    let calls = fake.calls.lock().expect("lock").clone();
    let hops: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("/redirect/") || c.contains("/cdn/"))
        .collect();
    assert_eq!(hops.len(), 2, "{calls:#?}");
    assert!(hops.iter().all(|c| !c.ends_with("[auth]")), "{calls:#?}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains("/v2/test/img/blobs/") && c.ends_with("[auth]")),
        "the registry itself gets the credentials: {calls:#?}"
    );
}

#[test]
fn fault_manifest_over_size_limit() {
    assert_fault(Fault::HugeManifest, &[], "over the 4194304-byte limit");
}

#[test]
fn fault_401_without_challenge() {
    assert_fault(Fault::Unauthorized, &[], "no WWW-Authenticate challenge");
}

#[test]
fn fault_404() {
    assert_fault(
        Fault::NotFound,
        &[],
        "manifest test/img:v1 not found in test/img",
    );
}

#[test]
fn fault_500_then_success_is_retried() {
    let (r, fake, left) = pull_with_fault(Fault::ServerErrorOnce, &[]);
    let r = r.ok();
    assert!(r.stderr.contains("1 retries"), "{}", r.stderr);
    assert_eq!(left.len(), 1);
    // The image's manifest: the failed request and its retry. (Looking up
    // signatures, `sha256-<hex>[.sig]`, comes after.)
    let image_manifest = fake
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|p| p.contains("/manifests/") && !p.contains("/manifests/sha256-"))
        .count();
    assert_eq!(image_manifest, 2);
}

#[test]
fn fault_500_forever_gives_up() {
    let fake = assert_fault(
        Fault::ServerErrorAlways,
        &["--retries", "2"],
        "gave up on manifest test/img:v1 after 3 attempts",
    );
    assert_eq!(
        fake.manifest_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[test]
fn fault_stalled_server_times_out() {
    let (r, _, left) = pull_with_fault(Fault::Stall, &["--timeout", "1", "--retries", "1"]);
    let r = r.fails_with("timed out waiting for");
    assert!(r.stderr.contains("after 2 attempts"), "{}", r.stderr);
    assert!(left.is_empty());
}

/// A docker credential helper speaking the real protocol (get/store/erase
/// on stdin/stdout), keeping one file per server in $BPFMAN_TEST_HELPER_STORE.
const HELPER: &str = r#"#!/bin/sh
store="${BPFMAN_TEST_HELPER_STORE:?}"
key() { printf '%s' "$1" | tr '/:' '__'; }
case "$1" in
get)
	read -r server
	if [ -f "$store/$(key "$server")" ]; then cat "$store/$(key "$server")"; else echo "credentials not found in native keychain"; exit 1; fi ;;
store)
	input=$(cat)
	server=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
	printf '%s' "$input" > "$store/$(key "$server")" ;;
erase)
	read -r server
	rm -f "$store/$(key "$server")" ;;
*) echo "unknown action $1"; exit 1 ;;
esac
"#;

#[test]
fn credential_helper_stores_and_supplies_credentials() {
    let Some(reg) =
        TestRegistry::tls_with_auth("credential_helper_stores_and_supplies_credentials")
    else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let home = tmp.path().join("home");
    let bin = tmp.path().join("bin");
    let store = tmp.path().join("store");
    for d in [&bin, &store, &home.join(".docker")] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let helper = bin.join("docker-credential-bpfmantest");
    fs::write(&helper, HELPER).expect("helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = home.join(".docker/config.json");
    fs::write(&config, r#"{"credsStore":"bpfmantest"}"#).expect("config");

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ca = reg.ca.clone().expect("ca").display().to_string();
    let env = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        if args[0] != "logout" {
            all.extend(["--ca-file", &ca]);
        }
        let h = home.display().to_string();
        let docker = home.join(".docker").display().to_string();
        let st = store.display().to_string();
        run(
            &image_bin(),
            &all,
            &[
                ("HOME", h.as_str()),
                ("DOCKER_CONFIG", docker.as_str()),
                ("XDG_RUNTIME_DIR", h.as_str()),
                ("REGISTRY_AUTH_FILE", ""),
                ("BPFMAN_TEST_HELPER_STORE", st.as_str()),
                ("PATH", path.as_str()),
            ],
        )
    };
    let out = env(&["login", &reg.addr, "--creds", &format!("{USER}:{PASSWORD}")]).ok();
    assert!(
        out.stderr
            .contains("credential helper docker-credential-bpfmantest"),
        "{}",
        out.stderr
    );
    // The helper has the secret; the config file does not.
    assert!(
        !fs::read_to_string(&config)
            .expect("config")
            .contains("auth")
    );
    assert_eq!(fs::read_dir(&store).expect("store").count(), 1);

    let src = tmp.path().join("src");
    let digest = build_multi(&src, "v1");
    let out = env(&[
        "push",
        &format!("oci:{}:v1", src.display()),
        &reg.repo("helper/xdp:v1"),
    ])
    .ok();
    assert_eq!(pinned_digest(&out.stdout), digest);

    env(&["logout", &reg.addr]).ok();
    assert_eq!(fs::read_dir(&store).expect("store").count(), 0);
    env(&["inspect", &reg.repo("helper/xdp:v1")]).fails_with("no credentials for it were found");
}

#[test]
fn plain_http_only_for_listed_registries() {
    let Some(reg) = TestRegistry::plain_non_loopback("plain_http_only_for_listed_registries")
    else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let src = tmp.path().join("src");
    let digest = build_multi(&src, "v1");
    let src_ref = format!("oci:{}:v1", src.display());
    let dst = reg.repo("insecure/xdp:v1");
    // Not loopback, not listed: HTTPS only, and the error says how to opt in.
    image(&["push", &src_ref, &dst, "--retries", "0"])
        .fails_with(&format!("--insecure-registry {}", reg.addr));
    assert_eq!(reg.count("POST", "/blobs/uploads/"), 0);
    // Listed: plain HTTP.
    let out = image(&["push", &src_ref, &dst, "--insecure-registry", &reg.addr]).ok();
    assert_eq!(pinned_digest(&out.stdout), digest);
}

/// An xdp_counter object carrying `mib` MiB of incompressible padding, so
/// its layer is a large blob; built into `dir` under `tag`.
fn build_large(dir: &Path, mib: usize) -> (String, String) {
    let mut object = fs::read(testdata("bpf/xdp_counter.bpfel.o")).expect("object");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    object.extend((0..(mib << 20) / 8).flat_map(|_| {
        // xorshift64: cheap bytes gzip cannot shrink.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()
    }));
    let path = dir.join("large.bpfel.o");
    fs::create_dir_all(dir).expect("dir");
    fs::write(&path, object).expect("write");
    let layout = format!("oci:{}:v1", dir.join("layout").display());
    let out = image(&[
        "build",
        "--object",
        &format!("amd64={}", path.display()),
        "--output",
        &layout,
    ])
    .ok();
    (layout, pinned_digest(&out.stdout))
}

#[test]
fn large_blobs_go_up_in_one_patch_and_small_ones_in_one_put() {
    let Some(reg) = TestRegistry::plain("large_blobs_go_up_in_one_patch_and_small_ones_in_one_put")
    else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let (layout, digest) = build_large(tmp.path(), 6);
    let dst = reg.repo("big/xdp:v1");
    let pushed = image(&["push", &layout, &dst]).ok();
    assert_eq!(pinned_digest(&pushed.stdout), digest);
    let uploads = "/v2/big/xdp/blobs/uploads/";
    // The config in one PUT; the layer in one PATCH and a closing PUT.
    assert_eq!(reg.count("POST", uploads), 2, "{}", reg.log());
    assert_eq!(reg.count("PATCH", uploads), 1, "{}", reg.log());
    assert_eq!(reg.count("PUT", uploads), 2, "{}", reg.log());
    // The registry holds exactly those bytes.
    let back = tmp.path().join("back");
    let pulled = image(&[
        "pull",
        &dst,
        "--output",
        &format!("oci:{}:v1", back.display()),
    ])
    .ok();
    assert_eq!(pinned_digest(&pulled.stdout), digest);
}

/// A registry that takes uploads only in chunks (416 for the single
/// PATCH, 400 for a monolithic PUT) gets them, and holds the same image.
#[test]
fn a_registry_that_wants_chunks_gets_chunks() {
    let tmp = TempDir::new().expect("tmp");
    let (layout, digest) = build_large(tmp.path(), 10);
    for fault in [Fault::ChunksOnly, Fault::None] {
        let fake = FakeRegistry::start(
            fault,
            "unused",
            ("application/vnd.oci.image.manifest.v1+json", b"{}".to_vec()),
            Vec::new(),
            "sha256:none",
        );
        let dst = format!("{}/test/img:v2", fake.addr);
        let pushed = image(&["push", &layout, &dst]).ok();
        assert_eq!(pinned_digest(&pushed.stdout), digest, "{fault:?}");
        let patches = fake.count("PATCH", "/blobs/uploads/");
        let calls = fake.calls.lock().expect("lock").join("\n");
        match fault {
            // The refused PATCH, then 10 MiB in three 4 MiB chunks; the
            // config's refused monolithic PUT, then one chunk.
            Fault::ChunksOnly => {
                assert_eq!(patches, 1 + 3 + 1, "{calls}");
                let sizes: Vec<usize> = fake
                    .calls
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|c| c.starts_with("PATCH"))
                    .filter_map(|c| c.rsplit_once('(')?.1.split(' ').next()?.parse().ok())
                    .collect();
                let over: Vec<_> = sizes.iter().filter(|&&n| n > 4 << 20).collect();
                assert_eq!(over.len(), 1, "only the refused PATCH is whole: {calls}");
            }
            _ => assert_eq!(patches, 1, "{calls}"),
        }
        let back = tmp.path().join(format!("back-{fault:?}"));
        let pulled = image(&[
            "pull",
            &dst,
            "--output",
            &format!("oci:{}:v2", back.display()),
        ])
        .ok();
        assert_eq!(pinned_digest(&pulled.stdout), digest, "{fault:?}");
    }
}

/// A push to a second repository mounts what the registry already holds
/// in the first instead of uploading it; a stale entry (a repository that
/// no longer has the blob) costs an upload and nothing else.
#[test]
fn blobs_seen_in_one_repository_are_mounted_into_another() {
    let Some(reg) = TestRegistry::plain("blobs_seen_in_one_repository_are_mounted_into_another")
    else {
        return;
    };
    let tmp = TempDir::new().expect("tmp");
    let cache = tmp.path().join("cache").display().to_string();
    let env = [("XDG_CACHE_HOME", cache.as_str())];
    let (layout, digest) = build_large(&tmp.path().join("img"), 2);
    let push = |dst: &str| run(&image_bin(), &["push", &layout, dst], &env).ok();
    push(&reg.repo("first/xdp:v1"));
    let second = push(&reg.repo("second/xdp:v1"));
    assert_eq!(pinned_digest(&second.stdout), digest);
    assert!(
        second.stderr.contains("uploaded 0 blobs") && second.stderr.contains("2 mounted"),
        "{}",
        second.stderr
    );
    assert_eq!(reg.count("PATCH", "/v2/second/xdp/blobs/uploads/"), 0);
    assert_eq!(reg.count("POST", "/v2/second/xdp/blobs/uploads/?mount="), 2);
    // What a pull saw counts too.
    let pulled = tmp.path().join("pulled");
    run(
        &image_bin(),
        &[
            "pull",
            &reg.repo("second/xdp:v1"),
            "--output",
            &format!("oci:{}:v1", pulled.display()),
        ],
        &env,
    )
    .ok();
    // A stale cache: the registry declines, and the upload goes ahead in
    // the session it opened.
    let locations = tmp.path().join("cache/bpfman-image/blob-locations.json");
    let text = fs::read_to_string(&locations).expect("cache written");
    fs::write(
        &locations,
        text.replace("first/xdp", "gone/xdp")
            .replace("second/xdp", "gone2/xdp"),
    )
    .expect("stale");
    let third = push(&reg.repo("third/xdp:v1"));
    assert!(
        third.stderr.contains("uploaded 2 blobs"),
        "{}",
        third.stderr
    );
    assert_eq!(
        reg.count("POST", "/v2/third/xdp/blobs/uploads/"),
        2,
        "{}",
        reg.log()
    );
    assert_eq!(pinned_digest(&third.stdout), digest);
}
