//! `bpfman-image build`, `inspect` and `generate-build-args` end to end.

use std::fs;

use crate::support::{image, image_bin, run, testdata, tree};
use serde_json::Value;
use tempfile::TempDir;

fn obj(rel: &str) -> String {
    testdata(rel).display().to_string()
}

fn layout(dir: &TempDir, name: &str, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.path().join(name).display())
}

/// The pinned digest printed by build (`oci:...@sha256:...`).
fn digest_of(stdout: &str) -> String {
    stdout
        .trim()
        .rsplit_once('@')
        .expect("pinned reference")
        .1
        .to_string()
}

fn inspect_json(reference: &str) -> Value {
    let out = image(&["inspect", "--output", "json", reference]).ok();
    serde_json::from_str(&out.stdout).expect("inspect prints JSON")
}

/// These digests are committed: the same inputs must give the same image on
/// any machine, with any checkout path, forever (or until we decide to
/// change the format and update them on purpose).
const GOLDEN_SINGLE: &str =
    "sha256:7796582091bc582f022da1eea5f6f2382890504d037c6d7b7f1dcc0603566f20";
const GOLDEN_MULTI: &str =
    "sha256:9d94384427a7aad304ffa9fb2a2cfe3e4678e4976d7734af836012184c9f4414";

#[test]
fn build_is_reproducible_and_matches_the_committed_digests() {
    let a = TempDir::new().expect("tmp");
    let b = TempDir::new().expect("tmp");
    let args = |dir: &TempDir| {
        vec![
            "build".to_string(),
            "--object".into(),
            obj("bpf/xdp_counter.bpfel.o"),
            "--output".into(),
            layout(dir, "img", "v1"),
        ]
    };
    let args_a = args(&a);
    let args_b = args(&b);
    let da = digest_of(
        &image(&args_a.iter().map(String::as_str).collect::<Vec<_>>())
            .ok()
            .stdout,
    );
    let db = digest_of(
        &image(&args_b.iter().map(String::as_str).collect::<Vec<_>>())
            .ok()
            .stdout,
    );
    assert_eq!(da, db);
    assert_eq!(da, GOLDEN_SINGLE);
    assert_eq!(
        tree(&a.path().join("img")),
        tree(&b.path().join("img")),
        "byte-identical layouts"
    );

    let multi = image(&[
        "build",
        "--object",
        &format!("s390x={}", obj("bpf/xdp_counter.bpfeb.o")),
        "--object",
        &format!("amd64={}", obj("bpf/xdp_counter.bpfel.o")),
        "--output",
        &layout(&a, "multi", "v1"),
    ])
    .ok();
    assert_eq!(digest_of(&multi.stdout), GOLDEN_MULTI);
}

