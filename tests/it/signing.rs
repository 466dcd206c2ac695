//! Signing and verification for real: keys in cosign's format, signatures
//! in both cosign formats in Debian's `docker-registry` (which has no
//! referrers API, so bundles go through the fallback tag) and in layouts,
//! and trust policies deciding.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bpfman_image::reference::RegistryRef;
use bpfman_image::registry::{Registry, TransportOptions};
use bpfman_image::signing::{self, SignError};
use bpfman_image_spec::oci::{Descriptor, ImageManifest, to_canonical_json};
use bpfman_trust::cosign;
use bpfman_trust::keys::PublicKey;
use bpfman_trust::policy::{Policy, Rule};
use tempfile::TempDir;

use crate::registry::{obj, pinned_digest};
use crate::registry_harness::TestRegistry;
use crate::support::{Run, image_bin, run, testdata};

const PASSWORD: &str = "signing test password";

/// Runs bpfman-image with the key password in the environment.
pub fn img(args: &[&str]) -> Run {
    run(&image_bin(), args, &[("COSIGN_PASSWORD", PASSWORD)])
}

/// A directory with key pairs `a` and `b`.
pub struct Keys {
    dir: TempDir,
}

impl Keys {
    pub fn new() -> Self {
        let dir = TempDir::new().expect("tmp");
        for name in ["a", "b"] {
            let prefix = dir.path().join(name);
            img(&[
                "keygen",
                "--output-key-prefix",
                &prefix.display().to_string(),
            ])
            .ok();
        }
        Self { dir }
    }

    pub fn private(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.key"))
            .display()
            .to_string()
    }

    pub fn public(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.pub"))
            .display()
            .to_string()
    }

    /// A trust policy in `dir` requiring key `a`'s signature on every
    /// image; returns its path.
    pub fn policy_for_all(&self, dir: &Path) -> String {
        let policy = dir.join("policy.toml");
        fs::write(
            &policy,
            format!(
                "[default]\nrule = \"require-signature\"\nkeys = [\"{}\"]\n",
                self.public("a")
            ),
        )
        .expect("policy");
        policy.display().to_string()
    }

    fn id(&self, name: &str) -> String {
        let pem = fs::read_to_string(self.public(name)).expect("pub");
        PublicKey::from_pem(&pem).expect("key").id().to_string()
    }
}

/// Builds an image from `object` and pushes it to `dst`; returns the digest.
pub fn push_built(object: &str, dst: &str, extra: &[&str]) -> String {
    let mut args = vec!["build", "--object", object, "--push", dst];
    args.extend_from_slice(extra);
    let out = img(&args).ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains('@'))
        .unwrap_or_else(|| panic!("no pushed reference in {:?}", out.stdout));
    pinned_digest(line)
}

/// A registry with `object` pushed to `repo:tag` and signed by key `a`.
struct Signed {
    reg: TestRegistry,
    keys: Keys,
    /// `127.0.0.1:PORT/<repo>`, no tag.
    repo: String,
    digest: String,
}

fn signed(test: &str, repo: &str, object: &str, tag: &str) -> Option<Signed> {
    let reg = TestRegistry::plain(test)?;
    let keys = Keys::new();
    let repo = reg.repo(repo);
    let digest = push_built(
        object,
        &format!("{repo}:{tag}"),
        &["--sign-key", &keys.private("a")],
    );
    Some(Signed {
        reg,
        keys,
        repo,
        digest,
    })
}

pub fn xdp() -> String {
    obj("amd64", "xdp_counter.bpfel.o")
}

pub fn tc() -> String {
    obj("amd64", "tc_classifier.bpfel.o")
}

/// Runs `f` against the registry holding `reference`, in-process.
pub fn with_registry<T>(reference: &str, f: impl AsyncFnOnce(&Registry, &RegistryRef) -> T) -> T {
    let r: RegistryRef = reference.parse().expect("reference");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let reg = Registry::connect(&TransportOptions::default(), &r)
                .await
                .expect("connect");
            f(&reg, &r).await
        })
}

