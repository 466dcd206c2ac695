//! TLS: the CA certificates a registry is trusted with (--ca-file, certs.d),
//! and the HTTP clients built on them.

use std::path::{Path, PathBuf};

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

pub(super) fn build_http(
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

pub(super) const USER_AGENT: &str = concat!("bpfman-image/", env!("CARGO_PKG_VERSION"));

pub(super) fn client_config(
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