#[test]
fn source_date_epoch_sets_created_and_changes_the_digest() {
    let dir = TempDir::new().expect("tmp");
    let out = run(
        &image_bin(),
        &[
            "build",
            "--object",
            &obj("bpf/xdp_counter.bpfel.o"),
            "--output",
            &layout(&dir, "img", "t"),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    )
    .ok();
    assert_ne!(digest_of(&out.stdout), GOLDEN_SINGLE);
    let report = inspect_json(&layout(&dir, "img", "t"));
    assert_eq!(report["images"][0]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        report["images"][0]["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let bad = run(
        &image_bin(),
        &[
            "build",
            "--object",
            &obj("bpf/xdp_counter.bpfel.o"),
            "--output",
            &layout(&dir, "x", "t"),
        ],
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    );
    assert_eq!(bad.status, 2, "a usage error");
    assert!(bad.stderr.contains("SOURCE_DATE_EPOCH"), "{}", bad.stderr);
}

#[test]
fn inspect_reports_programs_maps_platforms_and_labels() {
    let dir = TempDir::new().expect("tmp");
    let r = layout(&dir, "img", "v2");
    image(&[
        "build",
        "--object",
        &format!("amd64={}", obj("bpf/tcx.bpfel.o")),
        "--object",
        &format!("s390x={}", obj("bpf/tcx.bpfeb.o")),
        "--label",
        "team=net",
        "--annotation",
        "org.opencontainers.image.source=https://example.com/repo",
        "--output",
        &r,
    ])
    .ok();
    let report = inspect_json(&r);
    assert_eq!(
        report["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        report["annotations"]["org.opencontainers.image.source"],
        "https://example.com/repo"
    );
    let images = report["images"].as_array().expect("images");
    let platforms: Vec<_> = images
        .iter()
        .map(|i| i["platform"].as_str().expect("p"))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/s390x"]);
    for (img, endian) in images.iter().zip(["little", "big"]) {
        assert_eq!(img["endianness"], endian);
        assert_eq!(img["labels"]["team"], "net");
        assert_eq!(
            img["labels"]["io.ebpf.programs"],
            r#"{"tcx_egress":"tcx","tcx_ingress":"tcx"}"#
        );
        assert_eq!(
            img["labels"]["io.ebpf.maps"],
            r#"{"tcx_egress_map":"per_cpu_array","tcx_ingress_map":"per_cpu_array"}"#
        );
        assert_eq!(img["programs"][1]["section"], "tcx/ingress");
        assert_eq!(
            img["annotations"]["org.opencontainers.image.source"],
            "https://example.com/repo"
        );
    }
    // Without a tag, the only image in the layout is shown.
    let untagged = format!("oci:{}", dir.path().join("img").display());
    assert_eq!(inspect_json(&untagged)["digest"], report["digest"]);
    // The table names the same things.
    let table = image(&["inspect", &r]).ok().stdout;
    for needle in [
        "linux/s390x",
        "tcx_ingress",
        "tcx/egress",
        "per_cpu_array",
        "team=net",
    ] {
        assert!(table.contains(needle), "table lacks {needle}:\n{table}");
    }
}

/// Labels are spelled as upstream bpfman's builder spells them
/// (`platform/ebpf/convert.go` `inferProgramType`): fine probe and tracing
/// names, so upstream's loader and ours agree on every image.
#[test]
fn every_program_type_is_labelled() {
    let cases = [
        ("xdp_drop", r#"{"xdp_drop":"xdp"}"#),
        ("tc_libbpf", r#"{"tc_count":"tc"}"#),
        ("tc_classifier", r#"{"tc_classify":"tc"}"#),
        ("tracepoint", r#"{"tp_getpid":"tracepoint"}"#),
        ("tcx", r#"{"tcx_egress":"tcx","tcx_ingress":"tcx"}"#),
        (
            "kprobe",
            r#"{"kprobe_openat":"kprobe","kretprobe_openat":"kretprobe"}"#,
        ),
        (
            "uprobe",
            r#"{"uprobe_count":"uprobe","uretprobe_count":"uretprobe"}"#,
        ),
        (
            "fentry",
            r#"{"fentry_unlinkat":"fentry","fexit_unlinkat":"fexit"}"#,
        ),
        ("legacy_maps", r#"{"xdp_legacy":"xdp"}"#),
        ("lsm", r#"{"lsm_file_open":"lsm"}"#),
        ("aya_style", r#"{"aya_count":"xdp","aya_drop":"xdp"}"#),
    ];
    let dir = TempDir::new().expect("tmp");
    for (name, programs) in cases {
        let r = layout(&dir, name, "v1");
        image(&[
            "build",
            "-q",
            "--object",
            &obj(&format!("bpf/{name}.bpfel.o")),
            "--output",
            &r,
        ])
        .ok();
        assert_eq!(
            inspect_json(&r)["images"][0]["labels"]["io.ebpf.programs"],
            programs,
            "{name}"
        );
    }
    let legacy = inspect_json(&layout(&dir, "legacy_maps", "v1"));
    assert_eq!(
        legacy["images"][0]["labels"]["io.ebpf.maps"],
        r#"{"legacy_array":"array","legacy_hash":"hash"}"#
    );
}

/// Each bad input fails with an error naming the file and the problem, and
/// leaves no output directory (nor any temporary one) behind.
#[test]
fn bad_inputs_fail_clearly_and_leave_nothing() {
    let dir = TempDir::new().expect("tmp");
    let out = layout(&dir, "out", "v1");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![obj("bad/not_elf.o")], "not an ELF file"),
        (vec![obj("bad/x86_64.o")], "not eBPF (247)"),
        (vec![obj("bad/truncated.o")], "truncated ELF"),
        (
            vec![obj("bad/no_programs.bpfel.o")],
            "defines no eBPF programs",
        ),
        (
            vec![format!("s390x={}", obj("bpf/xdp_pass.bpfel.o"))],
            "little-endian but s390x needs big-endian",
        ),
        (
            vec![obj("bpf/xdp_pass.bpfeb.o")],
            "is big-endian: say which architecture",
        ),
        (
            vec![
                format!("amd64={}", obj("bpf/xdp_pass.bpfel.o")),
                format!("amd64={}", obj("bpf/xdp_drop.bpfel.o")),
            ],
            "two objects for amd64",
        ),
        (
            vec![format!("sparc={}", obj("bpf/xdp_pass.bpfel.o"))],
            "unknown architecture 'sparc'",
        ),
        (vec![obj("bpf/does_not_exist.o")], "cannot read object"),
        (
            vec![
                format!("amd64={}", obj("bpf/xdp_pass.bpfel.o")),
                format!("s390x={}", obj("bpf/xdp_drop.bpfeb.o")),
            ],
            "differ in programs",
        ),
    ];
    for (objects, needle) in cases {
        let mut args = vec!["build".to_string()];
        for o in &objects {
            args.extend(["--object".into(), o.clone()]);
        }
        args.extend(["--output".into(), out.clone()]);
        let r = image(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // clap's own usage errors exit 2; ours exit 1.
        if needle.starts_with("unknown architecture") {
            assert_eq!(r.status, 2);
            assert!(r.stderr.contains(needle), "{}", r.stderr);
        } else {
            let r = r.fails_with(needle);
            let file_named = objects.iter().any(|o| {
                let path = o.split_once('=').map_or(o.as_str(), |(_, p)| p);
                r.stderr.contains(path)
            });
            assert!(file_named, "error does not name the file:\n{}", r.stderr);
        }
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "a failed build left files behind ({needle})"
        );
    }
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--label",
        "io.ebpf.maps={}",
        "--output",
        &out,
    ])
    .fails_with("reserved");
    assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn a_tag_holding_another_image_is_not_overwritten_without_force() {
    let dir = TempDir::new().expect("tmp");
    let r = layout(&dir, "img", "v1");
    let first = digest_of(
        &image(&[
            "build",
            "--object",
            &obj("bpf/xdp_pass.bpfel.o"),
            "--output",
            &r,
        ])
        .ok()
        .stdout,
    );
    let index = dir.path().join("img/index.json");
    let before = fs::read(&index).expect("index");

    // The same image again is fine and changes nothing.
    let again = image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--output",
        &r,
    ])
    .ok();
    assert!(again.stderr.contains("unchanged"), "{}", again.stderr);
    assert_eq!(fs::read(&index).expect("index"), before);

    // A different image under the same tag is refused, and nothing changes.
    let blobs_before = tree(&dir.path().join("img"));
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_drop.bpfel.o"),
        "--output",
        &r,
    ])
    .fails_with("already holds a different image under tag 'v1'");
    assert_eq!(tree(&dir.path().join("img")), blobs_before);

    // Another tag in the same layout is fine; both are then present.
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_drop.bpfel.o"),
        "--output",
        &layout(&dir, "img", "v2"),
    ])
    .ok();
    assert_eq!(
        inspect_json(&layout(&dir, "img", "v1"))["digest"],
        first.as_str()
    );
    image(&[
        "inspect",
        &format!("oci:{}", dir.path().join("img").display()),
    ])
    .fails_with("holds several images (v1, v2)");

    // --force moves the tag.
    let forced = digest_of(
        &image(&[
            "build",
            "--force",
            "--object",
            &obj("bpf/xdp_drop.bpfel.o"),
            "--output",
            &r,
        ])
        .ok()
        .stdout,
    );
    assert_ne!(forced, first);
    assert_eq!(inspect_json(&r)["digest"], forced.as_str());
}

#[test]
fn output_directories_that_are_not_layouts() {
    let dir = TempDir::new().expect("tmp");
    // An empty directory is filled.
    fs::create_dir(dir.path().join("empty")).expect("mkdir");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--output",
        &layout(&dir, "empty", "v1"),
    ])
    .ok();
    assert!(dir.path().join("empty/oci-layout").exists());
    // A directory with other things in it is refused and left alone.
    fs::create_dir(dir.path().join("busy")).expect("mkdir");
    fs::write(dir.path().join("busy/notes.txt"), "mine").expect("write");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--output",
        &layout(&dir, "busy", "v1"),
    ])
    .fails_with("is not an OCI image layout");
    assert_eq!(tree(&dir.path().join("busy")).len(), 1);
}

