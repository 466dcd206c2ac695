//! `keygen`, `sign` and `verify`, and the signing step of `build`.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bpfman_trust::keys::{PrivateKey, PublicKey};
use bpfman_trust::policy::{Policy, Rule};
use bpfman_trust::verdict::Verdict;
use clap::Args;

use super::{Format, TransportArgs, parse_key_value, runtime, to_map};
use crate::ops::{self, SignatureFormat, Signed};
use crate::reference::ImageRef;
use crate::signing::Resolved;
use crate::store::ImageStore;

/// The environment variable cosign reads key passwords from.
const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

#[derive(Debug, Args)]
pub(super) struct KeygenArgs {
    /// Write PREFIX.key (encrypted, mode 0600) and PREFIX.pub.
    #[arg(long, default_value = "cosign", value_name = "PREFIX")]
    output_key_prefix: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(super) struct PublicKeyArgs {
    /// The cosign private key (password from $COSIGN_PASSWORD, or asked).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Write the PEM here instead of to stdout.
    #[arg(long, value_name = "FILE")]
    outfile: Option<PathBuf>,
}

pub(super) fn public_key(args: PublicKeyArgs) -> Result<()> {
    let pem = load_private_key(&args.key)?.public().to_pem();
    match &args.outfile {
        Some(path) => write_public(path, pem.as_bytes()),
        None => Ok(io::stdout().lock().write_all(pem.as_bytes())?),
    }
}

#[derive(Debug, Args)]
pub(super) struct SignArgs {
    /// The image: oci:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST]. A tag is
    /// resolved to its digest once, and the digest is signed.
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
    /// The cosign private key (password from $COSIGN_PASSWORD, or asked).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// The repository named in the signed payload [default: the image's
    /// REGISTRY/REPO; oci:DIR for a layout].
    #[arg(long, value_name = "REGISTRY/REPO")]
    identity: Option<String>,
    /// Annotation KEY=VALUE signed into the payload's `optional` section
    /// (repeatable).
    #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    annotations: Vec<(String, String)>,
    /// Signature format to write.
    #[arg(long = "signature-format", value_enum, default_value_t = SignatureFormat::Legacy)]
    format: SignatureFormat,
    /// The key's X.509 certificate (PEM), from your own certificate
    /// authority: stored with the signature, so verifiers can trust an
    /// identity under their trusted root instead of a key.
    #[arg(long, value_name = "PEM")]
    certificate: Option<PathBuf>,
    /// The certificate's issuing chain (PEM, issuer first), checked
    /// before signing and stored with .sig signatures.
    #[arg(long, value_name = "PEM", requires = "certificate")]
    certificate_chain: Option<PathBuf>,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Certificate (keyless) signers: who, and under which trusted root.
#[derive(Debug, Args)]
pub(super) struct CertificateArgs {
    /// Accept a certificate for this subject (an email or URI, exact).
    #[arg(
        long = "certificate-identity",
        value_name = "SUBJECT",
        requires = "issuer"
    )]
    identity: Option<String>,
    /// Accept a certificate whose subject matches this regular expression
    /// (anchored at both ends).
    #[arg(
        long = "certificate-identity-regexp",
        value_name = "REGEX",
        requires = "issuer",
        conflicts_with = "identity"
    )]
    identity_regexp: Option<String>,
    /// The OIDC issuer the certificate must name (exact).
    #[arg(long = "certificate-oidc-issuer", value_name = "URL")]
    issuer: Option<String>,
    /// Fulcio extension the certificate must carry, NAME=VALUE, NAME one of
    /// github-workflow-{trigger,sha,name,repository,ref} (repeatable).
    #[arg(long = "certificate-extension", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    extensions: Vec<(String, String)>,
}

