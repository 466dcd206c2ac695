//! Keys in cosign's file formats.
//!
//! - Public keys: a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), as
//!   `cosign generate-key-pair` writes to `cosign.pub`.
//! - Private keys: a PEM `ENCRYPTED SIGSTORE PRIVATE KEY` block (older cosign
//!   wrote `ENCRYPTED COSIGN PRIVATE KEY`) holding JSON: an scrypt key
//!   derivation (salt and parameters) and a NaCl secretbox (XSalsa20-Poly1305)
//!   over the PKCS#8 DER of the key.
//!
//! Only ECDSA P-256 with SHA-256 is supported: it is what cosign generates.
//! Signatures are ASN.1 DER, as cosign writes them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The PEM label cosign writes for encrypted private keys.
pub const PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label cosign used before it became sigstore's.
pub const LEGACY_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// scrypt parameters cosign uses for new keys: N = 2^16, r = 8, p = 1.
const SCRYPT_LOG_N: u8 = 16;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// Key files asking for more work than this are refused rather than
/// letting a crafted file pin the CPU and memory (2^20 * 128 * r bytes).
const MAX_SCRYPT_LOG_N: u8 = 20;
const MAX_SCRYPT_R: u32 = 32;
const MAX_SCRYPT_P: u32 = 16;

/// Why a key could not be read, decrypted or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no PEM block found; expected '-----BEGIN {expected}-----'")]
    NoPem { expected: &'static str },
    #[error("PEM block is '{found}', expected '{expected}'{hint}")]
    WrongPemLabel {
        found: String,
        expected: &'static str,
        hint: &'static str,
    },
    #[error("malformed PEM: {0}")]
    BadPem(String),
    #[error("malformed encrypted key: {0}")]
    BadEnvelope(String),
    #[error(
        "unsupported {what} '{name}' in the key file (cosign keys use scrypt and nacl/secretbox)"
    )]
    Unsupported { what: &'static str, name: String },
    #[error("scrypt parameters N={n}, r={r}, p={p} are out of range (at most N=2^20, r=32, p=16)")]
    ScryptParams { n: u64, r: u32, p: u32 },
    #[error("wrong password, or the key file is corrupt (decryption failed)")]
    Decrypt,
    #[error(
        "the key is not an ECDSA P-256 key ({0}); only P-256, what cosign generates, is supported"
    )]
    NotP256(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// A public key that signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

/// A short, stable name for a public key: the first 8 bytes of the SHA-256
/// of its SubjectPublicKeyInfo DER, in hex. Shown in reports and recorded
/// in proofs; the same key always has the same id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// A certificate signer, named as reports show it:
    /// `certificate <subject> (<issuer>)`.
    pub fn certificate(identity: &str, issuer: &str) -> Self {
        KeyId(format!("certificate {identity} ({issuer})"))
    }

    /// How reports name the signer: `key <id>`, or the certificate.
    pub fn signer(&self) -> String {
        if self.0.starts_with("certificate ") {
            self.0.clone()
        } else {
            format!("key {}", self.0)
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(ecdsa-p256 {})", self.id)
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem, PUBLIC_KEY_LABEL)?;
        if label != PUBLIC_KEY_LABEL {
            let hint = if label.contains("PRIVATE") {
                ": this is a private key; give the public key (cosign.pub)"
            } else {
                ""
            };
            return Err(KeyError::WrongPemLabel {
                found: label,
                expected: PUBLIC_KEY_LABEL,
                hint,
            });
        }
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::NotP256(e.to_string()))?;
        Ok(Self::new(key))
    }

    fn new(key: VerifyingKey) -> Self {
        let id = key_id(&key);
        Self { key, id }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key as a PEM `PUBLIC KEY` block, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|e| unreachable!("encoding a valid P-256 point: {e}"))
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_else(|e| unreachable!("encoding a valid P-256 point: {e}"))
    }

    /// Checks a DER signature over `message` (SHA-256 is applied here).
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> bool {
        DerSignature::try_from(signature_der)
            .ok()
            .and_then(|sig| p256::ecdsa::Signature::try_from(sig).ok())
            .is_some_and(|sig| self.key.verify(message, &sig).is_ok())
    }
}

