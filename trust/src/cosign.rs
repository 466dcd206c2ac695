//! The two cosign signature formats, as bytes in and bytes out.
//!
//! **Legacy tag scheme.** Signatures for `sha256:<hex>` are an image manifest
//! tagged `sha256-<hex>.sig` in the same repository; each layer is a "simple
//! signing" JSON payload naming the signed digest, and the layer's
//! `dev.cosignproject.cosign/signature` annotation is the base64 ECDSA
//! signature over the payload bytes. More signers, more layers.
//!
//! **Bundle (cosign 3).** A Sigstore bundle v0.3 stored as an OCI 1.1
//! referrer: a manifest with `artifactType` = the bundle media type, the
//! empty config, one bundle layer and `subject` = the signed manifest. The
//! bundle's DSSE envelope signs an in-toto statement whose subject is the
//! image digest. Registries without the referrers API list referrers in an
//! index tagged `sha256-<hex>`.
//!
//! Nothing here touches the network; callers fetch and store the bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{Descriptor, ImageIndex, ImageManifest, to_canonical_json};
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, PrivateKey, PublicKey};
use crate::policy::Keyless;
use crate::sigstore::bundle::{
    Bundle as SigstoreBundle, COSIGN_CERTIFICATE, COSIGN_REKOR_BUNDLE, COSIGN_TIMESTAMP,
};
use crate::sigstore::verify::pae;
use crate::sigstore::{self, Artifact, Check};

/// Media type of a simple signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of an image signature payload.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// Media type (and artifact type) of a Sigstore bundle v0.3.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type cosign 3 uses for a plain image signature.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The empty JSON object, as the config of an artifact manifest.
pub const EMPTY_JSON: &[u8] = b"{}";

/// At most this many signatures are read for one image; more is refused
/// as a denial of service rather than silently truncated.
pub const MAX_SIGNATURES: usize = 64;
/// A payload or bundle larger than this is not a signature.
pub const MAX_SIGNATURE_BLOB: u64 = 1 << 20;

/// The tag under which legacy signatures of `digest` live.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// The referrers fallback tag of `digest` (OCI distribution 1.1).
pub fn referrers_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm(), digest.hex())
}

/// True for tags that hold artifacts about another image rather than an
/// image: cosign's `sha256-<hex>.sig` (and `.att`, `.sbom`) and the
/// referrers fallback `sha256-<hex>`.
pub fn is_artifact_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest
        .strip_suffix(".sig")
        .or_else(|| rest.strip_suffix(".att"))
        .or_else(|| rest.strip_suffix(".sbom"))
        .unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One signature as found next to an image, before any check. Building
/// this is the only I/O; everything after is [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A layer of the `.sig` manifest: payload bytes and the annotation.
    Legacy {
        origin: String,
        payload: Vec<u8>,
        signature: Option<String>,
        /// The layer's other annotations (a keyless signature's
        /// certificate, chain, Rekor bundle and timestamp).
        annotations: BTreeMap<String, String>,
    },
    /// A bundle referrer's layer.
    Bundle { origin: String, bundle: Vec<u8> },
    /// Something stored where signatures live that could not be read as
    /// one (wrong media type, missing layer, too large, ...).
    Unreadable { origin: String, problem: String },
}

impl Found {
    /// Where it was found, e.g. `sha256-ab...sig layer 2`.
    pub fn origin(&self) -> &str {
        match self {
            Found::Legacy { origin, .. }
            | Found::Bundle { origin, .. }
            | Found::Unreadable { origin, .. } => origin,
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Found::Legacy { .. } => Format::Legacy,
            Found::Bundle { .. } => Format::Bundle,
            Found::Unreadable { .. } => Format::Unknown,
        }
    }

    /// What signed it: a key, or a certificate (keyless).
    pub fn kind(&self) -> Kind {
        match self {
            Found::Legacy { annotations, .. } => {
                if annotations.contains_key(COSIGN_CERTIFICATE) {
                    Kind::Certificate
                } else {
                    Kind::Key
                }
            }
            Found::Bundle { bundle, .. } => {
                let v: serde_json::Value = serde_json::from_slice(bundle).unwrap_or_default();
                let m = &v["verificationMaterial"];
                if m.get("certificate").is_some() || m.get("x509CertificateChain").is_some() {
                    Kind::Certificate
                } else {
                    Kind::Key
                }
            }
            Found::Unreadable { .. } => Kind::Unknown,
        }
    }
}

