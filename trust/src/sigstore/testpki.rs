//! A Sigstore instance in miniature, for tests: a root and an intermediate
//! certificate authority (Fulcio's shape), a CT log, a transparency log
//! (Rekor's SETs, inclusion proofs and checkpoints), the
//! `trusted_root.json` naming them, leaf certificates with Fulcio's
//! identity extensions and embedded SCTs, and both places cosign puts a
//! keyless signature (the `.sig` layer annotations, a v0.3 bundle).
//!
//! Only built for tests (`test-pki` feature): every key here is made up
//! on the spot.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::ObjectIdentifier as Oid;

use super::cert::encode;
use super::tlog::leaf_hash;

const SEQ: u8 = 0x30;

fn oid(s: &str) -> Vec<u8> {
    encode(0x06, Oid::new_unwrap(s).as_bytes())
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    encode(SEQ, &parts.concat())
}

fn name(cn: &str) -> Vec<u8> {
    if cn.is_empty() {
        return seq(&[]);
    }
    seq(&[encode(
        0x31,
        &seq(&[oid("2.5.4.3"), encode(0x0c, cn.as_bytes())]),
    )])
}

fn utc_time(t: i64) -> Vec<u8> {
    let s = super::time::display(t); // 2026-12-02T10:11:12Z
    let b = s.as_bytes();
    let digits: String = [
        &s[2..4],
        &s[5..7],
        &s[8..10],
        &s[11..13],
        &s[14..16],
        &s[17..19],
    ]
    .concat();
    debug_assert!(b.len() == 20);
    encode(0x17, format!("{digits}Z").as_bytes())
}

fn extension(id: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if critical {
        parts.push(vec![0x01, 0x01, 0xff]);
    }
    parts.push(encode(0x04, value));
    seq(&parts)
}

fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: DerSignature = key.sign(message);
    sig.as_bytes().to_vec()
}

fn spki(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_else(|e| unreachable!("a P-256 key encodes: {e}"))
}

fn certificate(tbs: &[u8], issuer: &SigningKey) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend(sign(issuer, tbs));
    seq(&[
        tbs.to_vec(),
        seq(&[oid("1.2.840.10045.4.3.2")]),
        encode(0x03, &bits),
    ])
}

#[allow(clippy::too_many_arguments)]
fn tbs(
    serial: u8,
    issuer: &str,
    subject: &str,
    not_before: i64,
    not_after: i64,
    spki: &[u8],
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    seq(&[
        vec![0xa0, 0x03, 0x02, 0x01, 0x02],
        encode(0x02, &[serial]),
        seq(&[oid("1.2.840.10045.4.3.2")]),
        name(issuer),
        seq(&[utc_time(not_before), utc_time(not_after)]),
        name(subject),
        spki.to_vec(),
        encode(0xa3, &seq(extensions)),
    ])
}

/// A leaf certificate's contents.
#[derive(Debug, Clone)]
pub struct Leaf<'a> {
    /// A URI (`https://...`) or an email.
    pub subject: &'a str,
    pub issuer: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    /// Embed an SCT from the test CT log.
    pub sct: bool,
    /// Mark it for code signing (Fulcio always does).
    pub code_signing: bool,
    /// Fulcio v1 raw-string extensions: (OID, value).
    pub raw_extensions: Vec<(&'a str, &'a str)>,
}

impl<'a> Leaf<'a> {
    pub fn new(subject: &'a str, issuer: &'a str, now: i64) -> Self {
        Self {
            subject,
            issuer,
            not_before: now - 60,
            not_after: now + 600,
            sct: true,
            code_signing: true,
            raw_extensions: Vec::new(),
        }
    }
}

/// The test instance.
#[derive(Debug)]
pub struct TestPki {
    pub now: i64,
    pub root_cert: Vec<u8>,
    intermediate_key: SigningKey,
    pub intermediate_cert: Vec<u8>,
    ct_key: SigningKey,
    rekor_key: SigningKey,
}

