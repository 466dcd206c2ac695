//! Images as upstream bpfman's tooling and the builders it uses lay them
//! out, written byte for byte by this test code into OCI layouts (and
//! copied to the real registry), then inspected, verified, pulled and
//! loaded: XDP and tcx programs count real packets on a veth.
//!
//! Each shape names the upstream file that produces it. Upstream is
//! github.com/bpfman/bpfman (`Containerfile.bytecode`,
//! `Containerfile.bytecode.multi.arch`, `.github/workflows/image-build.yml`,
//! `platform/image/oci/puller.go`, `platform/ebpf/imagebuild.go`); the
//! attestation layouts are docker buildx's (buildkit `exporter/containerimage`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bpfman_image_spec::digest::Digest;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::kernel::{Host, Netns, counter};
use crate::registry_harness::TestRegistry;
use crate::support::{image, testdata};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// An OCI image layout under construction.
struct Layout {
    dir: PathBuf,
    tags: Vec<Value>,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("marker");
        Self {
            dir: dir.to_path_buf(),
            tags: Vec::new(),
        }
    }

    /// Stores a blob; returns its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = Digest::of(bytes);
        fs::write(self.dir.join("blobs/sha256").join(digest.hex()), bytes).expect("blob");
        json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
    }

    fn json(&self, media_type: &str, doc: &Value) -> Value {
        self.blob(media_type, &serde_json::to_vec(doc).expect("json"))
    }

    /// Tags `desc` and rewrites index.json; returns the `oci:` reference.
    fn tag(&mut self, tag: &str, mut desc: Value) -> String {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.tags.push(desc);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.tags});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index");
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// The layer a Containerfile's `COPY` writes: a tar of the given entries
/// (directories end in `/`), as buildkit lays it out (no `./` prefix, mode
/// 0644 files, 0755 directories, uid 0), gzip-compressed.
fn copy_layer(entries: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        let dir = path.ends_with('/');
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

/// Media types of one image: OCI (buildx's default when it pushes) or
/// Docker v2 schema 2 (`docker build` / `docker push`, podman's `--format
/// docker`).
#[derive(Clone, Copy)]
enum Flavour {
    Oci,
    Docker,
}

/// One image: the config with `labels`, the `COPY` layer of `entries`.
fn image_for(
    l: &Layout,
    arch: &str,
    labels: &Value,
    entries: &[(&str, &[u8])],
    flavour: Flavour,
) -> Value {
    let (manifest_type, config_type, layer_type) = match flavour {
        Flavour::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
        Flavour::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
    };
    let (layer, diff_id) = copy_layer(entries);
    // What buildkit writes for `FROM scratch` + `LABEL` + `COPY`.
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-11-30T12:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Labels": labels, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [
            {"created": "2026-11-30T12:00:00Z", "created_by": "LABEL io.ebpf.programs=...", "comment": "buildkit.dockerfile.v0", "empty_layer": true},
            {"created": "2026-11-30T12:00:00Z", "created_by": "COPY bytecode / # buildkit", "comment": "buildkit.dockerfile.v0"}
        ]
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": l.json(config_type, &config),
        "layers": [l.blob(layer_type, &layer)],
    });
    l.json(manifest_type, &manifest)
}

fn with_platform(mut desc: Value, arch: &str) -> Value {
    desc["platform"] = json!({"architecture": arch, "os": "linux"});
    desc
}

/// A buildx provenance attestation for `subject`, as buildkit before 0.20
/// writes it by default: an image manifest of in-toto layers, listed in
/// the index with platform `unknown/unknown` and two annotations.
fn attestation(l: &Layout, subject: &Value) -> Value {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "pkg:docker/bytecode", "digest": {"sha256": subject["digest"].as_str().expect("digest").trim_start_matches("sha256:")}}],
        "predicate": {"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1"}
    });
    let config = json!({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}});
    let mut layer = l.json(IN_TOTO, &statement);
    layer["annotations"] = json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": l.json(OCI_CONFIG, &config),
        "layers": [layer],
    });
    let mut desc = l.json(OCI_MANIFEST, &manifest);
    desc["platform"] = json!({"architecture": "unknown", "os": "unknown"});
    desc["annotations"] = json!({
        "vnd.docker.reference.digest": subject["digest"],
        "vnd.docker.reference.type": "attestation-manifest"
    });
    desc
}

