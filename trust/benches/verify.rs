//! Verification benchmark: what deciding on an image costs, beside the
//! cryptography it cannot avoid, measured in the same run.
//!
//! - `evaluate` over 1, 8 and 64 signatures (cosign `.sig` layers and
//!   bundles), beside bare ECDSA P-256 verification of the same signatures:
//!   the difference is parsing, digest checks and policy matching.
//! - Keyless: one certificate signature in each format (chain, SCT, SET,
//!   inclusion proof and checkpoint, identity), beside as many bare ECDSA
//!   P-256 verifications as those checks make.
//! - Opening a cosign private key (scrypt N=2^16, r=8, p=1 + secretbox),
//!   beside `openssl kdf SCRYPT` with the same parameters (when openssl is
//!   installed; its figure includes starting the process).
//!
//! Run with `cargo bench -p bpfman-trust`. Prints medians and ratios;
//! asserts nothing (machines are shared and noisy).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use bpfman_image_spec::digest::Digest;
use bpfman_trust::cosign::{self, Found};
use bpfman_trust::keys::PrivateKey;
use bpfman_trust::policy::{Policy, Rule};
use bpfman_trust::verdict::{Subject, evaluate};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(rounds: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn main() {
    let key = PrivateKey::generate().expect("key");
    let public = key.public();
    let digest = Digest::of(b"an image manifest");
    let none = BTreeMap::new();
    let policy = Policy::everything(
        Rule::RequireSignature {
            keys: vec![public.clone()],
        },
        "bench",
    );
    let subject = Subject {
        identity: "registry.example.com/ebpf/prog",
        digest: &digest,
    };

    println!(
        "{:<34} {:>12} {:>14} {:>7}",
        "verify", "evaluate", "bare ECDSA", "ratio"
    );
    for n in [1usize, 8, 64] {
        for (format, found) in [
            (
                "cosign .sig",
                (0..n)
                    .map(|i| {
                        let mut ann = none.clone();
                        ann.insert("n".to_string(), i.to_string());
                        cosign::sign_legacy(&key, "r/p", &digest, &ann).found(format!("{i}"))
                    })
                    .collect::<Vec<_>>(),
            ),
            (
                "bundle",
                (0..n)
                    .map(|i| Found::Bundle {
                        origin: format!("{i}"),
                        bundle: cosign::sign_bundle(&key, "r/p", &digest, &none),
                    })
                    .collect(),
            ),
        ] {
            // What verification cannot avoid: one ECDSA check per signature.
            let bare: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                .map(|i| {
                    let msg = format!("payload {i}").into_bytes();
                    let sig = key.sign(&msg);
                    (msg, sig)
                })
                .collect();
            let ours = time(20, || {
                let v = evaluate(subject, black_box(&found), &policy);
                assert!(v.decision.is_ok());
            });
            let base = time(20, || {
                for (m, s) in &bare {
                    assert!(public.verify(black_box(m), black_box(s)));
                }
            });
            println!(
                "{:<34} {:>12.3?} {:>14.3?} {:>6.2}x",
                format!("{n} x {format}"),
                ours,
                base,
                ratio(ours, base)
            );
        }
    }

    keyless(&digest, &subject);

    let password = b"bench password";
    let pem = key.to_encrypted_pem(password).expect("encrypt");
    let open = time(5, || {
        black_box(PrivateKey::from_encrypted_pem(&pem, password).expect("decrypt"));
    });
    let openssl = || {
        Command::new("openssl")
            .args([
                "kdf",
                "-keylen",
                "32",
                "-kdfopt",
                "pass:bench password",
                "-kdfopt",
                "salt:0123456789abcdef0123456789abcdef",
                "-kdfopt",
                "n:65536",
                "-kdfopt",
                "r:8",
                "-kdfopt",
                "p:1",
                "SCRYPT",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    println!();
    println!(
        "{:<34} {:>12} {:>14} {:>7}",
        "open a cosign key", "ours", "openssl kdf", "ratio"
    );
    if openssl() {
        let base = time(5, || assert!(openssl()));
        println!(
            "{:<34} {:>12.3?} {:>14.3?} {:>6.2}x",
            "scrypt N=2^16 r=8 p=1 (+ secretbox)",
            open,
            base,
            ratio(open, base)
        );
    } else {
        println!(
            "{:<34} {:>12.3?} {:>14} {:>7}",
            "scrypt N=2^16 r=8 p=1 (+ secretbox)", open, "(no openssl)", "-"
        );
    }
}

/// One keyless signature per format, beside the ECDSA verifications it
/// makes: the signature, the SET, the SCT, and the chain (leaf, intermediate,
/// root), plus the checkpoint for bundles.
fn keyless(digest: &Digest, subject: &Subject<'_>) {
    use bpfman_trust::sigstore::Subject as Who;
    use bpfman_trust::sigstore::testpki::{Leaf, TestPki};

    const WHO: &str = "https://github.com/org/repo/.github/workflows/r.yml@refs/heads/main";
    const ISSUER: &str = "https://token.actions.githubusercontent.com";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let pki = TestPki::new(now);
    let keyless = pki.keyless(ISSUER, Who::Exact(WHO.into()));
    let policy = Policy::everything_with(
        Rule::RequireSignature { keys: Vec::new() },
        Some(keyless),
        "bench",
    );
    let leaf = Leaf::new(WHO, ISSUER, now);
    let legacy = pki.keyless_layer("r/p", digest, &leaf).found("0".into());
    let bundle = Found::Bundle {
        origin: "1".into(),
        bundle: pki.keyless_bundle("r/p", digest, &leaf),
    };
    let bare_key = PrivateKey::generate().expect("key");
    let public = bare_key.public();
    for (format, found, checks) in [("keyless .sig", legacy, 6), ("keyless bundle", bundle, 7)] {
        let found = [found];
        let bare: Vec<(Vec<u8>, Vec<u8>)> = (0..checks)
            .map(|i| {
                let msg = format!("payload {i}").into_bytes();
                let sig = bare_key.sign(&msg);
                (msg, sig)
            })
            .collect();
        let ours = time(20, || {
            let v = bpfman_trust::verdict::evaluate_at(*subject, black_box(&found), &policy, now);
            assert!(v.decision.is_ok(), "{:?}", v.checks);
        });
        let base = time(20, || {
            for (m, s) in &bare {
                assert!(public.verify(black_box(m), black_box(s)));
            }
        });
        println!(
            "{:<34} {:>12.3?} {:>14.3?} {:>6.2}x",
            format!("1 x {format} ({checks} ECDSA)"),
            ours,
            base,
            ratio(ours, base)
        );
    }
}