fn key_id(key: &VerifyingKey) -> KeyId {
    let der = key
        .to_public_key_der()
        .unwrap_or_else(|e| unreachable!("encoding a valid P-256 point: {e}"));
    let hash = Sha256::digest(der.as_bytes());
    KeyId(crate::sigstore::hex(&hash[..8]))
}

/// A private signing key, decrypted. Its memory is wiped on drop (by p256).
pub struct PrivateKey {
    key: SigningKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(ecdsa-p256, public {})", self.public().id)
    }
}

/// The JSON inside an encrypted private key PEM block (field names as
/// secure-systems-lab's `encrypted` package writes them).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let key = SigningKey::try_generate().map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self { key })
    }

    /// Decrypts a cosign private key file's contents with `password`.
    pub fn from_encrypted_pem(pem: &str, password: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem, PRIVATE_KEY_LABEL)?;
        if label != PRIVATE_KEY_LABEL && label != LEGACY_PRIVATE_KEY_LABEL {
            let hint = if label == PUBLIC_KEY_LABEL {
                ": this is a public key; signing needs the private key (cosign.key)"
            } else if label.contains("PRIVATE KEY") {
                ": an unencrypted key; import it with `cosign import-key-pair` first"
            } else {
                ""
            };
            return Err(KeyError::WrongPemLabel {
                found: label,
                expected: PRIVATE_KEY_LABEL,
                hint,
            });
        }
        let env: Envelope =
            serde_json::from_slice(&der).map_err(|e| KeyError::BadEnvelope(e.to_string()))?;
        if env.kdf.name != "scrypt" {
            return Err(KeyError::Unsupported {
                what: "key derivation",
                name: env.kdf.name,
            });
        }
        if env.cipher.name != "nacl/secretbox" {
            return Err(KeyError::Unsupported {
                what: "cipher",
                name: env.cipher.name,
            });
        }
        let secret = derive(password, &env.kdf.salt, &env.kdf.params)?;
        if env.cipher.nonce.len() != 24 {
            return Err(KeyError::BadEnvelope(format!(
                "nonce is {} bytes, expected 24",
                env.cipher.nonce.len()
            )));
        }
        let cipher = XSalsa20Poly1305::new(secret.as_slice().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&env.cipher.nonce),
                    env.ciphertext.as_slice(),
                )
                .map_err(|_| KeyError::Decrypt)?,
        );
        let key =
            SigningKey::from_pkcs8_der(&plain).map_err(|e| KeyError::NotP256(e.to_string()))?;
        Ok(Self { key })
    }

    /// Encrypts the key under `password` in cosign's format.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        let salt = random::<32>()?;
        let nonce = random::<24>()?;
        let params = ScryptParams {
            n: 1 << SCRYPT_LOG_N,
            r: SCRYPT_R,
            p: SCRYPT_P,
        };
        let secret = derive(password, &salt, &params)?;
        let der = self
            .key
            .to_pkcs8_der()
            .unwrap_or_else(|e| unreachable!("encoding a valid P-256 key: {e}"));
        let cipher = XSalsa20Poly1305::new(secret.as_slice().into());
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), der.as_bytes())
            .map_err(|_| KeyError::BadEnvelope("encryption failed".into()))?;
        let env = Envelope {
            kdf: Kdf {
                name: "scrypt".into(),
                params,
                salt: salt.to_vec(),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: nonce.to_vec(),
            },
            ciphertext,
        };
        let json = serde_json::to_vec(&env)
            .unwrap_or_else(|e| unreachable!("serializing a key envelope: {e}"));
        Ok(encode_pem(PRIVATE_KEY_LABEL, &json))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(*self.key.verifying_key())
    }

    /// Signs `message` (ECDSA P-256, SHA-256), returning the DER signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }
}

fn derive(
    password: &[u8],
    salt: &[u8],
    params: &ScryptParams,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bad = || KeyError::ScryptParams {
        n: params.n,
        r: params.r,
        p: params.p,
    };
    if !params.n.is_power_of_two() || params.n < 2 {
        return Err(bad());
    }
    let log_n = u8::try_from(params.n.trailing_zeros()).map_err(|_| bad())?;
    if log_n > MAX_SCRYPT_LOG_N || params.r > MAX_SCRYPT_R || params.p > MAX_SCRYPT_P {
        return Err(bad());
    }
    let p = scrypt::Params::new(log_n, params.r, params.p).map_err(|_| bad())?;
    let mut out = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &p, out.as_mut_slice()).map_err(|_| bad())?;
    Ok(out)
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