/// What a signature is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Key,
    /// A certificate from a certificate authority (keyless: Fulcio).
    Certificate,
    Unknown,
}

/// What a scope trusts: keys, certificate signers, and the time to check
/// certificates at when nothing else vouches for it.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub keys: &'a [PublicKey],
    pub keyless: Option<&'a Keyless>,
    /// Unix seconds.
    pub now: i64,
}

/// The format a signature came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The `sha256-<hex>.sig` tag scheme.
    Legacy,
    /// A Sigstore bundle stored as an OCI referrer.
    Bundle,
    Unknown,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Legacy => "cosign .sig",
            Format::Bundle => "sigstore bundle",
            Format::Unknown => "unknown",
        })
    }
}

/// What checking one signature against the image digest and a key set
/// found. Exactly one outcome per signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// Valid over this digest, by this key.
    Valid { key: KeyId },
    /// Valid over this digest, by a certificate for a trusted identity,
    /// every Sigstore check passed.
    Certified {
        identity: String,
        issuer: String,
        /// Transparency log indexes of the verified entries.
        log_index: Vec<u64>,
    },
    /// A certificate signature a Sigstore check refused.
    Refused { check: Check, reason: String },
    /// A well-formed signature for another image.
    WrongDigest { signed: String },
    /// Over this digest, but no trusted key verifies it (another signer,
    /// or the payload was altered after signing).
    Untrusted,
    /// Not a signature we can read.
    Malformed { problem: String },
    /// A well-formed bundle that is not an image signature (for example an
    /// attestation of another predicate type): not counted either way.
    NotASignature { what: String },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Valid { key } => write!(f, "valid, signed by key {key}"),
            Outcome::Certified {
                identity,
                issuer,
                log_index,
            } => {
                write!(f, "valid, certificate for {identity} from {issuer}")?;
                if !log_index.is_empty() {
                    let l: Vec<String> = log_index.iter().map(ToString::to_string).collect();
                    write!(f, ", log index {}", l.join(", "))?;
                }
                Ok(())
            }
            Outcome::Refused { check, reason } => write!(f, "{check} check failed: {reason}"),
            Outcome::WrongDigest { signed } => write!(
                f,
                "signs another image ({signed}); it was copied or the tag was moved"
            ),
            Outcome::Untrusted => f.write_str(
                "no trusted key verifies it: made with another key, or the payload was altered",
            ),
            Outcome::Malformed { problem } => write!(f, "unreadable: {problem}"),
            Outcome::NotASignature { what } => write!(f, "ignored: {what}"),
        }
    }
}

/// Checks one found signature: does it sign `digest`, and does one of
/// `keys` verify it? Pure.
pub fn check(found: &Found, digest: &Digest, keys: &[PublicKey]) -> Outcome {
    check_with(
        found,
        digest,
        &Trust {
            keys,
            keyless: None,
            now: 0,
        },
    )
}

/// Checks one found signature against everything a scope trusts: keys,
/// and certificate signers under a trusted root. Pure: the time is given.
pub fn check_with(found: &Found, digest: &Digest, trust: &Trust<'_>) -> Outcome {
    let by_key = || match found {
        Found::Legacy {
            payload, signature, ..
        } => check_legacy(payload, signature.as_deref(), digest, trust.keys),
        Found::Bundle { bundle, .. } => check_bundle(bundle, digest, trust.keys),
        Found::Unreadable { problem, .. } => Outcome::Malformed {
            problem: problem.clone(),
        },
    };
    if found.kind() != Kind::Certificate {
        return by_key();
    }
    // A certificate-bearing signature made with a trusted key (your own
    // CA, verified by key as cosign --key does) counts by that key.
    if !trust.keys.is_empty() {
        let outcome = by_key();
        if matches!(outcome, Outcome::Valid { .. } | Outcome::WrongDigest { .. }) {
            return outcome;
        }
    }
    check_certificate(found, digest, trust)
}

fn refused(check: Check, reason: impl Into<String>) -> Outcome {
    Outcome::Refused {
        check,
        reason: reason.into(),
    }
}

