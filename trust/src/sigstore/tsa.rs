//! RFC 3161 timestamps: a timestamp authority's signed statement that a
//! signature existed at a time. Checked here: the imprint is of the
//! bundle's signature, the CMS signature verifies with a timestamping
//! certificate that chains to a timestamp authority of the trusted root,
//! and that authority and its certificates were valid at the stated time.

use x509_cert::der::Decode as _;
use x509_cert::der::asn1::{GeneralizedTime, ObjectIdentifier as Oid};

use super::cert::{Cert, PathFault, TIME_STAMPING, verify_path};
use super::crypto::Hash;
use super::der::{self, Tlv};
use super::root::TrustedRoot;
use super::time;

const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];

fn oid_of(t: &Tlv<'_>) -> Result<Oid, String> {
    Oid::from_der(t.whole).map_err(|e| format!("bad OID: {e}"))
}

fn hash_of(alg: &Tlv<'_>, what: &str) -> Result<Hash, String> {
    let (oid, _) = Tlv::expect(alg.contents, der::OID, what)?;
    let oid = oid_of(&oid)?;
    Hash::from_algorithm(&oid).ok_or_else(|| format!("{what}: unsupported algorithm {oid}"))
}

/// The time the timestamp vouches for `signature`, once every check
/// passed.
pub fn verify(token: &[u8], signature: &[u8], root: &TrustedRoot) -> Result<i64, String> {
    let (outer, _) = Tlv::expect(token, der::SEQUENCE, "timestamp")?;
    let children = outer.children()?;
    // A TimeStampResp (status, token) or a bare token (a ContentInfo).
    let content_info = match children.first() {
        Some(first) if first.tag == der::SEQUENCE => {
            let status = first.children()?;
            let (code, _) = Tlv::expect(
                status.first().map_or(&[][..], |s| s.whole),
                der::INTEGER,
                "timestamp status",
            )?;
            if code.contents.iter().any(|&b| b != 0) && code.contents != [1] {
                return Err("the timestamp response reports a failure status".into());
            }
            *children
                .get(1)
                .ok_or("the timestamp response has no token")?
        }
        Some(_) => outer,
        None => return Err("empty timestamp".into()),
    };
    let ci = content_info.children()?;
    if ci.len() != 2 || ci[0].tag != der::OID || ci[0].contents != SIGNED_DATA || ci[1].tag != 0xa0
    {
        return Err("the timestamp token is not CMS SignedData".into());
    }
    let (signed_data, _) = Tlv::expect(ci[1].contents, der::SEQUENCE, "SignedData")?;
    let sd = signed_data.children()?;
    let encap = sd.get(2).ok_or("SignedData has no content")?;
    let ec = encap.children()?;
    if ec.len() != 2 || ec[0].contents != TST_INFO || ec[1].tag != 0xa0 {
        return Err("the signed content is not a TSTInfo".into());
    }
    let (tst_octets, _) = Tlv::expect(ec[1].contents, der::OCTET_STRING, "TSTInfo")?;
    let tst_info = tst_octets.contents;
    let mut embedded = Vec::new();
    let mut signer_infos = None;
    for c in &sd[3..] {
        match c.tag {
            0xa0 => {
                for cert in c.children()? {
                    embedded.push(Cert::parse(cert.whole)?);
                }
            }
            der::SET => signer_infos = Some(*c),
            _ => {}
        }
    }
    let signer_infos = signer_infos.ok_or("SignedData has no signer")?.children()?;
    let [signer] = signer_infos.as_slice() else {
        return Err("the timestamp must have exactly one signer".into());
    };

    // TSTInfo: the imprint must be of the bundle's signature.
    let (tst, _) = Tlv::expect(tst_info, der::SEQUENCE, "TSTInfo")?;
    let f = tst.children()?;
    let imprint = f
        .get(2)
        .ok_or("TSTInfo has no message imprint")?
        .children()?;
    let (Some(alg), Some(hashed)) = (imprint.first(), imprint.get(1)) else {
        return Err("malformed message imprint".into());
    };
    let imprint_hash = hash_of(alg, "message imprint")?;
    if hashed.contents != imprint_hash.digest(signature).as_slice() {
        return Err("the timestamp is for other content than this signature".into());
    }
    let generalized = f
        .iter()
        .find(|t| t.tag == der::GENERALIZED_TIME)
        .ok_or("TSTInfo has no time")?;
    let gen_time = GeneralizedTime::from_der(generalized.whole)
        .map_err(|e| format!("TSTInfo time: {e}"))?
        .to_unix_duration()
        .as_secs() as i64;

    // SignerInfo: signed attributes carry the digest of the TSTInfo.
    let si = signer.children()?;
    let digest_alg = si.get(2).ok_or("SignerInfo has no digest algorithm")?;
    let digest_hash = hash_of(digest_alg, "signer digest")?;
    let attrs = si
        .get(3)
        .filter(|t| t.tag == 0xa0)
        .ok_or("the timestamp signer has no signed attributes")?;
    let mut digest_ok = false;
    for attr in attrs.children()? {
        let a = attr.children()?;
        if a.first().is_some_and(|o| o.contents == MESSAGE_DIGEST) {
            let vals = a
                .get(1)
                .ok_or("empty messageDigest attribute")?
                .children()?;
            digest_ok = vals.first().is_some_and(|v| {
                v.tag == der::OCTET_STRING && v.contents == digest_hash.digest(tst_info).as_slice()
            });
        }
    }
    if !digest_ok {
        return Err("the timestamp's signed digest is not of its TSTInfo".into());
    }
    let sig_alg = si.get(4).ok_or("SignerInfo has no signature algorithm")?;
    let sig_hash = hash_of(sig_alg, "signature algorithm").unwrap_or(digest_hash);
    let sig = si
        .get(5)
        .filter(|t| t.tag == der::OCTET_STRING)
        .ok_or("SignerInfo has no signature")?;
    let mut signed_attrs = attrs.whole.to_vec();
    signed_attrs[0] = der::SET;

    // Who signed: an embedded certificate or the first certificate of a
    // timestamp authority, either way chained to the trusted root.
    let mut why = String::from("no timestamp authority in the trusted root signed it");
    for auth in &root.timestamp_authorities {
        for signer in embedded.iter().chain(auth.certs.first()) {
            let Ok(key) = signer.key() else { continue };
            if !key.verify(sig_hash, &signed_attrs, sig.contents) {
                continue;
            }
            let path: Vec<&Cert> = std::iter::once(signer)
                .chain(auth.certs.iter().filter(|c| c.der != signer.der))
                .collect();
            if !auth.valid.contains(gen_time) {
                why = format!(
                    "the timestamp authority {} was not trusted at {}",
                    auth.uri,
                    time::display(gen_time)
                );
                continue;
            }
            if !signer.has_eku(TIME_STAMPING) {
                why = "the timestamp certificate lacks the timeStamping usage".into();
                continue;
            }
            // No CA marking required of the authority's certificates:
            // the root names them.
            match verify_path(&path, gen_time, path.len()) {
                Err((i, PathFault::NotValidAt)) => {
                    why = format!(
                        "timestamp certificate {i} was not valid at {}",
                        time::display(gen_time)
                    );
                }
                Err((i, _)) => {
                    why = format!("the timestamp chain does not verify at certificate {i}");
                }
                Ok(()) => return Ok(gen_time),
            }
        }
    }
    Err(why)
}
