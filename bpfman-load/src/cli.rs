//! The `bpfman-load` command line. In the library so the integration tests
//! build their entry point from this code; `main.rs` only calls [`main`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bpfman_image::cli::{TransportArgs, exit, init_tracing, runtime};
use bpfman_image::reference::RegistryRef;
use bpfman_trust::policy::Policy;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::{Cache, DEFAULT_ROOT, ImageRecord};
use crate::images::{self, PullPolicy};
use crate::loadable::Loadable;
use crate::lock::Lock;

/// Where the host's trust policy is read from unless `--policy` is given.
pub const DEFAULT_POLICY: &str = "/etc/bpfman-load/policy.toml";

#[derive(Debug, Parser)]
#[command(bin_name = "bpfman-load", name = "bpfman-load", version, about = "Pull, verify, cache and load eBPF bytecode images", long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The cache and state directory.
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,
    /// The trust policy (TOML) [default: /etc/bpfman-load/policy.toml if it
    /// exists; without one, no image is admitted].
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Seconds to wait for another bpfman-load to finish with the root.
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    lock_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull an image (and its signatures) into the cache, and verify it.
    Pull(PullArgs),
    /// Verify a cached image against the trust policy, offline.
    Verify(VerifyArgs),
    /// List cached images.
    Images(ImagesArgs),
    /// Remove a cached image (by reference or digest).
    Rmi(RmiArgs),
    /// Remove images nothing uses, and unreferenced blobs.
    Prune(PruneArgs),
    /// Re-hash every cached blob; quarantine corrupt ones.
    Fsck,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PullPolicyArg {
    Always,
    IfNotPresent,
    Never,
}

impl From<PullPolicyArg> for PullPolicy {
    fn from(p: PullPolicyArg) -> Self {
        match p {
            PullPolicyArg::Always => PullPolicy::Always,
            PullPolicyArg::IfNotPresent => PullPolicy::IfNotPresent,
            PullPolicyArg::Never => PullPolicy::Never,
        }
    }
}

#[derive(Debug, Args)]
struct PullArgs {
    /// REGISTRY/REPO[:TAG][@DIGEST].
    #[arg(value_name = "IMAGE")]
    image: RegistryRef,
    /// When to contact the registry.
    #[arg(long, value_enum, default_value_t = PullPolicyArg::Always)]
    pull_policy: PullPolicyArg,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// REGISTRY/REPO[:TAG][@DIGEST], as pulled.
    #[arg(value_name = "IMAGE")]
    image: RegistryRef,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct ImagesArgs {
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Args)]
struct RmiArgs {
    /// A reference as pulled, a digest, or a unique digest prefix.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Also remove tagged images that no loaded program uses (by default
    /// only images no reference names any more, and stray blobs).
    #[arg(long)]
    all: bool,
}

/// Parses the command line, runs the command, prints any error as a chain.
pub fn main() -> ExitCode {
    init_tracing();
    exit(run(Cli::parse()))
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    fs_root(&g.root)?;
    let _lock = Lock::acquire(&g.root, Duration::from_secs(g.lock_timeout), |holder| {
        eprintln!(
            "waiting for the lock on {}: held by {holder}",
            g.root.display()
        );
    })?;
    let cache = Cache::open(&g.root)?;
    match cli.command {
        Command::Pull(args) => pull(&cache, g, args),
        Command::Verify(args) => verify(&cache, g, &args.image),
        Command::Images(args) => list(&cache, args.output),
        Command::Rmi(args) => rmi(&cache, &args.images),
        Command::Prune(args) => prune(&cache, args.all),
        Command::Fsck => fsck(&cache),
    }
}

/// Creates the root (0700) so the lock file has somewhere to live.
fn fs_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("cannot create the root '{}'", root.display()))
}

/// The policy in force: `--policy`, else the default file if it exists,
/// else none (nothing admitted).
fn load_policy(g: &Global) -> Result<Policy> {
    match &g.policy {
        Some(p) => Ok(Policy::load(p)?),
        None if Path::new(DEFAULT_POLICY).exists() => Ok(Policy::load(Path::new(DEFAULT_POLICY))?),
        None => {
            let mut p = Policy::closed();
            p.origin = format!("no trust policy ({DEFAULT_POLICY} does not exist)");
            Ok(p)
        }
    }
}

