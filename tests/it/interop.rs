//! Other OCI tools must read what we write: skopeo shows our labels and can
//! copy our layouts (single image and multi-arch index).

use crate::support::{have_tool, image, run, testdata};
use serde_json::Value;
use std::path::Path;
use tempfile::TempDir;

fn skopeo(args: &[&str]) -> crate::support::Run {
    run(Path::new("skopeo"), args, &[])
}

/// `skopeo inspect` of the two-arch xdp_counter image `image` (a transport
/// reference) shows each platform with our labels. `extra` goes after
/// `inspect`.
pub fn assert_skopeo_sees_xdp_counter(image: &str, extra: &[&str]) {
    for arch in ["amd64", "s390x"] {
        let mut args = vec!["--override-arch", arch, "--override-os", "linux", "inspect"];
        args.extend(extra);
        args.push(image);
        let out = skopeo(&args).ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("skopeo JSON");
        assert_eq!(v["Architecture"], arch);
        assert_eq!(v["Labels"]["io.ebpf.programs"], r#"{"xdp_stats":"xdp"}"#);
        assert_eq!(
            v["Labels"]["io.ebpf.maps"],
            r#"{"xdp_stats_map":"per_cpu_array"}"#
        );
    }
}

#[test]
fn skopeo_inspects_and_copies_our_layouts() {
    if !have_tool(
        "skopeo_inspects_and_copies_our_layouts",
        "skopeo",
        "apt-get install skopeo",
    ) {
        return;
    }
    let dir = TempDir::new().expect("tmp");
    let src = format!("oci:{}:v1", dir.path().join("src").display());
    let built = image(&[
        "build",
        "--object",
        &format!("amd64={}", testdata("bpf/xdp_counter.bpfel.o").display()),
        "--object",
        &format!("s390x={}", testdata("bpf/xdp_counter.bpfeb.o").display()),
        "--output",
        &src,
    ])
    .ok();
    let digest = built
        .stdout
        .trim()
        .rsplit_once('@')
        .expect("pinned")
        .1
        .to_string();

    assert_skopeo_sees_xdp_counter(&src, &[]);
    let raw = skopeo(&["inspect", "--raw", &src]).ok();
    assert_eq!(
        bpfman_image_spec::Digest::of(raw.stdout.as_bytes()).to_string(),
        digest
    );

    // skopeo copies the whole index; what it writes we read back, same digest.
    let dst = format!("oci:{}:copied", dir.path().join("dst").display());
    skopeo(&["copy", "--all", "--preserve-digests", &src, &dst]).ok();
    let out = image(&["inspect", "--output", "json", &dst]).ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["images"].as_array().map(Vec::len), Some(2));
}