/// A keyless signature, in either format: every Sigstore check against
/// the scope's trusted root and identities, then the image digest.
fn check_certificate(found: &Found, digest: &Digest, trust: &Trust<'_>) -> Outcome {
    let Some(keyless) = trust.keyless else {
        return refused(
            Check::Identity,
            "signed with a certificate, and this scope trusts no certificate signers (give it 'trusted-root' and 'identities')",
        );
    };
    let signers = keyless.signers(&[]);
    let bytes = sigstore::unhex(digest.hex()).unwrap_or_default();
    let Ok(image) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return malformed(format!("digest {digest} is not SHA-256"));
    };
    let verified = match found {
        Found::Legacy {
            payload,
            signature,
            annotations,
            ..
        } => {
            let Some(signature) = signature else {
                return malformed(format!(
                    "the layer has no {SIGNATURE_ANNOTATION} annotation"
                ));
            };
            let bundle = match SigstoreBundle::from_cosign_annotations(
                signature,
                annotations
                    .get(COSIGN_CERTIFICATE)
                    .map_or("", String::as_str),
                annotations.get(COSIGN_REKOR_BUNDLE).map(String::as_str),
                annotations.get(COSIGN_TIMESTAMP).map(String::as_str),
            ) {
                Ok(b) => b,
                Err(e) => return refused(Check::Bundle, e),
            };
            let v = match sigstore::verify(
                &bundle,
                Artifact::Blob(payload),
                &keyless.root,
                signers,
                trust.now,
            ) {
                Ok(v) => v,
                Err(f) => return refused(f.check, f.reason),
            };
            // Genuine; now, is it for this image?
            let parsed = match serde_json::from_slice::<SimpleSigning>(payload) {
                Ok(p) => p,
                Err(e) => return malformed(format!("the payload is not simple signing JSON: {e}")),
            };
            let signed = parsed.critical.image.docker_manifest_digest;
            if signed != digest.to_string() {
                return Outcome::WrongDigest { signed };
            }
            v
        }
        Found::Bundle { bundle, .. } => {
            let parsed = match SigstoreBundle::from_json(bundle) {
                Ok(b) => b,
                Err(e) => return refused(Check::Bundle, e),
            };
            if let sigstore::bundle::Content::Dsse {
                payload,
                payload_type,
                ..
            } = &parsed.content
            {
                if payload_type != IN_TOTO {
                    return malformed(format!("DSSE payload type '{payload_type}'"));
                }
                match serde_json::from_slice::<Statement>(payload) {
                    Ok(s) if s.predicate_type != COSIGN_SIGN_PREDICATE => {
                        return Outcome::NotASignature {
                            what: format!("an attestation of type {}", s.predicate_type),
                        };
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return malformed(format!("the signed statement is not in-toto JSON: {e}"));
                    }
                }
            } else {
                return malformed("the bundle signs a message, not an image (no DSSE envelope)");
            }
            match sigstore::verify(
                &parsed,
                Artifact::Sha256(image),
                &keyless.root,
                signers,
                trust.now,
            ) {
                Ok(v) => v,
                // The statement is in-toto with cosign's predicate (checked
                // above): an artifact failure is a subject naming another
                // image.
                Err(f) if f.check == Check::Artifact => {
                    return Outcome::WrongDigest {
                        signed: "another image (the statement's subject)".into(),
                    };
                }
                Err(f) => return refused(f.check, f.reason),
            }
        }
        Found::Unreadable { problem, .. } => return malformed(problem.clone()),
    };
    let identity = verified.identity.unwrap_or_default();
    Outcome::Certified {
        identity: identity.subjects.join(", "),
        issuer: identity.issuer.unwrap_or_default(),
        log_index: verified.log_indexes,
    }
}

fn malformed(problem: impl Into<String>) -> Outcome {
    Outcome::Malformed {
        problem: problem.into(),
    }
}

/// The first key in `keys` whose signature over `message` verifies.
fn verify_any(keys: &[PublicKey], message: &[u8], signature: &[u8]) -> Option<KeyId> {
    keys.iter()
        .find(|k| k.verify(message, signature))
        .map(|k| k.id().clone())
}