/// The `.sig` manifest of `digest` in `repo` and its payload blobs.
fn sig_manifest(repo: &str, digest: &str) -> (ImageManifest, Vec<Vec<u8>>) {
    let tag = cosign::signature_tag(&digest.parse().expect("digest"));
    with_registry(repo, async |reg, r| {
        let f = reg.get_manifest(r, Some(&tag)).await.expect("sig manifest");
        let m: ImageManifest = serde_json::from_slice(&f.bytes).expect("manifest");
        let mut payloads = Vec::new();
        for l in &m.layers {
            let b = reg
                .get_blob(r, l, 1 << 20, &bpfman_image::registry::NoProgress)
                .await
                .expect("payload");
            payloads.push(b);
        }
        (m, payloads)
    })
}

/// Puts `manifest` (and `blobs`) under `tag` in `repo`.
fn put_manifest(repo: &str, tag: &str, manifest: &ImageManifest, blobs: &[(Descriptor, Vec<u8>)]) {
    let bytes = to_canonical_json(manifest);
    let desc = Descriptor::for_bytes(bpfman_image_spec::media::OCI_MANIFEST, &bytes);
    with_registry(repo, async |reg, r| {
        for (d, b) in blobs {
            reg.put_blob(
                r,
                d,
                b,
                std::sync::Arc::new(bpfman_image::registry::NoProgress),
            )
            .await
            .expect("blob");
        }
        reg.put_manifest(r, tag, &desc, &bytes)
            .await
            .expect("manifest");
    });
}

