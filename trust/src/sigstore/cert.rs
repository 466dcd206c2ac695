//! X.509 for Sigstore: a leaf certificate's chain to a certificate
//! authority of the trusted root, its validity at the signing time, its
//! extended key usage, the identity Fulcio wrote into it, and its
//! embedded signed certificate timestamps (SCTs).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::der::asn1::{ObjectIdentifier as Oid, Utf8StringRef};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};

use super::crypto::{Hash, Key};
use super::der::{self, Tlv};
use super::root::{Authority, TrustedRoot};
use super::time;

pub const CODE_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.3");
pub const TIME_STAMPING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.8");
const SCT_LIST: Oid = Oid::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// Fulcio's OIDC issuer, v1 (raw string) and v2 (DER UTF8String).
const ISSUER_V1: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ISSUER_V2: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// Fulcio's extensions that cosign's `--certificate-github-workflow-*`
/// flags check, by the name the policy uses (v1 raw-string OIDs).
pub const GITHUB_EXTENSIONS: &[(&str, &str)] = &[
    ("github-workflow-trigger", "1.3.6.1.4.1.57264.1.2"),
    ("github-workflow-sha", "1.3.6.1.4.1.57264.1.3"),
    ("github-workflow-name", "1.3.6.1.4.1.57264.1.4"),
    ("github-workflow-repository", "1.3.6.1.4.1.57264.1.5"),
    ("github-workflow-ref", "1.3.6.1.4.1.57264.1.6"),
];

/// A parsed certificate with the bytes its issuer signed.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    pub cert: Certificate,
}

/// Who a certificate was issued to, as Fulcio writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Identity {
    /// The subject alternative names (URIs and emails), in order.
    pub subjects: Vec<String>,
    /// The OIDC issuer.
    pub issuer: Option<String>,
    /// Other Fulcio extensions, by policy name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

impl Cert {
    pub fn parse(der: &[u8]) -> Result<Cert, String> {
        Ok(Cert {
            der: der.to_vec(),
            cert: Certificate::from_der(der)
                .map_err(|e| format!("not a DER X.509 certificate: {e}"))?,
        })
    }

    /// The DER TBSCertificate, as signed.
    pub fn tbs(&self) -> Result<&[u8], String> {
        let (outer, _) = Tlv::expect(&self.der, der::SEQUENCE, "certificate")?;
        let (tbs, _) = Tlv::expect(outer.contents, der::SEQUENCE, "TBSCertificate")?;
        Ok(tbs.whole)
    }

    pub fn key(&self) -> Result<Key, String> {
        key_of(&self.cert)
    }

    pub fn spki_der(&self) -> Result<Vec<u8>, String> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        x509_cert::der::Encode::to_der(spki).map_err(|e| e.to_string())
    }

    /// `[not before, not after]` as Unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        let v = self.cert.tbs_certificate().validity();
        (
            time::from_x509(&v.not_before),
            time::from_x509(&v.not_after),
        )
    }

    pub fn valid_at(&self, t: i64) -> bool {
        let (from, to) = self.validity();
        from <= t && t <= to
    }

    /// Did `issuer`'s key sign this certificate?
    pub fn issued_by(&self, issuer: &Certificate) -> bool {
        let Ok(key) = key_of(issuer) else {
            return false;
        };
        let Some(hash) = Hash::from_algorithm(&self.cert.signature_algorithm().oid) else {
            return false;
        };
        let (Ok(tbs), Some(sig)) = (self.tbs(), self.cert.signature().as_bytes()) else {
            return false;
        };
        key.verify(hash, tbs, sig)
    }

    pub fn is_ca(&self) -> bool {
        matches!(
            self.cert.tbs_certificate().get_extension::<BasicConstraints>(),
            Ok(Some((_, bc))) if bc.ca
        )
    }

    /// A self-signed certificate (a root): its subject is its issuer and
    /// its own key verifies it.
    pub fn is_self_signed(&self) -> bool {
        let tbs = self.cert.tbs_certificate();
        tbs.subject() == tbs.issuer() && self.issued_by(&self.cert)
    }

    pub fn has_eku(&self, eku: Oid) -> bool {
        matches!(
            self.cert.tbs_certificate().get_extension::<ExtendedKeyUsage>(),
            Ok(Some((_, e))) if e.0.contains(&eku)
        )
    }

    fn extension(&self, oid: Oid) -> Option<&[u8]> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    pub fn identity(&self) -> Identity {
        let mut subjects = Vec::new();
        if let Ok(Some((_, san))) = self
            .cert
            .tbs_certificate()
            .get_extension::<SubjectAltName>()
        {
            for name in san.0 {
                match name {
                    GeneralName::UniformResourceIdentifier(s) | GeneralName::Rfc822Name(s) => {
                        subjects.push(s.to_string());
                    }
                    _ => {}
                }
            }
        }
        let issuer = self
            .extension(ISSUER_V2)
            .and_then(|v| {
                Utf8StringRef::from_der(v)
                    .ok()
                    .map(|s| s.as_str().to_string())
            })
            .or_else(|| {
                self.extension(ISSUER_V1)
                    .and_then(|v| std::str::from_utf8(v).ok().map(str::to_string))
            });
        let mut extensions = BTreeMap::new();
        for (name, oid) in GITHUB_EXTENSIONS {
            let oid = Oid::new_unwrap(oid);
            if let Some(v) = self
                .extension(oid)
                .and_then(|v| std::str::from_utf8(v).ok())
            {
                extensions.insert((*name).to_string(), v.to_string());
            }
        }
        Identity {
            subjects,
            issuer,
            extensions,
        }
    }
}