/// Finds the first PEM block and returns its label and decoded body.
fn decode_pem(text: &str, expected: &'static str) -> Result<(String, Vec<u8>), KeyError> {
    let start = text
        .find("-----BEGIN ")
        .ok_or(KeyError::NoPem { expected })?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| KeyError::BadPem("unterminated BEGIN line".into()))?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body
        .find(&end_marker)
        .ok_or_else(|| KeyError::BadPem(format!("no '{end_marker}' line")))?;
    let b64: String = body[..body_end]
        .lines()
        .map(str::trim)
        // RFC 1421 headers ("Proc-Type: ...") are not part of the body.
        .filter(|l| !l.contains(':'))
        .collect();
    let der = B64
        .decode(b64)
        .map_err(|e| KeyError::BadPem(format!("body is not base64: {e}")))?;
    Ok((label, der))
}

/// PEM text of `der` under `label`, 64 columns.
pub(crate) fn encode_pem(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made by the real cosign (`cosign generate-key-pair` with an
    /// empty password), from sigstore-rs's test data (Apache-2.0).
    const COSIGN_KEY: &str = include_str!("../../testdata/cosign/cosign-empty-password.key");

    #[test]
    fn reads_a_key_generated_by_cosign() {
        let key = PrivateKey::from_encrypted_pem(COSIGN_KEY, b"").expect("decrypts");
        let sig = key.sign(b"payload");
        assert!(key.public().verify(b"payload", &sig));
        assert_eq!(
            PrivateKey::from_encrypted_pem(COSIGN_KEY, b"wrong").expect_err("must be refused"),
            KeyError::Decrypt
        );
    }

    #[test]
    fn round_trips_our_own_format() {
        let key = PrivateKey::generate().expect("random");
        let pem = key.to_encrypted_pem(b"hunter2").expect("encrypts");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_encrypted_pem(&pem, b"hunter2").expect("decrypts");
        assert_eq!(back.public(), key.public());
        let public = PublicKey::from_pem(&key.public().to_pem()).expect("reads");
        assert_eq!(public.id(), key.public().id());
        assert_eq!(public.id().to_string().len(), 16);
    }

    #[test]
    fn signatures_bind_message_and_key() {
        let a = PrivateKey::generate().expect("random");
        let b = PrivateKey::generate().expect("random");
        let sig = a.sign(b"m");
        assert!(a.public().verify(b"m", &sig));
        assert!(!a.public().verify(b"n", &sig));
        assert!(!b.public().verify(b"m", &sig));
        assert!(!a.public().verify(b"m", b"not der"));
    }

    #[test]
    fn wrong_files_say_what_they_are() {
        let key = PrivateKey::generate().expect("random");
        let public = key.public().to_pem();
        let e = PrivateKey::from_encrypted_pem(&public, b"").expect_err("must be refused");
        assert!(e.to_string().contains("this is a public key"), "{e}");
        let e = PublicKey::from_pem(COSIGN_KEY).expect_err("must be refused");
        assert!(e.to_string().contains("this is a private key"), "{e}");
        let e = PublicKey::from_pem("hello").expect_err("must be refused");
        assert!(e.to_string().contains("BEGIN PUBLIC KEY"), "{e}");
    }

    #[test]
    fn refuses_expensive_scrypt_parameters() {
        let json = r#"{"kdf":{"name":"scrypt","params":{"N":16777216,"r":8,"p":1},"salt":"AAAA"},
            "cipher":{"name":"nacl/secretbox","nonce":"AAAA"},"ciphertext":"AAAA"}"#;
        let pem = encode_pem(PRIVATE_KEY_LABEL, json.as_bytes());
        let e = PrivateKey::from_encrypted_pem(&pem, b"").expect_err("must be refused");
        assert!(matches!(e, KeyError::ScryptParams { .. }), "{e}");
    }
}
