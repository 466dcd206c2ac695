//! The registry transport: one [`Registry`] per registry host. Requests go
//! through an HTTP client of our own (reqwest, rustls): manifests through a
//! bounded reader, because a manifest must be refused as soon as it passes
//! [`MAX_DOCUMENT_SIZE`], not after it has been read into memory whole;
//! blobs streamed and checked; uploads in as few requests as the registry
//! allows. `oci-client` does a registry's token dance.
//!
//! Guarantees:
//! - every byte read is checked against the expected size while streaming
//!   (a longer body is cut off at the first extra byte) and against the
//!   digest at the end; nothing unverified is returned;
//! - transient failures (connect errors, resets, timeouts, 5xx, 429) are
//!   retried with exponential backoff, [`TransportOptions::attempts`] times
//!   in all; everything else fails at once;
//! - plain HTTP only for loopback registries (after HTTPS is found not to be
//!   spoken there) or registries listed as insecure, never as a fallback for
//!   anything else;
//! - credentials never appear in errors or logs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpfman_image_spec::oci::Descriptor;
use oci_client::secrets::RegistryAuth;

use crate::auth::{AuthFiles, CredentialSource, Credentials};
use crate::reference::DOCKER_HUB;

mod client;
mod error;
pub mod locations;
pub mod mirrors;
mod tls;
mod token;
mod upload;

pub use error::RegistryError;
use tls::*;
pub use tls::{DEFAULT_CERTS_DIRS, install_crypto_provider};
pub use upload::UPLOAD_CHUNK;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// `--creds`: overrides every auth file.
    pub creds: Option<Credentials>,
    pub auth_files: AuthFiles,
    /// Extra CA certificates (PEM) trusted for every registry.
    pub ca_files: Vec<PathBuf>,
    /// `certs.d` roots; `<root>/<host[:port]>/*.crt` are trusted for that
    /// registry.
    pub certs_dirs: Vec<PathBuf>,
    /// Registries (`host[:port]` or `host`) that may be spoken to over plain
    /// HTTP.
    pub insecure: Vec<String>,
    /// Connect timeout, and the longest wait for any read.
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt; doubled each time.
    pub retry_delay: Duration,
    /// Mirrors, rewritten locations and blocked registries
    /// (registries.conf).
    pub registries: mirrors::RegistriesConf,
    /// Where blobs were seen, to mount them across repositories instead
    /// of uploading them again (`None`: no such cache).
    pub blob_locations: Option<std::sync::Arc<locations::BlobLocations>>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            creds: None,
            auth_files: AuthFiles::from_env(None),
            ca_files: Vec::new(),
            certs_dirs: DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            attempts: 4,
            retry_delay: Duration::from_millis(250),
            registries: mirrors::RegistriesConf::default(),
            blob_locations: None,
        }
    }
}

/// Per-blob progress, for a progress bar. All methods default to nothing.
pub trait Progress: Send + Sync {
    /// A transfer of `desc` starts (again, on a retry).
    fn start(&self, _desc: &Descriptor, _verb: &'static str) {}
    /// `n` more bytes of `desc` moved.
    fn advance(&self, _desc: &Descriptor, _n: u64) {}
    /// `desc` is done; `skipped` if the registry already had it.
    fn finish(&self, _desc: &Descriptor, _skipped: bool) {}
}

/// Progress that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What moved, for reports and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub blobs_uploaded: AtomicU64,
    /// Blobs the registry mounted from another repository.
    pub blobs_mounted: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub blobs_downloaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub manifests_pushed: AtomicU64,
    pub retries: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A manifest or index as fetched: bytes, their digest, and media type.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

/// A connection to one registry.
pub struct Registry {
    registry: String,
    scheme: &'static str,
    /// `oci-client`, made on first use for the scheme chosen: making one
    /// costs a full read of the platform's CA certificates (its default
    /// HTTP client is built and dropped), so it is made once, and not at
    /// all by what does not need it.
    client: std::sync::OnceLock<oci_client::Client>,
    /// What `oci-client` is made with: the registry's own CAs (PEM) and
    /// the transport's timeout.
    certs: Vec<Vec<u8>>,
    timeout: Duration,
    http: reqwest::Client,
    auth: RegistryAuth,
    creds_source: Option<CredentialSource>,
    /// Bearer tokens from `oci-client`'s auth dance, per repository and
    /// operation, for our own manifest reads.
    tokens: Mutex<HashMap<(String, bool), Option<String>>>,
    /// Manifests and indexes fetched in this process, digest-checked, by
    /// repository and digest: a document fetched by tag and then by its
    /// digest (resolve, then pull) is one request.
    documents: Mutex<HashMap<(String, bpfman_image_spec::digest::Digest), Fetched>>,
    attempts: u32,
    retry_delay: Duration,
    certs_hint: String,
    /// `/v2/` answers 200 without credentials: no auth at all.
    open: bool,
    locations: Option<std::sync::Arc<locations::BlobLocations>>,
    pub stats: Stats,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.registry)
            .field("scheme", &self.scheme)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// True for `localhost` and loopback IP addresses.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "index.docker.io"
    } else {
        registry
    }
}

fn op_name(push: bool) -> &'static str {
    if push { "push" } else { "pull" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "example.com", "localhost.example.com", "::2"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
