//! Why a registry operation failed, classified: each error says on what, what
//! to do, and whether a retry may help.

use std::path::PathBuf;

use bpfman_image_spec::digest::Digest;
use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::auth::AuthError;
use crate::reference::RegistryRef;

use super::*;

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

impl Registry {
    pub(super) fn status_error(
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

    pub(super) fn oci_error(
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

    pub(super) fn io_error(&self, what: &str, e: std::io::Error) -> RegistryError {
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

    pub(super) fn reqwest_error(&self, what: &str, e: reqwest::Error) -> RegistryError {
        self.classify_reqwest(what, &e)
    }

    pub(super) fn classify_reqwest(&self, what: &str, e: &reqwest::Error) -> RegistryError {
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
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
pub(super) fn excerpt(body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
