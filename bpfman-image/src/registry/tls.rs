//! TLS: the CA certificates a registry is trusted with (--ca-file, certs.d),
//! and the HTTP clients built on them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::*;

/// Where `certs.d` directories are looked for, in order (docker's layout:
/// `<dir>/<host:port>/*.crt` are extra CAs).
pub const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// Installs rustls's ring provider once per process (we build reqwest
/// without aws-lc-rs).
pub fn install_crypto_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `--ca-file`s plus `<certs.d>/<registry>/*.crt`, as PEM.
pub(super) fn load_certs(
    opts: &TransportOptions,
    registry: &str,
) -> Result<Vec<Vec<u8>>, RegistryError> {
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

pub(super) fn read_pem(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|source| RegistryError::CaFile {
        path: path.into(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err(RegistryError::BadCaFile { path: path.into() });
    }
    Ok(bytes)
}

/// The platform's trusted CAs, read once per process, from where OpenSSL
/// looks (as rustls-native-certs does): the file `SSL_CERT_FILE` names and
/// the directories in `SSL_CERT_DIR` (`:`-separated), each when set; else
/// the distribution's CA bundle (which `update-ca-certificates` and
/// `update-ca-trust` maintain), or its certificate directories where there
/// is no bundle. Every HTTP client trusts exactly these plus the registry's
/// own CAs: left to themselves, reqwest and oci-client would each read and
/// decode all of it again, with a constant-time decoder meant for keys
/// (three times per registry connection, most of a cold pull's time).
fn platform_roots() -> &'static [Vec<u8>] {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let existing = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.exists());
        let env_file = existing(std::env::var_os("SSL_CERT_FILE"));
        let env_dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|v| std::env::split_paths(&v).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        let (file, dirs) = if env_file.is_some() || !env_dirs.is_empty() {
            (env_file, env_dirs)
        } else {
            let probe = openssl_probe::probe();
            match probe.cert_file {
                Some(f) => (Some(f), Vec::new()),
                None => (None, probe.cert_dir),
            }
        };
        let mut seen = std::collections::HashSet::new();
        let mut read = std::collections::HashSet::new();
        let mut roots = Vec::new();
        let mut add = |path: &Path| {
            // A directory's hash links and the bundle beside them name files
            // already read: each file once.
            if !read.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.into())) {
                return;
            }
            match std::fs::read(path) {
                Ok(pem) => {
                    for der in pem_certificates(&pem) {
                        if seen.insert(der.clone()) {
                            roots.push(der);
                        }
                    }
                }
                Err(e) => tracing::warn!("reading CA certificates from {}: {e}", path.display()),
            }
        };
        if let Some(f) = &file {
            add(f);
        }
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            for p in paths {
                add(&p);
            }
        }
        if roots.is_empty() {
            tracing::warn!(
                "no CA certificates found (SSL_CERT_FILE, SSL_CERT_DIR, the distribution's bundle): HTTPS registries need --ca-file or certs.d"
            );
        }
        roots
    })
}

/// The DER of each `CERTIFICATE` block of a PEM file. CA certificates are
/// public: this decodes them with an ordinary base64 decoder, not the
/// constant-time one rustls keeps for keys (which takes tens of
/// milliseconds over a distribution's bundle). A block that does not
/// decode is skipped, as rustls-native-certs does.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    let mut b64 = Vec::new();
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else { break };
        b64.clear();
        b64.extend(body[..end].bytes().filter(|c| !c.is_ascii_whitespace()));
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&b64) {
            out.push(der);
        }
        rest = &body[end + END.len()..];
    }
    out
}

/// Our HTTP client. It trusts the platform's CAs plus `certs` (the
/// registry's own, PEM, checked here), and reads the platform's only when
/// a server first presents a certificate: a plain-HTTP registry, or the
/// HTTPS probe of a loopback one, never needs them, and reading a
/// distribution's store is most of a small pull's time.
pub(super) fn build_http(
    opts: &TransportOptions,
    certs: &[Vec<u8>],
) -> Result<reqwest::Client, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = LazyRoots::new(provider.clone(), certs)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest offers for HTTP/1 (built without HTTP/2).
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(opts.timeout)
        .read_timeout(opts.timeout)
        // Redirects could carry credentials elsewhere; registries need none
        // for manifests.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// rustls's WebPKI verification against the platform's CAs and the
