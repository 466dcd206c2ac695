//! Public keys as a Sigstore trust root names them, and signature checks
//! with each: ECDSA P-256 and P-384, Ed25519, RSA PKCS#1 v1.5.

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::der::Decode as _;
use x509_cert::der::asn1::ObjectIdentifier as Oid;
use x509_cert::spki::SubjectPublicKeyInfoRef;

const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: Oid = Oid::new_unwrap("1.3.101.112");

/// The hash a signature was made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// From an X.509 / CMS signature or digest algorithm OID.
    pub fn from_algorithm(oid: &Oid) -> Option<Hash> {
        Some(match oid.to_string().as_str() {
            // ecdsa-with-SHA256/384/512, sha256/384/512WithRSAEncryption,
            // and the bare digest algorithms.
            "1.2.840.10045.4.3.2" | "1.2.840.113549.1.1.11" | "2.16.840.1.101.3.4.2.1" => {
                Hash::Sha256
            }
            "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" | "2.16.840.1.101.3.4.2.2" => {
                Hash::Sha384
            }
            "1.2.840.10045.4.3.4" | "1.2.840.113549.1.1.13" | "2.16.840.1.101.3.4.2.3" => {
                Hash::Sha512
            }
            // Ed25519 hashes internally; the value is unused.
            "1.3.101.112" => Hash::Sha512,
            _ => return None,
        })
    }
}

/// A verification key.
#[derive(Clone)]
pub enum Key {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::PublicKey),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.algorithm())
    }
}

impl Key {
    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Key, String> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
        Self::from_spki(&spki)
    }

    pub fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Key, String> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the public key is not a whole number of bytes")?;
        let oid = spki.algorithm.oid;
        if oid == EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<Oid>().ok());
            return match curve {
                Some(c) if c == P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map(Key::P256)
                    .map_err(|e| format!("bad P-256 point: {e}")),
                Some(c) if c == P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map(Key::P384)
                    .map_err(|e| format!("bad P-384 point: {e}")),
                other => Err(format!(
                    "unsupported elliptic curve {}",
                    other.map_or("(none)".into(), |o| o.to_string())
                )),
            };
        }
        if oid == ED25519 {
            let bytes: &[u8; 32] = bits.try_into().map_err(|_| "an Ed25519 key is 32 bytes")?;
            return ed25519_dalek::VerifyingKey::from_bytes(bytes)
                .map(Key::Ed25519)
                .map_err(|e| format!("bad Ed25519 key: {e}"));
        }
        if oid == RSA {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            return rsa::PublicKey::from_pkcs1_der(bits)
                .map(Key::Rsa)
                .map_err(|e| format!("bad RSA key: {e}"));
        }
        Err(format!("unsupported public key algorithm {oid}"))
    }

    /// Reads a DER PKCS#1 RSAPublicKey.
    pub fn from_pkcs1_rsa_der(der: &[u8]) -> Result<Key, String> {
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        rsa::PublicKey::from_pkcs1_der(der)
            .map(Key::Rsa)
            .map_err(|e| format!("bad PKCS#1 RSA key: {e}"))
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Key::P256(_) => "ECDSA P-256",
            Key::P384(_) => "ECDSA P-384",
            Key::Ed25519(_) => "Ed25519",
            Key::Rsa(_) => "RSA",
        }
    }

    /// The hash this key signs with when nothing says otherwise.
    pub fn default_hash(&self) -> Hash {
        match self {
            Key::P384(_) => Hash::Sha384,
            Key::Ed25519(_) => Hash::Sha512,
            Key::P256(_) | Key::Rsa(_) => Hash::Sha256,
        }
    }

    /// Checks `signature` over `message`, hashed with `hash` (ignored for
    /// Ed25519). ECDSA signatures are ASN.1 DER.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
            _ => self.verify_prehash(hash, &hash.digest(message), signature),
        }
    }

    /// Checks `signature` over an already computed digest (not Ed25519).
    pub fn verify_prehash(&self, hash: Hash, digest: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::P256(k) => p256::ecdsa::DerSignature::try_from(signature)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            Key::P384(k) => p384::ecdsa::DerSignature::try_from(signature)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            Key::Rsa(k) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                k.verify(scheme, digest, signature).is_ok()
            }
            Key::Ed25519(_) => false,
        }
    }
}

/// The DER SubjectPublicKeyInfo in a PEM `PUBLIC KEY` block, checked to
/// be a key this module can verify with.
pub fn spki_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let der = super::bundle::pem_block(pem, "PUBLIC KEY")?;
    Key::from_spki_der(&der)?;
    Ok(der)
}
