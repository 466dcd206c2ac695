//! Verification benchmark: what deciding on an image costs, beside the
//! cryptography it cannot avoid, measured in the same run.
//!
//! - `evaluate` over 1, 8 and 64 signatures (cosign `.sig` layers and
//!   bundles), beside bare ECDSA P-256 verification of the same signatures:
//!   the difference is parsing, digest checks and policy matching.
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