impl CertificateArgs {
    /// The identity rule these flags give, if any.
    fn rules(&self) -> Result<Vec<bpfman_trust::sigstore::IdentityRule>> {
        use bpfman_trust::sigstore::{IdentityRule, Subject};
        let subject = match (&self.identity, &self.identity_regexp) {
            (Some(s), _) => Subject::Exact(s.clone()),
            (None, Some(r)) => Subject::regex(r).map_err(anyhow::Error::msg)?,
            (None, None) => return Ok(Vec::new()),
        };
        let known: Vec<&str> = bpfman_trust::sigstore::cert::GITHUB_EXTENSIONS
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for (name, _) in &self.extensions {
            if !known.contains(&name.as_str()) {
                bail!(
                    "unknown certificate extension '{name}' (known: {})",
                    known.join(", ")
                );
            }
        }
        Ok(vec![IdentityRule {
            issuer: self.issuer.clone().unwrap_or_default(),
            subject,
            extensions: self.extensions.clone(),
        }])
    }
}

/// Reads a trusted root given on the command line.
fn load_trusted_root(path: &Path) -> Result<bpfman_trust::sigstore::TrustedRoot> {
    let text = bpfman_trust::file::read_regular(
        path,
        bpfman_trust::policy::MAX_POLICY,
        bpfman_trust::file::Links::Follow,
    )
    .with_context(|| format!("cannot read trusted root '{}'", path.display()))?;
    bpfman_trust::sigstore::TrustedRoot::from_json(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot use trusted root '{}'", path.display()))
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("trust").required(true).multiple(true).args(["keys", "policy", "identity", "identity_regexp"]))]
pub(super) struct VerifyArgs {
    /// The image: oci:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST].
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
    /// Require a valid signature by this public key (repeatable: any one).
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// Decide with this trust policy file instead, as a host would.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keys", "identity", "identity_regexp", "trusted_root"])]
    policy: Option<PathBuf>,
    /// Sigstore trusted root (trusted_root.json) for certificate
    /// signatures; needed with --certificate-identity.
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
    #[command(flatten)]
    certificate: CertificateArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("signer").required(true).multiple(true).args(["keys", "identity", "identity_regexp"]))]
