//! Keyless image signatures, both cosign formats, through the verdict:
//! every check that can refuse one, with the miniature Sigstore of
//! [`super::testpki`].

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bpfman_image_spec::digest::Digest;

use super::bundle::{COSIGN_CERTIFICATE, COSIGN_REKOR_BUNDLE};
use super::testpki::{Leaf, TestPki, ephemeral, pem, sign_with};
use super::{Check, Subject};
use crate::cosign::{self, Found, Kind, Outcome, SIGNATURE_ANNOTATION};
use crate::policy::{Keyless, Policy, Rule};
use crate::verdict::{self, Subject as Image};

const NOW: i64 = 1_800_000_000;
const WHO: &str = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn digest(data: &[u8]) -> Digest {
    Digest::of(data)
}

fn keyless(pki: &TestPki, subject: Subject) -> Keyless {
    pki.keyless(ISSUER, subject)
}

/// A legacy keyless signature over `image`, logged or not.
fn legacy(pki: &TestPki, image: &Digest, leaf: &Leaf<'_>, logged: bool) -> Found {
    let mut layer = pki.keyless_layer("r.io/app", image, leaf);
    if !logged {
        layer.annotations.remove(COSIGN_REKOR_BUNDLE);
    }
    layer.found("sig".into())
}

/// A keyless v0.3 bundle over `image`.
fn bundle(pki: &TestPki, image: &Digest, leaf: &Leaf<'_>) -> Vec<u8> {
    pki.keyless_bundle("r.io/app", image, leaf)
}

fn check(found: &Found, image: &Digest, keyless: Option<&Keyless>) -> Outcome {
    cosign::check_with(
        found,
        image,
        &cosign::Trust {
            keys: &[],
            keyless,
            now: NOW,
        },
    )
}

fn refused_by(outcome: &Outcome) -> Option<Check> {
    match outcome {
        Outcome::Refused { check, .. } => Some(*check),
        _ => None,
    }
}

#[test]
fn legacy_keyless_signatures_verify_and_every_fault_names_its_check() {
    let pki = TestPki::new(NOW);
    let trust = keyless(&pki, Subject::Exact(WHO.into()));
    let image = digest(b"image");
    let good = legacy(&pki, &image, &Leaf::new(WHO, ISSUER, NOW), true);
    assert_eq!(good.kind(), Kind::Certificate);
    match check(&good, &image, Some(&trust)) {
        Outcome::Certified {
            identity,
            issuer,
            log_index,
        } => {
            assert_eq!((identity.as_str(), issuer.as_str()), (WHO, ISSUER));
            assert_eq!(log_index, vec![42]);
        }
        other => panic!("{other:?}"),
    }
    // The same signature, judged for another image: copied or moved.
    assert!(matches!(
        check(&good, &digest(b"other"), Some(&trust)),
        Outcome::WrongDigest { .. }
    ));
    // Without keyless trust in the scope, a certificate is not trusted.
    assert_eq!(
        refused_by(&check(&good, &image, None)),
        Some(Check::Identity)
    );

    let cases: Vec<(&str, Found, Check)> = vec![
        (
            "another subject",
            legacy(
                &pki,
                &image,
                &Leaf::new("https://github.com/evil/repo", ISSUER, NOW),
                true,
            ),
            Check::Identity,
        ),
        (
            "another issuer",
            legacy(
                &pki,
                &image,
                &Leaf::new(WHO, "https://accounts.google.com", NOW),
                true,
            ),
            Check::Identity,
        ),
        (
            "expired at signing",
            legacy(
                &pki,
                &image,
                &Leaf {
                    not_after: NOW - 30,
                    ..Leaf::new(WHO, ISSUER, NOW)
                },
                true,
            ),
            Check::CertificateValidity,
        ),
        (
            "unknown CA",
            legacy(
                &TestPki::new(NOW),
                &image,
                &Leaf::new(WHO, ISSUER, NOW),
                true,
            ),
            Check::LogEntry,
        ),
        (
            "no SCT",
            legacy(
                &pki,
                &image,
                &Leaf {
                    sct: false,
                    ..Leaf::new(WHO, ISSUER, NOW)
                },
                true,
            ),
            Check::Sct,
        ),
        (
            "not for code signing",
            legacy(
                &pki,
                &image,
                &Leaf {
                    code_signing: false,
                    ..Leaf::new(WHO, ISSUER, NOW)
                },
                true,
            ),
            Check::KeyUsage,
        ),
        (
            "not logged",
            legacy(&pki, &image, &Leaf::new(WHO, ISSUER, NOW), false),
            Check::LogEntry,
        ),
    ];
    for (what, found, want) in &cases {
        let got = check(found, &image, Some(&trust));
        assert_eq!(refused_by(&got), Some(*want), "{what}: {got:?}");
    }

    // A leaf from a CA the root does not know, logged in our log: the
    // chain check refuses it.
    let stranger = TestPki::new(NOW);
    let payload = cosign::simple_signing_payload("r.io/app", &image, &BTreeMap::new());
    let (key, spki) = ephemeral();
    let sig = sign_with(&key, &payload);
    let cert = stranger.issue(&spki, &Leaf::new(WHO, ISSUER, NOW));
    let found = Found::Legacy {
        origin: "sig".into(),
        payload: payload.clone(),
        signature: Some(B64.encode(&sig)),
        annotations: BTreeMap::from([
            (COSIGN_CERTIFICATE.to_string(), pem(&cert, "CERTIFICATE")),
            (
                COSIGN_REKOR_BUNDLE.to_string(),
                pki.rekor_annotation(&payload, &sig, &cert, NOW - 10, 1),
            ),
        ]),
    };
    assert_eq!(
        refused_by(&check(&found, &image, Some(&trust))),
        Some(Check::CertificateChain)
    );

    // A log entry for another artifact, or a tampered SET.
    let Found::Legacy {
        payload,
        signature,
        annotations,
        ..
    } = &good
    else {
        unreachable!()
    };
    let cert_pem = &annotations[COSIGN_CERTIFICATE];
    let cert = super::bundle::pem_block(cert_pem, "CERTIFICATE").expect("pem");
    let sig = B64
        .decode(signature.as_deref().unwrap_or_default())
        .expect("b64");
    let mut other = annotations.clone();
    other.insert(
        COSIGN_REKOR_BUNDLE.into(),
        pki.rekor_annotation(b"something else", &sig, &cert, NOW - 10, 42),
    );
    let f = Found::Legacy {
        origin: "sig".into(),
        payload: payload.clone(),
        signature: signature.clone(),
        annotations: other,
    };
    assert_eq!(
        refused_by(&check(&f, &image, Some(&trust))),
        Some(Check::LogEntry)
    );
    let mut tampered = annotations.clone();
    let rekor = tampered[COSIGN_REKOR_BUNDLE].replace(
        "\"integratedTime\":1799999995",
        "\"integratedTime\":1799999996",
    );
    assert_ne!(rekor, tampered[COSIGN_REKOR_BUNDLE]);
    tampered.insert(COSIGN_REKOR_BUNDLE.into(), rekor);
    let f = Found::Legacy {
        origin: "sig".into(),
        payload: payload.clone(),
        signature: signature.clone(),
        annotations: tampered,
    };
    assert_eq!(
        refused_by(&check(&f, &image, Some(&trust))),
        Some(Check::Set)
    );
}