/// The public key a certificate certifies.
fn key_of(cert: &Certificate) -> Result<Key, String> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let der = x509_cert::der::Encode::to_der(spki).map_err(|e| e.to_string())?;
    Key::from_spki_der(&der)
}

/// Why a certificate path does not hold at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFault {
    NotCa,
    NotValidAt,
    NotSignedByNext,
}

/// Checks a certificate path at time `t`: each certificate valid at `t`
/// and signed by the next (the last by itself), and those from `cas_from`
/// on marked as CAs. On failure, the certificate's index and the fault.
pub fn verify_path(path: &[&Cert], t: i64, cas_from: usize) -> Result<(), (usize, PathFault)> {
    for (i, c) in path.iter().enumerate() {
        if i >= cas_from && !c.is_ca() {
            return Err((i, PathFault::NotCa));
        }
        if !c.valid_at(t) {
            return Err((i, PathFault::NotValidAt));
        }
        let issuer = path.get(i + 1).unwrap_or(c);
        if !c.issued_by(&issuer.cert) {
            return Err((i, PathFault::NotSignedByNext));
        }
    }
    Ok(())
}

/// Verifies that `leaf` chains to one of `authorities` at time `t`: each
/// certificate signed by the next, the authority's window and every
/// authority certificate valid at `t`, the issuing ones marked as CAs.
/// Returns the issuing authority and the leaf's issuer certificate.
pub fn chain<'r>(
    leaf: &Cert,
    authorities: &'r [Authority],
    t: i64,
) -> Result<(&'r Authority, Cert), String> {
    let mut why = String::from("no authority in the trusted root issued it");
    for auth in authorities {
        let Some(first) = auth.certs.first() else {
            continue;
        };
        if !leaf.issued_by(&first.cert) {
            continue;
        }
        if !auth.valid.contains(t) {
            why = format!(
                "its issuer {} is trusted only from {} to {}, not at {}",
                auth.uri,
                time::display(auth.valid.start),
                auth.valid.end.map_or("now".into(), time::display),
                time::display(t)
            );
            continue;
        }
        let path: Vec<&Cert> = auth.certs.iter().collect();
        match verify_path(&path, t, 0) {
            Ok(()) => return Ok((auth, first.clone())),
            Err((i, PathFault::NotCa)) => {
                why = format!("authority certificate {i} of {} is not a CA", auth.uri);
            }
            Err((i, PathFault::NotValidAt)) => {
                why = format!(
                    "authority certificate {i} of {} was not valid at {}",
                    auth.uri,
                    time::display(t)
                );
            }
            Err((i, PathFault::NotSignedByNext)) => {
                why = format!(
                    "the chain of {} does not verify at certificate {i}",
                    auth.uri
                );
            }
        }
    }
    Err(why)
}

