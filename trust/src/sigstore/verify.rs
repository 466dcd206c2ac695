//! Verifying a Sigstore bundle against a trusted root: every check a
//! keyless (certificate) or key-based signature needs, in order, each
//! failure naming its check.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::bundle::{Bundle, Content, Material, TlogEntry, b64, pem_block};
use super::cert::{self, CODE_SIGNING, Cert, Identity};
use super::crypto::{Hash, Key};
use super::root::TrustedRoot;
use super::{hex, time, tlog, tsa};

/// Which check refused a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The bundle's structure.
    Bundle,
    /// The certificate chain to a certificate authority.
    CertificateChain,
    /// The certificate's validity at the signing time.
    CertificateValidity,
    /// The certificate's key usage.
    KeyUsage,
    /// The embedded signed certificate timestamps.
    Sct,
    /// The signer's identity (subject, issuer, extensions) or key.
    Identity,
    /// The transparency log entry's body against the bundle.
    LogEntry,
    /// The signed entry timestamp.
    Set,
    /// The inclusion proof and its checkpoint.
    InclusionProof,
    /// An RFC 3161 timestamp.
    Timestamp,
    /// The signature over the artifact.
    Signature,
    /// The artifact is not what was signed.
    Artifact,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Bundle => "bundle",
            Check::CertificateChain => "certificate chain",
            Check::CertificateValidity => "certificate validity",
            Check::KeyUsage => "certificate key usage",
            Check::Sct => "signed certificate timestamp",
            Check::Identity => "identity",
            Check::LogEntry => "transparency log entry",
            Check::Set => "signed entry timestamp",
            Check::InclusionProof => "inclusion proof",
            Check::Timestamp => "RFC 3161 timestamp",
            Check::Signature => "signature",
            Check::Artifact => "artifact",
        })
    }
}

/// A refusal: the check, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub check: Check,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} check failed: {}", self.check, self.reason)
    }
}

impl std::error::Error for Failure {}

fn fail<T>(check: Check, reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        check,
        reason: reason.into(),
    })
}

/// How a subject must match.
#[derive(Debug, Clone)]
pub enum Subject {
    Exact(String),
    /// Anchored at both ends.
    Regex(regex::Regex),
}

impl Subject {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Subject::Exact(e) => e == s,
            Subject::Regex(r) => r.is_match(s),
        }
    }

    /// An anchored regex: `^(?:pattern)$`.
    pub fn regex(pattern: &str) -> Result<Subject, String> {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Subject::Regex)
            .map_err(|e| format!("'{pattern}' is not a valid regular expression: {e}"))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Exact(s) => f.write_str(s),
            Subject::Regex(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// An identity a certificate must carry: the OIDC issuer (exact), a
/// subject alternative name, and optionally Fulcio extensions.
#[derive(Debug, Clone)]
pub struct IdentityRule {
    pub issuer: String,
    pub subject: Subject,
    pub extensions: Vec<(String, String)>,
}

impl IdentityRule {
    pub fn matches(&self, id: &Identity) -> bool {
        id.issuer.as_deref() == Some(self.issuer.as_str())
            && id.subjects.iter().any(|s| self.subject.matches(s))
            && self
                .extensions
                .iter()
                .all(|(k, v)| id.extensions.get(k) == Some(v))
    }
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.subject, self.issuer)?;
        for (k, v) in &self.extensions {
            write!(f, " with {k}={v}")?;
        }
        Ok(())
    }
}

/// Who may have signed, and what a signature must carry besides.
#[derive(Debug, Clone, Copy)]
pub struct Signers<'a> {
    /// DER SubjectPublicKeyInfo of trusted keys.
    pub keys: &'a [Vec<u8>],
    pub identities: &'a [IdentityRule],
    /// A transparency log entry is required (the default everywhere).
    /// Without one, a certificate must be valid now, and any RFC 3161
    /// timestamps present are still checked.
    pub require_log: bool,
    /// At least one verified SCT is required in a certificate (the
    /// default; a private CA without a CT log sets it false).
    pub require_sct: bool,
}