impl TestPki {
    pub fn new(now: i64) -> Self {
        let gen_key = || SigningKey::try_generate().unwrap_or_else(|e| panic!("random: {e}"));
        let root_key = gen_key();
        let intermediate_key = gen_key();
        let ca_exts = |cert_sign: bool| {
            let mut v = vec![
                extension("2.5.29.19", true, &seq(&[vec![0x01, 0x01, 0xff]])),
                extension("2.5.29.15", true, &[0x03, 0x02, 0x01, 0x06]),
            ];
            if cert_sign {
                v.push(extension(
                    "2.5.29.37",
                    false,
                    &seq(&[oid("1.3.6.1.5.5.7.3.3")]),
                ));
            }
            v
        };
        let root_tbs = tbs(
            1,
            "test sigstore root",
            "test sigstore root",
            now - 86_400 * 365,
            now + 86_400 * 3650,
            &spki(&root_key),
            &ca_exts(false),
        );
        let root_cert = certificate(&root_tbs, &root_key);
        let int_tbs = tbs(
            2,
            "test sigstore root",
            "test sigstore intermediate",
            now - 86_400 * 365,
            now + 86_400 * 3650,
            &spki(&intermediate_key),
            &ca_exts(true),
        );
        let intermediate_cert = certificate(&int_tbs, &root_key);
        Self {
            now,
            root_cert,
            intermediate_key,
            intermediate_cert,
            ct_key: gen_key(),
            rekor_key: gen_key(),
        }
    }

    /// Keyless trust in this instance for one identity, every check
    /// required.
    pub fn keyless(&self, issuer: &str, subject: super::Subject) -> crate::policy::Keyless {
        crate::policy::Keyless::new(
            super::TrustedRoot::from_json(self.trusted_root_json().as_bytes())
                .unwrap_or_else(|e| panic!("the test root parses: {e}")),
            "test trusted_root.json".into(),
            vec![super::IdentityRule {
                issuer: issuer.into(),
                subject,
                extensions: Vec::new(),
            }],
        )
    }

    /// The Rekor log id: SHA-256 of its key.
    pub fn rekor_log_id(&self) -> Vec<u8> {
        Sha256::digest(spki(&self.rekor_key)).to_vec()
    }

