//! Keyless (certificate) and key-based Sigstore bundles through
//! `bpfman-image verify-blob`: the Sigstore conformance suite's offline
//! bundle-verify cases, real bundles from the public-good and staging
//! instances and hand-damaged copies of them, each with its trusted root.
//!
//! The cases live in `../shared/sigstore-conformance/` beside the
//! checkout (or where `BPFMAN_SIGSTORE_CONFORMANCE` points); `cases.tsv`
//! there lists, per case, the artifact, bundle, trusted root, identity or
//! key, and the expected outcome.

use std::path::PathBuf;

use crate::support::{image_bin, run, skip};

fn conformance_dir() -> PathBuf {
    std::env::var_os("BPFMAN_SIGSTORE_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::support::repo_root()
                .parent()
                .expect("the checkout has a parent")
                .join("shared/sigstore-conformance")
        })
}

struct Case {
    name: String,
    args: Vec<String>,
    pass: bool,
}

fn cases(test: &str) -> Option<(PathBuf, Vec<Case>)> {
    let dir = conformance_dir();
    let Ok(tsv) = std::fs::read_to_string(dir.join("cases.tsv")) else {
        skip(
            test,
            &format!("no Sigstore conformance cases at {}", dir.display()),
        );
        return None;
    };
    let mut out = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 8, "malformed cases.tsv line: {line}");
        let mut args: Vec<String> = vec![
            "verify-blob".into(),
            "--bundle".into(),
            f[2].into(),
            "--trusted-root".into(),
            f[3].into(),
        ];
        match f[4] {
            "identity" => args.extend([
                "--certificate-identity".into(),
                f[5].into(),
                "--certificate-oidc-issuer".into(),
                f[6].into(),
            ]),
            "key" => args.extend(["--key".into(), f[6].into()]),
            m => panic!("unknown mode {m} in {line}"),
        }
        args.push(f[1].into());
        out.push(Case {
            name: f[0].into(),
            args,
            pass: match f[7] {
                "pass" => true,
                "fail" => false,
                e => panic!("unknown expectation {e} in {line}"),
            },
        });
    }
    Some((dir, out))
}

fn verify_blob(dir: &std::path::Path, args: &[String]) -> crate::support::Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = std::process::Command::new(image_bin());
    cmd.args(&args).current_dir(dir);
    let out = cmd.output().expect("run bpfman-image");
    crate::support::Run::from(&cmd, out)
}