fn check_legacy(
    payload: &[u8],
    signature: Option<&str>,
    digest: &Digest,
    keys: &[PublicKey],
) -> Outcome {
    let Some(signature) = signature else {
        return malformed(format!(
            "the layer has no {SIGNATURE_ANNOTATION} annotation"
        ));
    };
    let Ok(signature) = B64.decode(signature.trim()) else {
        return malformed("the signature annotation is not base64");
    };
    let parsed = match serde_json::from_slice::<SimpleSigning>(payload) {
        Ok(p) => p,
        Err(e) => return malformed(format!("the payload is not simple signing JSON: {e}")),
    };
    if parsed.critical.kind != SIMPLE_SIGNING_TYPE {
        return malformed(format!(
            "payload type is '{}', not '{SIMPLE_SIGNING_TYPE}'",
            parsed.critical.kind
        ));
    }
    // The signature is checked first: a payload naming another digest is
    // only worth reporting as such if it is genuine.
    let Some(key) = verify_any(keys, payload, &signature) else {
        return Outcome::Untrusted;
    };
    let signed = parsed.critical.image.docker_manifest_digest;
    if signed != digest.to_string() {
        return Outcome::WrongDigest { signed };
    }
    Outcome::Valid { key }
}

fn check_bundle(bundle: &[u8], digest: &Digest, keys: &[PublicKey]) -> Outcome {
    let bundle = match serde_json::from_slice::<Bundle>(bundle) {
        Ok(b) => b,
        Err(e) => return malformed(format!("not a sigstore bundle: {e}")),
    };
    if !bundle
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return malformed(format!("bundle media type '{}'", bundle.media_type));
    }
    let Some(env) = bundle.dsse_envelope else {
        return malformed(
            "the bundle has no DSSE envelope (message signatures over blobs are not image signatures)",
        );
    };
    if env.payload_type != IN_TOTO {
        return malformed(format!("DSSE payload type '{}'", env.payload_type));
    }
    let Ok(payload) = B64.decode(env.payload.trim()) else {
        return malformed("the DSSE payload is not base64");
    };
    let pae = pae(&env.payload_type, &payload);
    let key = env.signatures.iter().find_map(|s| {
        B64.decode(s.sig.trim())
            .ok()
            .and_then(|sig| verify_any(keys, &pae, &sig))
    });
    let Some(key) = key else {
        return if env.signatures.is_empty() {
            malformed("the DSSE envelope has no signatures")
        } else {
            Outcome::Untrusted
        };
    };
    let statement = match serde_json::from_slice::<Statement>(&payload) {
        Ok(s) => s,
        Err(e) => return malformed(format!("the signed statement is not in-toto JSON: {e}")),
    };
    if statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return Outcome::NotASignature {
            what: format!("an attestation of type {}", statement.predicate_type),
        };
    }
    let want = digest.hex();
    let subjects: Vec<&str> = statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get(digest.algorithm()).map(String::as_str))
        .collect();
    if subjects.contains(&want) {
        Outcome::Valid { key }
    } else {
        Outcome::WrongDigest {
            signed: subjects
                .first()
                .map(|h| format!("{}:{h}", digest.algorithm()))
                .unwrap_or_else(|| "no sha256 subject".into()),
        }
    }
}

// ---- simple signing ----

#[derive(Debug, Serialize, Deserialize)]
struct SimpleSigning {
    critical: Critical,
    /// `null` when there are no annotations, as cosign writes it.
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageRef,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageRef {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The simple signing payload cosign signs for `digest` in `repository`
/// (`registry/repo`, no tag), with `annotations` in `optional`.
pub fn simple_signing_payload(
    repository: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.into(),
            },
            image: ImageRef {
                docker_manifest_digest: digest.to_string(),
            },
            kind: SIMPLE_SIGNING_TYPE.into(),
        },
        optional: (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        }),
    };
    to_canonical_json(&doc)
}