#[test]
fn inspect_refuses_a_corrupted_blob() {
    let dir = TempDir::new().expect("tmp");
    let r = layout(&dir, "img", "v1");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_counter.bpfel.o"),
        "--output",
        &r,
    ])
    .ok();
    let report = inspect_json(&r);
    let layer = report["images"][0]["layer_digest"]
        .as_str()
        .expect("digest")
        .replace("sha256:", "");
    let path = dir.path().join("img/blobs/sha256").join(layer);
    let mut bytes = fs::read(&path).expect("blob");
    bytes[30] ^= 0xff;
    fs::write(&path, bytes).expect("write");
    image(&["inspect", &r]).fails_with("is corrupt");

    // A descriptor with the wrong size over intact bytes is the pointer's
    // fault, and said so.
    let r2 = layout(&dir, "sized", "v1");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_counter.bpfel.o"),
        "--output",
        &r2,
    ])
    .ok();
    let index = dir.path().join("sized/index.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(&index).expect("index")).expect("json");
    let size = v["manifests"][0]["size"].as_u64().expect("size");
    v["manifests"][0]["size"] = (size + 7).into();
    fs::write(&index, serde_json::to_vec(&v).expect("json")).expect("write");
    image(&["inspect", &r2]).fails_with(&format!(
        "a size of {} bytes, but the blob (which matches its digest) has {size}",
        size + 7
    ));
    image(&["inspect", &layout(&dir, "img", "nope")])
        .fails_with("has no image tagged 'nope'; tags present: v1");
    image(&["inspect", &layout(&dir, "missing", "v1")]).fails_with("does not exist");
}