#[test]
fn every_sigstore_conformance_bundle_case_comes_out_right() {
    let Some((dir, cases)) = cases("every_sigstore_conformance_bundle_case_comes_out_right") else {
        return;
    };
    assert!(cases.len() >= 70, "only {} cases listed", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let r = verify_blob(&dir, &case.args);
        let right = if case.pass {
            r.status == 0 && r.stdout.starts_with("Verified OK")
        } else {
            // Refused, never as a usage error (2), with the check or the
            // input named.
            r.status == 1
                && (r.stderr.contains(" check failed: ") || r.stderr.contains("cannot use "))
        };
        if !right {
            wrong.push(format!(
                "{} (expected {}): exit {}\n{}{}",
                case.name,
                if case.pass { "pass" } else { "fail" },
                r.status,
                r.stdout,
                r.stderr
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn verify_blob_reports_kind_identity_issuer_and_log_index_as_json() {
    let Some((dir, cases)) =
        cases("verify_blob_reports_kind_identity_issuer_and_log_index_as_json")
    else {
        return;
    };
    let find = |n: &str| {
        cases
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("case {n} listed"))
    };
    let mut args = find("happy-path-v0.3").args.clone();
    args.extend(["--output".into(), "json".into()]);
    let r = verify_blob(&dir, &args);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let sig = &v["signatures"][0];
    assert_eq!(v["verdict"], "verified");
    assert_eq!(sig["kind"], "certificate");
    assert_eq!(sig["issuer"], "https://token.actions.githubusercontent.com");
    assert!(
        sig["identity"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("https://github.com/sigstore-conformance/")),
        "{sig}"
    );
    assert_eq!(sig["log_index"][0], 79_571_823);
    assert_eq!(sig["verdict"], "valid");

    let mut args = find("managed-key-happy-path").args.clone();
    args.extend(["--output".into(), "json".into()]);
    let r = verify_blob(&dir, &args);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["signatures"][0]["kind"], "key");

    // The wrong identity is refused by the identity check, as JSON too.
    let mut args = find("happy-path-v0.3").args.clone();
    let at = args
        .iter()
        .position(|a| a == "--certificate-identity")
        .expect("identity case");
    args[at + 1] = "https://github.com/someone/else/.github/workflows/x.yml@refs/heads/main".into();
    args.extend(["--output".into(), "json".into()]);
    let r = verify_blob(&dir, &args);
    assert_eq!(r.status, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["signatures"][0]["check"], "identity", "{v}");

    // An anchored regex matches the whole subject, not a part of it.
    for (regex, ok) in [
        ("https://github.com/sigstore-conformance/.*", true),
        ("sigstore-conformance", false),
    ] {
        let mut args = find("happy-path-v0.3").args.clone();
        args[at] = "--certificate-identity-regexp".into();
        args[at + 1] = regex.into();
        let r = verify_blob(&dir, &args);
        assert_eq!(r.status == 0, ok, "{regex}: {}", r.stderr);
    }
}

#[test]
fn verify_blob_usage_errors_are_status_2_and_bad_files_are_named() {
    let r = run(&image_bin(), &["verify-blob", "--bundle", "b", "a"], &[]);
    assert_eq!(r.status, 2, "no trusted root, no signer: {}", r.stderr);
    let dir = tempfile::TempDir::new().expect("tmp");
    let root = dir.path().join("root.json");
    std::fs::write(&root, "{\"mediaType\":\"something else\"}").expect("write");
    let art = dir.path().join("a.txt");
    std::fs::write(&art, "x").expect("write");
    let r = run(
        &image_bin(),
        &[
            "verify-blob",
            "--bundle",
            "missing.json",
            "--trusted-root",
            &root.display().to_string(),
            "--certificate-identity",
            "me@example.com",
            "--certificate-oidc-issuer",
            "https://issuer.example",
            &art.display().to_string(),
        ],
        &[],
    );
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.contains("cannot use trusted root")
            && r.stderr.contains("not a Sigstore trusted root"),
        "{}",
        r.stderr
    );
}

// ---- keyless signatures on images, in a real registry ----

mod images {
    use std::path::Path;

    use bpfman_image::signing::Store;
    use bpfman_image_spec::digest::Digest;
    use bpfman_image_spec::oci::Descriptor;
    use bpfman_trust::cosign::LegacyLayer;
    use bpfman_trust::sigstore::testpki::{Leaf, TestPki, pem};

    use crate::registry_harness::TestRegistry;
    use crate::signing::{img, push_built, tc, with_registry, xdp};
    use crate::support::{BpfMount, load_bin, run};

    const WHO: &str = "https://github.com/org/ebpf/.github/workflows/release.yml@refs/heads/main";
    const ISSUER: &str = "https://token.actions.githubusercontent.com";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn legacy_layer(pki: &TestPki, repo: &str, digest: &Digest, who: &str) -> LegacyLayer {
        pki.keyless_layer(repo, digest, &Leaf::new(who, ISSUER, pki.now))
    }

    fn bundle(pki: &TestPki, repo: &str, digest: &Digest) -> Vec<u8> {
        pki.keyless_bundle(repo, digest, &Leaf::new(WHO, ISSUER, pki.now))
    }

    /// Adds signatures to `digest` in `repo` the way cosign stores them.
    fn store(repo: &str, digest: &Digest, legacy: Option<LegacyLayer>, bundle: Option<Vec<u8>>) {
        let reference = format!("{repo}@{digest}");
        with_registry(&reference, async |reg, r| {
            let fetched = reg.get_manifest(r, None).await.expect("image manifest");
            let subject =
                Descriptor::for_bytes(bpfman_image_spec::media::OCI_MANIFEST, &fetched.bytes);
            let s = Store::registry(reg, r);
            if let Some(l) = legacy {
                s.add_legacy(digest, &[l]).await.expect("add .sig");
            }
            if let Some(b) = bundle {
                s.add_bundle(&subject, &b).await.expect("add bundle");
            }
        });
    }

    fn verify(repo_tag: &str, root: &Path, who: &str, json: bool) -> crate::support::Run {
        let root = root.display().to_string();
        let mut args = vec![
            "verify",
            "--trusted-root",
            &root,
            "--certificate-identity",
            who,
            "--certificate-oidc-issuer",
            ISSUER,
        ];
        if json {
            args.extend(["--output", "json"]);
        }
        args.push(repo_tag);
        img(&args)
    }

    #[test]
    fn keyless_signed_images_verify_by_identity_and_load_under_a_host_policy() {
        let test = "keyless_signed_images_verify_by_identity_and_load_under_a_host_policy";
        let Some(reg) = TestRegistry::plain(test) else {
            return;
        };
        let dir = tempfile::TempDir::new().expect("tmp");
        let pki = TestPki::new(now());
        let root = dir.path().join("trusted_root.json");
        std::fs::write(&root, pki.trusted_root_json()).expect("root");
        let repo = reg.repo("ebpf/keyless");
        let d1: Digest = push_built(&xdp(), &format!("{repo}:v1"), &[])
            .parse()
            .expect("digest");
        let d2: Digest = push_built(&tc(), &format!("{repo}:v2"), &[])
            .parse()
            .expect("digest");

        // v1: cosign's legacy keyless .sig (certificate + Rekor bundle).
        store(&repo, &d1, Some(legacy_layer(&pki, &repo, &d1, WHO)), None);
        let out = verify(&format!("{repo}:v1"), &root, WHO, false);
        assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(&format!(
                "valid, certificate for {WHO} from {ISSUER}, log index 42"
            )) && out
                .stdout
                .contains(&format!("signed by certificate {WHO} ({ISSUER})")),
            "{}",
            out.stdout
        );
        let out = verify(&format!("{repo}:v1"), &root, WHO, true);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let s = &v["signatures"][0];
        assert_eq!(s["kind"], "certificate", "{v}");
        assert_eq!(s["outcome"], "certified");
        assert_eq!(s["identity"], WHO);
        assert_eq!(s["issuer"], ISSUER);
        assert_eq!(s["log_index"][0], 42);
        assert_eq!(v["verdict"], "admitted");

        // Another identity is refused, naming the check.
        let out = verify(
            &format!("{repo}:v1"),
            &root,
            "https://github.com/else/x",
            false,
        );
        assert_eq!(out.status, 1);
        assert!(
            out.stdout.contains("identity check failed"),
            "{}",
            out.stdout
        );

        // v2: a keyless bundle (OCI referrer, fallback tag here).
        store(&repo, &d2, None, Some(bundle(&pki, &repo, &d2)));
        let out = verify(&format!("{repo}:v2"), &root, WHO, true);
        assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let s = &v["signatures"][0];
        assert_eq!(
            (&s["kind"], &s["outcome"]),
            (&"certificate".into(), &"certified".into())
        );
        assert_eq!(s["log_index"][0], 7);

        // v1's signature copied onto v2: signs another image.
        store(&repo, &d2, Some(legacy_layer(&pki, &repo, &d1, WHO)), None);
        let out = verify(&format!("{repo}:v2"), &root, WHO, false);
        assert_eq!(out.status, 0, "the bundle still verifies v2");
        assert!(out.stdout.contains("signs another image"), "{}", out.stdout);

        // A host: bpfman-load pulls under a policy naming the identity,
        // and refuses under one naming another.
        let bpf = BpfMount::new();
        let policy = |name: &str, who: &str| {
            let p = dir.path().join(name);
            std::fs::write(
                &p,
                format!(
                    "[default]\nrule = \"reject\"\n\n[[scope]]\nmatch = \"{repo}\"\nrule = \"require-signature\"\ntrusted-root = \"trusted_root.json\"\nidentities = [{{ issuer = \"{ISSUER}\", subject = \"{who}\" }}]\n"
                ),
            )
            .expect("policy");
            p.display().to_string()
        };
        let good = policy("good.toml", WHO);
        let bad = policy("bad.toml", "https://github.com/else/x");
        let host = |policy: &str, args: &[&str]| {
            let root = dir.path().join("host").display().to_string();
            let bpffs = bpf.path().display().to_string();
            let mut all = vec!["--root", &root, "--bpffs", &bpffs, "--policy", policy];
            all.extend_from_slice(args);
            run(&load_bin(), &all, &[])
        };
        let image = format!("{repo}:v1");
        let out = host(&bad, &["pull", &image]);
        assert_ne!(out.status, 0);
        assert!(
            out.stderr.contains("identity check failed"),
            "{}",
            out.stderr
        );
        let out = host(&good, &["pull", &image]).ok();
        assert!(out.stdout.contains(&d1.to_string()), "{}", out.stdout);
        // Offline, from the cache: the certificate and Rekor annotations
        // were kept with the signature.
        let out = host(&good, &["pull", "--pull-policy", "never", &image]).ok();
        assert!(out.stdout.contains(&d1.to_string()), "{}", out.stdout);
    }

    #[test]
    fn sign_with_a_private_ca_certificate_and_verify_by_identity() {
        let test = "sign_with_a_private_ca_certificate_and_verify_by_identity";
        let Some(reg) = TestRegistry::plain(test) else {
            return;
        };
        let dir = tempfile::TempDir::new().expect("tmp");
        let keys = crate::signing::Keys::new();
        let pub_pem = std::fs::read_to_string(keys.public("a")).expect("pub");
        let spki = bpfman_trust::keys::PublicKey::from_pem(&pub_pem)
            .expect("key")
            .spki_der();
        let pki = TestPki::new(now());
        let leaf = pki.issue(
            &spki,
            &Leaf {
                sct: false,
                not_after: pki.now + 86_400,
                ..Leaf::new("ci@example.com", "https://ca.example.com", pki.now)
            },
        );
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p.display().to_string()
        };
        let cert = write("leaf.pem", pem(&leaf, "CERTIFICATE"));
        let chain = write(
            "chain.pem",
            pem(&pki.intermediate_cert, "CERTIFICATE") + &pem(&pki.root_cert, "CERTIFICATE"),
        );
        write("trusted_root.json", pki.trusted_root_json());
        let repo = reg.repo("ebpf/private-ca");
        let image = format!("{repo}:v1");
        push_built(&xdp(), &image, &[]);

        // A certificate for another key is refused before signing.
        let other = keys.private("b");
        let out = img(&["sign", "--key", &other, "--certificate", &cert, &image]);
        assert_eq!(out.status, 1);
        assert!(
            out.stderr.contains("not for the signing key"),
            "{}",
            out.stderr
        );

        for format in ["legacy", "bundle"] {
            img(&[
                "sign",
                "--key",
                &keys.private("a"),
                "--certificate",
                &cert,
                "--certificate-chain",
                &chain,
                "--signature-format",
                format,
                &image,
            ])
            .ok();
        }
        // No Rekor, no CT log: the scope says so, and the certificate is
        // checked at the current time.
        let policy = write(
            "policy.toml",
            "[default]\nrule = \"require-signature\"\ntrusted-root = \"trusted_root.json\"\nidentities = [{ issuer = \"https://ca.example.com\", subject = \"ci@example.com\" }]\ntransparency-log = \"optional\"\nsct = \"optional\"\n"
                .to_string(),
        );
        let out = img(&["verify", "--policy", &policy, "--output", "json", &image]);
        assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let outcomes: Vec<&str> = v["signatures"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["outcome"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(outcomes, ["certified", "certified"], "{v}");
        // The signing key alone verifies them too, as cosign --key does.
        let out = img(&["verify", "--key", &keys.public("a"), &image]).ok();
        assert_eq!(
            out.stdout.matches("valid, signed by key").count(),
            2,
            "{}",
            out.stdout
        );
        // With the log required (the default), the same signatures are
        // refused for want of a log entry.
        let strict = write(
            "strict.toml",
            "[default]\nrule = \"require-signature\"\ntrusted-root = \"trusted_root.json\"\nidentities = [{ issuer = \"https://ca.example.com\", subject = \"ci@example.com\" }]\nsct = \"optional\"\n".into(),
        );
        let out = img(&["verify", "--policy", &strict, &image]);
        assert_eq!(out.status, 1);
        assert!(
            out.stdout.contains("transparency log entry check failed"),
            "{}",
            out.stdout
        );
    }
}