fn pull(cache: &Cache, g: &Global, args: PullArgs) -> Result<()> {
    let policy = load_policy(g)?;
    let opts = args.transport.options()?;
    let record = runtime()?
        .block_on(images::ensure(
            cache,
            &opts,
            &args.image,
            args.pull_policy.into(),
        ))
        .with_context(|| format!("cannot pull {}", args.image))?;
    let admitted = images::verify_cached(cache, &args.image, record, &policy)?;
    let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())
        .with_context(|| format!("{} cannot be loaded on this host", args.image))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}@{}", args.image.name(), admitted.record.digest)?;
    eprintln!(
        "verified: {}{}",
        admitted.proof.admitted_by(),
        signers(admitted.proof.signed_by())
    );
    describe(&loadable);
    Ok(())
}

/// Says which object this host would load.
fn describe(l: &Loadable) {
    let image = l.image();
    let programs: Vec<String> = image
        .metadata
        .programs
        .iter()
        .map(|(name, kind)| format!("{name} ({kind})"))
        .collect();
    eprintln!(
        "for this host: linux/{} {} ({}): {}",
        image.arch,
        l.manifest().digest,
        image.file_name,
        programs.join(", ")
    );
}

fn signers(keys: &[bpfman_trust::keys::KeyId]) -> String {
    if keys.is_empty() {
        ", unsigned".into()
    } else {
        let ids: Vec<String> = keys.iter().map(ToString::to_string).collect();
        format!(", signed by key {}", ids.join(", "))
    }
}

fn verify(cache: &Cache, g: &Global, image: &RegistryRef) -> Result<()> {
    let policy = load_policy(g)?;
    let key = images::cache_key(image);
    let Some(record) = cache.lookup(&key)? else {
        anyhow::bail!("{key} is not in the cache; pull it first");
    };
    let admitted = images::verify_cached(cache, image, record, &policy)?;
    let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())
        .with_context(|| format!("{} cannot be loaded on this host", image))?;
    describe(&loadable);
    for c in &admitted.verdict.checks {
        println!("{} ({}): {}", c.origin, c.format, c.outcome);
    }
    println!(
        "VERIFIED {}@{} by {}{}",
        image.name(),
        admitted.record.digest,
        admitted.proof.admitted_by(),
        signers(admitted.proof.signed_by())
    );
    Ok(())
}

fn list(cache: &Cache, output: Output) -> Result<()> {
    let mut records = cache.images()?;
    records.sort_by(|a, b| a.references.cmp(&b.references));
    let mut out = io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &records)?;
            writeln!(out)?;
        }
        Output::Table => {
            writeln!(
                out,
                "{:<60} {:<19} {:>9}  SIGNATURES  LAST ADMITTED BY",
                "REFERENCE", "DIGEST", "SIZE"
            )?;
            for r in &records {
                let names: Vec<&str> = if r.references.is_empty() {
                    vec!["<none>"]
                } else {
                    r.references.iter().map(String::as_str).collect()
                };
                for n in names {
                    writeln!(
                        out,
                        "{:<60} {:<19} {:>9}  {:>10}  {}",
                        n,
                        &r.digest.to_string()[..19],
                        r.size(),
                        r.signatures.len(),
                        r.admitted.as_ref().map_or("-", |a| a.scope.as_str())
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn rmi(cache: &Cache, what: &[String]) -> Result<()> {
    for w in what {
        let Some(record) = images::find(cache, w)? else {
            anyhow::bail!("no cached image matches '{w}'; see bpfman-load images");
        };
        cache.remove_image(&record.digest)?;
        println!("removed {}", record.digest);
    }
    let (_, blobs, bytes) = cache.prune(|_| true)?;
    eprintln!("freed {blobs} blobs ({bytes} bytes)");
    Ok(())
}

fn prune(cache: &Cache, all: bool) -> Result<()> {
    // No program is loaded from the cache yet (loading arrives with its
    // issue), so with --all every image goes.
    let keep = |r: &ImageRecord| !all && !r.references.is_empty();
    let (removed, blobs, bytes) = cache.prune(keep)?;
    for r in &removed {
        println!("removed {}", r.digest);
    }
    eprintln!(
        "removed {} images, {blobs} blobs ({bytes} bytes)",
        removed.len()
    );
    Ok(())
}

fn fsck(cache: &Cache) -> Result<()> {
    let report = cache.fsck()?;
    for d in &report.quarantined {
        println!(
            "corrupt {d}: moved to {}",
            cache.root().join("quarantine").display()
        );
    }
    for d in &report.images_dropped {
        println!("dropped {d}: a blob was missing or corrupt; pull it again");
    }
    println!(
        "checked {} blobs: {} corrupt, {} images dropped, {} temporary files removed",
        report.blobs_checked,
        report.quarantined.len(),
        report.images_dropped.len(),
        report.temp_removed
    );
    if report.quarantined.is_empty() && report.images_dropped.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the cache had corrupt entries (now quarantined)")
    }
}