/// The `optional` section of a simple signing payload, if it parses.
pub fn payload_annotations(payload: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice::<SimpleSigning>(payload)
        .ok()
        .and_then(|p| p.optional)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// A `.sig` manifest and everything it needs, ready to store.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The manifest (or index) descriptor and bytes.
    pub top: Descriptor,
    pub top_bytes: Vec<u8>,
    /// Every blob the manifest references, with its descriptor.
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

/// One layer of a `.sig` manifest: the payload, and the layer's
/// annotations: the base64 signature, and for keyless signatures made by
/// others the certificate, chain and Rekor bundle, kept as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLayer {
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl LegacyLayer {
    /// The base64 signature annotation.
    pub fn signature(&self) -> Option<&str> {
        self.annotations
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }

    /// As found in `origin`, for checking.
    pub fn found(&self, origin: String) -> Found {
        let mut annotations = self.annotations.clone();
        annotations.remove(SIGNATURE_ANNOTATION);
        Found::Legacy {
            origin,
            payload: self.payload.clone(),
            signature: self.signature().map(str::to_string),
            annotations,
        }
    }
}

/// Signs `digest` in `repository` with `key`, legacy format.
pub fn sign_legacy(
    key: &PrivateKey,
    repository: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> LegacyLayer {
    let payload = simple_signing_payload(repository, digest, annotations);
    let signature = B64.encode(key.sign(&payload));
    LegacyLayer {
        payload,
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)]),
    }
}

/// The layers of an existing `.sig` manifest (the payload blobs must be
/// supplied by the caller, keyed by digest).
pub fn legacy_layers(manifest: &ImageManifest) -> Vec<&Descriptor> {
    manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .collect()
}

/// Builds the `.sig` manifest holding `layers`, in order: cosign's shape
/// (an OCI manifest, a config whose `rootfs.diff_ids` lists the payloads).
/// A layer equal to an earlier one is stored once.
pub fn legacy_manifest(layers: &[LegacyLayer]) -> Stored {
    let mut unique: Vec<&LegacyLayer> = Vec::new();
    for l in layers {
        if !unique.contains(&l) {
            unique.push(l);
        }
    }
    let mut blobs = Vec::new();
    let mut descs = Vec::new();
    for l in &unique {
        let mut d = Descriptor::for_bytes(SIMPLE_SIGNING, &l.payload);
        d.annotations = l.annotations.clone();
        blobs.push((d.clone(), l.payload.clone()));
        descs.push(d);
    }
    let diff_ids: Vec<String> = descs.iter().map(|d| d.digest.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": {},
    });
    let config_bytes = to_canonical_json(&config);
    let config_desc = Descriptor::for_bytes(media::OCI_CONFIG, &config_bytes);
    blobs.push((config_desc.clone(), config_bytes));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: config_desc,
        layers: descs,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let top_bytes = to_canonical_json(&manifest);
    Stored {
        top: Descriptor::for_bytes(media::OCI_MANIFEST, &top_bytes),
        top_bytes,
        blobs,
    }
}

// ---- bundles ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    #[serde(default)]
    verification_material: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

/// A certificate for the signing key, from the signer's own certificate
/// authority (cosign's `--certificate` and `--certificate-chain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningCertificate {
    /// DER.
    pub leaf: Vec<u8>,
    /// DER, the leaf's issuer first.
    pub chain: Vec<Vec<u8>>,
}

