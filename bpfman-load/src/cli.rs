//! The `bpfman-load` command line. In the library so the integration tests
//! build their entry point from this code; `main.rs` only calls [`main`].

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use bpfman_image::frontend::{TransportArgs, exit, init_tracing};
use bpfman_image::reference::ImageRef;
use bpfman_image_spec::text::printable;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::apply::file::Desired;
use crate::apply::{self, ApplyOptions, Change, Report, Step};
use crate::attach::AttachRequest;
use crate::bpffs::DEFAULT_BPFFS;
use crate::cache::DEFAULT_ROOT;
use crate::host::{Host, HostOptions};
use crate::images::{self, PullPolicy};
use crate::loadable::Loadable;
use crate::loader::LoadOptions;
use crate::state::{ProgramRecord, Source};

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
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS", allow_negative_numbers = true, value_parser = parse_seconds)]
    lock_timeout: u64,
    /// Where bpffs is (or will be) mounted; pins go in its bpfman-load/.
    #[arg(long, global = true, default_value = DEFAULT_BPFFS, value_name = "DIR")]
    bpffs: PathBuf,
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
    /// Load programs from a verified image or a local object file.
    #[command(subcommand)]
    Load(LoadCommand),
    /// Attach a loaded program (by id) to a hook.
    Attach(AttachArgs),
    /// Detach a link (by link id).
    Detach {
        #[arg(value_name = "LINK_ID")]
        link: u32,
    },
    /// Detach and unload programs (by id), with their pins.
    Unload {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<u32>,
    },
    /// List the programs we loaded (--all: every program in the kernel).
    List(ListArgs),
    /// Converge the host to desired-state files: create, replace, keep
    /// and remove deployments (see docs/apply.md).
    Apply(ApplyArgs),
    /// Compare the host with desired-state files, offline; exits 2 when
    /// it has drifted.
    Status(StatusArgs),
    /// Show one program we loaded.
    Get {
        #[arg(value_name = "ID")]
        id: u32,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

// Parsed once per run; boxing the transport options buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum LoadCommand {
    /// From an image: pulled per --pull-policy, verified against the policy.
    Image {
        /// REGISTRY/REPO[:TAG][@DIGEST], or oci:DIR[:TAG] (a local layout).
        #[arg(value_name = "IMAGE")]
        image: ImageRef,
        #[arg(long, value_enum, default_value_t = PullPolicyArg::IfNotPresent)]
        pull_policy: PullPolicyArg,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        transport: TransportArgs,
        #[command(subcommand)]
        then: Option<Then>,
    },
    /// From a local eBPF object file (no signature: the operator vouches).
    File {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(subcommand)]
        then: Option<Then>,
    },
}

/// What to do with the program once it is loaded, in the same process.
#[derive(Debug, Subcommand)]
enum Then {
    /// Attach the one program loaded (name it with --program if the
    /// object has several), as `attach ID HOOK ...` would. If the attach
    /// fails the program is unloaded again.
    Attach {
        #[command(subcommand)]
        hook: AttachRequest,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// A program (function) to load; repeat for more [default: all].
    #[arg(long = "program", short = 'p', value_name = "NAME")]
    programs: Vec<String>,
    /// Set a global variable before loading: NAME=HEX (its exact size,
    /// in the object's byte order).
    #[arg(long = "global", value_name = "NAME=HEX", value_parser = crate::loader::parse_global)]
    globals: Vec<(String, Vec<u8>)>,
    /// Reuse the maps (by name) of a program already loaded.
    #[arg(long, value_name = "ID")]
    share_maps_with: Option<u32>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Args)]
struct AttachArgs {
    /// The program id (see bpfman-load list).
    #[arg(value_name = "ID")]
    id: u32,
    #[command(subcommand)]
    hook: AttachRequest,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Every program in the kernel, marking which are ours.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// A desired-state file, or a directory of *.toml files (merged).
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Keep applying every --interval, re-resolving tags at the registry
    /// (digest-pinned deployments never move); SIGTERM or SIGINT finishes
    /// the current deployment and exits.
    #[arg(long, conflicts_with = "dry_run")]
    watch: bool,
    /// Time between rounds with --watch: 30s, 5m, 1h or seconds.
    #[arg(long, default_value = "30s", value_parser = parse_interval, requires = "watch")]
    interval: Duration,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// A desired-state file, or a directory of *.toml files (merged).
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `30s`, `5m`, `1h`, or a number of seconds; at least one second.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (n, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "'{s}' is not an interval: write 30s, 5m, 1h or seconds"
            ));
        }
    };
    match n.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n * scale)),
        _ => Err(format!(
            "'{s}' is not an interval: write 30s, 5m, 1h or seconds (at least 1s)"
        )),
    }
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
    /// REGISTRY/REPO[:TAG][@DIGEST], or oci:DIR[:TAG] (a local layout).
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
    /// When to contact the registry.
    #[arg(long, value_enum, default_value_t = PullPolicyArg::Always)]
    pull_policy: PullPolicyArg,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG], as pulled.
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
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