#[test]
fn sign_then_verify_both_formats_in_a_registry() {
    let Some(reg) = TestRegistry::plain("sign_then_verify_both_formats_in_a_registry") else {
        return;
    };
    let keys = Keys::new();
    let repo = reg.repo("ebpf/xdp");
    // build --push --sign-key: build, push and sign in one step.
    let digest = push_built(
        &xdp(),
        &format!("{repo}:v1"),
        &["--sign-key", &keys.private("a")],
    );
    let sig_tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    assert_eq!(reg.count("PUT", &format!("/manifests/{sig_tag}")), 1);

    let out = img(&["verify", "--key", &keys.public("a"), &format!("{repo}:v1")]).ok();
    assert!(
        out.stdout.contains(&format!("IMAGE   {repo}@{digest}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("valid, signed by key {}", keys.id("a")))
    );
    assert!(out.stdout.contains("VERIFIED"));

    // A cosign 3 bundle by key b: no referrers API here, so the referrer is
    // listed under the fallback tag.
    img(&[
        "sign",
        "--key",
        &keys.private("b"),
        "--signature-format",
        "bundle",
        &format!("{repo}:v1"),
    ])
    .ok();
    assert!(reg.count("GET", &format!("/referrers/{digest}")) >= 1);
    let fallback = format!("/manifests/sha256-{}", digest.trim_start_matches("sha256:"));
    assert!(
        reg.log()
            .lines()
            .any(|l| l.contains("\"PUT ") && l.contains(&format!("{fallback} ")))
    );
    let out = img(&[
        "verify",
        "--key",
        &keys.public("b"),
        &format!("{repo}@{digest}"),
    ])
    .ok();
    assert!(out.stdout.contains("sigstore bundle"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("valid, signed by key {}", keys.id("b")))
    );

    // Both keys trusted: both signatures valid, each reported.
    let out = img(&[
        "verify",
        "--key",
        &keys.public("a"),
        "--key",
        &keys.public("b"),
        "--output",
        "json",
        &format!("{repo}:v1"),
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["verdict"], "admitted");
    assert_eq!(v["digest"], digest);
    let outcomes: Vec<&str> = v["signatures"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["valid", "valid"]);
    assert_eq!(v["detail"]["signed_by"].as_array().expect("array").len(), 2);
}

#[test]
fn wrong_key_and_two_signatures_of_which_one_is_valid() {
    let Some(Signed {
        reg: _registry, // kept alive until the end of the test
        keys,
        repo,
        digest,
    }) = signed(
        "wrong_key_and_two_signatures_of_which_one_is_valid",
        "ebpf/xdp",
        &xdp(),
        "v1",
    )
    else {
        return;
    };
    let other = TempDir::new().expect("tmp");
    let other_key = other.path().join("c");
    img(&[
        "keygen",
        "--output-key-prefix",
        &other_key.display().to_string(),
    ])
    .ok();
    let c_pub = format!("{}.pub", other_key.display());

    img(&["verify", "--key", &c_pub, &format!("{repo}:v1")])
        .fails_with("no trusted key verifies it: made with another key");

    // A second signer: the first signature is kept.
    img(&["sign", "--key", &keys.private("b"), &format!("{repo}:v1")]).ok();
    let (m, _) = sig_manifest(&repo, &digest);
    assert_eq!(m.layers.len(), 2, "signing again keeps the first signature");
    let out = img(&["verify", "--key", &keys.public("b"), &format!("{repo}:v1")]).ok();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(".sig layer"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].contains("no trusted key verifies it"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(&format!("valid, signed by key {}", keys.id("b"))));
}

#[test]
fn tampered_payload_is_refused() {
    let Some(Signed {
        reg: _registry, // kept alive until the end of the test
        keys,
        repo,
        digest,
    }) = signed("tampered_payload_is_refused", "ebpf/xdp", &xdp(), "v1")
    else {
        return;
    };
    let (mut m, payloads) = sig_manifest(&repo, &digest);
    // Same digest, altered identity: the signature no longer matches.
    let text = String::from_utf8(payloads[0].clone()).expect("utf8");
    let tampered = text.replace("ebpf/xdp", "ebpf/evil").into_bytes();
    assert_ne!(tampered, payloads[0]);
    let mut layer = Descriptor::for_bytes(cosign::SIMPLE_SIGNING, &tampered);
    layer.annotations = m.layers[0].annotations.clone();
    m.layers[0] = layer.clone();
    let tag = cosign::signature_tag(&digest.parse().expect("digest"));
    put_manifest(&repo, &tag, &m, &[(layer, tampered)]);

    img(&["verify", "--key", &keys.public("a"), &format!("{repo}:v1")])
        .fails_with("the payload was altered");
}

#[test]
fn signature_for_another_digest_is_refused() {
    let Some(Signed {
        reg: _registry, // kept alive until the end of the test
        keys,
        repo,
        digest: signed,
    }) = signed(
        "signature_for_another_digest_is_refused",
        "ebpf/prog",
        &xdp(),
        "xdp",
    )
    else {
        return;
    };
    let unsigned = push_built(&tc(), &format!("{repo}:tc"), &[]);
    // Copy the .sig manifest of one image to the other's signature tag.
    let (m, _) = sig_manifest(&repo, &signed);
    let tag = cosign::signature_tag(&unsigned.parse().expect("digest"));
    put_manifest(&repo, &tag, &m, &[]);

    img(&["verify", "--key", &keys.public("a"), &format!("{repo}:tc")])
        .fails_with(&format!("signs another image ({signed})"));
}

#[test]
fn moving_a_tag_after_signing_does_not_move_the_signature() {
    let Some(Signed {
        reg: _registry, // kept alive until the end of the test
        keys,
        repo,
        digest: signed,
    }) = signed(
        "moving_a_tag_after_signing_does_not_move_the_signature",
        "ebpf/prog",
        &xdp(),
        "v1",
    )
    else {
        return;
    };
    let moved = push_built(&tc(), &format!("{repo}:v1"), &[]);
    assert_ne!(signed, moved);

    let out = img(&["verify", "--key", &keys.public("a"), &format!("{repo}:v1")])
        .fails_with("the image has no signatures");
    assert!(out.stdout.contains(&format!("@{moved}")), "{}", out.stdout);
    img(&[
        "verify",
        "--key",
        &keys.public("a"),
        &format!("{repo}@{signed}"),
    ])
    .ok();
}

/// Writes a policy for `reg` to `dir`: signed/* needs key a, dev/* takes
/// unsigned images, everything else is rejected.
fn write_policy(dir: &Path, reg: &TestRegistry, keys: &Keys) -> PathBuf {
    let path = dir.join("policy.toml");
    let text = format!(
        r#"[default]
rule = "reject"

[[scope]]
match = "{signed}"
rule = "require-signature"
keys = ["{a}"]

[[scope]]
match = "{dev}"
rule = "accept-unsigned"
"#,
        signed = reg.repo("signed"),
        dev = reg.repo("dev"),
        a = keys.public("a"),
    );
    fs::write(&path, text).expect("policy");
    path
}

#[test]
fn policy_scopes_decide() {
    let Some(reg) = TestRegistry::plain("policy_scopes_decide") else {
        return;
    };
    let keys = Keys::new();
    let tmp = TempDir::new().expect("tmp");
    let policy = write_policy(tmp.path(), &reg, &keys);
    let policy = policy.display().to_string();

    // No signature under a require-signature scope.
    let unsigned = reg.repo("signed/xdp:v1");
    push_built(&xdp(), &unsigned, &[]);
    img(&["verify", "--policy", &policy, &unsigned])
        .fails_with("a signature is required, but the image has no signatures");
    // Signed by the scope's key: admitted.
    let signed = reg.repo("signed/tc:v1");
    push_built(&tc(), &signed, &["--sign-key", &keys.private("a")]);
    let out = img(&["verify", "--policy", &policy, &signed]).ok();
    assert!(out.stdout.contains("require-signature"), "{}", out.stdout);
    // Signed, but by a key the scope does not trust.
    let other = reg.repo("signed/other:v1");
    push_built(&tc(), &other, &["--sign-key", &keys.private("b")]);
    img(&["verify", "--policy", &policy, &other]).fails_with("no trusted key verifies it");
    // Unsigned under accept-unsigned: admitted, and said to be unsigned.
    let dev = reg.repo("dev/xdp:v1");
    push_built(&xdp(), &dev, &[]);
    let out = img(&["verify", "--policy", &policy, &dev]).ok();
    assert!(out.stdout.contains("accept-unsigned") && out.stdout.contains("unsigned"));
    // Outside every scope: the default rejects, even a signed image.
    let prod = reg.repo("prod/xdp:v1");
    push_built(&xdp(), &prod, &["--sign-key", &keys.private("a")]);
    img(&["verify", "--policy", &policy, &prod])
        .fails_with("the policy rejects images in this scope");
}

#[test]
fn pull_verified_returns_exactly_the_admitted_bytes() {
    let Some(Signed {
        reg: _registry, // kept alive until the end of the test
        keys,
        repo,
        digest,
    }) = signed(
        "pull_verified_returns_exactly_the_admitted_bytes",
        "ebpf/xdp",
        &xdp(),
        "v1",
    )
    else {
        return;
    };
    let key =
        PublicKey::from_pem(&fs::read_to_string(keys.public("a")).expect("pub")).expect("pem");
    let policy = Policy::everything(Rule::RequireSignature { keys: vec![key] }, "test");
    let (content, proof) = with_registry(&format!("{repo}:v1"), async |r, rr| {
        let (content, proof, _) = signing::pull_verified(r, rr, &policy)
            .await
            .expect("admitted");
        (content, proof)
    });
    assert_eq!(proof.digest().to_string(), digest);
    assert!(proof.covers(&content.top.digest));

    // The closed default (no policy) refuses, with the reason.
    let err = with_registry(&format!("{repo}:v1"), async |r, rr| {
        signing::pull_verified(r, rr, &Policy::closed())
            .await
            .expect_err("refused")
    });
    assert!(matches!(err, SignError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("no public key is trusted"),
        "{err}"
    );
}

#[test]
fn policy_files_with_errors_name_the_line_or_the_file() {
    let keys = Keys::new();
    let tmp = TempDir::new().expect("tmp");
    let layout = tmp.path().join("img");
    img(&[
        "build",
        "--object",
        &xdp(),
        "--output",
        &format!("oci:{}", layout.display()),
    ])
    .ok();
    let image = format!("oci:{}", layout.display());

    let bad = tmp.path().join("syntax.toml");
    fs::write(&bad, "[[scope]]\nmatch = \"a.io\"\nrule = \"reject\n").expect("write");
    img(&["verify", "--policy", &bad.display().to_string(), &image]).fails_with("line 3");

    let missing = tmp.path().join("missing-key.toml");
    fs::write(
        &missing,
        "[default]\nrule = \"require-signature\"\nkeys = [\"nope.pub\"]\n",
    )
    .expect("write");
    img(&["verify", "--policy", &missing.display().to_string(), &image]).fails_with(&format!(
        "line 3: cannot use key file '{}'",
        tmp.path().join("nope.pub").display()
    ));

    // A private key where a public key belongs.
    let wrong = tmp.path().join("private-key.toml");
    fs::write(
        &wrong,
        format!(
            "[default]\nrule = \"require-signature\"\nkeys = [\"{}\"]\n",
            keys.private("a")
        ),
    )
    .expect("write");
    img(&["verify", "--policy", &wrong.display().to_string(), &image])
        .fails_with("this is a private key");
}

#[test]
fn layout_signatures_travel_with_the_layout_and_through_a_registry() {
    let Some(reg) =
        TestRegistry::plain("layout_signatures_travel_with_the_layout_and_through_a_registry")
    else {
        return;
    };
    let keys = Keys::new();
    let tmp = TempDir::new().expect("tmp");
    let layout = tmp.path().join("img");
    let built = img(&[
        "build",
        "--object",
        &xdp(),
        "--output",
        &format!("oci:{}:v1", layout.display()),
        "--sign-key",
        &keys.private("a"),
    ])
    .ok();
    let digest = pinned_digest(built.stdout.lines().next().expect("line"));
    img(&[
        "sign",
        "--key",
        &keys.private("b"),
        "--signature-format",
        "bundle",
        &format!("oci:{}:v1", layout.display()),
    ])
    .ok();

    // An air-gapped copy is a copy of the directory.
    let copy = tmp.path().join("carried");
    let status = std::process::Command::new("cp")
        .args([
            "-a",
            &layout.display().to_string(),
            &copy.display().to_string(),
        ])
        .status()
        .expect("cp");
    assert!(status.success());
    let both = |image: &str| {
        let out = img(&[
            "verify",
            "--key",
            &keys.public("a"),
            "--key",
            &keys.public("b"),
            image,
        ])
        .ok();
        assert_eq!(
            out.stdout.matches("valid, signed by key").count(),
            2,
            "{}",
            out.stdout
        );
    };
    both(&format!("oci:{}", copy.display()));

    // Pushed to a registry and pulled back, the signatures come along.
    let repo = reg.repo("ebpf/xdp:v1");
    let pushed = img(&["push", &format!("oci:{}:v1", copy.display()), &repo]).ok();
    assert!(
        pushed.stderr.contains("copied 2 signature(s)"),
        "{}",
        pushed.stderr
    );
    both(&repo);
    let back = tmp.path().join("back");
    img(&[
        "pull",
        &repo,
        "--output",
        &format!("oci:{}", back.display()),
    ])
    .ok();
    both(&format!("oci:{}:v1", back.display()));
    let back_digest = img(&[
        "inspect",
        &format!("oci:{}", back.display()),
        "--output",
        "json",
    ])
    .ok();
    assert!(back_digest.stdout.contains(&digest));

    // --no-signatures copies the image alone.
    let bare = tmp.path().join("bare");
    img(&[
        "pull",
        "--no-signatures",
        &repo,
        "--output",
        &format!("oci:{}", bare.display()),
    ])
    .ok();
    img(&[
        "verify",
        "--key",
        &keys.public("a"),
        &format!("oci:{}", bare.display()),
    ])
    .fails_with("has no signatures");
}

#[test]
fn keys_made_by_cosign_sign_and_ours_are_cosign_files() {
    let tmp = TempDir::new().expect("tmp");
    // The real cosign's key (empty password): our sign and verify use it.
    let cosign_key = testdata("cosign/cosign-empty-password.key")
        .display()
        .to_string();
    let pub_path = tmp.path().join("cosign.pub");
    run(
        &image_bin(),
        &[
            "public-key",
            "--key",
            &cosign_key,
            "--outfile",
            &pub_path.display().to_string(),
        ],
        &[("COSIGN_PASSWORD", "")],
    )
    .ok();
    let layout = tmp.path().join("img");
    img(&[
        "build",
        "--object",
        &xdp(),
        "--output",
        &format!("oci:{}", layout.display()),
    ])
    .ok();
    run(
        &image_bin(),
        &[
            "sign",
            "--key",
            &cosign_key,
            "-a",
            "team=net",
            &format!("oci:{}", layout.display()),
        ],
        &[("COSIGN_PASSWORD", "")],
    )
    .ok();
    img(&[
        "verify",
        "--key",
        &pub_path.display().to_string(),
        &format!("oci:{}", layout.display()),
    ])
    .ok();
    // The annotation is in the signed payload's optional section.
    let index = fs::read_to_string(layout.join("index.json")).expect("index");
    let index: serde_json::Value = serde_json::from_str(&index).expect("json");
    let sig = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|t| t.ends_with(".sig"))
        })
        .expect("sig tag");
    let blob = |d: &serde_json::Value| {
        let d = d
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
            .to_string();
        fs::read(layout.join("blobs/sha256").join(d)).expect("blob")
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&sig["digest"])).expect("manifest");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], cosign::SIMPLE_SIGNING);
    assert!(layer["annotations"][cosign::SIGNATURE_ANNOTATION].is_string());
    let payload: serde_json::Value =
        serde_json::from_slice(&blob(&layer["digest"])).expect("payload");
    assert_eq!(payload["optional"]["team"], "net");
    assert_eq!(
        payload["critical"]["type"],
        "cosign container image signature"
    );

    // Our key files: cosign's PEM labels and modes; no silent overwrite.
    let prefix = tmp.path().join("ours");
    img(&[
        "keygen",
        "--output-key-prefix",
        &prefix.display().to_string(),
    ])
    .ok();
    let key = tmp.path().join("ours.key");
    let text = fs::read_to_string(&key).expect("key");
    assert!(text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let envelope = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let envelope = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(envelope)
            .expect("base64"),
    )
    .expect("utf8");
    assert!(
        envelope.contains(r#""kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1}"#),
        "{envelope}"
    );
    assert!(
        envelope.contains(r#""cipher":{"name":"nacl/secretbox""#),
        "{envelope}"
    );
    assert_eq!(
        fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let public = fs::read_to_string(tmp.path().join("ours.pub")).expect("pub");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    img(&[
        "keygen",
        "--output-key-prefix",
        &prefix.display().to_string(),
    ])
    .fails_with("pass --force");
    assert_eq!(fs::read_to_string(&key).expect("key"), text);
    // A dangling link where the public key would go is not replaced.
    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), tmp.path().join("dangling.pub"))
        .expect("symlink");
    img(&[
        "keygen",
        "--output-key-prefix",
        &dangling.display().to_string(),
    ])
    .fails_with("dangling.pub' exists; pass --force");
    assert!(!tmp.path().join("dangling.key").exists());

    // A wrong password is a clear error, and nothing is signed.
    let before = fs::read_to_string(layout.join("index.json")).expect("index");
    run(
        &image_bin(),
        &[
            "sign",
            "--key",
            &key.display().to_string(),
            &format!("oci:{}", layout.display()),
        ],
        &[("COSIGN_PASSWORD", "not it")],
    )
    .fails_with("wrong password");
    assert_eq!(
        fs::read_to_string(layout.join("index.json")).expect("index"),
        before
    );
}