pub(super) struct VerifyBlobArgs {
    /// The signed file.
    #[arg(value_name = "ARTIFACT")]
    artifact: PathBuf,
    /// The Sigstore bundle (JSON, v0.1 to v0.3).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The trusted root (Sigstore's trusted_root.json format): certificate
    /// authorities, transparency logs, CT logs, timestamp authorities.
    #[arg(long, value_name = "FILE")]
    trusted_root: PathBuf,
    #[command(flatten)]
    certificate: CertificateArgs,
    /// Accept a signature by this public key (PEM; repeatable: any one).
    #[arg(long = "key", value_name = "PUB")]
    keys: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Bundles, trusted roots and artifacts read by `verify-blob` are capped
/// here (artifacts: 1 GiB).
const MAX_BUNDLE: u64 = 16 << 20;
const MAX_ARTIFACT: u64 = 1 << 30;

pub(super) fn verify_blob(args: VerifyBlobArgs) -> Result<()> {
    use bpfman_trust::file::{Links, read_regular, read_text};
    use bpfman_trust::sigstore::{self, Artifact, Signers};

    let read = |path: &Path, limit: u64, what: &str| {
        read_regular(path, limit, Links::Follow)
            .with_context(|| format!("cannot read {what} '{}'", path.display()))
    };
    let root = load_trusted_root(&args.trusted_root)?;
    let keys = args
        .keys
        .iter()
        .map(|k| {
            let pem = read_text(k, bpfman_trust::policy::MAX_KEY, Links::Follow)
                .with_context(|| format!("cannot read public key '{}'", k.display()))?;
            sigstore::crypto::spki_from_pem(&pem)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("cannot use public key '{}'", k.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let identities = args.certificate.rules()?;
    let artifact = read(&args.artifact, MAX_ARTIFACT, "artifact")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let result = read(&args.bundle, MAX_BUNDLE, "bundle").and_then(|text| {
        let bundle = sigstore::Bundle::from_json(&text).map_err(|e| {
            anyhow::Error::new(sigstore::Failure {
                check: sigstore::Check::Bundle,
                reason: e,
            })
        })?;
        sigstore::verify(
            &bundle,
            Artifact::Blob(&artifact),
            &root,
            Signers::new(&keys, &identities),
            now,
        )
        .map_err(anyhow::Error::new)
    });
    let mut out = io::stdout().lock();
    match args.output {
        Format::Json => {
            let report = match &result {
                Ok(v) => serde_json::json!({
                    "artifact": args.artifact.display().to_string(),
                    "signatures": [{
                        "kind": v.kind,
                        "identity": v.identity.as_ref().map(|i| i.subjects.clone()),
                        "issuer": v.identity.as_ref().and_then(|i| i.issuer.clone()),
                        "key": v.key,
                        "log_index": v.log_indexes,
                        "signed_at": sigstore::time::display(v.signed_at),
                        "verdict": "valid",
                    }],
                    "verdict": "verified",
                }),
                Err(e) => serde_json::json!({
                    "artifact": args.artifact.display().to_string(),
                    "signatures": [{
                        "verdict": "refused",
                        "check": e.downcast_ref::<sigstore::Failure>().map(|f| f.check),
                        "reason": format!("{e:#}"),
                    }],
                    "verdict": "not verified",
                }),
            };
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => {
            if let Ok(v) = &result {
                match &v.identity {
                    Some(id) => writeln!(
                        out,
                        "Verified OK: certificate for {} from {}, signed at {}, log index {}",
                        id.subjects.join(", "),
                        id.issuer.as_deref().unwrap_or("(no issuer)"),
                        sigstore::time::display(v.signed_at),
                        join_indexes(&v.log_indexes),
                    )?,
                    None => writeln!(
                        out,
                        "Verified OK: key {}, signed at {}, log index {}",
                        v.key.as_deref().unwrap_or("?"),
                        sigstore::time::display(v.signed_at),
                        join_indexes(&v.log_indexes),
                    )?,
                }
            }
        }
    }
    drop(out);
    result.map(drop).with_context(|| {
        format!(
            "'{}' is not verified by '{}'",
            args.artifact.display(),
            args.bundle.display()
        )
    })
}

fn join_indexes(v: &[u64]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the key password from `COSIGN_PASSWORD`, else asks on the
/// terminal (twice when `confirm`).
fn password(confirm: bool, what: &str) -> Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    if !io::stdin().is_terminal() {
        bail!(
            "no password for {what}: set {PASSWORD_ENV} (it may be empty), or run on a terminal to be asked"
        );
    }
    let p = rpassword::prompt_password(format!("Enter password for {what}: "))
        .context("cannot read the password")?;
    if confirm {
        let again = rpassword::prompt_password("Enter password again: ")
            .context("cannot read the password")?;
        if again != p {
            bail!("the passwords do not match; nothing was written");
        }
    }
    Ok(p)
}

pub(super) fn keygen(args: KeygenArgs) -> Result<()> {
    let prefix = args.output_key_prefix.as_os_str().to_string_lossy();
    let key_path = PathBuf::from(format!("{prefix}.key"));
    let pub_path = PathBuf::from(format!("{prefix}.pub"));
    if !args.force {
        for p in [&key_path, &pub_path] {
            // A link counts, even one pointing nowhere.
            if std::fs::symlink_metadata(p).is_ok() {
                bail!(
                    "'{}' exists; pass --force to overwrite it, or choose another --output-key-prefix",
                    p.display()
                );
            }
        }
    }
    let password = password(true, "the new private key")?;
    let key = PrivateKey::generate()?;
    let pem = key.to_encrypted_pem(password.as_bytes())?;
    write_private(&key_path, pem.as_bytes())?;
    write_public(&pub_path, key.public().to_pem().as_bytes())?;
    eprintln!(
        "Private key written to {} (mode 0600)\nPublic key written to {} (key id {})",
        key_path.display(),
        pub_path.display(),
        key.public().id()
    );
    Ok(())
}

/// Writes a secret: created with mode 0600 from the start, then renamed
/// into place.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::layout::write_file_atomic_mode(path, bytes, 0o600)
        .with_context(|| format!("cannot write private key '{}'", path.display()))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::layout::write_file_atomic(path, bytes)
        .with_context(|| format!("cannot write public key '{}'", path.display()))
}

/// Reads and decrypts a cosign private key.
pub(super) fn load_private_key(path: &Path) -> Result<PrivateKey> {
    let pem = bpfman_trust::file::read_text(
        path,
        bpfman_trust::policy::MAX_KEY,
        bpfman_trust::file::Links::Follow,
    )
    .with_context(|| format!("cannot read private key '{}'", path.display()))?;
    let password = password(false, &format!("'{}'", path.display()))?;
    PrivateKey::from_encrypted_pem(&pem, password.as_bytes())
        .with_context(|| format!("cannot use private key '{}'", path.display()))
}

fn load_public_key(path: &Path) -> Result<PublicKey> {
    let pem = bpfman_trust::file::read_text(
        path,
        bpfman_trust::policy::MAX_KEY,
        bpfman_trust::file::Links::Follow,
    )
    .with_context(|| format!("cannot read public key '{}'", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("cannot use public key '{}'", path.display()))
}

pub(super) fn sign(args: SignArgs) -> Result<()> {
    let key = load_private_key(&args.key)?;
    let annotations = to_map(args.annotations.clone(), "annotation")?;
    let certificate = match &args.certificate {
        None => None,
        Some(path) => {
            let read = |p: &Path, what: &str| {
                bpfman_trust::file::read_text(
                    p,
                    bpfman_trust::policy::MAX_POLICY,
                    bpfman_trust::file::Links::Follow,
                )
                .with_context(|| format!("cannot read {what} '{}'", p.display()))
            };
            let leaf = read(path, "certificate")?;
            let chain = args
                .certificate_chain
                .as_deref()
                .map(|c| read(c, "certificate chain"))
                .transpose()?;
            Some(
                bpfman_trust::cosign::SigningCertificate::from_pem(
                    &leaf,
                    chain.as_deref(),
                    &key.public(),
                )
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("cannot sign with certificate '{}'", path.display()))?,
            )
        }
    };
    let signed = runtime()?.block_on(async {
        let store = ImageStore::open(&args.image, &super::transport(&args.transport)?).await?;
        let signed = ops::sign(
            &store,
            &key,
            certificate.as_ref(),
            args.identity.as_deref(),
            args.format,
            &annotations,
        )
        .await?;
        Ok::<_, anyhow::Error>(signed)
    })?;
    print_signed(&signed)
}

/// Prints a signature written: where it went on stdout, what on stderr.
pub(super) fn print_signed(signed: &Signed) -> Result<()> {
    writeln!(io::stdout().lock(), "{}", signed.stored)?;
    eprintln!(
        "signed {}@{} with key {} ({})",
        signed.identity,
        signed.digest,
        signed.key,
        signed.format.describe()
    );
    Ok(())
}

/// `build --sign-key`: the key options of build.
#[derive(Debug, Args)]
pub(super) struct BuildSignArgs {
    /// Sign what was built (in the layout and in the registry) with this
    /// cosign private key.
    #[arg(long, value_name = "KEY")]
    pub(super) sign_key: Option<PathBuf>,
    /// Annotation KEY=VALUE signed into the signature payload (repeatable).
    #[arg(long = "sign-annotation", value_name = "KEY=VALUE", value_parser = parse_key_value, requires = "sign_key")]
    sign_annotations: Vec<(String, String)>,
    /// Signature format to write.
    #[arg(long = "signature-format", value_enum, default_value_t = SignatureFormat::Legacy, requires = "sign_key")]
    pub(super) format: SignatureFormat,
}

impl BuildSignArgs {
    pub(super) fn annotations(&self) -> Result<BTreeMap<String, String>> {
        to_map(self.sign_annotations.clone(), "signature annotation")
    }
}

pub(super) fn verify(args: VerifyArgs) -> Result<()> {
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => {
            let keys = args
                .keys
                .iter()
                .map(|k| load_public_key(k))
                .collect::<Result<Vec<_>>>()?;
            let mut names: Vec<String> = args
                .keys
                .iter()
                .map(|k| format!("--key {}", k.display()))
                .collect();
            let identities = args.certificate.rules()?;
            let keyless = match (&args.trusted_root, identities.is_empty()) {
                (None, true) => None,
                (None, false) => bail!(
                    "--certificate-identity needs --trusted-root: the Sigstore trusted_root.json naming the certificate authorities and logs"
                ),
                (Some(_), true) => bail!(
                    "--trusted-root needs --certificate-identity (or -regexp) and --certificate-oidc-issuer"
                ),
                (Some(root), false) => {
                    names.push(format!("--trusted-root {}", root.display()));
                    Some(bpfman_trust::policy::Keyless::new(
                        load_trusted_root(root)?,
                        root.clone(),
                        identities,
                    ))
                }
            };
            Policy::everything_with(Rule::RequireSignature { keys }, keyless, &names.join(", "))
        }
    };
    let (resolved, verdict) = runtime()?.block_on(async {
        let store =
            ImageStore::open_to_read(&args.image, &super::transport(&args.transport)?).await?;
        let resolved = store.resolve_as(&args.image).await?;
        Ok::<_, anyhow::Error>(ops::verify(&store, resolved, &policy).await?)
    })?;
    let mut out = io::stdout().lock();
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &json_report(&resolved, &verdict))?;
            writeln!(out)?;
        }
        Format::Table => write_table(&mut out, &resolved, &verdict)?,
    }
    drop(out);
    match verdict.decision {
        Ok(_) => Ok(()),
        Err(refusal) => Err(anyhow::Error::new(refusal)),
    }
}