/// A number of seconds: 0 or more.
fn parse_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds: give 0 or more"))
}

/// The host has drifted from its desired state (`status`).
#[derive(Debug, thiserror::Error)]
#[error("{0} of the declared deployments are not as declared")]
struct Drifted(usize);

/// Parses the command line, runs the command, prints any error as a chain.
pub fn main() -> ExitCode {
    init_tracing();
    match run(Cli::parse()) {
        Err(e) if e.downcast_ref::<Drifted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        result => exit(result),
    }
}

impl Global {
    fn host(&self) -> Result<Host> {
        let opts = HostOptions {
            root: self.root.clone(),
            policy: self.policy.clone(),
            bpffs: self.bpffs.clone(),
            lock_timeout: Duration::from_secs(self.lock_timeout),
        };
        Host::open(opts, |holder| {
            eprintln!(
                "waiting for the lock on {}: held by {holder}",
                self.root.display()
            );
        })
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    if let Command::Apply(args) = &cli.command
        && args.watch
    {
        // Each round holds the root only while it runs.
        return crate::watch::watch(args.interval, |stop| {
            apply_once(&g.host()?, args, true, stop)
        });
    }
    let host = g.host()?;
    match cli.command {
        Command::Apply(args) => apply_once(&host, &args, false, &|| false),
        Command::Status(args) => status(&host, &args),
        Command::Pull(args) => pull(&host, args),
        Command::Verify(args) => verify(&host, &args.image),
        Command::Images(args) => list(&host, args.output),
        Command::Rmi(args) => rmi(kernel(&host)?, &args.images),
        Command::Prune(args) => prune(kernel(&host)?, args.all),
        Command::Fsck => fsck(&host),
        Command::Load(cmd) => load(&host, cmd),
        Command::Attach(args) => {
            let host = kernel(&host)?;
            let link = host.attach(args.id, &args.hook)?;
            println!("{}", link.id);
            eprintln!(
                "attached program {} as link {}: {}",
                args.id, link.id, link.attachment
            );
            Ok(())
        }
        Command::Detach { link } => {
            let (id, l) = kernel(&host)?.detach(link)?;
            println!("detached link {link} ({}) from program {id}", l.attachment);
            Ok(())
        }
        Command::Unload { ids } => {
            let host = kernel(&host)?;
            for id in ids {
                let r = host.unload(id)?;
                println!("unloaded {id} ({})", r.name);
            }
            Ok(())
        }
        Command::List(args) => list_programs(kernel(&host)?, args),
        Command::Get { id, output } => get(kernel(&host)?, id, output),
    }
}

/// The host with its kernel side open, after reconciling the state with
/// the kernel and bpffs (reported on stderr).
fn kernel(host: &Host) -> Result<&Host> {
    let (_, report) = host.reconciled()?;
    for (r, why) in &report.vanished {
        eprintln!(
            "program {} ({}) vanished: {why}; removed from the state",
            r.id, r.name
        );
    }
    for (id, l) in &report.links_gone {
        eprintln!(
            "link {} of program {id} ({}) vanished: its pin is gone; removed from the state",
            l.id, l.attachment
        );
    }
    for d in &report.dispatchers {
        eprintln!("{d}");
    }
    for p in &report.strays {
        eprintln!(
            "removed stray pin '{}' (left by an interrupted run)",
            p.display()
        );
    }
    Ok(host)
}

/// One apply (or one round of --watch), with its own hold on the root.
fn apply_once(
    host: &Host,
    args: &ApplyArgs,
    follow_tags: bool,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let desired = Desired::load_all(&args.files)?;
    kernel(host)?;
    let opts = ApplyOptions {
        dry_run: args.dry_run,
        offline: false,
        follow_tags,
        transport: args.transport.options()?,
    };
    let report = apply::apply(host, &desired, &opts, stop)?;
    print_report(&report, args.output, false)?;
    let failed: Vec<&Step> = report.failed().collect();
    for s in &failed {
        eprintln!("deployment '{}' failed: {}", s.deployment, s.reason);
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} deployments failed; the others are as declared",
            failed.len(),
            report.steps.len()
        );
    }
    Ok(())
}