/// Registries with the OCI 1.1 referrers API (Debian's has none, so this
/// branch runs against the in-process registry): bundles are read through
/// the API, and the fallback tag is not consulted.
#[test]
fn bundles_are_read_through_the_referrers_api_where_there_is_one() {
    use bpfman_image_spec::media;
    use bpfman_trust::keys::PrivateKey;

    let key = PrivateKey::generate().expect("key");
    let tmp = TempDir::new().expect("tmp");
    let pub_path = tmp.path().join("k.pub");
    fs::write(&pub_path, key.public().to_pem()).expect("pub");

    let config = Descriptor::for_bytes(media::OCI_EMPTY, cosign::EMPTY_JSON);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: Vec::new(),
        subject: None,
        annotations: Default::default(),
    };
    let bytes = to_canonical_json(&manifest);
    let subject = Descriptor::for_bytes(media::OCI_MANIFEST, &bytes);
    let bundle = cosign::sign_bundle(&key, "test/img", &subject.digest, &Default::default());
    let stored = cosign::bundle_manifest(&subject, &bundle, None);
    let (_, index) = cosign::referrers_index(None, &stored.top);
    let filter = cosign::BUNDLE_V03.replace('+', "%2B");
    let extra = vec![
        (
            format!("referrers/{}?artifactType={filter}", subject.digest),
            media::OCI_INDEX.to_string(),
            index,
        ),
        (
            format!("manifests/{}", stored.top.digest),
            media::OCI_MANIFEST.to_string(),
            stored.top_bytes.clone(),
        ),
    ];
    let blobs = stored
        .blobs
        .iter()
        .map(|(d, b)| (d.digest.to_string(), b.clone()))
        .chain([(config.digest.to_string(), cosign::EMPTY_JSON.to_vec())])
        .collect();
    let fake = crate::fake_registry::FakeRegistry::start_with(
        crate::fake_registry::Fault::None,
        "v1",
        (media::OCI_MANIFEST, bytes),
        blobs,
        "none",
        extra,
    );
    let out = img(&[
        "verify",
        "--key",
        &pub_path.display().to_string(),
        &format!("{}/test/img:v1", fake.addr),
    ])
    .ok();
    assert!(
        out.stdout.contains("sigstore bundle  valid"),
        "{}",
        out.stdout
    );
    let requests = fake.requests.lock().expect("lock").clone();
    assert!(
        requests.iter().any(|p| p.contains("/referrers/")),
        "{requests:?}"
    );
    let fallback = format!("/manifests/{}", cosign::referrers_tag(&subject.digest));
    assert!(
        !requests.iter().any(|p| p.ends_with(&fallback)),
        "the fallback tag was read: {requests:?}"
    );
}