#[test]
fn generate_build_args_for_bpfmans_containerfile() {
    let out = image(&[
        "generate-build-args",
        "--object",
        &format!("s390x={}", obj("bpf/xdp_counter.bpfeb.o")),
        "--object",
        &format!("amd64={}", obj("bpf/xdp_counter.bpfel.o")),
    ])
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            r#"PROGRAMS={"xdp_stats":"xdp"}"#.to_string(),
            r#"MAPS={"xdp_stats_map":"per_cpu_array"}"#.to_string(),
            format!("BC_AMD64_EL={}", obj("bpf/xdp_counter.bpfel.o")),
            format!("BC_S390X_EB={}", obj("bpf/xdp_counter.bpfeb.o")),
        ]
    );
    image(&["generate-build-args", "--object", &obj("bad/x86_64.o")]).fails_with("x86_64.o");
}

/// Regression: eight builds into one layout at once all exited 0 while
/// index.json kept one to three of their tags. Writers now take turns on a
/// lock, and every tag reported is there.
#[test]
fn concurrent_builds_into_one_layout_keep_every_tag() {
    let dir = TempDir::new().expect("tmp");
    let objects = ["bpf/xdp_pass.bpfel.o", "bpf/xdp_drop.bpfel.o"];
    let children: Vec<_> = (0..8)
        .map(|i| {
            std::process::Command::new(image_bin())
                .args([
                    "build",
                    "--quiet",
                    "--object",
                    &obj(objects[i % 2]),
                    "--output",
                    &layout(&dir, "img", &format!("t{i}")),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("build");
        assert!(
            out.status.success(),
            "build {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let index: Value =
        serde_json::from_slice(&fs::read(dir.path().join("img/index.json")).expect("index"))
            .expect("json");
    let mut tags: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"]);
    for t in &tags {
        inspect_json(&layout(&dir, "img", t));
    }
}

/// Regression: `tag` overwrote an existing tag silently, a cosign
/// signature tag included, so a signed image stopped verifying.
#[test]
fn tag_refuses_to_move_a_tag_without_force_and_signature_tags_at_all() {
    let dir = TempDir::new().expect("tmp");
    let a = layout(&dir, "img", "a");
    let b = layout(&dir, "img", "b");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--output",
        &a,
    ])
    .ok();
    let db = digest_of(
        &image(&[
            "build",
            "--object",
            &obj("bpf/xdp_drop.bpfel.o"),
            "--output",
            &b,
        ])
        .ok()
        .stdout,
    );
    let index = dir.path().join("img/index.json");
    let before = fs::read(&index).expect("index");
    image(&["tag", &a, "b"]).fails_with("pass --force");
    assert_eq!(fs::read(&index).expect("index"), before, "nothing changed");
    assert_eq!(inspect_json(&b)["digest"], db.as_str());
    // The same image again is no change; --force moves the tag.
    image(&["tag", &b, "b"]).ok();
    let moved = image(&["tag", "--force", &a, "b"]).ok();
    assert_eq!(inspect_json(&b)["digest"], inspect_json(&a)["digest"]);
    assert!(moved.stdout.contains(":b@sha256:"), "{}", moved.stdout);

    let sig = format!("sha256-{}.sig", "ab".repeat(32));
    for bad in [sig.clone(), format!("sha256-{}", "cd".repeat(32))] {
        let before = fs::read(&index).expect("index");
        image(&["tag", "--force", &a, &bad]).fails_with("written by sign, not by hand");
        image(&[
            "build",
            "--object",
            &obj("bpf/xdp_pass.bpfel.o"),
            "--output",
            &layout(&dir, "img", &bad),
        ])
        .fails_with("written by sign, not by hand");
        assert_eq!(fs::read(&index).expect("index"), before);
    }
}

/// The blob files of a layout's tag `tag`: (manifest, config, layer).
fn blob_files(dir: &std::path::Path, reference: &str) -> Vec<std::path::PathBuf> {
    let v = inspect_json(reference);
    let digest = v["digest"].as_str().expect("digest").to_string();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob(&digest)).expect("manifest")).expect("json");
    vec![
        blob(&digest),
        blob(manifest["config"]["digest"].as_str().expect("config")),
        blob(manifest["layers"][0]["digest"].as_str().expect("layer")),
    ]
}

/// Regression: `build` trusted blobs already in a layout, so a truncated
/// or symlinked blob made a build exit 0 with a corrupt image. Reused
/// blobs are now checked and rewritten; `fsck` finds damage, `--repair`
/// removes it; a link to /dev/zero or a FIFO is refused at once.
#[test]
fn damaged_blobs_in_a_layout_are_found_and_replaced() {
    let dir = TempDir::new().expect("tmp");
    let img = dir.path().join("img");
    let r = layout(&dir, "img", "v1");
    let build = || {
        image(&[
            "build",
            "--object",
            &obj("bpf/xdp_counter.bpfel.o"),
            "--output",
            &r,
        ])
    };
    build().ok();
    let fsck = |extra: &[&str]| {
        let mut args = vec!["fsck", r.as_str()];
        args.extend_from_slice(extra);
        image(&args)
    };
    assert!(fsck(&[]).ok().stdout.contains("0 corrupt, 0 broken tags"));
    let files = blob_files(&img, &r);

    // Truncate the layer, replace the config by a link to another file.
    let layer = fs::read(&files[2]).expect("layer");
    fs::write(&files[2], &layer[..layer.len() / 2]).expect("truncate");
    let elsewhere = dir.path().join("elsewhere.json");
    fs::write(&elsewhere, "{}").expect("write");
    fs::remove_file(&files[1]).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, &files[1]).expect("symlink");
    let found = fsck(&["--output", "json"]).fails_with("damaged blobs");
    let report: Value = serde_json::from_str(&found.stdout).expect("json");
    assert_eq!(report["corrupt"].as_array().expect("corrupt").len(), 2);
    assert!(!report["broken"].as_array().expect("broken").is_empty());
    image(&["inspect", &r]).fails_with("");

    // Building the same image again rewrites what it reuses.
    build().ok();
    assert!(fsck(&[]).ok().stdout.contains("0 corrupt"));
    inspect_json(&r);
    assert_eq!(fs::read(&elsewhere).expect("untouched"), b"{}");
    assert!(
        !fs::symlink_metadata(&files[1])
            .expect("config")
            .file_type()
            .is_symlink()
    );

    // A link to /dev/zero, and a FIFO: refused at once, never read forever.
    fs::remove_file(&files[2]).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &files[2]).expect("symlink");
    image(&["inspect", &r]).fails_with("");
    fs::remove_file(&files[2]).expect("rm");
    let made = std::process::Command::new("mkfifo")
        .arg(&files[2])
        .status()
        .expect("mkfifo");
    assert!(made.success());
    image(&["inspect", &r]).fails_with("");
    fsck(&["--repair"]).fails_with("removed");
    assert!(fs::symlink_metadata(&files[2]).is_err(), "the FIFO is gone");
    build().ok();
    assert!(fsck(&[]).ok().stdout.contains("0 corrupt, 0 broken tags"));
}