fn json_report(resolved: &Resolved, verdict: &Verdict) -> serde_json::Value {
    let (decision, detail) = match &verdict.decision {
        Ok(proof) => ("admitted", serde_json::to_value(proof).unwrap_or_default()),
        Err(r) => (
            "refused",
            serde_json::json!({
                "decided_by": r.decided_by,
                "policy": r.policy,
                "reasons": r.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        ),
    };
    serde_json::json!({
        "image": resolved.identity,
        "digest": resolved.top.digest.to_string(),
        "signatures": verdict.checks,
        "verdict": decision,
        "detail": detail,
    })
}

fn write_table(out: &mut impl Write, resolved: &Resolved, verdict: &Verdict) -> Result<()> {
    writeln!(out, "IMAGE   {}@{}", resolved.identity, resolved.top.digest)?;
    if verdict.checks.is_empty() {
        writeln!(out, "no signatures found")?;
    } else {
        let width = verdict
            .checks
            .iter()
            .map(|c| c.origin.len())
            .max()
            .unwrap_or(0);
        writeln!(out, "{:width$}  {:15}  RESULT", "SIGNATURE", "FORMAT")?;
        // The result says what signed: "signed by key ..." or
        // "certificate for ... from ..." (JSON has a kind field).
        for c in &verdict.checks {
            writeln!(
                out,
                "{:width$}  {:15}  {}",
                c.origin,
                c.format.to_string(),
                c.outcome
            )?;
        }
    }
    match &verdict.decision {
        Ok(p) => {
            let signers: Vec<String> = p.signed_by().iter().map(|k| k.signer()).collect();
            writeln!(
                out,
                "VERIFIED by {}{}",
                p.admitted_by(),
                if signers.is_empty() {
                    ", unsigned".to_string()
                } else {
                    format!(", signed by {}", signers.join(", "))
                }
            )?;
        }
        Err(_) => writeln!(out, "NOT VERIFIED")?,
    }
    Ok(())
}
