//! The registry transport: one [`Registry`] per registry host, built on
//! `oci-client` (rustls) for authentication, blob upload (chunked) and
//! download, and on a bounded manifest reader of our own, because a manifest
//! must be refused as soon as it passes [`MAX_DOCUMENT_SIZE`], not after it
//! has been read into memory whole.
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
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::Descriptor;
use bpfman_image_spec::validate::MAX_DOCUMENT_SIZE;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};

use crate::auth::{AuthError, AuthFiles, CredentialSource, Credentials};
use crate::reference::{DOCKER_HUB, RegistryRef};

/// Where `certs.d` directories are looked for, in order (docker's layout:
/// `<dir>/<host:port>/*.crt` are extra CAs).
pub const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// Blob uploads are sent in chunks of this size (one PATCH each).
pub const UPLOAD_CHUNK: usize = 4 << 20;

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
        }
    }
}

/// Why a registry operation failed. Each says on what, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error(
        "TLS with {registry} failed: {reason}. If the registry uses a private CA, pass --ca-file CA.pem or put the CA in {certs_hint}/ca.crt; if it speaks plain HTTP, list it with --insecure-registry {registry}"
    )]
    Tls {
        registry: String,
        reason: String,
        certs_hint: String,
    },
    #[error("{registry} refused access to {repository} for {operation} (HTTP 401){detail}")]
    Unauthorized {
        registry: String,
        repository: String,
        operation: &'static str,
        detail: String,
    },
    #[error("{registry} rejected the user name or password (HTTP 401); nothing was stored")]
    LoginRejected { registry: String },
    #[error(
        "{registry} denied {operation} of {repository} (HTTP 403): the credentials lack permission"
    )]
    Denied {
        registry: String,
        repository: String,
        operation: &'static str,
    },
    #[error("{what} not found in {repository} on {registry}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("{registry} answered HTTP {status} for {what}{message}")]
    Server {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "timed out waiting for {registry} ({what}); the registry stalled or the network is slow: retry, or raise --timeout"
    )]
    Timeout { registry: String, what: String },
    #[error("the connection to {registry} broke while reading {what}: {reason}")]
    Interrupted {
        registry: String,
        what: String,
        reason: String,
    },
    #[error(
        "{what} from {registry} does not match its digest: expected {expected}, received bytes hash to {actual}; the registry (or something between us) served wrong content"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{what} from {registry} is {received}, but its descriptor says {expected} bytes; refusing it"
    )]
    SizeMismatch {
        registry: String,
        what: String,
        expected: u64,
        received: String,
    },
    #[error("{what} from {registry} is over the {limit}-byte limit ({size}); refusing it")]
    TooLarge {
        registry: String,
        what: String,
        size: String,
        limit: u64,
    },
    #[error(
        "{registry} sent {what} with media type '{media_type}', which is neither an image manifest nor an index"
    )]
    NotAManifest {
        registry: String,
        what: String,
        media_type: String,
    },
    #[error("{registry}: {what} failed: {message}")]
    Protocol {
        registry: String,
        what: String,
        message: String,
    },
    #[error("gave up on {what} after {attempts} attempts")]
    RetriesExhausted {
        what: String,
        attempts: u32,
        #[source]
        last: Box<RegistryError>,
    },
    #[error("cannot read CA certificate '{path}'")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' holds no PEM certificate")]
    BadCaFile { path: PathBuf },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl RegistryError {
    /// Worth another attempt: the same request may well succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Interrupted { .. } => true,
            Self::Server { status, .. } => *status >= 500 || *status == 429,
            _ => false,
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
    client: oci_client::Client,
    http: reqwest::Client,
    auth: RegistryAuth,
    creds_source: Option<CredentialSource>,
    /// Bearer tokens from `oci-client`'s auth dance, per repository and
    /// operation, for our own manifest reads.
    tokens: Mutex<HashMap<(String, bool), Option<String>>>,
    attempts: u32,
    retry_delay: Duration,
    certs_hint: String,
    /// `/v2/` answers 200 without credentials: no auth at all.
    open: bool,
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

/// Installs rustls's ring provider once per process (we build reqwest
/// without aws-lc-rs).
pub fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

impl Registry {
    /// Connects to `r`'s registry: finds credentials and CAs, and chooses
    /// HTTPS or (loopback and listed registries only) HTTP.
    pub async fn connect(opts: &TransportOptions, r: &RegistryRef) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let registry = r.registry.clone();
        let certs = load_certs(opts, &registry)?;
        let (auth, creds_source) = match &opts.creds {
            Some(c) => (
                RegistryAuth::Basic(c.username.clone(), c.password().into()),
                Some(CredentialSource::CommandLine),
            ),
            None => match opts.auth_files.lookup(r)? {
                Some((c, src)) => (
                    RegistryAuth::Basic(c.username.clone(), c.password().into()),
                    Some(src),
                ),
                None => (RegistryAuth::Anonymous, None),
            },
        };
        let host = r.host().to_string();
        let listed = opts.insecure.iter().any(|i| i == &registry || i == &host);
        let certs_hint = format!(
            "{}/{registry}",
            opts.certs_dirs
                .first()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| DEFAULT_CERTS_DIRS[0].into())
        );
        let http = build_http(opts, &certs).map_err(|e| RegistryError::Protocol {
            registry: registry.clone(),
            what: "setting up the HTTP client".into(),
            message: e.to_string(),
        })?;
        let mut this = Self {
            registry: registry.clone(),
            scheme: "https",
            client: oci_client::Client::new(client_config(opts, &certs, false, &registry)),
            http,
            auth,
            creds_source,
            tokens: Mutex::new(HashMap::new()),
            attempts: opts.attempts.max(1),
            retry_delay: opts.retry_delay,
            certs_hint,
            open: false,
            stats: Stats::default(),
        };
        if listed {
            this.use_http(opts, &certs);
        } else if is_loopback(&host) && this.speaks_plain_http().await? {
            tracing::info!(registry = %registry, "loopback registry speaks plain HTTP; using it");
            this.use_http(opts, &certs);
        }
        if this.auth == RegistryAuth::Anonymous {
            // An open registry needs no auth dance. Skipping it matters:
            // oci-client, holding no token, would otherwise ask `/v2/` for
            // a challenge again before every request.
            let url = format!("{}://{}/v2/", this.scheme, api_host(&registry));
            this.open = this
                .http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
        }
        Ok(this)
    }

    fn use_http(&mut self, opts: &TransportOptions, certs: &[Vec<u8>]) {
        self.scheme = "http";
        self.client = oci_client::Client::new(client_config(opts, certs, true, &self.registry));
    }

    /// For loopback registries: HTTPS if it answers, else HTTP if *that*
    /// answers like a registry (200 or 401 on `/v2/`). A TLS error from a
    /// server that does not answer plain HTTP like a registry is reported.
    async fn speaks_plain_http(&self) -> Result<bool, RegistryError> {
        let base = "/v2/";
        let https = self
            .http
            .get(format!("https://{}{base}", api_host(&self.registry)))
            .send()
            .await;
        let tls_error = match https {
            Ok(_) => return Ok(false),
            Err(e) if e.is_timeout() => return Err(self.reqwest_error("/v2/", e)),
            Err(e) => e,
        };
        let http = self
            .http
            .get(format!("http://{}{base}", api_host(&self.registry)))
            .send()
            .await;
        match http {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => Ok(true),
            _ => Err(self.reqwest_error("/v2/", tls_error)),
        }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// `host[:port]`.
    pub fn name(&self) -> &str {
        &self.registry
    }

    /// Where the credentials came from, if any were used.
    pub fn credential_source(&self) -> Option<&CredentialSource> {
        self.creds_source.as_ref()
    }

    fn oci_ref(&self, r: &RegistryRef, reference: Option<&str>) -> Reference {
        let reference = reference
            .map(str::to_string)
            .unwrap_or_else(|| r.reference());
        if let Ok(d) = reference.parse::<Digest>() {
            Reference::with_digest(self.registry.clone(), r.repository.clone(), d.to_string())
        } else {
            Reference::with_tag(self.registry.clone(), r.repository.clone(), reference)
        }
    }

    /// Runs `f` up to `attempts` times while it fails transiently.
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    let delay = self.retry_delay * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(
                        registry = %self.registry, %what, attempt, error = %e,
                        "transient failure; retrying in {delay:?}"
                    );
                    Stats::add(&self.stats.retries, 1);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) if e.is_transient() && attempt > 1 => {
                    return Err(RegistryError::RetriesExhausted {
                        what: what.into(),
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Authenticates for `r` up front (pull, and push if asked), so that
    /// concurrent transfers that follow share one token instead of racing
    /// to fetch their own.
    pub async fn prepare(&self, r: &RegistryRef, push: bool) -> Result<(), RegistryError> {
        self.authorize(r, false).await?;
        if push {
            self.authorize(r, true).await?;
        }
        Ok(())
    }

    /// Authenticates for `r` (once per repository and operation).
    async fn authorize(
        &self,
        r: &RegistryRef,
        push: bool,
    ) -> Result<Option<String>, RegistryError> {
        if self.open {
            return Ok(None);
        }
        let key = (r.repository.clone(), push);
        if let Some(token) = self.lock_tokens().get(&key) {
            return Ok(token.clone());
        }
        let oci_ref = self.oci_ref(r, None);
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let token = self
            .retry("authentication", || async {
                self.client
                    .auth(&oci_ref, &self.auth, op)
                    .await
                    .map_err(|e| self.oci_error(r, "authentication", push, e))
            })
            .await?;
        self.lock_tokens().insert(key, token.clone());
        Ok(token)
    }

    /// Adds the bearer token from the auth dance, or else the basic
    /// credentials, to a request of our own.
    fn with_auth(
        &self,
        req: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (token, &self.auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            _ => req,
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(String, bool), Option<String>>> {
        // A poisoned map of tokens is still a map of tokens.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches the manifest or index `reference` (a tag or digest; `None`
    /// for `r`'s own) with the body bounded by [`MAX_DOCUMENT_SIZE`]. The
    /// digest is computed here; if `r` is pinned, it must match.
    pub async fn get_manifest(
        &self,
        r: &RegistryRef,
        reference: Option<&str>,
    ) -> Result<Fetched, RegistryError> {
        let reference = reference
            .map(str::to_string)
            .unwrap_or_else(|| r.reference());
        let what = format!("manifest {}:{reference}", r.repository);
        let token = self.authorize(r, false).await?;
        let path = format!("manifests/{reference}");
        let fetched = self
            .retry(&what, || {
                self.get_document_once(r, &path, token.as_deref(), &what)
            })
            .await?;
        let expected = reference
            .parse::<Digest>()
            .ok()
            .or_else(|| r.digest.clone());
        if let Some(expected) = expected
            && expected != fetched.descriptor.digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what,
                expected,
                actual: fetched.descriptor.digest,
            });
        }
        Ok(fetched)
    }

    /// Like [`Self::get_manifest`], but a tag or repository that does not
    /// exist is `None` rather than an error.
    pub async fn find_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
    ) -> Result<Option<Fetched>, RegistryError> {
        match self.get_manifest(r, Some(reference)).await {
            Ok(f) => Ok(Some(f)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The referrers of `digest` of type `artifact_type`, from the OCI 1.1
    /// referrers API. `None` if the registry does not have the API (it
    /// answers 404); the caller then uses the `sha256-<hex>` fallback tag.
    pub async fn get_referrers(
        &self,
        r: &RegistryRef,
        digest: &Digest,
        artifact_type: &str,
    ) -> Result<Option<Fetched>, RegistryError> {
        let what = format!("referrers of {}:{digest}", r.repository);
        let token = self.authorize(r, false).await?;
        // '+' in a query string means a space: encode it.
        let filter = artifact_type.replace('+', "%2B");
        let path = format!("referrers/{digest}?artifactType={filter}");
        match self
            .retry(&what, || {
                self.get_document_once(r, &path, token.as_deref(), &what)
            })
            .await
        {
            Ok(f) if media::is_index(&f.descriptor.media_type) => Ok(Some(f)),
            Ok(f) => Err(RegistryError::NotAManifest {
                registry: self.registry.clone(),
                what,
                media_type: f.descriptor.media_type,
            }),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GETs a manifest or index document under `/v2/<repo>/<path>`.
    async fn get_document_once(
        &self,
        r: &RegistryRef,
        path: &str,
        token: Option<&str>,
        what: &str,
    ) -> Result<Fetched, RegistryError> {
        let url = format!(
            "{}://{}/v2/{}/{path}",
            self.scheme,
            api_host(&self.registry),
            r.repository
        );
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
        req = self.with_auth(req, token);
        let mut resp = req.send().await.map_err(|e| self.reqwest_error(what, e))?;
        let status = resp.status();
        if !status.is_success() {
            let challenge = resp
                .headers()
                .contains_key(reqwest::header::WWW_AUTHENTICATE);
            let body = read_bounded(&mut resp, 4096).await.unwrap_or_default();
            return Err(self.status_error(r, what, false, status.as_u16(), challenge, &body));
        }
        let limit = MAX_DOCUMENT_SIZE as u64;
        if let Some(len) = resp.content_length()
            && len > limit
        {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: what.into(),
                size: format!("{len} bytes"),
                limit,
            });
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string());
        let bytes = match read_bounded(&mut resp, limit).await {
            Ok(b) => b,
            Err(ReadError::TooLong) => {
                return Err(RegistryError::TooLarge {
                    registry: self.registry.clone(),
                    what: what.into(),
                    size: format!("more than {limit} bytes"),
                    limit,
                });
            }
            Err(ReadError::Http(e)) => return Err(self.reqwest_error(what, e)),
        };
        let digest = Digest::of(&bytes);
        if let Some(h) = header_digest
            && h != digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what: what.into(),
                expected: h,
                actual: digest,
            });
        }
        // The body's own mediaType wins over a generic Content-Type.
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let declared = serde_json::from_slice::<Head>(&bytes)
            .ok()
            .and_then(|h| h.media_type);
        let media_type = declared.or(content_type).unwrap_or_default();
        if !media::is_manifest(&media_type) && !media::is_index(&media_type) {
            return Err(RegistryError::NotAManifest {
                registry: self.registry.clone(),
                what: what.into(),
                media_type,
            });
        }
        Ok(Fetched {
            descriptor: Descriptor {
                media_type,
                digest,
                size: bytes.len() as u64,
                platform: None,
                artifact_type: None,
                annotations: Default::default(),
            },
            bytes,
        })
    }

    /// Fetches a blob, checking size while streaming and digest at the end.
    pub async fn get_blob(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        limit: u64,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {}", desc.digest);
        if desc.size > limit {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what,
                size: format!("{} bytes", desc.size),
                limit,
            });
        }
        self.authorize(r, false).await?;
        let bytes = self
            .retry(&what, || self.get_blob_once(r, desc, &what, progress))
            .await?;
        Stats::add(&self.stats.blobs_downloaded, 1);
        Stats::add(&self.stats.bytes_downloaded, bytes.len() as u64);
        progress.finish(desc, false);
        Ok(bytes)
    }

    async fn get_blob_once(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>, RegistryError> {
        progress.start(desc, "pull");
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let oci_ref = self.oci_ref(r, None);
        let stream = self
            .client
            .pull_blob_stream(&oci_ref, &oci_desc)
            .await
            .map_err(|e| self.oci_error(r, what, false, e))?;
        let size_error = |received: String| RegistryError::SizeMismatch {
            registry: self.registry.clone(),
            what: what.into(),
            expected: desc.size,
            received,
        };
        if let Some(len) = stream.content_length
            && len != desc.size
        {
            return Err(size_error(format!("{len} bytes (by its Content-Length)")));
        }
        let mut stream = stream.stream;
        let capacity = usize::try_from(desc.size).unwrap_or(0);
        let mut buf = Vec::with_capacity(capacity);
        let mut hasher = Sha256::new();
        loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => {
                    if buf.len() as u64 + chunk.len() as u64 > desc.size {
                        return Err(size_error(format!("more than {} bytes", desc.size)));
                    }
                    hasher.update(&chunk);
                    buf.extend_from_slice(&chunk);
                    progress.advance(desc, chunk.len() as u64);
                }
                Ok(None) => break,
                Err(e) => {
                    // oci-client's own digest check ends the stream with an
                    // error; report what the bytes show instead.
                    let digest_error = std::error::Error::source(&e)
                        .is_some_and(|s| s.is::<oci_client::errors::DigestError>())
                        || e.get_ref()
                            .is_some_and(|s| s.is::<oci_client::errors::DigestError>());
                    if !digest_error {
                        return Err(self.io_error(what, e));
                    }
                    break;
                }
            }
        }
        if (buf.len() as u64) < desc.size {
            return Err(size_error(format!("{} bytes", buf.len())));
        }
        let actual = Digest::from_sha256(hasher.finalize().into());
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what: what.into(),
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    /// True if the repository already has the blob.
    pub async fn has_blob(&self, r: &RegistryRef, digest: &Digest) -> Result<bool, RegistryError> {
        self.authorize(r, false).await?;
        let oci_ref = self.oci_ref(r, None);
        let what = format!("blob {digest}");
        self.retry(&what, || async {
            self.client
                .blob_exists(&oci_ref, &digest.to_string())
                .await
                .map_err(|e| self.oci_error(r, &what, false, e))
        })
        .await
    }

    /// Uploads a blob unless the repository has it; returns true if it was
    /// uploaded. Large blobs go in [`UPLOAD_CHUNK`]-sized chunks.
    pub async fn put_blob(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        bytes: &[u8],
        progress: Arc<dyn Progress>,
    ) -> Result<bool, RegistryError> {
        if self.has_blob(r, &desc.digest).await? {
            Stats::add(&self.stats.blobs_skipped, 1);
            progress.finish(desc, true);
            return Ok(false);
        }
        self.authorize(r, true).await?;
        let oci_ref = self.oci_ref(r, None);
        let what = format!("upload of blob {}", desc.digest);
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(&what, || {
            progress.start(desc, "push");
            let chunks: Vec<_> = data
                .chunks(UPLOAD_CHUNK)
                .map(|c| data.slice_ref(c))
                .collect();
            let (progress, desc_owned) = (progress.clone(), desc.clone());
            let stream = futures_util::stream::iter(chunks).map(move |c| {
                progress.advance(&desc_owned, c.len() as u64);
                Ok(c)
            });
            let oci_ref = &oci_ref;
            let what = &what;
            async move {
                self.client
                    .push_blob_stream(oci_ref, stream, &desc.digest.to_string(), Some(desc.size))
                    .await
                    .map_err(|e| self.oci_error(r, what, true, e))
            }
        })
        .await?;
        Stats::add(&self.stats.blobs_uploaded, 1);
        Stats::add(&self.stats.bytes_uploaded, desc.size);
        progress.finish(desc, false);
        Ok(true)
    }

    /// Puts a manifest or index under `reference` (a tag, or its digest).
    pub async fn put_manifest(
        &self,
        r: &RegistryRef,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        self.authorize(r, true).await?;
        let oci_ref = self.oci_ref(r, Some(reference));
        let what = format!("manifest {}:{reference}", r.repository);
        let content_type =
            reqwest::header::HeaderValue::from_str(&desc.media_type).map_err(|_| {
                RegistryError::NotAManifest {
                    registry: self.registry.clone(),
                    what: what.clone(),
                    media_type: desc.media_type.clone(),
                }
            })?;
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.retry(&what, || async {
            self.client
                .push_manifest_raw(&oci_ref, data.clone(), content_type.clone())
                .await
                .map_err(|e| self.oci_error(r, &what, true, e))
        })
        .await?;
        Stats::add(&self.stats.manifests_pushed, 1);
        Ok(())
    }

    /// Checks that the credentials work: `GET /v2/` must answer 200.
    pub async fn ping(&self, r: &RegistryRef) -> Result<(), RegistryError> {
        let token = self.authorize(r, false).await?;
        let url = format!("{}://{}/v2/", self.scheme, api_host(&self.registry));
        self.retry("login", || async {
            let mut req = self.http.get(&url);
            req = self.with_auth(req, token.as_deref());
            let mut resp = req
                .send()
                .await
                .map_err(|e| self.reqwest_error("login", e))?;
            let status = resp.status().as_u16();
            if status == 200 {
                return Ok(());
            }
            let challenge = resp
                .headers()
                .contains_key(reqwest::header::WWW_AUTHENTICATE);
            if status == 401 && challenge {
                return Err(RegistryError::LoginRejected {
                    registry: self.registry.clone(),
                });
            }
            let body = read_bounded(&mut resp, 4096).await.unwrap_or_default();
            Err(self.status_error(r, "login", false, status, challenge, &body))
        })
        .await
    }

    fn status_error(
        &self,
        r: &RegistryRef,
        what: &str,
        push: bool,
        status: u16,
        challenge: bool,
        body: &[u8],
    ) -> RegistryError {
        match status {
            401 => self.unauthorized(r, push, challenge),
            403 => RegistryError::Denied {
                registry: self.registry.clone(),
                repository: r.repository.clone(),
                operation: op_name(push),
            },
            404 => RegistryError::NotFound {
                registry: self.registry.clone(),
                repository: r.repository.clone(),
                what: what.into(),
            },
            _ => RegistryError::Server {
                registry: self.registry.clone(),
                what: what.into(),
                status,
                message: excerpt(body),
            },
        }
    }

    fn unauthorized(&self, r: &RegistryRef, push: bool, challenge: bool) -> RegistryError {
        let detail = match (&self.creds_source, challenge) {
            (_, false) => " without saying how to authenticate (no WWW-Authenticate challenge); the registry is misconfigured or a proxy stripped the header".to_string(),
            (Some(src), true) => format!(
                ": the credentials from {src} were rejected; log in again with bpfman-image login {}",
                self.registry
            ),
            (None, true) => format!(
                ": no credentials for it were found; run bpfman-image login {} or pass --creds USER:PASSWORD",
                self.registry
            ),
        };
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: r.repository.clone(),
            operation: op_name(push),
            detail,
        }
    }

    fn oci_error(
        &self,
        r: &RegistryRef,
        what: &str,
        push: bool,
        e: OciDistributionError,
    ) -> RegistryError {
        let registry = self.registry.clone();
        match e {
            OciDistributionError::RequestError(e) => match e.status() {
                // From error_for_status(): the body is gone, the status says enough.
                Some(status) => self.status_error(r, what, push, status.as_u16(), true, b""),
                None => self.reqwest_error(what, e),
            },
            OciDistributionError::IoError(e) => self.io_error(what, e),
            OciDistributionError::UnauthorizedError { .. } => self.unauthorized(r, push, true),
            OciDistributionError::AuthenticationFailure(message) => RegistryError::Unauthorized {
                registry,
                repository: r.repository.clone(),
                operation: op_name(push),
                detail: format!(
                    ": the token service refused the credentials ({})",
                    excerpt(message.as_bytes()).trim_start_matches(": ")
                ),
            },
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_error(r, what, push, code, true, message.as_bytes())
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let status = if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::BlobUnknown
                            | OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    404
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized))
                {
                    401
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                    403
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    429
                } else {
                    400
                };
                self.status_error(r, what, push, status, true, envelope.to_string().as_bytes())
            }
            OciDistributionError::DigestError(e) => RegistryError::Protocol {
                registry,
                what: what.into(),
                message: e.to_string(),
            },
            other => RegistryError::Protocol {
                registry,
                what: what.into(),
                message: other.to_string(),
            },
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> RegistryError {
        if let Some(inner) = e.get_ref().and_then(|s| s.downcast_ref::<reqwest::Error>()) {
            return self.classify_reqwest(what, inner);
        }
        if e.kind() == std::io::ErrorKind::TimedOut {
            return RegistryError::Timeout {
                registry: self.registry.clone(),
                what: what.into(),
            };
        }
        RegistryError::Interrupted {
            registry: self.registry.clone(),
            what: what.into(),
            reason: e.to_string(),
        }
    }

    fn reqwest_error(&self, what: &str, e: reqwest::Error) -> RegistryError {
        self.classify_reqwest(what, &e)
    }

    fn classify_reqwest(&self, what: &str, e: &reqwest::Error) -> RegistryError {
        let registry = self.registry.clone();
        let chain = error_chain(e);
        if e.is_timeout() || chain.contains("timed out") || chain.contains("TimedOut") {
            return RegistryError::Timeout {
                registry,
                what: what.into(),
            };
        }
        let tls = chain.contains("certificate")
            || chain.contains("InvalidCertificate")
            || chain.contains("tls")
            || chain.contains("TLS")
            || chain.contains("corrupt message")
            || chain.contains("InvalidContentType");
        if e.is_connect() && tls {
            return RegistryError::Tls {
                registry,
                reason: chain,
                certs_hint: self.certs_hint.clone(),
            };
        }
        if e.is_connect() {
            return RegistryError::Unreachable {
                registry,
                reason: chain,
            };
        }
        if e.is_body() || e.is_decode() || e.is_request() {
            return RegistryError::Interrupted {
                registry,
                what: what.into(),
                reason: chain,
            };
        }
        RegistryError::Protocol {
            registry,
            what: what.into(),
            message: chain,
        }
    }
}

