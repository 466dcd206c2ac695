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
