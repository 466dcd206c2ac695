//! Sigstore's `trusted_root.json`: the certificate authorities, the
//! transparency logs (Rekor), the certificate transparency logs and the
//! timestamp authorities a verifier trusts, each with a validity window.
//! Read from a file the operator controls; nothing is fetched.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::cert::Cert;
use super::crypto::Key;
use super::time::parse_rfc3339;

/// The media types of trusted roots this reader knows.
pub const MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.trustedroot";

/// When a key or authority may be used: `[start, end]`, both inclusive.
/// A missing end is open; a missing start is refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: Option<i64>,
}

impl Window {
    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && self.end.is_none_or(|e| t <= e)
    }
}

/// A transparency log (Rekor) or a certificate transparency log.
#[derive(Debug, Clone)]
pub struct Log {
    pub base_url: String,
    /// The log's id: SHA-256 of its key's DER SubjectPublicKeyInfo for
    /// Rekor v1 and CT logs; as the root states it in every case.
    pub id: Vec<u8>,
    pub key: Key,
    /// The DER SubjectPublicKeyInfo.
    pub key_der: Vec<u8>,
    pub valid: Window,
}

/// A certificate authority (Fulcio) or a timestamp authority.
#[derive(Debug, Clone)]
pub struct Authority {
    pub uri: String,
    /// The certificates, the issuing certificate first, the root last.
    pub certs: Vec<Cert>,
    pub valid: Window,
}

#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    pub tlogs: Vec<Log>,
    pub certificate_authorities: Vec<Authority>,
    pub ctlogs: Vec<Log>,
    pub timestamp_authorities: Vec<Authority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootJson {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogJson>,
    #[serde(default)]
    certificate_authorities: Vec<AuthorityJson>,
    #[serde(default)]
    ctlogs: Vec<LogJson>,
    #[serde(default)]
    timestamp_authorities: Vec<AuthorityJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogJson {
    #[serde(default)]
    base_url: String,
    public_key: PublicKeyJson,
    log_id: LogIdJson,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyJson {
    #[serde(default)]
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<WindowJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdJson {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityJson {
    #[serde(default)]
    uri: String,
    cert_chain: ChainJson,
    valid_for: Option<WindowJson>,
}

#[derive(Deserialize)]
struct ChainJson {
    #[serde(default)]
    certificates: Vec<RawJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct WindowJson {
    start: Option<String>,
    end: Option<String>,
}

fn window(w: Option<&WindowJson>, what: &str) -> Result<Window, String> {
    let w = w.ok_or_else(|| format!("{what} has no validFor"))?;
    let time =
        |s: &str| parse_rfc3339(s).ok_or_else(|| format!("{what}: '{s}' is not an RFC 3339 time"));
    let start = w
        .start
        .as_deref()
        .ok_or_else(|| format!("{what}: validFor has no start (a window must have one)"))
        .and_then(time)?;
    let end = w.end.as_deref().map(time).transpose()?;
    if end.is_some_and(|e| e < start) {
        return Err(format!("{what}: validFor ends before it starts"));
    }
    Ok(Window { start, end })
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    B64.decode(s.trim())
        .map_err(|e| format!("{what} is not base64: {e}"))
}

fn log(j: &LogJson, what: &str) -> Result<Log, String> {
    let key_der = b64(&j.public_key.raw_bytes, &format!("{what} publicKey"))?;
    // PKCS1_RSA_* keys are a bare PKCS#1 RSAPublicKey; every other kind
    // is a DER SubjectPublicKeyInfo.
    let key = if j.public_key.key_details.starts_with("PKCS1_RSA") {
        Key::from_pkcs1_rsa_der(&key_der)
    } else {
        Key::from_spki_der(&key_der)
    }
    .map_err(|e| format!("{what}: {e}"))?;
    let id = b64(&j.log_id.key_id, &format!("{what} logId"))?;
    Ok(Log {
        base_url: j.base_url.clone(),
        id,
        key,
        key_der,
        valid: window(j.public_key.valid_for.as_ref(), what)?,
    })
}

fn authority(j: &AuthorityJson, what: &str) -> Result<Authority, String> {
    let mut certs = Vec::new();
    for (i, c) in j.cert_chain.certificates.iter().enumerate() {
        let der = b64(&c.raw_bytes, &format!("{what} certificate {i}"))?;
        certs.push(Cert::parse(&der).map_err(|e| format!("{what} certificate {i}: {e}"))?);
    }
    if certs.is_empty() {
        return Err(format!("{what} has no certificates"));
    }
    Ok(Authority {
        uri: j.uri.clone(),
        certs,
        valid: window(j.valid_for.as_ref(), what)?,
    })
}

impl TrustedRoot {
    /// Parses a `trusted_root.json`. Every entry must be usable: a root
    /// with a malformed key or window is refused whole, not trimmed.
    pub fn from_json(text: &[u8]) -> Result<TrustedRoot, String> {
        let j: RootJson = serde_json::from_slice(text)
            .map_err(|e| format!("not a Sigstore trusted root: {e}"))?;
        if !j.media_type.starts_with(MEDIA_TYPE_PREFIX) {
            return Err(format!(
                "media type '{}' is not a Sigstore trusted root ({MEDIA_TYPE_PREFIX}...)",
                j.media_type
            ));
        }
        let logs = |v: &[LogJson], kind: &str| {
            v.iter()
                .enumerate()
                .map(|(i, l)| log(l, &format!("{kind} {i} ({})", l.base_url)))
                .collect::<Result<Vec<_>, _>>()
        };
        let auths = |v: &[AuthorityJson], kind: &str| {
            v.iter()
                .enumerate()
                .map(|(i, a)| authority(a, &format!("{kind} {i} ({})", a.uri)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TrustedRoot {
            tlogs: logs(&j.tlogs, "tlog")?,
            certificate_authorities: auths(&j.certificate_authorities, "certificate authority")?,
            ctlogs: logs(&j.ctlogs, "ctlog")?,
            timestamp_authorities: auths(&j.timestamp_authorities, "timestamp authority")?,
        })
    }

    /// The transparency log with this id.
    pub fn tlog(&self, id: &[u8]) -> Option<&Log> {
        self.tlogs.iter().find(|l| l.id == id)
    }

    /// The CT log with this id (SHA-256 of its key).
    pub fn ctlog(&self, id: &[u8]) -> Option<&Log> {
        self.ctlogs
            .iter()
            .find(|l| l.id == id || Sha256::digest(&l.key_der).as_slice() == id)
    }
}