impl<'a> Signers<'a> {
    /// Keys and identities with every requirement on.
    pub fn new(keys: &'a [Vec<u8>], identities: &'a [IdentityRule]) -> Self {
        Self {
            keys,
            identities,
            require_log: true,
            require_sct: true,
        }
    }
}

/// What was signed: a blob (its bytes), or an image (its digest, which a
/// DSSE statement names as its subject).
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    Blob(&'a [u8]),
    Sha256([u8; 32]),
}

impl Artifact<'_> {
    fn sha256(&self) -> [u8; 32] {
        match self {
            Artifact::Blob(b) => Sha256::digest(b).into(),
            Artifact::Sha256(d) => *d,
        }
    }
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// `certificate` or `key`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// For key signatures: the SHA-256 of the key (hex, first 8 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The log index of each verified transparency log entry.
    pub log_indexes: Vec<u64>,
    /// The earliest verified signing time (Unix seconds).
    pub signed_at: i64,
}

/// Maximum clock skew tolerated for a log's integrated time.
const FUTURE_SKEW: i64 = 60;

/// Verifies `bundle` over `artifact` against `root`, for any of `signers`,
/// at wall-clock time `now`.
pub fn verify(
    bundle: &Bundle,
    artifact: Artifact<'_>,
    root: &TrustedRoot,
    signers: Signers<'_>,
    now: i64,
) -> Result<Verified, Failure> {
    let signature = bundle
        .signature()
        .ok_or_else(|| Failure {
            check: Check::Bundle,
            reason: "the DSSE envelope has no signature".into(),
        })?
        .to_vec();
    if let Content::Dsse { signatures, .. } = &bundle.content
        && signatures.len() != 1
    {
        return fail(
            Check::Bundle,
            "a DSSE envelope in a bundle must have exactly one signature",
        );
    }

    // The signer: a certificate to check, or one of the given keys.
    let (leaf, key, key_der) = match &bundle.material {
        Material::Certificate { leaf, rest } => {
            if signers.identities.is_empty() {
                return fail(
                    Check::Identity,
                    "the bundle is signed with a certificate, and no identity is trusted",
                );
            }
            let leaf = Cert::parse(leaf).or_else(|e| fail(Check::Bundle, e))?;
            for c in rest {
                if Cert::parse(c).is_ok_and(|c| c.is_self_signed()) {
                    return fail(
                        Check::CertificateChain,
                        "the bundle's chain includes a root certificate; roots come from the trusted root only",
                    );
                }
            }
            let key = leaf.key().or_else(|e| fail(Check::CertificateChain, e))?;
            (Some(leaf), key, None)
        }
        Material::PublicKey { .. } => {
            let found = signers.keys.iter().find_map(|der| {
                let key = Key::from_spki_der(der).ok()?;
                content_signed_by(&bundle.content, artifact, &key).then_some((key, der))
            });
            match found {
                Some((key, der)) => (None, key, Some(der.clone())),
                None if signers.keys.is_empty() => {
                    return fail(
                        Check::Identity,
                        "the bundle is signed with a public key, and no key is trusted",
                    );
                }
                None => {
                    return fail(Check::Signature, "no trusted key verifies the signature");
                }
            }
        }
    };
    let signer_der = leaf
        .as_ref()
        .map_or_else(|| key_der.clone().unwrap_or_default(), |l| l.der.clone());

    // The signature and the artifact.
    check_content(&bundle.content, artifact, &key)?;

    // The transparency log: at least one entry, each fully verified.
    if bundle.tlog_entries.is_empty() && signers.require_log {
        return fail(Check::LogEntry, "the bundle has no transparency log entry");
    }
    let mut times = Vec::new();
    let mut log_indexes = Vec::new();
    for entry in &bundle.tlog_entries {
        let log = root.tlog(&entry.log_id).ok_or_else(|| Failure {
            check: Check::LogEntry,
            reason: "the entry is from a transparency log that is not in the trusted root".into(),
        })?;
        check_body(
            entry,
            &bundle.content,
            artifact,
            &signature,
            &signer_der,
            leaf.is_some(),
        )?;
        match &entry.inclusion_proof {
            Some(p) => {
                tlog::verify_inclusion(entry, p, log).or_else(|e| fail(Check::InclusionProof, e))?
            }
            None if bundle.version >= (0, 2) => {
                return fail(
                    Check::InclusionProof,
                    "the entry has no inclusion proof (required since bundle v0.2)",
                );
            }
            None => {}
        }
        match (&entry.signed_entry_timestamp, entry.integrated_time) {
            (Some(set), Some(t)) => {
                tlog::verify_set(entry, set, log).or_else(|e| fail(Check::Set, e))?;
                if t > now + FUTURE_SKEW {
                    return fail(
                        Check::Set,
                        format!("the integrated time {} is in the future", time::display(t)),
                    );
                }
                if !log.valid.contains(t) {
                    return fail(
                        Check::Set,
                        format!(
                            "the log's key was not trusted at the integrated time {}",
                            time::display(t)
                        ),
                    );
                }
                times.push(t);
            }
            (None, _) if bundle.version == (0, 1) => {
                return fail(
                    Check::Set,
                    "a v0.1 bundle's entry needs a signed entry timestamp",
                );
            }
            _ => {}
        }
        log_indexes.push(entry.log_index);
    }
    for (i, ts) in bundle.timestamps.iter().enumerate() {
        let t = tsa::verify(ts, &signature, root)
            .or_else(|e| fail(Check::Timestamp, format!("timestamp {i}: {e}")))?;
        if t > now + FUTURE_SKEW {
            return fail(Check::Timestamp, format!("timestamp {i} is in the future"));
        }
        times.push(t);
    }
    if bundle.tlog_entries.is_empty() && !signers.require_log && times.is_empty() {
        // Nothing logged and nothing timestamped: the certificate must be
        // valid now, as for any certificate without evidence of its time.
        times.push(now);
    }
    let Some(&signed_at) = times.iter().min() else {
        return fail(
            Check::Timestamp,
            "nothing vouches for when it was signed: no signed entry timestamp and no RFC 3161 timestamp",
        );
    };
    // Every entry without its own time must have been logged under a key
    // trusted at the vouched time.
    for entry in &bundle.tlog_entries {
        if entry.signed_entry_timestamp.is_none()
            && let Some(log) = root.tlog(&entry.log_id)
            && !times.iter().any(|&t| log.valid.contains(t))
        {
            return fail(
                Check::InclusionProof,
                "the log's key was not trusted at the signing time",
            );
        }
    }

    let Some(leaf) = leaf else {
        return Ok(Verified {
            kind: "key",
            identity: None,
            key: key_der.map(|d| super::hex(&Sha256::digest(&d)[..8])),
            log_indexes,
            signed_at,
        });
    };

    // The certificate, at every vouched time.
    for &t in &times {
        if !leaf.valid_at(t) {
            let (from, to) = leaf.validity();
            return fail(
                Check::CertificateValidity,
                format!(
                    "signed at {}, outside the certificate's validity ({} to {})",
                    time::display(t),
                    time::display(from),
                    time::display(to)
                ),
            );
        }
    }
    let mut issuer = None;
    for &t in &times {
        let (_, i) = cert::chain(&leaf, &root.certificate_authorities, t)
            .or_else(|e| fail(Check::CertificateChain, e))?;
        issuer = Some(i);
    }
    let issuer = issuer.unwrap_or_else(|| unreachable!("times is not empty"));
    if !leaf.has_eku(CODE_SIGNING) {
        return fail(Check::KeyUsage, "the certificate is not for code signing");
    }
    if signers.require_sct {
        cert::verify_scts(&leaf, &issuer, root).or_else(|e| fail(Check::Sct, e))?;
    }
    let identity = leaf.identity();
    if !signers.identities.iter().any(|r| r.matches(&identity)) {
        return fail(
            Check::Identity,
            format!(
                "the certificate is for {} from {}; trusted: {}",
                identity.subjects.join(", "),
                identity.issuer.as_deref().unwrap_or("(no issuer)"),
                signers
                    .identities
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
    }
    Ok(Verified {
        kind: "certificate",
        identity: Some(identity),
        key: None,
        log_indexes,
        signed_at,
    })
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn message_signed_by(signature: &[u8], artifact: Artifact<'_>, key: &Key) -> bool {
    match (artifact, key) {
        (Artifact::Blob(b), _) => {
            key.verify(key.default_hash(), b, signature) || key.verify(Hash::Sha256, b, signature)
        }
        // Ed25519 signs the message itself, so a digest cannot verify it
        // (verify_prehash says no).
        (Artifact::Sha256(d), _) => key.verify_prehash(Hash::Sha256, &d, signature),
    }
}

fn content_signed_by(content: &Content, artifact: Artifact<'_>, key: &Key) -> bool {
    match content {
        Content::Message { signature, .. } => message_signed_by(signature, artifact, key),
        Content::Dsse {
            payload,
            payload_type,
            signatures,
        } => signatures
            .first()
            .is_some_and(|s| key.verify(key.default_hash(), &pae(payload_type, payload), s)),
    }
}

fn check_content(content: &Content, artifact: Artifact<'_>, key: &Key) -> Result<(), Failure> {
    let want = artifact.sha256();
    match content {
        Content::Message { digest, signature } => {
            if let Some((alg, d)) = digest
                && alg == "SHA2_256"
                && d.as_slice() != want
            {
                return fail(
                    Check::Artifact,
                    "the bundle's message digest is not the artifact's",
                );
            }
            if !message_signed_by(signature, artifact, key) {
                return fail(
                    Check::Signature,
                    "the signature does not verify over the artifact",
                );
            }
        }
        Content::Dsse {
            payload,
            payload_type,
            ..
        } => {
            if !content_signed_by(content, artifact, key) {
                return fail(Check::Signature, "the DSSE signature does not verify");
            }
            if payload_type != "application/vnd.in-toto+json" {
                return fail(
                    Check::Artifact,
                    format!("DSSE payload type '{payload_type}' is not in-toto"),
                );
            }
            let statement: Value = serde_json::from_slice(payload).or_else(|e| {
                fail(
                    Check::Artifact,
                    format!("the DSSE payload is not JSON: {e}"),
                )
            })?;
            let hex = hex(&want);
            let names = statement["subject"].as_array().is_some_and(|subjects| {
                subjects
                    .iter()
                    .any(|s| s["digest"]["sha256"].as_str() == Some(hex.as_str()))
            });
            if !names {
                return fail(
                    Check::Artifact,
                    "the in-toto statement does not name the artifact as a subject",
                );
            }
        }
    }
    Ok(())
}

/// The DER inside a base64 PEM (a certificate or a public key), as
/// Rekor v1 stores verifiers.
fn pem_der(b64_pem: &str) -> Option<Vec<u8>> {
    let pem = b64(b64_pem, "verifier").ok()?;
    let text = String::from_utf8(pem).ok()?;
    pem_block(&text, "CERTIFICATE")
        .or_else(|_| pem_block(&text, "PUBLIC KEY"))
        .ok()
}

/// Does the logged body say what the bundle says: this signature, this
/// signer, this artifact?
fn check_body(
    entry: &TlogEntry,
    content: &Content,
    artifact: Artifact<'_>,
    signature: &[u8],
    signer_der: &[u8],
    is_cert: bool,
) -> Result<(), Failure> {
    let body: Value = serde_json::from_slice(&entry.body)
        .or_else(|e| fail(Check::LogEntry, format!("the logged body is not JSON: {e}")))?;
    let (kind, version) = (body["kind"].as_str(), body["apiVersion"].as_str());
    if kind != Some(entry.kind.as_str()) || version != Some(entry.version.as_str()) {
        return fail(
            Check::LogEntry,
            "the logged body's kind or version is not the entry's",
        );
    }
    let spec = &body["spec"];
    let mismatch = |what: &str| {
        fail(
            Check::LogEntry,
            format!("the log entry is for another {what}"),
        )
    };
    let sig_b64 = |s: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    match (entry.kind.as_str(), entry.version.as_str(), content) {
        ("hashedrekord", "0.0.1", Content::Message { .. }) => {
            if spec["data"]["hash"]["algorithm"] != "sha256"
                || spec["data"]["hash"]["value"].as_str() != Some(hex(&artifact.sha256()).as_str())
            {
                return mismatch("artifact");
            }
            if spec["signature"]["content"]
                .as_str()
                .and_then(|s| b64(s, "").ok())
                .as_deref()
                != Some(signature)
            {
                return mismatch("signature");
            }
            let verifier = spec["signature"]["publicKey"]["content"]
                .as_str()
                .and_then(pem_der);
            if verifier.as_deref() != Some(signer_der) {
                return mismatch(if is_cert { "certificate" } else { "key" });
            }
        }
        ("hashedrekord", "0.0.2", _) => {
            let h = &spec["hashedRekordV002"];
            let want = match content {
                Content::Message { .. } => artifact.sha256().to_vec(),
                Content::Dsse {
                    payload,
                    payload_type,
                    ..
                } => Sha256::digest(pae(payload_type, payload)).to_vec(),
            };
            if h["data"]["algorithm"] != "SHA2_256"
                || h["data"]["digest"].as_str().and_then(|s| b64(s, "").ok()) != Some(want)
            {
                return mismatch("artifact");
            }
            if h["signature"]["content"]
                .as_str()
                .and_then(|s| b64(s, "").ok())
                .as_deref()
                != Some(signature)
            {
                return mismatch("signature");
            }
            let v = &h["signature"]["verifier"];
            let raw = v["x509Certificate"]["rawBytes"]
                .as_str()
                .or_else(|| v["publicKey"]["rawBytes"].as_str())
                .and_then(|s| b64(s, "").ok());
            if raw.as_deref() != Some(signer_der) {
                return mismatch(if is_cert { "certificate" } else { "key" });
            }
        }
        ("dsse", "0.0.1", Content::Dsse { payload, .. }) => {
            if spec["payloadHash"]["algorithm"] != "sha256"
                || spec["payloadHash"]["value"].as_str()
                    != Some(hex(&Sha256::digest(payload)).as_str())
            {
                return mismatch("payload");
            }
            let sigs = spec["signatures"].as_array().cloned().unwrap_or_default();
            let ours = sigs.iter().any(|s| {
                s["signature"].as_str() == Some(sig_b64(signature).as_str())
                    && s["verifier"].as_str().and_then(pem_der).as_deref() == Some(signer_der)
            });
            if sigs.len() != 1 || !ours {
                return mismatch("signature or signer");
            }
        }
        (
            "intoto",
            "0.0.2",
            Content::Dsse {
                payload,
                payload_type,
                ..
            },
        ) => {
            let c = &spec["content"];
            if c["payloadHash"]["algorithm"] != "sha256"
                || c["payloadHash"]["value"].as_str()
                    != Some(hex(&Sha256::digest(payload)).as_str())
            {
                return mismatch("payload");
            }
            if c["envelope"]["payloadType"].as_str() != Some(payload_type.as_str()) {
                return mismatch("payload type");
            }
            let sigs = c["envelope"]["signatures"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ours = sigs.iter().any(|s| {
                // intoto 0.0.2 base64-encodes the base64 signature again.
                let sig = s["sig"]
                    .as_str()
                    .and_then(|v| b64(v, "").ok())
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| b64(&v, "").ok());
                sig.as_deref() == Some(signature)
                    && s["publicKey"].as_str().and_then(pem_der).as_deref() == Some(signer_der)
            });
            if sigs.len() != 1 || !ours {
                return mismatch("signature or signer");
            }
        }
        (k, v, _) => {
            return fail(
                Check::LogEntry,
                format!("a {k} {v} entry cannot vouch for this bundle's content"),
            );
        }
    }
    Ok(())
}