    /// `trusted_root.json` naming this instance.
    pub fn trusted_root_json(&self) -> String {
        let start = super::time::display(self.now - 86_400 * 365);
        let log = |key: &SigningKey| {
            let der = spki(key);
            serde_json::json!({
                "baseUrl": "https://test.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(&der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": { "start": start },
                },
                "logId": { "keyId": B64.encode(Sha256::digest(&der)) },
            })
        };
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor_key)],
            "certificateAuthorities": [{
                "subject": { "organization": "test", "commonName": "test sigstore" },
                "uri": "https://fulcio.test.invalid",
                "certChain": { "certificates": [
                    { "rawBytes": B64.encode(&self.intermediate_cert) },
                    { "rawBytes": B64.encode(&self.root_cert) },
                ]},
                "validFor": { "start": start },
            }],
            "ctlogs": [log(&self.ct_key)],
            "timestampAuthorities": [],
        })
        .to_string()
    }

    /// A leaf certificate for `key_spki`, issued by the intermediate.
    pub fn issue(&self, key_spki: &[u8], leaf: &Leaf<'_>) -> Vec<u8> {
        let san_tag = if leaf.subject.contains("://") {
            0x86
        } else {
            0x81
        };
        let mut exts = vec![
            extension("2.5.29.15", true, &[0x03, 0x02, 0x07, 0x80]),
            extension(
                "2.5.29.17",
                true,
                &seq(&[encode(san_tag, leaf.subject.as_bytes())]),
            ),
            extension(
                "1.3.6.1.4.1.57264.1.8",
                false,
                &encode(0x0c, leaf.issuer.as_bytes()),
            ),
        ];
        if leaf.code_signing {
            exts.push(extension(
                "2.5.29.37",
                false,
                &seq(&[oid("1.3.6.1.5.5.7.3.3")]),
            ));
        }
        for (id, v) in &leaf.raw_extensions {
            exts.push(extension(id, false, v.as_bytes()));
        }
        let build = |exts: &[Vec<u8>]| {
            tbs(
                7,
                "test sigstore intermediate",
                "",
                leaf.not_before,
                leaf.not_after,
                key_spki,
                exts,
            )
        };
        if leaf.sct {
            let pre = build(&exts);
            let sct = self.sct(&pre, leaf.not_before * 1000);
            let mut list = Vec::new();
            list.extend((sct.len() as u16).to_be_bytes());
            list.extend(&sct);
            let mut tls = (list.len() as u16).to_be_bytes().to_vec();
            tls.extend(list);
            exts.push(extension(
                "1.3.6.1.4.1.11129.2.4.2",
                false,
                &encode(0x04, &tls),
            ));
        }
        certificate(&build(&exts), &self.intermediate_key)
    }

    fn sct(&self, precert_tbs: &[u8], timestamp_ms: i64) -> Vec<u8> {
        let ts = (timestamp_ms as u64).to_be_bytes();
        let mut signed = vec![0u8, 0u8];
        signed.extend(ts);
        signed.extend([0u8, 1u8]);
        signed.extend(Sha256::digest(spki(&self.intermediate_key)));
        let n = precert_tbs.len();
        signed.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        signed.extend(precert_tbs);
        signed.extend([0u8, 0u8]);
        let sig = sign(&self.ct_key, &signed);
        let mut out = vec![0u8];
        out.extend(Sha256::digest(spki(&self.ct_key)));
        out.extend(ts);
        out.extend([0u8, 0u8]);
        out.extend([4u8, 3u8]);
        out.extend((sig.len() as u16).to_be_bytes());
        out.extend(sig);
        out
    }

    fn set(&self, body: &[u8], integrated_time: i64, log_index: u64) -> Vec<u8> {
        let hex = super::hex(&self.rekor_log_id());
        let payload = format!(
            "{{\"body\":\"{}\",\"integratedTime\":{integrated_time},\"logID\":\"{hex}\",\"logIndex\":{log_index}}}",
            B64.encode(body)
        );
        sign(&self.rekor_key, payload.as_bytes())
    }

    /// A hashedrekord 0.0.1 body for a signature over `payload`.
    fn hashedrekord(payload: &[u8], signature: &[u8], leaf: &[u8]) -> Vec<u8> {
        let hex = super::hex(&Sha256::digest(payload));
        serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": hex } },
                "signature": {
                    "content": B64.encode(signature),
                    "publicKey": { "content": B64.encode(pem(leaf, "CERTIFICATE")) },
                },
            },
        })
        .to_string()
        .into_bytes()
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation for a legacy
    /// keyless signature over `payload`.
    pub fn rekor_annotation(
        &self,
        payload: &[u8],
        signature: &[u8],
        leaf: &[u8],
        integrated_time: i64,
        log_index: u64,
    ) -> String {
        let body = Self::hashedrekord(payload, signature, leaf);
        let hex = super::hex(&self.rekor_log_id());
        serde_json::json!({
            "SignedEntryTimestamp": B64.encode(self.set(&body, integrated_time, log_index)),
            "Payload": {
                "body": B64.encode(&body),
                "integratedTime": integrated_time,
                "logIndex": log_index,
                "logID": hex,
            },
        })
        .to_string()
    }

    /// A v0.3 bundle: `leaf`'s DSSE signature over an in-toto `payload`,
    /// logged (dsse 0.0.1) with a SET, an inclusion proof in a tree of
    /// one, and a checkpoint.
    pub fn dsse_bundle(
        &self,
        payload: &[u8],
        signature: &[u8],
        leaf: &[u8],
        integrated_time: i64,
        log_index: u64,
    ) -> Vec<u8> {
        let hex = super::hex;
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": { "algorithm": "sha256", "value": hex(&Sha256::digest(payload)) },
                "payloadHash": { "algorithm": "sha256", "value": hex(&Sha256::digest(payload)) },
                "signatures": [{
                    "signature": B64.encode(signature),
                    "verifier": B64.encode(pem(leaf, "CERTIFICATE")),
                }],
            },
        })
        .to_string()
        .into_bytes();
        let root = leaf_hash(&body);
        let note = format!("test.invalid - 1\n1\n{}\n", B64.encode(root));
        let mut hinted = self.rekor_log_id()[..4].to_vec();
        hinted.extend(sign(&self.rekor_key, note.as_bytes()));
        let checkpoint = format!("{note}\n— test.invalid {}\n", B64.encode(hinted));
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": { "rawBytes": B64.encode(leaf) },
                "tlogEntries": [{
                    "logIndex": log_index.to_string(),
                    "logId": { "keyId": B64.encode(self.rekor_log_id()) },
                    "kindVersion": { "kind": "dsse", "version": "0.0.1" },
                    "integratedTime": integrated_time.to_string(),
                    "inclusionPromise": {
                        "signedEntryTimestamp": B64.encode(self.set(&body, integrated_time, log_index)),
                    },
                    "inclusionProof": {
                        "logIndex": "0",
                        "rootHash": B64.encode(root),
                        "treeSize": "1",
                        "hashes": [],
                        "checkpoint": { "envelope": checkpoint },
                    },
                    "canonicalizedBody": B64.encode(&body),
                }],
            },
            "dsseEnvelope": {
                "payload": B64.encode(payload),
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{ "sig": B64.encode(signature) }],
            },
        })
        .to_string()
        .into_bytes()
    }
}