/// registry's, with the platform's read on first use (see [`build_http`]).
/// The handshake signatures need no CAs and are checked at once.
#[derive(Debug)]
struct LazyRoots {
    provider: Arc<rustls::crypto::CryptoProvider>,
    extra: Vec<Vec<u8>>,
    webpki: OnceLock<Result<Arc<rustls::client::WebPkiServerVerifier>, String>>,
}

impl LazyRoots {
    fn new(
        provider: Arc<rustls::crypto::CryptoProvider>,
        certs: &[Vec<u8>],
    ) -> Result<Self, String> {
        let extra: Vec<Vec<u8>> = certs.iter().flat_map(|pem| pem_certificates(pem)).collect();
        // The registry's CAs are the operator's: a bad one is an error now,
        // not at the first HTTPS request.
        let mut store = rustls::RootCertStore::empty();
        for der in &extra {
            store
                .add(der.as_slice().into())
                .map_err(|e| format!("a CA certificate given for the registry is unusable: {e}"))?;
        }
        Ok(Self {
            provider,
            extra,
            webpki: OnceLock::new(),
        })
    }

    fn webpki(&self) -> Result<&rustls::client::WebPkiServerVerifier, rustls::Error> {
        let built = self.webpki.get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            // As rustls-native-certs' users do: a platform CA that is not a
            // usable trust anchor is left out, not fatal.
            store.add_parsable_certificates(
                platform_roots()
                    .iter()
                    .chain(&self.extra)
                    .map(|der| der.as_slice().into()),
            );
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(store),
                self.provider.clone(),
            )
            .build()
            .map_err(|e| {
                format!("no usable CA certificates ({e}): give the registry's CA with --ca-file or certs.d")
            })
        });
        built
            .as_deref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl rustls::client::danger::ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.webpki()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub(super) const USER_AGENT: &str = concat!("bpfman-image/", env!("CARGO_PKG_VERSION"));

pub(super) fn client_config(
    timeout: std::time::Duration,
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
        // The same roots as our own client's (see `platform_roots`).
        tls_certs_only: platform_roots()
            .iter()
            .map(|der| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Der,
                data: der.clone(),
            })
            .chain(certs.iter().map(|pem| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            }))
            .collect(),
        platform_resolver: None,
        connect_timeout: Some(timeout),
        read_timeout: Some(timeout),
        user_agent: USER_AGENT,
        max_concurrent_upload: 4,
        max_concurrent_download: 4,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    /// What rustls's own PEM reader finds in `pem`.
    fn by_rustls(pem: &[u8]) -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect()
    }

    #[test]
    fn a_registry_ca_that_is_no_certificate_is_refused_before_any_request() {
        install_crypto_provider();
        let pem =
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let err = build_http(&TransportOptions::default(), &[pem.to_vec()]).expect_err("refused");
        assert!(
            err.contains("CA certificate given for the registry is unusable"),
            "{err}"
        );
        build_http(&TransportOptions::default(), &[]).expect("no extra CAs");
    }

    #[test]
    fn pem_bundles_read_as_rustls_reads_them() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let block = |der: &[u8], eol: &str| {
            let text = b64(der);
            let lines: Vec<&str> = text
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----{eol}{}{eol}-----END CERTIFICATE-----{eol}",
                lines.join(eol)
            )
        };
        let first: Vec<u8> = (0..=255).collect();
        let second = vec![0x30, 0x03, 0x02, 0x01, 0x07];
        let pem = format!(
            "# a comment\n{}junk between\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n{}",
            block(&first, "\n"),
            b64(b"not a certificate"),
            block(&second, "\r\n"),
        );
        assert_eq!(pem_certificates(pem.as_bytes()), [first, second]);
        assert_eq!(pem_certificates(pem.as_bytes()), by_rustls(pem.as_bytes()));
        // A block that does not decode is skipped; an unterminated one ends it.
        let bad = "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAAAA";
        assert!(pem_certificates(bad.as_bytes()).is_empty());
        // The distribution's bundle, where this machine has one.
        if let Some(bundle) = openssl_probe::probe().cert_file
            && let Ok(pem) = std::fs::read(bundle)
        {
            assert_eq!(pem_certificates(&pem), by_rustls(&pem));
        }
    }
}