/// Runs `command` on a pseudo-terminal (util-linux `script`) with
/// `lines` typed half a second apart, and without COSIGN_PASSWORD.
fn on_terminal(command: &str, lines: &[&str]) -> Run {
    let mut typed = String::new();
    for l in lines {
        typed.push_str(&format!("sleep 0.5; printf '%s\\n' '{l}'; "));
    }
    let shell = format!("({typed} sleep 2) | script -qec \"{command}\" /dev/null");
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &shell]).env_remove("COSIGN_PASSWORD");
    let out = cmd.output().expect("sh");
    Run::from(&cmd, out)
}

#[test]
fn passwords_are_asked_on_a_terminal_without_cosign_password() {
    if !crate::support::have_tool(
        "passwords_are_asked_on_a_terminal",
        "script",
        "apt-get install bsdutils",
    ) {
        return;
    }
    let tmp = TempDir::new().expect("tmp");
    let bin = image_bin().display().to_string();
    let prefix = tmp.path().join("k").display().to_string();
    // script runs the command on its pty; its output comes back as stdout.
    let out = on_terminal(
        &format!("{bin} keygen --output-key-prefix {prefix}"),
        &["typed secret", "typed secret"],
    );
    assert_eq!(out.status, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Enter password for the new private key")
    );
    assert!(out.stdout.contains("Enter password again"));
    let public = on_terminal(
        &format!("{bin} public-key --key {prefix}.key"),
        &["typed secret"],
    );
    assert!(
        public.stdout.contains("BEGIN PUBLIC KEY"),
        "{}",
        public.stdout
    );
    // The typed password is the key's password.
    let pem = fs::read_to_string(format!("{prefix}.key")).expect("key");
    bpfman_trust::keys::PrivateKey::from_encrypted_pem(&pem, b"typed secret").expect("decrypts");

    let other = tmp.path().join("m").display().to_string();
    let out = on_terminal(
        &format!("{bin} keygen --output-key-prefix {other}"),
        &["one", "two"],
    );
    assert!(
        out.stdout
            .contains("the passwords do not match; nothing was written"),
        "{}",
        out.stdout
    );
    assert!(!Path::new(&format!("{other}.key")).exists());

    // No terminal and no COSIGN_PASSWORD: a clear error, not a hang.
    let out = std::process::Command::new(image_bin())
        .args(["keygen", "--output-key-prefix", &other])
        .env_remove("COSIGN_PASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set COSIGN_PASSWORD"), "{err}");
}