fn status(host: &Host, args: &StatusArgs) -> Result<()> {
    let desired = Desired::load_all(&args.files)?;
    kernel(host)?;
    let opts = ApplyOptions {
        dry_run: true,
        offline: true,
        ..Default::default()
    };
    let report = apply::apply(host, &desired, &opts, &|| false)?;
    print_report(&report, args.output, true)?;
    let off = report
        .steps
        .iter()
        .filter(|s| s.change != Change::Keep)
        .count();
    if off > 0 {
        return Err(Drifted(off).into());
    }
    Ok(())
}

/// A plan, what an apply did, or (`status`) how the host compares.
fn print_report(report: &Report, output: Output, status: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if let Output::Json = output {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    let short = |d: &Option<bpfman_image_spec::digest::Digest>| {
        d.as_ref().map_or("-".to_string(), |d| {
            d.to_string().chars().take(19).collect()
        })
    };
    writeln!(
        out,
        "{:<20} {:<12} {:<19} {:<19} {:<12} REASON",
        "DEPLOYMENT",
        if status { "STATE" } else { "CHANGE" },
        "DESIRED",
        "CURRENT",
        "PROGRAMS",
    )?;
    for s in &report.steps {
        let change = if status {
            match s.change {
                Change::Keep => "converged",
                Change::Create => "missing",
                Change::Replace => "drifted",
                Change::Remove => "undeclared",
                Change::Failed => "unknown",
            }
            .to_string()
        } else {
            s.change.to_string()
        };
        let programs: Vec<String> = s.programs.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "{:<20} {:<12} {:<19} {:<19} {:<12} {}",
            s.deployment,
            change,
            short(&s.desired),
            short(&s.current),
            if programs.is_empty() {
                "-".into()
            } else {
                programs.join(",")
            },
            s.reason
        )?;
    }
    Ok(())
}

fn pull(host: &Host, args: PullArgs) -> Result<()> {
    let (admitted, loadable) = host.admit(
        &args.image,
        args.pull_policy.into(),
        &args.transport.options()?,
    )?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}@{}",
        images::identity(&args.image)?,
        admitted.record.digest
    )?;
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
        .object_info
        .programs
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                printable(&p.name),
                p.kind().label(&p.section_name)
            )
        })
        .collect();
    eprintln!(
        "for this host: linux/{} {} ({}): {}",
        image.arch,
        l.manifest().digest,
        printable(&image.file_name),
        programs.join(", ")
    );
    for w in l.warnings() {
        eprintln!("warning: {w}");
    }
}

fn signers(keys: &[bpfman_trust::keys::KeyId]) -> String {
    if keys.is_empty() {
        ", unsigned".into()
    } else {
        let ids: Vec<String> = keys.iter().map(|k| k.signer()).collect();
        format!(", signed by {}", ids.join(", "))
    }
}

fn verify(host: &Host, image: &ImageRef) -> Result<()> {
    let (admitted, loadable) = host.verify(image)?;
    describe(&loadable);
    for c in &admitted.verdict.checks {
        println!("{} ({}): {}", c.origin, c.format, c.outcome);
    }
    println!(
        "VERIFIED {}@{} by {}{}",
        images::identity(image)?,
        admitted.record.digest,
        admitted.proof.admitted_by(),
        signers(admitted.proof.signed_by())
    );
    Ok(())
}

