//! Reading from a registry: connecting (HTTPS, or plain HTTP where allowed),
//! retrying transient failures, and bounded, digest-checked manifest and blob
//! downloads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::media;
use bpfman_image_spec::oci::Descriptor;
use bpfman_image_spec::validate::MAX_DOCUMENT_SIZE;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use crate::auth::CredentialSource;
use crate::reference::RegistryRef;

use super::*;

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
            message: e,
        })?;
        let mut this = Self {
            registry: registry.clone(),
            scheme: "https",
            client: std::sync::OnceLock::new(),
            certs,
            timeout: opts.timeout,
            http,
            auth,
            creds_source,
            tokens: Mutex::new(HashMap::new()),
            documents: Mutex::new(HashMap::new()),
            attempts: opts.attempts.max(1),
            retry_delay: opts.retry_delay,
            certs_hint,
            open: false,
            locations: opts.blob_locations.clone(),
            stats: Stats::default(),
        };
        // `/v2/`'s answer on the scheme chosen, when the probe got one.
        let mut v2 = None;
        if listed {
            this.scheme = "http";
        } else if is_loopback(&host) {
            let (plain, status) = this.probe_scheme().await?;
            if plain {
                tracing::info!(registry = %registry, "loopback registry speaks plain HTTP; using it");
                this.scheme = "http";
            }
            v2 = Some(status);
        }
        if this.auth == RegistryAuth::Anonymous {
            // An open registry needs no auth dance. Skipping it matters:
            // oci-client, holding no token, would otherwise ask `/v2/` for
            // a challenge again before every request.
            let status = match v2 {
                Some(s) => Some(s),
                None => {
                    let url = format!("{}/v2/", this.origin());
                    this.http
                        .get(url)
                        .send()
                        .await
                        .ok()
                        .map(|r| r.status().as_u16())
                }
            };
            this.open = status == Some(200);
        }
        Ok(this)
    }

    /// `oci-client`, for the chosen scheme (see the field).
    pub(super) fn oci(&self) -> &oci_client::Client {
        self.client.get_or_init(|| {
            oci_client::Client::new(client_config(
                self.timeout,
                &self.certs,
                self.scheme == "http",
                &self.registry,
            ))
        })
    }

    /// For loopback registries: HTTPS if it answers, else HTTP if *that*
    /// answers like a registry (200 or 401 on `/v2/`). A TLS error from a
    /// server that does not answer plain HTTP like a registry is reported.
    /// Returns whether it is plain HTTP, and `/v2/`'s status there.
    pub(super) async fn probe_scheme(&self) -> Result<(bool, u16), RegistryError> {
        let base = "/v2/";
        let https = self
            .http
            .get(format!("https://{}{base}", api_host(&self.registry)))
            .send()
            .await;
        let tls_error = match https {
            Ok(resp) => return Ok((false, resp.status().as_u16())),
            Err(e) if e.is_timeout() => return Err(self.reqwest_error("/v2/", e)),
            Err(e) => e,
        };
        let http = self
            .http
            .get(format!("http://{}{base}", api_host(&self.registry)))
            .send()
            .await;
        match http {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => {
                Ok((true, resp.status().as_u16()))
            }
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

    pub(super) fn oci_ref(&self, r: &RegistryRef, reference: Option<&str>) -> Reference {
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
    pub(super) async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, RegistryError>
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

    /// Fetches the manifest or index `reference` (a tag or digest; `None`
    /// for `r`'s own, its digest if pinned) with the body bounded by
    /// [`MAX_DOCUMENT_SIZE`]. The digest is computed here; a document asked
    /// for by digest must have it, and one already fetched in this process
    /// is not asked for again. A tag is always asked for: it may move.
    pub async fn get_manifest(
        &self,
        r: &RegistryRef,
        reference: Option<&str>,
    ) -> Result<Fetched, RegistryError> {
        let reference = reference
            .map(str::to_string)
            .unwrap_or_else(|| r.reference());
        let what = format!("manifest {}:{reference}", r.repository);
        let expected = reference.parse::<Digest>().ok();
        if let Some(d) = &expected
            && let Some(known) = self
                .lock_documents()
                .get(&(r.repository.clone(), d.clone()))
        {
            return Ok(known.clone());
        }
        let token = self.authorize(r, false).await?;
        let path = format!("manifests/{reference}");
        let fetched = self
            .retry(&what, || {
                self.get_document_once(r, &path, token.as_deref(), &what)
            })
            .await?;
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
        self.lock_documents().insert(
            (r.repository.clone(), fetched.descriptor.digest.clone()),
            fetched.clone(),
        );
        Ok(fetched)
    }

    fn lock_documents(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Digest), Fetched>> {
        // A poisoned map of checked documents is still one.
        self.documents.lock().unwrap_or_else(|p| p.into_inner())
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

    /// `<scheme>://<host>` of this registry's API, the scheme as chosen.
    pub(super) fn origin(&self) -> String {
        format!("{}://{}", self.scheme, api_host(&self.registry))
    }

    /// Where the distribution API keeps `path` of `r`'s repository:
    /// `<scheme>://<host>/v2/<repository>/<path>`.
    pub(super) fn repo_url(&self, r: &RegistryRef, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.origin(), r.repository)
    }

    /// GETs a manifest or index document under `/v2/<repo>/<path>`.
    pub(super) async fn get_document_once(
        &self,
        r: &RegistryRef,
        path: &str,
        token: Option<&str>,
        what: &str,
    ) -> Result<Fetched, RegistryError> {
        let url = self.repo_url(r, path);
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
        req = self.with_auth(req, token);
        let mut resp = req.send().await.map_err(|e| self.reqwest_error(what, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.response_error(r, what, false, resp).await);
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

    /// The error for a response with an unexpected status: its challenge
    /// (if any) and the start of its body say what went wrong.
    pub(super) async fn response_error(
        &self,
        r: &RegistryRef,
        what: &str,
        push: bool,
        mut resp: reqwest::Response,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .contains_key(reqwest::header::WWW_AUTHENTICATE);
        let body = read_bounded(&mut resp, 4096).await.unwrap_or_default();
        self.status_error(r, what, push, status, challenge, &body)
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
        let token = self.authorize(r, false).await?;
        let bytes = self
            .retry(&what, || {
                self.get_blob_once(r, desc, token.as_deref(), &what, progress)
            })
            .await?;
        Stats::add(&self.stats.blobs_downloaded, 1);
        Stats::add(&self.stats.bytes_downloaded, bytes.len() as u64);
        self.seen(r, &desc.digest);
        progress.finish(desc, false);
        Ok(bytes)
    }

    /// GETs a blob with our own client, following redirects (registries
    /// send blob downloads to storage or a CDN): credentials go only to
    /// the registry, never where a redirect points.
    pub(super) async fn get_blob_once(
        &self,
        r: &RegistryRef,
        desc: &Descriptor,
        token: Option<&str>,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>, RegistryError> {
        const MAX_REDIRECTS: usize = 5;
        progress.start(desc, "pull");
        let mut url = self.repo_url(r, &format!("blobs/{}", desc.digest));
        let mut hops = 0;
        let mut resp = loop {
            let mut req = self.http.get(&url);
            if hops == 0 {
                req = self.with_auth(req, token);
            }
            let resp = req.send().await.map_err(|e| self.reqwest_error(what, e))?;
            if !resp.status().is_redirection() {
                break resp;
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resp.url().join(l).ok());
            let Some(next) = location.filter(|_| hops < MAX_REDIRECTS) else {
                return Err(RegistryError::Protocol {
                    registry: self.registry.clone(),
                    what: what.into(),
                    message: format!(
                        "{} answered {} without a usable Location (or after {MAX_REDIRECTS} redirects)",
                        resp.url(),
                        resp.status()
                    ),
                });
            };
            url = next.to_string();
            hops += 1;
        };
        if !resp.status().is_success() {
            return Err(self.response_error(r, what, false, resp).await);
        }
        let size_error = |received: String| RegistryError::SizeMismatch {
            registry: self.registry.clone(),
            what: what.into(),
            expected: desc.size,
            received,
        };
        if let Some(len) = resp.content_length()
            && len != desc.size
        {
            return Err(size_error(format!("{len} bytes (by its Content-Length)")));
        }
        let capacity = usize::try_from(desc.size).unwrap_or(0);
        let mut buf = Vec::with_capacity(capacity);
        let mut hasher = Sha256::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() as u64 + chunk.len() as u64 > desc.size {
                        return Err(size_error(format!("more than {} bytes", desc.size)));
                    }
                    hasher.update(&chunk);
                    buf.extend_from_slice(&chunk);
                    progress.advance(desc, chunk.len() as u64);
                }
                Ok(None) => break,
                Err(e) => return Err(self.reqwest_error(what, e)),
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

    /// Checks that the credentials work: `GET /v2/` must answer 200.
    pub async fn ping(&self, r: &RegistryRef) -> Result<(), RegistryError> {
        let token = self.authorize(r, false).await?;
        let url = format!("{}/v2/", self.origin());
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
}

pub(super) enum ReadError {
    TooLong,
    Http(reqwest::Error),
}

pub(super) async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(ReadError::TooLong);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