/// The messages of an error and its sources, joined (deduplicated: reqwest
/// and hyper repeat themselves).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let msg = err.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// At most a line of a server's error body, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .trim()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

enum ReadError {
    TooLong,
    Http(reqwest::Error),
}

async fn read_bounded(resp: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(ReadError::TooLong);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `--ca-file`s plus `<certs.d>/<registry>/*.crt`, as PEM.
fn load_certs(opts: &TransportOptions, registry: &str) -> Result<Vec<Vec<u8>>, RegistryError> {
    let mut files: Vec<PathBuf> = opts.ca_files.clone();
    for root in &opts.certs_dirs {
        let dir = root.join(registry);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        if found.is_empty() {
            continue;
        }
        tracing::debug!(dir = %dir.display(), "trusting CAs from certs.d");
        files.extend(found);
        if dir.read_dir().is_ok_and(|mut it| {
            it.any(|e| {
                e.is_ok_and(|e| {
                    e.path()
                        .extension()
                        .is_some_and(|x| x == "cert" || x == "key")
                })
            })
        }) {
            tracing::warn!(
                dir = %dir.display(),
                "client certificates (.cert/.key) are not supported yet and are ignored"
            );
        }
    }
    files.iter().map(|p| read_pem(p)).collect()
}

fn read_pem(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|source| RegistryError::CaFile {
        path: path.into(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err(RegistryError::BadCaFile { path: path.into() });
    }
    Ok(bytes)
}

fn build_http(
    opts: &TransportOptions,
    certs: &[Vec<u8>],
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(opts.timeout)
        .read_timeout(opts.timeout)
        // Redirects could carry credentials elsewhere; registries need none
        // for manifests.
        .redirect(reqwest::redirect::Policy::none());
    for pem in certs {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
}

const USER_AGENT: &str = concat!("bpfman-image/", env!("CARGO_PKG_VERSION"));

fn client_config(
    opts: &TransportOptions,
    certs: &[Vec<u8>],
    http: bool,
    registry: &str,
) -> oci_client::client::ClientConfig {
    oci_client::client::ClientConfig {
        protocol: if http {
            oci_client::client::ClientProtocol::HttpsExcept(vec![
                registry.to_string(),
                api_host(registry).to_string(),
            ])
        } else {
            oci_client::client::ClientProtocol::Https
        },
        extra_root_certificates: certs
            .iter()
            .map(|pem| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        platform_resolver: None,
        connect_timeout: Some(opts.timeout),
        read_timeout: Some(opts.timeout),
        user_agent: USER_AGENT,
        max_concurrent_upload: 4,
        max_concurrent_download: 4,
        ..Default::default()
    }
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

    #[test]
    fn transient_classes() {
        let server = |status| RegistryError::Server {
            registry: "r".into(),
            what: "w".into(),
            status,
            message: String::new(),
        };
        assert!(server(500).is_transient());
        assert!(server(503).is_transient());
        assert!(server(429).is_transient());
        assert!(!server(400).is_transient());
        assert!(
            !RegistryError::NotFound {
                registry: "r".into(),
                repository: "x".into(),
                what: "w".into()
            }
            .is_transient()
        );
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b""), "");
        assert_eq!(excerpt(b"  boom\nsecond"), ": boom");
        assert_eq!(excerpt(&[b'x'; 500]).len(), 202);
    }
}