/// Regression: `build --sign-key` failing while signing (a full disk)
/// left the unsigned tag and printed its reference. Signing is now part
/// of the build's commit: in a new layout, an existing one, and a
/// registry, a failed signature leaves no tag naming the unsigned image.
#[test]
fn a_build_whose_signing_fails_leaves_no_unsigned_tag() {
    let Some(reg) = TestRegistry::plain("a_build_whose_signing_fails_leaves_no_unsigned_tag")
    else {
        return;
    };
    let keys = Keys::new();
    let tmp = TempDir::new().expect("tmp");
    let layout = tmp.path().join("img");
    let full_disk = [
        ("COSIGN_PASSWORD", PASSWORD),
        ("BPFMAN_IMAGE_FAULT", "signature-write"),
    ];
    let key = keys.private("a");
    let build = |output: &str, object: &str, envs: &[(&str, &str)]| {
        let args = [
            "build",
            "--force",
            "--object",
            object,
            "--output",
            output,
            "--sign-key",
            &key,
        ];
        run(&image_bin(), &args, envs)
    };
    // A new layout: nothing is left of it.
    let v1 = format!("oci:{}:v1", layout.display());
    let out = build(&v1, &xdp(), &full_disk).fails_with("cannot write a signature");
    assert!(
        !out.stdout.contains('@'),
        "reported a reference: {}",
        out.stdout
    );
    assert!(!layout.exists(), "the new layout stayed");

    // An existing layout: the tag keeps naming what it named.
    build(&v1, &xdp(), &[("COSIGN_PASSWORD", PASSWORD)]).ok();
    let index = layout.join("index.json");
    let before = fs::read(&index).expect("index");
    build(&v1, &tc(), &full_disk).fails_with("cannot write a signature");
    build(&format!("oci:{}:v2", layout.display()), &tc(), &full_disk)
        .fails_with("cannot write a signature");
    assert_eq!(fs::read(&index).expect("index"), before, "tags unchanged");

    // A registry: the image may be there by digest, but no tag names it.
    let dst = reg.repo("ebpf/unsigned:v1");
    let out = run(
        &image_bin(),
        &[
            "build",
            "--object",
            &xdp(),
            "--push",
            &dst,
            "--sign-key",
            &keys.private("a"),
        ],
        &full_disk,
    )
    .fails_with("cannot write a signature");
    assert!(!out.stdout.contains('@'), "{}", out.stdout);
    img(&["inspect", &dst]).fails_with("");
    // Without the fault the same build is signed and tagged.
    push_built(&xdp(), &dst, &["--sign-key", &keys.private("a")]);
    img(&["verify", "--key", &keys.public("a"), &dst]).ok();
}
