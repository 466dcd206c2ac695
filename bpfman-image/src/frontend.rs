//! What both command lines share: the transport flags, tracing to
//! stderr, and printing an error chain as the exit status. Behind the
//! `cli` feature with the rest of the front ends.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::auth::{AuthFiles, Credentials};
use crate::registry::TransportOptions;
use crate::registry::mirrors::RegistriesConf;

/// How to reach registries: credentials, TLS and patience. Shared with
/// `bpfman-load`, so both tools take the same flags.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Credentials USER:PASSWORD for this command (overrides auth files).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "creds_file")]
    creds: Option<String>,
    /// Read USER:PASSWORD from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    creds_file: Option<PathBuf>,
    /// Auth file to use instead of $REGISTRY_AUTH_FILE, containers'
    /// auth.json and docker's config.json.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    ca_files: Vec<PathBuf>,
    /// certs.d root holding HOST[:PORT]/*.crt CAs (repeatable) [default:
    /// /etc/containers/certs.d and /etc/docker/certs.d].
    #[arg(long = "certs-d", value_name = "DIR")]
    certs_dirs: Vec<PathBuf>,
    /// A registry (HOST[:PORT]) that may be spoken to over plain HTTP
    /// (repeatable). Loopback registries need not be listed.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Seconds to wait to connect, and for any read, before a retry.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    timeout: u64,
    /// Retries of a request after a transient failure (5xx, reset, timeout).
    #[arg(long, default_value_t = 3, value_name = "N")]
    retries: u32,
    /// Backoff before the first retry, doubled for each next one.
    #[arg(long, default_value_t = 250, value_name = "MILLISECONDS")]
    retry_delay_ms: u64,
    /// containers' registries.conf (v2: mirrors, locations, blocked)
    /// [default: $CONTAINERS_REGISTRIES_CONF, else
    /// /etc/containers/registries.conf and registries.conf.d/*.conf].
    #[arg(long, value_name = "FILE")]
    registries_conf: Option<PathBuf>,
}

impl TransportArgs {
    /// The transport options these flags describe.
    pub fn options(&self) -> Result<TransportOptions> {
        let creds = match (&self.creds, &self.creds_file) {
            (Some(c), _) => Some(Credentials::parse(c)?),
            (None, Some(f)) => Some(Credentials::from_file(f)?),
            (None, None) => None,
        };
        let defaults = TransportOptions::default();
        Ok(TransportOptions {
            creds,
            auth_files: AuthFiles::from_env(self.authfile.clone()),
            ca_files: self.ca_files.clone(),
            certs_dirs: if self.certs_dirs.is_empty() {
                defaults.certs_dirs
            } else {
                self.certs_dirs.clone()
            },
            insecure: self.insecure.clone(),
            timeout: Duration::from_secs(self.timeout.max(1)),
            attempts: self.retries.saturating_add(1),
            retry_delay: Duration::from_millis(self.retry_delay_ms),
            registries: RegistriesConf::from_env(self.registries_conf.as_deref())?,
            blob_locations: None,
        })
    }
}

/// The exit status for `result`; an error is printed as its chain of
/// causes. A closed stdout (`| head`) is not an error.
pub fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, `warn` and up unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