/// The embedded SCTs of `leaf`, each verified against the CT logs of the
/// trusted root; returns how many verified, or why none did.
pub fn verify_scts(leaf: &Cert, issuer: &Cert, root: &TrustedRoot) -> Result<usize, String> {
    let Some(value) = leaf.extension(SCT_LIST) else {
        return Err("the certificate carries no signed certificate timestamp".into());
    };
    let (list, _) = Tlv::expect(value, der::OCTET_STRING, "SCT list")?;
    let scts = parse_sct_list(list.contents)?;
    let tbs = precert_tbs(leaf.tbs()?)?;
    let issuer_key_hash = Sha256::digest(issuer.spki_der()?);
    let mut last = String::from("the SCT list is empty");
    let mut verified = 0;
    for sct in &scts {
        let Some(log) = root.ctlog(sct.log_id) else {
            last = "an SCT names a CT log that is not in the trusted root".into();
            continue;
        };
        let t = i64::try_from(sct.timestamp_ms / 1000).unwrap_or(i64::MAX);
        if !log.valid.contains(t) {
            last = format!(
                "the CT log {} was not trusted at the SCT's time",
                log.base_url
            );
            continue;
        }
        let mut signed = vec![0u8, 0u8];
        signed.extend(sct.timestamp_ms.to_be_bytes());
        signed.extend([0u8, 1u8]);
        signed.extend(issuer_key_hash.as_slice());
        let n = tbs.len();
        signed.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        signed.extend(&tbs);
        signed.extend((sct.extensions.len() as u16).to_be_bytes());
        signed.extend(sct.extensions);
        let hash = match sct.hash {
            4 => Hash::Sha256,
            5 => Hash::Sha384,
            6 => Hash::Sha512,
            h => {
                last = format!("an SCT uses unknown hash algorithm {h}");
                continue;
            }
        };
        if log.key.verify(hash, &signed, sct.signature) {
            verified += 1;
        } else {
            last = format!(
                "an SCT's signature does not verify with the key of CT log {}",
                log.base_url
            );
        }
    }
    if verified == 0 {
        Err(last)
    } else {
        Ok(verified)
    }
}

struct Sct<'a> {
    log_id: &'a [u8],
    timestamp_ms: u64,
    extensions: &'a [u8],
    hash: u8,
    signature: &'a [u8],
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err("truncated SCT".into());
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

fn u16_of(b: &mut &[u8]) -> Result<usize, String> {
    let v = take(b, 2)?;
    Ok(usize::from(u16::from_be_bytes([v[0], v[1]])))
}

fn parse_sct_list(mut b: &[u8]) -> Result<Vec<Sct<'_>>, String> {
    let total = u16_of(&mut b)?;
    let mut list = take(&mut b, total)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let n = u16_of(&mut list)?;
        let mut s = take(&mut list, n)?;
        let version = take(&mut s, 1)?[0];
        if version != 0 {
            return Err(format!("SCT version {version} is not v1"));
        }
        let log_id = take(&mut s, 32)?;
        let ts = take(&mut s, 8)?;
        let timestamp_ms = u64::from_be_bytes(ts.try_into().unwrap_or_default());
        let ext_len = u16_of(&mut s)?;
        let extensions = take(&mut s, ext_len)?;
        let alg = take(&mut s, 2)?;
        let sig_len = u16_of(&mut s)?;
        let signature = take(&mut s, sig_len)?;
        out.push(Sct {
            log_id,
            timestamp_ms,
            extensions,
            hash: alg[0],
            signature,
        });
    }
    Ok(out)
}

pub(crate) fn encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = contents.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend(&bytes[skip..]);
    }
    out.extend(contents);
    out
}

/// The TBSCertificate without its SCT list extension: what the CT log
/// signed (RFC 6962 §3.2, the precertificate's TBS).
fn precert_tbs(tbs: &[u8]) -> Result<Vec<u8>, String> {
    let (t, _) = Tlv::expect(tbs, der::SEQUENCE, "TBSCertificate")?;
    let sct_oid = SCT_LIST.as_bytes();
    let mut body = Vec::new();
    for child in t.children()? {
        if child.tag != 0xa3 {
            body.extend(child.whole);
            continue;
        }
        let (exts, _) = Tlv::expect(child.contents, der::SEQUENCE, "extensions")?;
        let mut kept = Vec::new();
        for ext in exts.children()? {
            let (oid, _) = Tlv::expect(ext.contents, der::OID, "extension id")?;
            if oid.contents != sct_oid {
                kept.extend(ext.whole);
            }
        }
        body.extend(encode(0xa3, &encode(der::SEQUENCE, &kept)));
    }
    Ok(encode(der::SEQUENCE, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_the_walker() {
        for n in [0usize, 5, 127, 128, 300, 70_000] {
            let data = vec![9u8; n];
            let e = encode(0x04, &data);
            let (t, rest) = der::read(&e).expect("reads back");
            assert_eq!((t.contents.len(), rest.len()), (n, 0));
        }
    }
}
