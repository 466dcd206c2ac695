//! Sigstore bundles, v0.1 to v0.3, as cosign and the Sigstore clients
//! write them: the verification material (a certificate, a chain, or a
//! public key hint), transparency log entries, RFC 3161 timestamps, and
//! the signed content (a message signature or a DSSE envelope).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

/// The bundle versions this reader knows, by media type.
pub fn version(media_type: &str) -> Option<(u8, u8)> {
    match media_type {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Some((0, 1)),
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => Some((0, 2)),
        "application/vnd.dev.sigstore.bundle+json;version=0.3"
        | "application/vnd.dev.sigstore.bundle.v0.3+json" => Some((0, 3)),
        _ => None,
    }
}

/// What identifies the signer.
#[derive(Debug, Clone)]
pub enum Material {
    /// A leaf certificate, and the chain the bundle carried after it
    /// (v0.1/v0.2 chains; never trusted, only inspected).
    Certificate { leaf: Vec<u8>, rest: Vec<Vec<u8>> },
    /// A public key, named by a hint; the verifier brings the key.
    PublicKey { hint: String },
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub envelope: String,
}

#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub log_index: u64,
    pub root_hash: Vec<u8>,
    pub tree_size: u64,
    pub hashes: Vec<Vec<u8>>,
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone)]
pub struct TlogEntry {
    pub log_index: u64,
    pub log_id: Vec<u8>,
    pub kind: String,
    pub version: String,
    pub integrated_time: Option<i64>,
    pub signed_entry_timestamp: Option<Vec<u8>>,
    pub inclusion_proof: Option<InclusionProof>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum Content {
    Message {
        /// The digest the bundle states (algorithm name, bytes), if any.
        digest: Option<(String, Vec<u8>)>,
        signature: Vec<u8>,
    },
    Dsse {
        payload: Vec<u8>,
        payload_type: String,
        signatures: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub version: (u8, u8),
    pub material: Material,
    pub tlog_entries: Vec<TlogEntry>,
    /// DER RFC 3161 timestamp responses.
    pub timestamps: Vec<Vec<u8>>,
    pub content: Content,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleJson {
    media_type: String,
    verification_material: MaterialJson,
    message_signature: Option<MessageJson>,
    dsse_envelope: Option<DsseJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialJson {
    certificate: Option<RawJson>,
    x509_certificate_chain: Option<ChainJson>,
    public_key: Option<HintJson>,
    #[serde(default)]
    tlog_entries: Vec<EntryJson>,
    timestamp_verification_data: Option<TimestampsJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct ChainJson {
    #[serde(default)]
    certificates: Vec<RawJson>,
}

#[derive(Deserialize)]
struct HintJson {
    #[serde(default)]
    hint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryJson {
    log_index: Num,
    log_id: LogIdJson,
    kind_version: KindVersionJson,
    integrated_time: Option<Num>,
    inclusion_promise: Option<PromiseJson>,
    inclusion_proof: Option<ProofJson>,
    canonicalized_body: String,
}

/// protobuf-JSON writes 64-bit integers as strings; accept numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Text(String),
    Int(i64),
}

impl Num {
    fn get(&self, what: &str) -> Result<i64, String> {
        match self {
            Num::Int(i) => Ok(*i),
            Num::Text(s) => s
                .parse()
                .map_err(|_| format!("{what} '{s}' is not an integer")),
        }
    }

    fn unsigned(&self, what: &str) -> Result<u64, String> {
        let v = self.get(what)?;
        u64::try_from(v).map_err(|_| format!("{what} {v} is negative"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdJson {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersionJson {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromiseJson {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofJson {
    log_index: Num,
    root_hash: String,
    tree_size: Num,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Option<CheckpointJson>,
}

#[derive(Deserialize)]
struct CheckpointJson {
    envelope: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimestampsJson {
    #[serde(default)]
    rfc3161_timestamps: Vec<SignedTimestampJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTimestampJson {
    signed_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson {
    message_digest: Option<DigestJson>,
    signature: String,
}

#[derive(Deserialize)]
struct DigestJson {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseJson {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<DsseSigJson>,
}

#[derive(Deserialize)]
struct DsseSigJson {
    sig: String,
}

/// Decodes standard base64, ignoring line breaks and other ASCII white
/// space (some tools wrap long values, as PEM does).
pub(crate) fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    let decoded = if s.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: String = s.split_ascii_whitespace().collect();
        B64.decode(compact)
    } else {
        B64.decode(s)
    };
    decoded.map_err(|e| format!("{what} is not base64: {e}"))
}

fn entry(e: &EntryJson, i: usize) -> Result<TlogEntry, String> {
    let what = |f: &str| format!("tlog entry {i} {f}");
    let proof = e
        .inclusion_proof
        .as_ref()
        .map(|p| -> Result<InclusionProof, String> {
            Ok(InclusionProof {
                log_index: p.log_index.unsigned(&what("inclusion proof logIndex"))?,
                root_hash: b64(&p.root_hash, &what("rootHash"))?,
                tree_size: p.tree_size.unsigned(&what("treeSize"))?,
                hashes: p
                    .hashes
                    .iter()
                    .map(|h| b64(h, &what("proof hash")))
                    .collect::<Result<_, _>>()?,
                checkpoint: p.checkpoint.as_ref().map(|c| Checkpoint {
                    envelope: c.envelope.clone(),
                }),
            })
        })
        .transpose()?;
    Ok(TlogEntry {
        log_index: e.log_index.unsigned(&what("logIndex"))?,
        log_id: b64(&e.log_id.key_id, &what("logId"))?,
        kind: e.kind_version.kind.clone(),
        version: e.kind_version.version.clone(),
        integrated_time: e
            .integrated_time
            .as_ref()
            .map(|t| t.get(&what("integratedTime")))
            .transpose()?
            // protobuf-JSON omits zero: no integrated time.
            .filter(|&t| t != 0),
        signed_entry_timestamp: e
            .inclusion_promise
            .as_ref()
            .map(|p| b64(&p.signed_entry_timestamp, &what("signedEntryTimestamp")))
            .transpose()?,
        inclusion_proof: proof,
        body: b64(&e.canonicalized_body, &what("canonicalizedBody"))?,
    })
}

impl Bundle {
    /// Parses a bundle. Structural problems are errors here; nothing is
    /// verified yet.
    pub fn from_json(text: &[u8]) -> Result<Bundle, String> {
        let j: BundleJson =
            serde_json::from_slice(text).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        let version = version(&j.media_type).ok_or_else(|| {
            format!(
                "unknown bundle media type '{}' (known: versions 0.1 to 0.3)",
                j.media_type
            )
        })?;
        let m = &j.verification_material;
        let material = match (&m.certificate, &m.x509_certificate_chain, &m.public_key) {
            (Some(c), None, None) => {
                if version < (0, 3) {
                    return Err(
                        "a single certificate is v0.3 material; this bundle says v0.1/v0.2".into(),
                    );
                }
                Material::Certificate {
                    leaf: b64(&c.raw_bytes, "the certificate")?,
                    rest: Vec::new(),
                }
            }
            (None, Some(chain), None) => {
                let mut certs = chain
                    .certificates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| b64(&c.raw_bytes, &format!("chain certificate {i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                if certs.is_empty() {
                    return Err("the certificate chain is empty".into());
                }
                let leaf = certs.remove(0);
                Material::Certificate { leaf, rest: certs }
            }
            (None, None, Some(k)) => Material::PublicKey {
                hint: k.hint.clone(),
            },
            (None, None, None) => {
                return Err("the verification material names no certificate and no key".into());
            }
            _ => return Err("the verification material names more than one signer".into()),
        };
        let tlog_entries = m
            .tlog_entries
            .iter()
            .enumerate()
            .map(|(i, e)| entry(e, i))
            .collect::<Result<Vec<_>, _>>()?;
        let timestamps = m
            .timestamp_verification_data
            .as_ref()
            .map(|t| {
                t.rfc3161_timestamps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| b64(&s.signed_timestamp, &format!("RFC 3161 timestamp {i}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let content = match (&j.message_signature, &j.dsse_envelope) {
            (Some(m), None) => Content::Message {
                digest: m
                    .message_digest
                    .as_ref()
                    .map(|d| {
                        Ok::<_, String>((
                            d.algorithm.clone(),
                            b64(&d.digest, "the message digest")?,
                        ))
                    })
                    .transpose()?,
                signature: b64(&m.signature, "the message signature")?,
            },
            (None, Some(d)) => Content::Dsse {
                payload: b64(&d.payload, "the DSSE payload")?,
                payload_type: d.payload_type.clone(),
                signatures: d
                    .signatures
                    .iter()
                    .map(|s| b64(&s.sig, "a DSSE signature"))
                    .collect::<Result<_, _>>()?,
            },
            (None, None) => {
                return Err(
                    "the bundle has neither a message signature nor a DSSE envelope".into(),
                );
            }
            (Some(_), Some(_)) => {
                return Err("the bundle has both a message signature and a DSSE envelope".into());
            }
        };
        Ok(Bundle {
            version,
            material,
            tlog_entries,
            timestamps,
            content,
        })
    }

    /// The bytes every timestamp and log entry vouches for: the message
    /// signature, or the DSSE envelope's (single) signature.
    pub fn signature(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Message { signature, .. } => Some(signature),
            Content::Dsse { signatures, .. } => signatures.first().map(Vec::as_slice),
        }
    }
}

/// The annotations cosign writes on a keyless `.sig` layer.
pub const COSIGN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
pub const COSIGN_CHAIN: &str = "dev.sigstore.cosign/chain";
pub const COSIGN_REKOR_BUNDLE: &str = "dev.sigstore.cosign/bundle";
pub const COSIGN_TIMESTAMP: &str = "dev.sigstore.cosign/rfc3161timestamp";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundleJson {
    signed_entry_timestamp: String,
    payload: RekorPayloadJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayloadJson {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct TimestampAnnotationJson {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed: String,
}

/// The DER of the first PEM block labelled `label` in `text`.
pub fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no PEM {label} block"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("unterminated PEM {label} block"))?
        + start;
    b64(&text[start..stop], &format!("the PEM {label}"))
}

impl Bundle {
    /// A keyless signature in cosign's `.sig` layer annotations, as the
    /// bundle it amounts to: the certificate, the Rekor entry with its
    /// signed entry timestamp (no inclusion proof: cosign's annotation
    /// carries none), any RFC 3161 timestamp, and the signature over the
    /// layer's payload. The chain annotation is not used: chains come
    /// from the trusted root.
    pub fn from_cosign_annotations(
        signature: &str,
        certificate_pem: &str,
        rekor_bundle: Option<&str>,
        timestamp: Option<&str>,
    ) -> Result<Bundle, String> {
        let leaf = pem_block(certificate_pem, "CERTIFICATE")
            .map_err(|e| format!("the certificate annotation: {e}"))?;
        let mut tlog_entries = Vec::new();
        if let Some(rekor) = rekor_bundle {
            let j: RekorBundleJson = serde_json::from_str(rekor)
                .map_err(|e| format!("the Rekor bundle annotation is not Rekor's bundle: {e}"))?;
            let body = b64(&j.payload.body, "the Rekor entry body")?;
            let kv: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the Rekor entry body is not JSON: {e}"))?;
            let log_id =
                super::unhex(&j.payload.log_id).ok_or("the Rekor bundle's logID is not hex")?;
            tlog_entries.push(TlogEntry {
                log_index: u64::try_from(j.payload.log_index)
                    .map_err(|_| "the Rekor bundle's logIndex is negative")?,
                log_id,
                kind: kv["kind"].as_str().unwrap_or_default().to_string(),
                version: kv["apiVersion"].as_str().unwrap_or_default().to_string(),
                integrated_time: Some(j.payload.integrated_time),
                signed_entry_timestamp: Some(b64(
                    &j.signed_entry_timestamp,
                    "the signed entry timestamp",
                )?),
                inclusion_proof: None,
                body,
            });
        }
        let timestamps = match timestamp {
            Some(t) => {
                let j: TimestampAnnotationJson = serde_json::from_str(t)
                    .map_err(|e| format!("the timestamp annotation: {e}"))?;
                vec![b64(&j.signed, "the RFC 3161 timestamp")?]
            }
            None => Vec::new(),
        };
        Ok(Bundle {
            version: (0, 1),
            material: Material::Certificate {
                leaf,
                rest: Vec::new(),
            },
            tlog_entries,
            timestamps,
            content: Content::Message {
                digest: None,
                signature: b64(signature, "the signature annotation")?,
            },
        })
    }
}
