//! Signatures and trust policy for eBPF bytecode images.
//!
//! Everything here is pure (no network, no clock; [`file`] is the bounded
//! file reading both tools share): [`keys`] reads and writes
//! cosign's key files, [`cosign`] reads and writes both cosign signature
//! formats, [`policy`] is the host's trust policy as data, and
//! [`verdict::evaluate`] decides, from an image digest, the signatures found
//! for it and the policy, whether the image may be used. Only a
//! [`verdict::Proof`] says yes; the loader requires one before it touches the
//! kernel.

pub mod cosign;
pub mod file;
pub mod keys;
pub mod policy;
pub mod sigstore;
pub mod verdict;
