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
pub use root::TrustedRoot;
pub use verify::{Artifact, Check, Failure, IdentityRule, Signers, Subject, Verified, verify};
