//! Sigstore verification, offline: bundles (v0.1 to v0.3) with a
//! certificate from a certificate authority (keyless, Fulcio) or with a
//! public key, against a `trusted_root.json` the operator controls.
//!
//! Pure: bytes in, a [`verify::Verified`] or a [`verify::Failure`] naming
//! the check out. The caller supplies the time (`now`), the trusted root,
//! and the keys and identities it trusts.

pub mod bundle;
pub mod cert;
pub mod crypto;
mod der;
pub mod root;
#[cfg(any(test, feature = "test-pki"))]
pub mod testpki;
pub mod time;
pub mod tlog;
pub mod tsa;
pub mod verify;

#[cfg(test)]
mod tests;

pub use bundle::Bundle;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of an even-length hex string, or None.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}
pub use root::TrustedRoot;
pub use verify::{Artifact, Check, Failure, IdentityRule, Signers, Subject, Verified, verify};
