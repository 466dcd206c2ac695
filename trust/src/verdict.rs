//! The verdict: a pure function from (image, signatures found, policy) to
//! either a [`Proof`] that the image may be used, or a [`Refusal`] listing
//! every reason it may not. Every signature found is checked and reported
//! either way.

use std::fmt;

use bpfman_image_spec::digest::Digest;
use serde::Serialize;

use crate::cosign::{self, Format, Found, Kind, Outcome, Trust};
use crate::keys::KeyId;
use crate::policy::{Policy, Rule};

/// The image being decided on: its name (what scopes match) and the digest
/// its reference resolved to, once.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `registry[:port]/repository`, or `oci:/abs/path` for a layout.
    pub identity: &'a str,
    pub digest: &'a Digest,
}

/// One signature and what checking it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub origin: String,
    pub format: Format,
    /// Key or certificate.
    pub kind: Kind,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The scope that decided, for reports and records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decider {
    pub pattern: String,
    pub rule: &'static str,
    /// `policy.toml:12`, `built-in default`, ...
    pub origin: String,
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scope '{}' ({}, {})",
            self.pattern, self.rule, self.origin
        )
    }
}

/// Evidence that an image digest was admitted by the policy. Only
/// [`evaluate`] makes one; it cannot be deserialized or built by hand, so
/// holding one means the check ran. The loader takes a `Proof` and the
/// bytes, and refuses if [`Proof::covers`] is false for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proof {
    digest: Digest,
    identity: String,
    admitted_by: Decider,
    signed_by: Vec<KeyId>,
    policy: String,
}

impl Proof {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The scope whose rule admitted the image.
    pub fn admitted_by(&self) -> &Decider {
        &self.admitted_by
    }

    /// Keys with a valid signature over the digest; empty when the scope
    /// accepts unsigned images and none verified.
    pub fn signed_by(&self) -> &[KeyId] {
        &self.signed_by
    }

    /// The policy in force (its file, or that none was configured).
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// True if these are the bytes this proof is about.
    pub fn covers(&self, digest: &Digest) -> bool {
        &self.digest == digest
    }
}

/// Why an image was refused: every reason, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub identity: String,
    pub digest: Digest,
    pub decided_by: Decider,
    pub policy: String,
    pub reasons: Vec<Reason>,
}