/// Regression: `--source-date-epoch -5` and `bpfman-load --lock-timeout -1`
/// printed only the usage; they now say what is wrong with the value.
#[test]
fn negative_numbers_get_a_reason() {
    let r = image(&[
        "build",
        "--object",
        &obj("bpf/xdp_pass.bpfel.o"),
        "--source-date-epoch",
        "-5",
    ]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("is not a SOURCE_DATE_EPOCH"),
        "{}",
        r.stderr
    );
    let r = run(
        &crate::support::load_bin(),
        &["--lock-timeout", "-1", "list"],
        &[],
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("is not a number of seconds"),
        "{}",
        r.stderr
    );
}

#[test]
fn untrusted_names_are_escaped_when_printed() {
    let dir = TempDir::new().expect("tmp");
    let r = layout(&dir, "img", "v1");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_counter.bpfel.o"),
        "--annotation",
        "org.opencontainers.image.title=clear\x1b[2Jscreen\u{202e}txt.o",
        "--output",
        &r,
    ])
    .ok();
    let out = image(&["inspect", &r]).ok();
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\u{202e}'));
    assert!(
        out.stdout.contains("clear\\u{1b}[2Jscreen\\u{202e}txt.o"),
        "{}",
        out.stdout
    );
    // JSON carries the value as it is, escaped by JSON itself.
    let json = image(&["inspect", &r, "--output", "json"]).ok();
    assert!(json.stdout.contains("\\u001b[2J"), "{}", json.stdout);
}