/// A fresh signing key (a keyless signer's ephemeral key).
pub fn ephemeral() -> (SigningKey, Vec<u8>) {
    let key = SigningKey::try_generate().unwrap_or_else(|e| panic!("random: {e}"));
    let der = spki(&key);
    (key, der)
}

/// Signs with an ephemeral key (ECDSA P-256, SHA-256, DER).
pub fn sign_with(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    sign(key, message)
}

/// PEM text of DER.
pub fn pem(der: &[u8], label: &str) -> String {
    crate::keys::encode_pem(label, der)
}

impl TestPki {
    /// A keyless `.sig` layer for `digest` in `repo`, as cosign writes
    /// one: the payload, its signature by a fresh key, the certificate
    /// for `leaf`, and the Rekor bundle annotation (log index 42).
    pub fn keyless_layer(
        &self,
        repo: &str,
        digest: &bpfman_image_spec::digest::Digest,
        leaf: &Leaf<'_>,
    ) -> crate::cosign::LegacyLayer {
        use crate::cosign::{SIGNATURE_ANNOTATION, simple_signing_payload};
        use crate::sigstore::bundle::{COSIGN_CERTIFICATE, COSIGN_REKOR_BUNDLE};
        let payload = simple_signing_payload(repo, digest, &Default::default());
        let (key, spki) = ephemeral();
        let sig = sign(&key, &payload);
        let cert = self.issue(&spki, leaf);
        crate::cosign::LegacyLayer {
            annotations: [
                (SIGNATURE_ANNOTATION.to_string(), B64.encode(&sig)),
                (COSIGN_CERTIFICATE.to_string(), pem(&cert, "CERTIFICATE")),
                (
                    COSIGN_REKOR_BUNDLE.to_string(),
                    self.rekor_annotation(&payload, &sig, &cert, self.now - 5, 42),
                ),
            ]
            .into(),
            payload,
        }
    }

    /// A keyless v0.3 bundle for `digest` in `repo`, as cosign 3 writes
    /// one: a DSSE in-toto statement with cosign's signing predicate,
    /// signed by a fresh key certified for `leaf` (log index 7).
    pub fn keyless_bundle(
        &self,
        repo: &str,
        digest: &bpfman_image_spec::digest::Digest,
        leaf: &Leaf<'_>,
    ) -> Vec<u8> {
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{ "name": repo, "digest": { "sha256": digest.hex() } }],
            "predicateType": crate::cosign::COSIGN_SIGN_PREDICATE,
            "predicate": {},
        })
        .to_string();
        let (key, spki) = ephemeral();
        let pae = super::verify::pae(crate::cosign::IN_TOTO, statement.as_bytes());
        let sig = sign(&key, &pae);
        let cert = self.issue(&spki, leaf);
        self.dsse_bundle(statement.as_bytes(), &sig, &cert, self.now - 5, 7)
    }
}