#[test]
fn optional_log_and_sct_are_for_private_cas_and_check_the_certificate_now() {
    let pki = TestPki::new(NOW);
    let mut trust = keyless(&pki, Subject::Exact(WHO.into()));
    trust.require_log = false;
    trust.require_sct = false;
    let image = digest(b"image");
    let leaf = Leaf {
        sct: false,
        ..Leaf::new(WHO, ISSUER, NOW)
    };
    let found = legacy(&pki, &image, &leaf, false);
    assert!(matches!(
        check(&found, &image, Some(&trust)),
        Outcome::Certified { .. }
    ));
    // Expired now, with nothing vouching for an earlier time: refused.
    let old = Leaf {
        not_before: NOW - 7200,
        not_after: NOW - 3600,
        ..leaf.clone()
    };
    let found = legacy(&pki, &image, &old, false);
    assert_eq!(
        refused_by(&check(&found, &image, Some(&trust))),
        Some(Check::CertificateValidity)
    );
}

#[test]
fn keyless_bundles_verify_with_inclusion_proofs_and_refuse_swaps() {
    let pki = TestPki::new(NOW);
    let trust = keyless(
        &pki,
        Subject::regex("https://github.com/org/.*").expect("regex"),
    );
    let image = digest(b"image");
    let b = bundle(&pki, &image, &Leaf::new(WHO, ISSUER, NOW));
    let found = Found::Bundle {
        origin: "referrer".into(),
        bundle: b.clone(),
    };
    assert_eq!(found.kind(), Kind::Certificate);
    assert!(
        matches!(check(&found, &image, Some(&trust)), Outcome::Certified { ref log_index, .. } if log_index == &[7]),
        "{:?}",
        check(&found, &image, Some(&trust))
    );
    // The bundle of one image presented for another.
    assert!(matches!(
        check(&found, &digest(b"other"), Some(&trust)),
        Outcome::WrongDigest { .. }
    ));
    // A corrupted root hash: the inclusion proof check refuses it.
    let mut v: serde_json::Value = serde_json::from_slice(&b).expect("json");
    v["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["rootHash"] =
        B64.encode([0u8; 32]).into();
    let bad = Found::Bundle {
        origin: "referrer".into(),
        bundle: v.to_string().into_bytes(),
    };
    assert_eq!(
        refused_by(&check(&bad, &image, Some(&trust))),
        Some(Check::InclusionProof)
    );

    // Through the verdict: admitted, and the signer named.
    let policy = Policy::everything_with(
        Rule::RequireSignature { keys: Vec::new() },
        Some(trust),
        "test",
    );
    let v = verdict::evaluate_at(
        Image {
            identity: "r.io/app",
            digest: &image,
        },
        &[found, bad],
        &policy,
        NOW,
    );
    let proof = v.decision.expect("admitted by the certificate");
    assert_eq!(
        proof.signed_by()[0].to_string(),
        format!("certificate {WHO} ({ISSUER})")
    );
    assert_eq!(v.checks[0].kind, Kind::Certificate);
    let _ = SIGNATURE_ANNOTATION;
}