/// The same attestation as an OCI artifact, as newer buildkit writes it:
/// an `artifactType` and a `subject` on the manifest. `describe` says
/// whether the index descriptor repeats the artifact type (buildkit does;
/// a registry's referrers fallback may not).
fn artifact_attestation(l: &Layout, subject: &Value, describe: bool) -> Value {
    let statement = json!({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1"});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.docker.attestation.manifest.v1+json",
        "config": l.blob("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [l.json(IN_TOTO, &statement)],
        "subject": subject,
    });
    let mut desc = l.json(OCI_MANIFEST, &manifest);
    if describe {
        desc["artifactType"] = json!("application/vnd.docker.attestation.manifest.v1+json");
    }
    desc
}

fn index(l: &Layout, media_type: &str, manifests: Vec<Value>) -> Value {
    l.json(
        media_type,
        &json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}),
    )
}

fn object(name: &str) -> Vec<u8> {
    fs::read(testdata(&format!("bpf/{name}"))).expect("object")
}

/// What upstream's `bpfman image build` labels xdp_counter with
/// (`platform/ebpf/imagebuild.go` `BuildInfoFromCollectionSpec`).
fn counter_labels() -> Value {
    json!({
        "io.ebpf.programs": r#"{"xdp_stats":"xdp"}"#,
        "io.ebpf.maps": r#"{"xdp_stats_map":"per_cpu_array"}"#,
    })
}

/// Every upstream shape, written into one layout: (tag, reference, the
/// warning inspect must give, or "" for none).
struct Shapes {
    _dir: TempDir,
    refs: Vec<(&'static str, String, &'static str)>,
}