/// One reason for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The deciding scope rejects everything it covers.
    ScopeRejects,
    /// A signature is required but the scope trusts no key (the policy
    /// when none is configured).
    NoTrustedKeys,
    /// A signature is required and none was found.
    NoSignatures,
    /// More signatures than we read for one image.
    TooManySignatures { found: usize },
    /// This signature does not count.
    Signature(Check),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ScopeRejects => f.write_str("the policy rejects images in this scope"),
            Reason::NoTrustedKeys => f.write_str(
                "a signature is required, but no public key is trusted: write a trust policy that names your keys",
            ),
            Reason::NoSignatures => {
                f.write_str("a signature is required, but the image has no signatures")
            }
            Reason::TooManySignatures { found } => write!(
                f,
                "{found} signatures found, more than the {} read for one image",
                cosign::MAX_SIGNATURES
            ),
            Reason::Signature(c) => write!(f, "{} signature {}: {}", c.format, c.origin, c.outcome),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused {}@{} under {} of {}:",
            self.identity, self.digest, self.decided_by, self.policy
        )?;
        for r in &self.reasons {
            write!(f, "\n  - {r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

/// Every signature's check, and the decision.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub checks: Vec<Check>,
    pub decision: Result<Proof, Refusal>,
}

/// [`evaluate_at`] now, by the system clock.
pub fn evaluate(subject: Subject<'_>, found: &[Found], policy: &Policy) -> Verdict {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    evaluate_at(subject, found, policy, now)
}

/// Decides whether `subject` may be used given the signatures `found` for
/// its digest and the `policy`, at Unix time `now` (when a certificate
/// without a logged or timestamped time must be valid). Pure: same inputs,
/// same verdict.
pub fn evaluate_at(subject: Subject<'_>, found: &[Found], policy: &Policy, now: i64) -> Verdict {
    let scope = policy.scope_for(subject.identity);
    let decider = Decider {
        pattern: scope.pattern.clone(),
        rule: scope.rule.name(),
        origin: scope.origin.clone(),
    };
    let keys = scope.rule.keys();
    let trust = Trust {
        keys,
        keyless: scope.keyless.as_ref(),
        now,
    };
    let checks: Vec<Check> = found
        .iter()
        .take(cosign::MAX_SIGNATURES)
        .map(|f| Check {
            origin: f.origin().to_string(),
            format: f.format(),
            kind: f.kind(),
            outcome: cosign::check_with(f, subject.digest, &trust),
        })
        .collect();
    let mut signed_by: Vec<KeyId> = Vec::new();
    for c in &checks {
        let signer = match &c.outcome {
            Outcome::Valid { key } => key.clone(),
            Outcome::Certified {
                identity, issuer, ..
            } => KeyId::certificate(identity, issuer),
            _ => continue,
        };
        if !signed_by.contains(&signer) {
            signed_by.push(signer);
        }
    }
    let refuse = |reasons: Vec<Reason>| Refusal {
        identity: subject.identity.into(),
        digest: subject.digest.clone(),
        decided_by: decider.clone(),
        policy: policy.origin.clone(),
        reasons,
    };
    let admit = |signed_by: Vec<KeyId>| Proof {
        digest: subject.digest.clone(),
        identity: subject.identity.into(),
        admitted_by: decider.clone(),
        signed_by,
        policy: policy.origin.clone(),
    };
    let decision = match &scope.rule {
        Rule::Reject => Err(refuse(vec![Reason::ScopeRejects])),
        Rule::AcceptUnsigned { .. } => Ok(admit(signed_by)),
        Rule::RequireSignature { .. } if found.len() > cosign::MAX_SIGNATURES => {
            Err(refuse(vec![Reason::TooManySignatures {
                found: found.len(),
            }]))
        }
        Rule::RequireSignature { .. } if !signed_by.is_empty() => Ok(admit(signed_by)),
        Rule::RequireSignature { keys } => {
            let mut reasons = Vec::new();
            let trusts_nobody = keys.is_empty() && scope.keyless.is_none();
            if trusts_nobody {
                reasons.push(Reason::NoTrustedKeys);
            }
            let signatures: Vec<&Check> = checks
                .iter()
                .filter(|c| !matches!(c.outcome, Outcome::NotASignature { .. }))
                .collect();
            if signatures.is_empty() {
                reasons.push(Reason::NoSignatures);
            }
            // Without trusted keys every signature is "untrusted": saying
            // so once (NoTrustedKeys) is clearer than once per signature.
            if !trusts_nobody {
                reasons.extend(checks.iter().cloned().map(Reason::Signature));
            }
            Err(refuse(reasons))
        }
    };
    Verdict { checks, decision }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cosign::{sign_bundle, sign_legacy};
    use crate::keys::{PrivateKey, PublicKey};

    struct World {
        trusted: PrivateKey,
        other: PrivateKey,
        digest: Digest,
        elsewhere: Digest,
    }

    fn world() -> World {
        World {
            trusted: PrivateKey::generate().expect("random"),
            other: PrivateKey::generate().expect("random"),
            digest: Digest::of(b"image"),
            elsewhere: Digest::of(b"another image"),
        }
    }

    /// The kinds of signature an image can have next to it.
    #[derive(Debug, Clone, Copy)]
    enum Sig {
        Good,
        GoodBundle,
        OtherKey,
        OtherDigest,
        Tampered,
        Malformed,
        Attestation,
    }

    fn make(w: &World, s: Sig, n: usize) -> Found {
        let none = BTreeMap::new();
        let legacy = |k: &PrivateKey, d: &Digest| {
            sign_legacy(k, "r.io/app", d, &none).found(format!("sig {n}"))
        };
        match s {
            Sig::Good => legacy(&w.trusted, &w.digest),
            Sig::GoodBundle => Found::Bundle {
                origin: format!("bundle {n}"),
                bundle: sign_bundle(&w.trusted, "r.io/app", &w.digest, &none),
            },
            Sig::OtherKey => legacy(&w.other, &w.digest),
            Sig::OtherDigest => legacy(&w.trusted, &w.elsewhere),
            Sig::Tampered => {
                let l = sign_legacy(&w.trusted, "r.io/app", &w.elsewhere, &none);
                let payload = cosign::simple_signing_payload("r.io/app", &w.digest, &none);
                Found::Legacy {
                    origin: format!("sig {n}"),
                    payload,
                    signature: l.signature().map(str::to_string),
                    annotations: BTreeMap::new(),
                }
            }
            Sig::Malformed => Found::Unreadable {
                origin: format!("sig {n}"),
                problem: "wrong media type".into(),
            },
            Sig::Attestation => Found::Bundle {
                origin: format!("bundle {n}"),
                bundle: attestation(&w.trusted, &w.digest),
            },
        }
    }

    fn attestation(key: &PrivateKey, d: &Digest) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let stmt = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"r","digest":{{"sha256":"{}"}}}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{{}}}}"#,
            d.hex()
        );
        let pae = format!(
            "DSSEv1 {} {} {} {stmt}",
            cosign::IN_TOTO.len(),
            cosign::IN_TOTO,
            stmt.len()
        );
        serde_json::to_vec(&serde_json::json!({
            "mediaType": cosign::BUNDLE_V03,
            "dsseEnvelope": {"payload": b64.encode(&stmt), "payloadType": cosign::IN_TOTO,
                "signatures": [{"sig": b64.encode(key.sign(pae.as_bytes()))}]}
        }))
        .expect("json")
    }

    fn policy(rule: Rule) -> Policy {
        Policy::everything(rule, "test policy")
    }

    fn keys(w: &World) -> Vec<PublicKey> {
        vec![w.trusted.public()]
    }

    fn run(w: &World, rule: Rule, sigs: &[Sig]) -> Verdict {
        let found: Vec<Found> = sigs
            .iter()
            .enumerate()
            .map(|(i, s)| make(w, *s, i))
            .collect();
        let subject = Subject {
            identity: "r.io/app",
            digest: &w.digest,
        };
        evaluate(subject, &found, &policy(rule))
    }

    fn reasons(v: &Verdict) -> Vec<String> {
        match &v.decision {
            Ok(p) => panic!("admitted: {p:?}"),
            Err(r) => r.reasons.iter().map(ToString::to_string).collect(),
        }
    }

    /// The truth table of `require-signature`: admitted exactly when some
    /// signature is valid over this digest by a trusted key.
    #[test]
    fn require_signature_truth_table() {
        let w = world();
        let require = || Rule::RequireSignature { keys: keys(&w) };
        let cases: &[(&[Sig], bool)] = &[
            (&[], false),
            (&[Sig::Good], true),
            (&[Sig::GoodBundle], true),
            (&[Sig::OtherKey], false),
            (&[Sig::OtherDigest], false),
            (&[Sig::Tampered], false),
            (&[Sig::Malformed], false),
            (&[Sig::Attestation], false),
            (&[Sig::OtherKey, Sig::Good], true),
            (&[Sig::Malformed, Sig::GoodBundle], true),
            (
                &[
                    Sig::OtherKey,
                    Sig::OtherDigest,
                    Sig::Tampered,
                    Sig::Malformed,
                ],
                false,
            ),
        ];
        for (sigs, admitted) in cases {
            let v = run(&w, require(), sigs);
            assert_eq!(v.decision.is_ok(), *admitted, "{sigs:?}: {:?}", v.decision);
            assert_eq!(v.checks.len(), sigs.len(), "every signature is reported");
        }
    }

    #[test]
    fn refusals_list_every_reason() {
        let w = world();
        let v = run(
            &w,
            Rule::RequireSignature { keys: keys(&w) },
            &[
                Sig::OtherKey,
                Sig::OtherDigest,
                Sig::Tampered,
                Sig::Malformed,
            ],
        );
        let r = reasons(&v);
        assert_eq!(r.len(), 4, "{r:#?}");
        assert!(r[0].contains("no trusted key verifies it"), "{}", r[0]);
        assert!(r[1].contains(&w.elsewhere.to_string()), "{}", r[1]);
        assert!(r[2].contains("no trusted key verifies it"), "{}", r[2]);
        assert!(r[3].contains("wrong media type"), "{}", r[3]);

        let v = run(&w, Rule::RequireSignature { keys: keys(&w) }, &[]);
        assert_eq!(reasons(&v), vec![Reason::NoSignatures.to_string()]);

        // An attestation is reported but is not a signature.
        let v = run(
            &w,
            Rule::RequireSignature { keys: keys(&w) },
            &[Sig::Attestation],
        );
        let r = reasons(&v);
        assert_eq!(r[0], Reason::NoSignatures.to_string());
        assert!(r[1].contains("attestation"), "{r:?}");
    }

    #[test]
    fn no_policy_admits_nothing() {
        let w = world();
        let found = [make(&w, Sig::Good, 0)];
        let subject = Subject {
            identity: "r.io/app",
            digest: &w.digest,
        };
        let v = evaluate(subject, &found, &Policy::closed());
        let r = reasons(&v);
        assert_eq!(r, vec![Reason::NoTrustedKeys.to_string()]);
        let v = evaluate(subject, &[], &Policy::closed());
        assert_eq!(
            reasons(&v),
            vec![
                Reason::NoTrustedKeys.to_string(),
                Reason::NoSignatures.to_string()
            ]
        );
    }

    #[test]
    fn accept_unsigned_admits_anything_and_records_valid_signers() {
        let w = world();
        for sigs in [
            &[][..],
            &[Sig::OtherKey],
            &[Sig::Tampered, Sig::Malformed],
            &[Sig::OtherDigest],
        ] {
            let v = run(&w, Rule::AcceptUnsigned { keys: keys(&w) }, sigs);
            let p = v.decision.expect("admitted");
            assert!(p.signed_by().is_empty(), "{sigs:?}");
            assert_eq!(p.admitted_by().rule, "accept-unsigned");
        }
        let v = run(
            &w,
            Rule::AcceptUnsigned { keys: keys(&w) },
            &[Sig::Good, Sig::GoodBundle],
        );
        let p = v.decision.expect("admitted");
        assert_eq!(p.signed_by(), &[w.trusted.public().id().clone()]);
    }

    #[test]
    fn reject_refuses_even_signed_images() {
        let w = world();
        for sigs in [&[][..], &[Sig::Good], &[Sig::GoodBundle, Sig::Good]] {
            let v = run(&w, Rule::Reject, sigs);
            assert_eq!(reasons(&v), vec![Reason::ScopeRejects.to_string()]);
            assert_eq!(v.checks.len(), sigs.len());
        }
    }

    #[test]
    fn too_many_signatures_fail_closed() {
        let w = world();
        let sigs = vec![Sig::Malformed; cosign::MAX_SIGNATURES + 1];
        let v = run(&w, Rule::RequireSignature { keys: keys(&w) }, &sigs);
        assert!(reasons(&v)[0].contains("more than"));
        assert_eq!(v.checks.len(), cosign::MAX_SIGNATURES);
    }

    #[test]
    fn proof_is_about_one_digest() {
        let w = world();
        let v = run(&w, Rule::RequireSignature { keys: keys(&w) }, &[Sig::Good]);
        let p = v.decision.expect("admitted");
        assert!(p.covers(&w.digest));
        assert!(!p.covers(&w.elsewhere));
        assert_eq!(p.identity(), "r.io/app");
        assert_eq!(p.policy(), "test policy");
    }

    #[test]
    fn refusal_message_names_image_scope_and_policy() {
        let w = world();
        let v = run(&w, Rule::RequireSignature { keys: keys(&w) }, &[]);
        let e = v.decision.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("refused r.io/app@{}", w.digest)),
            "{e}"
        );
        assert!(
            e.contains("scope '*' (require-signature, the only scope) of test policy"),
            "{e}"
        );
        assert!(e.contains("\n  - a signature is required"), "{e}");
    }
}