impl SigningCertificate {
    /// Reads the leaf and chain PEM, and checks what can be checked
    /// before signing: the leaf is for `key`, each certificate is signed
    /// by the next, and the issuers are CAs.
    pub fn from_pem(leaf: &str, chain: Option<&str>, key: &PublicKey) -> Result<Self, String> {
        use crate::sigstore::cert::Cert;
        let blocks = |text: &str| -> Result<Vec<Vec<u8>>, String> {
            let mut out = Vec::new();
            let mut rest = text;
            while let Some(at) = rest.find("-----BEGIN CERTIFICATE-----") {
                out.push(sigstore::bundle::pem_block(&rest[at..], "CERTIFICATE")?);
                let end = rest[at..]
                    .find("-----END CERTIFICATE-----")
                    .map_or(rest.len(), |e| at + e + 25);
                rest = &rest[end..];
            }
            Ok(out)
        };
        let leaf_der = blocks(leaf)?
            .into_iter()
            .next()
            .ok_or("the certificate file has no PEM CERTIFICATE block")?;
        let cert = Cert::parse(&leaf_der)?;
        if cert.spki_der()? != key.spki_der() {
            return Err("the certificate is not for the signing key".into());
        }
        let chain = match chain {
            Some(c) => blocks(c)?,
            None => Vec::new(),
        };
        let parsed = chain
            .iter()
            .map(|d| Cert::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut child = &cert;
        for (i, issuer) in parsed.iter().enumerate() {
            if !issuer.is_ca() {
                return Err(format!("chain certificate {i} is not a CA"));
            }
            if !child.issued_by(&issuer.cert) {
                return Err(format!(
                    "chain certificate {i} did not issue the certificate before it"
                ));
            }
            child = issuer;
        }
        Ok(Self {
            leaf: leaf_der,
            chain,
        })
    }

    fn pem(der: &[u8]) -> String {
        crate::keys::encode_pem("CERTIFICATE", der)
    }

    /// Adds cosign's certificate and chain annotations to a `.sig` layer.
    pub fn annotate(&self, layer: &mut LegacyLayer) {
        layer
            .annotations
            .insert(COSIGN_CERTIFICATE.into(), Self::pem(&self.leaf));
        if !self.chain.is_empty() {
            let chain: String = self.chain.iter().map(|c| Self::pem(c)).collect();
            layer
                .annotations
                .insert(sigstore::bundle::COSIGN_CHAIN.into(), chain);
        }
    }
}

/// Signs `digest` in `repository` as cosign 3 does with a key: a bundle
/// with a DSSE envelope over an in-toto statement (predicate
/// [`COSIGN_SIGN_PREDICATE`], `annotations` as the predicate). No
/// transparency log entry: key-based signatures do not need one.
pub fn sign_bundle(
    key: &PrivateKey,
    repository: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    sign_bundle_with(key, repository, digest, annotations, None)
}

/// [`sign_bundle`], with the key's certificate as the verification
/// material when given (a v0.3 bundle names one certificate; the chain
/// comes from the verifier's trusted root).
pub fn sign_bundle_with(
    key: &PrivateKey,
    repository: &str,
    digest: &Digest,
    annotations: &BTreeMap<String, String>,
    certificate: Option<&SigningCertificate>,
) -> Vec<u8> {
    let statement = Statement {
        kind: STATEMENT_V1.into(),
        subject: vec![Subject {
            name: repository.into(),
            digest: BTreeMap::from([(digest.algorithm().into(), digest.hex().into())]),
        }],
        predicate_type: COSIGN_SIGN_PREDICATE.into(),
        predicate: serde_json::to_value(annotations).unwrap_or_default(),
    };
    let payload = to_canonical_json(&statement);
    let sig = key.sign(&pae(IN_TOTO, &payload));
    let bundle = Bundle {
        media_type: BUNDLE_V03.into(),
        verification_material: match certificate {
            Some(c) => serde_json::json!({
                "certificate": { "rawBytes": B64.encode(&c.leaf) },
                "tlogEntries": [],
            }),
            None => serde_json::json!({
                "publicKey": { "hint": key.public().id().to_string() },
                "tlogEntries": [],
            }),
        },
        dsse_envelope: Some(Envelope {
            payload: B64.encode(&payload),
            payload_type: IN_TOTO.into(),
            signatures: vec![EnvelopeSignature {
                sig: B64.encode(sig),
                keyid: String::new(),
            }],
        }),
    };
    to_canonical_json(&bundle)
}

/// The referrer manifest that stores `bundle` for `subject`.
pub fn bundle_manifest(subject: &Descriptor, bundle: &[u8], created: Option<&str>) -> Stored {
    let bundle_desc = Descriptor::for_bytes(BUNDLE_V03, bundle);
    let config_desc = Descriptor::for_bytes(media::OCI_EMPTY, EMPTY_JSON);
    let mut annotations = BTreeMap::from([
        (
            "dev.sigstore.bundle.content".to_string(),
            "dsse-envelope".to_string(),
        ),
        (
            "dev.sigstore.bundle.predicateType".to_string(),
            COSIGN_SIGN_PREDICATE.to_string(),
        ),
    ]);
    if let Some(c) = created {
        annotations.insert(media::ANNOTATION_CREATED.into(), c.into());
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: Some(BUNDLE_V03.into()),
        config: config_desc.clone(),
        layers: vec![bundle_desc.clone()],
        subject: Some(Descriptor {
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
            ..subject.clone()
        }),
        annotations: annotations.clone(),
    };
    let top_bytes = to_canonical_json(&manifest);
    let mut top = Descriptor::for_bytes(media::OCI_MANIFEST, &top_bytes);
    top.artifact_type = Some(BUNDLE_V03.into());
    top.annotations = annotations;
    Stored {
        top,
        top_bytes,
        blobs: vec![
            (config_desc, EMPTY_JSON.to_vec()),
            (bundle_desc, bundle.to_vec()),
        ],
    }
}

/// The referrers fallback index with `entry` added to `existing` (kept in
/// order; an entry already present is not repeated).
pub fn referrers_index(existing: Option<&ImageIndex>, entry: &Descriptor) -> (Descriptor, Vec<u8>) {
    let mut manifests = existing.map(|i| i.manifests.clone()).unwrap_or_default();
    if !manifests.iter().any(|d| d.digest == entry.digest) {
        manifests.push(entry.clone());
    }
    let index = ImageIndex::new(manifests, BTreeMap::new());
    let bytes = to_canonical_json(&index);
    (Descriptor::for_bytes(media::OCI_INDEX, &bytes), bytes)
}

/// The bundle referrers listed in a referrers index, in order.
pub fn bundle_referrers(index: &ImageIndex) -> Vec<&Descriptor> {
    index
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE_V03))
        .collect()
}