fn shapes() -> Shapes {
    let dir = TempDir::new().expect("tmp");
    let mut l = Layout::new(&dir.path().join("upstream"));
    let el = object("xdp_counter.bpfel.o");
    let eb = object("xdp_counter.bpfeb.o");
    let labels = counter_labels();
    let mut refs = Vec::new();

    // .github/workflows/image-build.yml: docker/build-push-action with
    // Containerfile.bytecode.multi.arch for amd64, arm64, ppc64le and
    // s390x. build-push-action adds provenance by default, so the index
    // carries one attestation manifest per platform.
    let mut entries = Vec::new();
    for (arch, obj) in [
        ("amd64", &el),
        ("arm64", &el),
        ("ppc64le", &el),
        ("s390x", &eb),
    ] {
        let img = with_platform(
            image_for(&l, arch, &labels, &[("xdp_counter.o", obj)], Flavour::Oci),
            arch,
        );
        let att = attestation(&l, &img);
        entries.push(img);
        entries.push(att);
    }
    let top = index(&l, OCI_INDEX, entries);
    refs.push(("buildx-attestations", l.tag("buildx", top), ""));

    // The same with newer buildkit's attestations as OCI artifacts; one
    // descriptor says so, the other only its manifest does.
    let amd = with_platform(
        image_for(
            &l,
            "amd64",
            &labels,
            &[("xdp_counter.o", &el)],
            Flavour::Oci,
        ),
        "amd64",
    );
    let arm = with_platform(
        image_for(
            &l,
            "arm64",
            &labels,
            &[("xdp_counter.o", &el)],
            Flavour::Oci,
        ),
        "arm64",
    );
    let a1 = artifact_attestation(&l, &amd, true);
    let a2 = artifact_attestation(&l, &arm, false);
    let top = index(&l, OCI_INDEX, vec![amd, a1, arm, a2]);
    refs.push(("buildkit-artifacts", l.tag("artifacts", top), ""));

    // Containerfile.bytecode built with `docker build` without the
    // PROGRAMS and MAPS build args: `LABEL "io.ebpf.programs"=$PROGRAMS`
    // gives empty labels, and docker pushes Docker media types.
    let empty = json!({"io.ebpf.programs": "", "io.ebpf.maps": ""});
    let top = image_for(
        &l,
        "amd64",
        &empty,
        &[("xdp_counter.o", &el)],
        Flavour::Docker,
    );
    refs.push((
        "docker-empty-labels",
        l.tag("empty", top),
        "read from the object",
    ));

    // A layer built from a directory: the object beside a README and a
    // licence, in a subdirectory (COPY bpf/ /bpf/).
    let top = image_for(
        &l,
        "amd64",
        &labels,
        &[
            ("README.md", b"# counter\n"),
            ("LICENSE", b"GPL-2.0-only OR BSD-2-Clause\n"),
            ("bpf/", b""),
            ("bpf/xdp_counter.o", &el),
        ],
        Flavour::Oci,
    );
    refs.push((
        "object-in-subdirectory",
        l.tag("subdir", top),
        "subdirectory",
    ));

    // `COPY $BYTECODE_FILE /` with a file named without .o.
    let top = image_for(&l, "amd64", &labels, &[("bytecode", &el)], Flavour::Oci);
    refs.push(("no-dot-o", l.tag("bare", top), "no .o suffix"));

    // Labels that disagree in the ways upstream's tools write them: a map
    // type spelled in capitals (its lowercase fallback), one newer than
    // our table, and a program labelled by its family.
    let odd = json!({
        "io.ebpf.programs": r#"{"xdp_stats":"XDP"}"#,
        "io.ebpf.maps": r#"{"xdp_stats_map":"future_map_type"}"#,
    });
    let top = image_for(&l, "amd64", &odd, &[("xdp_counter.o", &el)], Flavour::Oci);
    refs.push(("odd-labels", l.tag("odd", top), "does not know"));

    // A Docker manifest list (Containerfile.bytecode.multi.arch pushed by
    // docker with Docker media types) listing amd64 twice and one entry
    // with no platform: the first amd64 entry is the one loaded.
    let first = with_platform(
        image_for(
            &l,
            "amd64",
            &labels,
            &[("xdp_counter.o", &el)],
            Flavour::Docker,
        ),
        "amd64",
    );
    let again = with_platform(
        image_for(
            &l,
            "amd64",
            &json!({}),
            &[("xdp_pass.o", &object("xdp_pass.bpfel.o"))],
            Flavour::Docker,
        ),
        "amd64",
    );
    let bare = image_for(
        &l,
        "arm64",
        &labels,
        &[("xdp_counter.o", &el)],
        Flavour::Docker,
    );
    let top = index(
        &l,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        vec![first, again, bare],
    );
    refs.push(("platform-twice", l.tag("twice", top), "listed again"));

    // A tcx object labelled as upstream's Rust builder labelled it (aya's
    // SchedClassifier is "tc", `bpfman/src/types.rs`), Docker media types.
    let tcx_labels = json!({
        "io.ebpf.programs": r#"{"tcx_egress":"tc","tcx_ingress":"tc"}"#,
        "io.ebpf.maps": r#"{"tcx_egress_map":"per_cpu_array","tcx_ingress_map":"per_cpu_array"}"#,
    });
    let tcx = object("tcx.bpfel.o");
    let top = image_for(
        &l,
        "amd64",
        &tcx_labels,
        &[("tcx.o", &tcx)],
        Flavour::Docker,
    );
    refs.push(("rust-builder-tc-labels", l.tag("tcx", top), ""));

    // An aya-built object: `xdp/<name>` sections and a stray function in a
    // section no loader knows.
    let aya = object("aya_style.bpfel.o");
    let aya_labels = json!({"io.ebpf.programs": r#"{"aya_count":"xdp","aya_drop":"xdp"}"#});
    let top = image_for(
        &l,
        "amd64",
        &aya_labels,
        &[("aya_style.o", &aya)],
        Flavour::Oci,
    );
    refs.push(("aya-sections", l.tag("aya", top), "neither libbpf nor aya"));

    Shapes { _dir: dir, refs }
}

fn inspect_json(r: &str) -> Value {
    serde_json::from_str(&image(&["inspect", "--output", "json", r]).ok().stdout).expect("json")
}

#[test]
fn every_upstream_shape_inspects_with_its_warning() {
    let shapes = shapes();
    for (name, r, warning) in &shapes.refs {
        let report = inspect_json(r);
        let all: Vec<String> = report["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                report["images"]
                    .as_array()
                    .expect("images")
                    .iter()
                    .flat_map(|i| i["warnings"].as_array().into_iter().flatten()),
            )
            .map(|w| w.as_str().expect("string").to_string())
            .collect();
        if warning.is_empty() {
            assert!(all.is_empty(), "{name}: {all:?}");
        } else {
            assert!(all.iter().any(|w| w.contains(warning)), "{name}: {all:?}");
        }
        let images = report["images"].as_array().expect("images");
        assert!(!images.is_empty(), "{name}");
        for i in images {
            assert_ne!(i["platform"], "unknown/unknown", "{name}");
        }
    }
    // The attestations are named as skipped, not validated as images.
    let buildx = inspect_json(&shapes.refs[0].1);
    assert_eq!(buildx["images"].as_array().expect("images").len(), 4);
    assert_eq!(buildx["artifacts"].as_array().expect("artifacts").len(), 4);
    let table = image(&["inspect", &shapes.refs[0].1]).ok().stdout;
    assert!(table.contains("attestation"), "{table}");
    let artifacts = inspect_json(&shapes.refs[1].1);
    assert_eq!(artifacts["images"].as_array().expect("images").len(), 2);
    assert_eq!(
        artifacts["artifacts"].as_array().expect("artifacts").len(),
        2
    );
    // Labels are information: what inspect lists is the object.
    let empty = inspect_json(&shapes.refs[2].1);
    assert_eq!(empty["images"][0]["programs"][0]["name"], "xdp_stats");
    assert_eq!(empty["images"][0]["label_format"], "none");
}

#[test]
fn layers_that_stay_refused_say_why() {
    let dir = TempDir::new().expect("tmp");
    let mut l = Layout::new(&dir.path().join("bad"));
    let el = object("xdp_counter.bpfel.o");
    let labels = counter_labels();
    let two = image_for(
        &l,
        "amd64",
        &labels,
        &[("a.o", &el), ("b/c.o", &el)],
        Flavour::Oci,
    );
    let r = l.tag("two", two);
    image(&["inspect", &r]).fails_with("2 eBPF ELF objects ('a.o', 'b/c.o')");
    let none = image_for(
        &l,
        "amd64",
        &labels,
        &[("README", b"hi"), ("NOTES", b"x")],
        Flavour::Oci,
    );
    let r = l.tag("none", none);
    image(&["inspect", &r]).fails_with("no eBPF ELF object");
    let ghost = json!({"io.ebpf.programs": r#"{"ghost":"xdp"}"#});
    let ghost = image_for(&l, "amd64", &ghost, &[("xdp_counter.o", &el)], Flavour::Oci);
    let r = l.tag("ghost", ghost);
    image(&["inspect", &r]).fails_with("the labels list program 'ghost'");
}

/// Loads each XDP shape on the host from the layout, attaches it to a
/// veth in a namespace and counts pings; then the attestation index goes
/// through the real registry (copy, verify, pull) and loads from there.
#[test]
fn every_upstream_shape_loads_and_counts_packets() {
    let test = "every_upstream_shape_loads_and_counts_packets";
    let Some(host) = Host::new(test) else {
        return;
    };
    let Some(reg) = TestRegistry::plain(test) else {
        return;
    };
    let policy = host.dir.path().join("policy.toml");
    fs::write(&policy, "[default]\nrule = \"accept-unsigned\"\n").expect("policy");
    let policy = policy.display().to_string();
    let shapes = shapes();
    let ns = Netns::new("upstream", 31);

    let mut cases: Vec<(String, String)> = shapes
        .refs
        .iter()
        .map(|(name, r, _)| ((*name).to_string(), r.clone()))
        .collect();
    // Through the registry: copy keeps the attestations (the index digest
    // is what gets signed), verify and pull set them aside.
    let remote = reg.repo("upstream/buildx:v1");
    image(&["copy", &shapes.refs[0].1, &remote]).ok();
    image(&["verify", "--policy", &policy, &remote]).ok();
    cases.push(("registry".into(), remote));

    for (name, r) in &cases {
        let out = host
            .run(&["--policy", &policy, "load", "image", r, "--output", "json"])
            .ok();
        let recs: Value = serde_json::from_str(&out.stdout).expect("json");
        let recs = recs.as_array().expect("records");
        let rec = recs
            .iter()
            .find(|r| {
                ["xdp_stats", "aya_count", "tcx_ingress"]
                    .contains(&r["name"].as_str().unwrap_or(""))
            })
            .unwrap_or_else(|| panic!("{name}: {recs:?}"));
        let (map, hook) = match rec["name"].as_str() {
            Some("aya_count") => ("aya_count_map", ["xdp", "--exclusive"]),
            Some("tcx_ingress") => ("tcx_ingress_map", ["tcx", "--direction=ingress"]),
            _ => ("xdp_stats_map", ["xdp", "--exclusive"]),
        };
        host.attach(
            &rec["id"],
            &[hook[0], hook[1], "--iface", "veth1", "--netns", &ns.name],
        );
        assert!(ns.ping(3), "{name}: pings through the program");
        let counted = counter(&Host::map_pin(rec, map));
        assert!(counted >= 3, "{name}: counted {counted}");
        host.unload(recs.iter());
        host.assert_clean();
    }
}

/// A copy validates the image while its blobs go up; one that fails is
/// never named at the destination (no manifest, no tag).
#[test]
fn an_invalid_image_is_never_named_at_the_destination() {
    let Some(reg) = TestRegistry::plain("an_invalid_image_is_never_named_at_the_destination")
    else {
        return;
    };
    let dir = TempDir::new().expect("tmp");
    let mut l = Layout::new(&dir.path().join("bad"));
    let ghost = json!({"io.ebpf.programs": r#"{"ghost":"xdp"}"#});
    let el = object("xdp_counter.bpfel.o");
    let top = image_for(&l, "amd64", &ghost, &[("xdp_counter.o", &el)], Flavour::Oci);
    let r = l.tag("ghost", top);
    image(&["push", &r, &reg.repo("bad/xdp:v1")]).fails_with("the labels list program 'ghost'");
    assert_eq!(
        reg.count("PUT", "/v2/bad/xdp/manifests/"),
        0,
        "{}",
        reg.log()
    );
}