/// Rewrites the config of the single-platform image at `oci:DIR:TAG` with
/// `edit`, re-sealing manifest and index (as another tool could have
/// written it).
fn rewrite_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    use bpfman_image_spec::digest::Digest;
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(blob(&d.to_string()), bytes).expect("blob");
        (d.to_string(), bytes.len())
    };
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).expect("index")).expect("json");
    let m_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&m_digest)).expect("manifest")).expect("json");
    let c_digest = manifest["config"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&c_digest)).expect("config")).expect("json");
    edit(&mut config);
    let (cd, cs) = put(&serde_json::to_vec(&config).expect("json"));
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).expect("json"));
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("index");
}

#[test]
fn a_maps_label_naming_a_missing_map_is_reported() {
    let dir = TempDir::new().expect("tmp");
    let r = layout(&dir, "img", "v1");
    image(&[
        "build",
        "--object",
        &obj("bpf/xdp_counter.bpfel.o"),
        "--output",
        &r,
    ])
    .ok();
    rewrite_config(&dir.path().join("img"), |c| {
        c["config"]["Labels"]["io.ebpf.maps"] =
            r#"{"xdp_stats_map":"per_cpu_array","ghost_map":"hash"}"#.into();
    });
    let out = image(&["inspect", &r]).ok();
    assert!(
        out.stdout
            .contains("warning: the io.ebpf.maps label names map 'ghost_map'"),
        "{}",
        out.stdout
    );
    let json = image(&["inspect", &r, "--output", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["images"][0]["warnings"].as_array().map(Vec::len), Some(1));
}