/// Checks that a fetched referrer manifest really is a bundle for
/// `subject`, returning its bundle layer.
pub fn bundle_layer<'m>(
    manifest: &'m ImageManifest,
    subject: &Digest,
) -> Result<&'m Descriptor, String> {
    if manifest.artifact_type.as_deref() != Some(BUNDLE_V03) {
        return Err(format!(
            "artifact type {:?}, not a sigstore bundle",
            manifest.artifact_type
        ));
    }
    match &manifest.subject {
        Some(s) if &s.digest == subject => {}
        Some(s) => return Err(format!("its subject is {}, not this image", s.digest)),
        None => return Err("it has no subject".into()),
    }
    match manifest.layers.as_slice() {
        [l] if l.media_type == BUNDLE_V03 => Ok(l),
        layers => Err(format!(
            "expected one {BUNDLE_V03} layer, found {} layers",
            layers.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &[u8]) -> Digest {
        Digest::of(s)
    }

    fn legacy(l: &LegacyLayer) -> Found {
        l.found("t".into())
    }

    #[test]
    fn payload_matches_cosigns_shape() {
        let d = digest(b"image");
        let p = simple_signing_payload("quay.io/a/b", &d, &BTreeMap::new());
        let s = String::from_utf8(p).expect("utf8");
        assert_eq!(
            s,
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/a/b"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let ann = BTreeMap::from([("team".to_string(), "net".to_string())]);
        let p = simple_signing_payload("quay.io/a/b", &d, &ann);
        assert_eq!(payload_annotations(&p), ann);
    }

    #[test]
    fn legacy_signatures_check_digest_key_and_payload() {
        let key = PrivateKey::generate().expect("random");
        let other = PrivateKey::generate().expect("random");
        let d = digest(b"image");
        let l = sign_legacy(&key, "r/x", &d, &BTreeMap::new());
        let keys = [key.public()];
        assert_eq!(
            check(&legacy(&l), &d, &keys),
            Outcome::Valid {
                key: key.public().id().clone()
            }
        );
        assert_eq!(
            check(&legacy(&l), &d, &[other.public()]),
            Outcome::Untrusted
        );
        let e = digest(b"other");
        assert_eq!(
            check(&legacy(&l), &e, &keys),
            Outcome::WrongDigest {
                signed: d.to_string()
            }
        );
        let mut tampered = l.clone();
        tampered.payload = simple_signing_payload("r/x", &e, &BTreeMap::new());
        assert_eq!(check(&legacy(&tampered), &e, &keys), Outcome::Untrusted);
        let missing = Found::Legacy {
            origin: "t".into(),
            payload: l.payload,
            signature: None,
            annotations: BTreeMap::new(),
        };
        assert!(matches!(
            check(&missing, &d, &keys),
            Outcome::Malformed { .. }
        ));
    }

    #[test]
    fn bundles_check_digest_key_and_statement() {
        let key = PrivateKey::generate().expect("random");
        let d = digest(b"image");
        let b = sign_bundle(&key, "r/x", &d, &BTreeMap::new());
        let found = Found::Bundle {
            origin: "t".into(),
            bundle: b.clone(),
        };
        let keys = [key.public()];
        assert!(matches!(check(&found, &d, &keys), Outcome::Valid { .. }));
        assert!(matches!(
            check(&found, &digest(b"x"), &keys),
            Outcome::WrongDigest { .. }
        ));
        let other = PrivateKey::generate().expect("random");
        assert_eq!(check(&found, &d, &[other.public()]), Outcome::Untrusted);
        // Altering the signed statement breaks the signature.
        let mut v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        let stmt = String::from_utf8(
            B64.decode(v["dsseEnvelope"]["payload"].as_str().expect("str"))
                .expect("b64"),
        )
        .expect("utf8")
        .replace(d.hex(), digest(b"x").hex());
        v["dsseEnvelope"]["payload"] = B64.encode(stmt).into();
        let tampered = Found::Bundle {
            origin: "t".into(),
            bundle: serde_json::to_vec(&v).expect("json"),
        };
        assert_eq!(check(&tampered, &digest(b"x"), &keys), Outcome::Untrusted);
    }

    #[test]
    fn attestations_are_not_signatures() {
        let key = PrivateKey::generate().expect("random");
        let d = digest(b"image");
        let statement = format!(
            r#"{{"_type":"{STATEMENT_V1}","subject":[{{"name":"r","digest":{{"sha256":"{}"}}}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{{}}}}"#,
            d.hex()
        );
        let sig = key.sign(&pae(IN_TOTO, statement.as_bytes()));
        let bundle = serde_json::json!({
            "mediaType": BUNDLE_V03,
            "dsseEnvelope": {"payload": B64.encode(&statement), "payloadType": IN_TOTO,
                             "signatures": [{"sig": B64.encode(sig)}]}
        });
        let found = Found::Bundle {
            origin: "t".into(),
            bundle: serde_json::to_vec(&bundle).expect("json"),
        };
        assert!(matches!(
            check(&found, &d, &[key.public()]),
            Outcome::NotASignature { .. }
        ));
    }

    #[test]
    fn artifact_tags() {
        let d = digest(b"x");
        assert!(is_artifact_tag(&signature_tag(&d)));
        assert!(is_artifact_tag(&referrers_tag(&d)));
        assert!(is_artifact_tag(&format!("sha256-{}.att", d.hex())));
        assert!(!is_artifact_tag("latest"));
        assert!(!is_artifact_tag("sha256-abc.sig"));
        assert!(!is_artifact_tag(&format!("sha256-{}.txt", d.hex())));
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(pae("t/x", b"hello"), b"DSSEv1 3 t/x 5 hello".to_vec());
    }

    #[test]
    fn sig_manifest_keeps_layers_and_drops_duplicates() {
        let key = PrivateKey::generate().expect("random");
        let d = digest(b"image");
        let a = sign_legacy(&key, "r", &d, &BTreeMap::new());
        let b = sign_legacy(
            &key,
            "r",
            &d,
            &BTreeMap::from([("k".to_string(), "v".to_string())]),
        );
        let stored = legacy_manifest(&[a.clone(), b, a]);
        let m: ImageManifest = serde_json::from_slice(&stored.top_bytes).expect("manifest");
        assert_eq!(legacy_layers(&m).len(), 2);
        assert_eq!(stored.blobs.len(), 3);
        assert_eq!(stored.top.digest, Digest::of(&stored.top_bytes));
    }

    #[test]
    fn bundle_manifest_is_a_referrer_of_its_subject() {
        let subject = Descriptor::for_bytes(media::OCI_MANIFEST, b"m");
        let stored = bundle_manifest(&subject, b"{}", None);
        let m: ImageManifest = serde_json::from_slice(&stored.top_bytes).expect("manifest");
        assert!(bundle_layer(&m, &subject.digest).is_ok());
        assert!(bundle_layer(&m, &digest(b"n")).is_err());
        let (_, bytes) = referrers_index(None, &stored.top);
        let index: ImageIndex = serde_json::from_slice(&bytes).expect("index");
        let (_, again) = referrers_index(Some(&index), &stored.top);
        assert_eq!(again, bytes);
        assert_eq!(bundle_referrers(&index).len(), 1);
    }
}