fn list(host: &Host, output: Output) -> Result<()> {
    let records = host.images()?;
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

fn rmi(host: &Host, what: &[String]) -> Result<()> {
    for w in what {
        let digest = host.remove_image(w)?;
        println!("removed {digest}");
    }
    let (blobs, bytes) = host.free_blobs()?;
    eprintln!("freed {blobs} blobs ({bytes} bytes)");
    Ok(())
}

fn prune(host: &Host, all: bool) -> Result<()> {
    let (removed, blobs, bytes) = host.prune(all)?;
    for r in &removed {
        println!("removed {}", r.digest);
    }
    eprintln!(
        "removed {} images, {blobs} blobs ({bytes} bytes)",
        removed.len()
    );
    Ok(())
}

fn fsck(host: &Host) -> Result<()> {
    let cache = host.cache();
    let report = host.fsck()?;
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

fn load(host: &Host, cmd: LoadCommand) -> Result<()> {
    let (records, output, then) = match cmd {
        LoadCommand::Image {
            image,
            pull_policy,
            load,
            transport,
            then,
        } => {
            // Pull and verify before the kernel side opens.
            let (admitted, loadable) =
                host.admit(&image, pull_policy.into(), &transport.options()?)?;
            let records =
                kernel(host)?.load_admitted(&image, &admitted, &loadable, &load_options(&load))?;
            (records, load.output, then)
        }
        LoadCommand::File { path, load, then } => {
            let records = kernel(host)?.load_file(&path, &load_options(&load))?;
            (records, load.output, then)
        }
    };
    let records = match then {
        None => records,
        Some(Then::Attach { hook }) => vec![attach_loaded(host, records, &hook)?],
    };
    print_programs(&records, output)
}

/// Attaches the one program just loaded; on any failure, unloads what was
/// loaded, so a failed `load ... attach` leaves nothing behind.
fn attach_loaded(
    host: &Host,
    records: Vec<ProgramRecord>,
    hook: &AttachRequest,
) -> Result<ProgramRecord> {
    let host = kernel(host)?;
    let undo = |why: anyhow::Error| {
        for r in &records {
            if let Err(e) = host.unload(r.id) {
                eprintln!("warning: cannot unload program {} again: {e:#}", r.id);
            }
        }
        why
    };
    let [one] = records.as_slice() else {
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        return Err(undo(anyhow::anyhow!(
            "'load ... attach' attaches one program, and this load made {} ({}); name one with --program",
            records.len(),
            names.join(", ")
        )));
    };
    let link = host.attach(one.id, hook).map_err(undo)?;
    eprintln!(
        "attached program {} as link {}: {}",
        one.id, link.id, link.attachment
    );
    host.program(one.id)
}

fn load_options(a: &LoadArgs) -> LoadOptions {
    LoadOptions {
        programs: a.programs.clone(),
        globals: a.globals.clone(),
        share_maps_with: a.share_maps_with,
        deployment: None,
    }
}

fn print_programs(records: &[ProgramRecord], output: Output) -> Result<()> {
    let mut out = io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, records)?;
            writeln!(out)?;
        }
        Output::Table => {
            writeln!(
                out,
                "{:>7}  {:<20} {:<14} {:<30} LINKS",
                "ID", "NAME", "TYPE", "SOURCE"
            )?;
            for r in records {
                let source = match &r.source {
                    Source::Image { reference, .. } => reference.clone(),
                    Source::File { path, .. } => path.display().to_string(),
                };
                let links: Vec<String> = r
                    .links
                    .iter()
                    .map(|l| format!("{}: {}", l.id, l.attachment))
                    .collect();
                let kind = serde_json::to_value(r.kind)?;
                writeln!(
                    out,
                    "{:>7}  {:<20} {:<14} {:<30} {}",
                    r.id,
                    printable(&r.name),
                    kind.as_str().unwrap_or("?"),
                    printable(&source),
                    if links.is_empty() {
                        "-".into()
                    } else {
                        links.join(", ")
                    }
                )?;
            }
        }
    }
    Ok(())
}

fn list_programs(host: &Host, args: ListArgs) -> Result<()> {
    if !args.all {
        return print_programs(&host.programs()?, args.output);
    }
    let programs = host.kernel_programs()?;
    let mut out = io::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &programs)?;
            writeln!(out)?;
        }
        Output::Table => {
            writeln!(
                out,
                "{:>7}  {:<20} {:<22} {:<16}  OURS",
                "ID", "NAME", "TYPE", "TAG"
            )?;
            for p in &programs {
                writeln!(
                    out,
                    "{:>7}  {:<20} {:<22} {:<16}  {}",
                    p.id,
                    p.name,
                    p.kind,
                    p.tag,
                    p.role.map_or_else(|| "no".to_string(), |r| r.to_string())
                )?;
            }
        }
    }
    Ok(())
}

fn get(host: &Host, id: u32, output: Output) -> Result<()> {
    let r = host.program(id)?;
    if let Output::Json = output {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    let kind = serde_json::to_value(r.kind)?;
    println!("id:        {}", r.id);
    println!("name:      {}", printable(&r.name));
    println!(
        "type:      {} (section '{}')",
        kind.as_str().unwrap_or("?"),
        printable(&r.section)
    );
    println!("tag:       {}", r.tag);
    println!("pin:       {}", r.pin.display());
    match &r.source {
        Source::Image {
            reference,
            image,
            manifest,
            admitted_by,
        } => {
            println!("image:     {reference}");
            println!("digest:    {image} (manifest {manifest})");
            println!("admitted:  {admitted_by}");
        }
        Source::File { path, sha256 } => {
            println!("file:      {} ({sha256})", path.display());
        }
    }
    for g in &r.globals {
        println!("global:    {g}");
    }
    for m in &r.maps {
        let shared = if m.shared { " (shared)" } else { "" };
        println!(
            "map:       {} at {}{shared}",
            printable(&m.name),
            printable(&m.pin.display().to_string())
        );
    }
    for l in &r.links {
        println!(
            "link:      {} {} at {}",
            l.id,
            l.attachment,
            l.pin.display()
        );
    }
    Ok(())
}
