//! The `bpfman-load` command line. In the library so the integration tests
//! build their entry point from this code; `main.rs` only calls [`main`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use bpfman_image::cli::{TransportArgs, exit, init_tracing, runtime};
use bpfman_image::reference::ImageRef;
use bpfman_trust::policy::Policy;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bpffs::{Bpffs, DEFAULT_BPFFS};
use crate::cache::{Cache, DEFAULT_ROOT, ImageRecord};
use crate::chain::ChainRequest;
use crate::images::{self, Admitted, PullPolicy};
use crate::loadable::Loadable;
use crate::loader::{AttachRequest, LoadOptions, Loader, TcxOrder};
use crate::lock::Lock;
use crate::state::{ProgramRecord, Source, State};

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
    },
    /// From a local eBPF object file (no signature: the operator vouches).
    File {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
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
    hook: Hook,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum XdpModeArg {
    Default,
    Skb,
    Driver,
    Hw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Subcommand)]
enum Hook {
    /// XDP: through the interface's multi-program dispatcher (ordered by
    /// priority), or --exclusive (this program owns the hook).
    Xdp {
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// A network namespace: a name under /run/netns, or a path.
        #[arg(long, value_name = "NETNS")]
        netns: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = XdpModeArg::Default)]
        mode: XdpModeArg,
        /// Attach directly, alone on the interface, without the dispatcher
        /// (for kernels that refuse freplace).
        #[arg(long, conflicts_with_all = ["priority", "proceed_on"])]
        exclusive: bool,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// TC through the hook's multi-program dispatcher (attached with tcx
    /// where the kernel has it, else clsact + cls_bpf).
    Tc {
        #[arg(long, value_name = "IFACE")]
        iface: String,
        #[arg(long, value_enum)]
        direction: Direction,
        #[arg(long, value_name = "NETNS")]
        netns: Option<PathBuf>,
        /// Attach a new dispatcher with clsact + cls_bpf even where tcx
        /// exists (to sit among classic tc filters).
        #[arg(long)]
        clsact: bool,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// tcx (Linux 6.6+), ordered among the hook's tcx programs.
    Tcx {
        #[arg(long, value_name = "IFACE")]
        iface: String,
        #[arg(long, value_enum)]
        direction: Direction,
        #[arg(long, value_name = "NETNS")]
        netns: Option<PathBuf>,
        /// Run before every other tcx program on the hook.
        #[arg(long, conflicts_with_all = ["before", "after"])]
        first: bool,
        /// Run before this program of ours.
        #[arg(long, value_name = "ID", conflicts_with = "after")]
        before: Option<u32>,
        /// Run after this program of ours.
        #[arg(long, value_name = "ID")]
        after: Option<u32>,
    },
    /// A tracepoint: CATEGORY/NAME (see /sys/kernel/tracing/events).
    Tracepoint {
        #[arg(value_name = "CATEGORY/NAME")]
        tracepoint: String,
    },
    /// A kprobe or kretprobe (as the program was written).
    Kprobe {
        #[arg(value_name = "FUNCTION")]
        function: String,
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// A uprobe or uretprobe (as the program was written).
    Uprobe {
        /// The binary or library.
        #[arg(long, value_name = "PATH")]
        target: PathBuf,
        /// A symbol in it; without one, --offset is a file offset.
        #[arg(long, value_name = "SYMBOL", required_unless_present = "offset")]
        function: Option<String>,
        #[arg(long, value_name = "BYTES")]
        offset: Option<u64>,
        /// Only this process.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// fentry, at the function its section names.
    Fentry,
    /// fexit, at the function its section names.
    Fexit,
}

#[derive(Debug, Args)]
struct ChainArgs {
    /// Lower runs first [default: the program's .xdp_run_config, else 50].
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Actions after which the next program runs, comma-separated [default:
    /// the program's .xdp_run_config, else pass (XDP) or pipe,unspec (TC)].
    #[arg(long, value_delimiter = ',', value_name = "ACTION,...")]
    proceed_on: Vec<String>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Every program in the kernel, marking which are ours.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
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
        Command::Rmi(args) => rmi(&cache, &kernel(&cache, g)?, &args.images),
        Command::Prune(args) => prune(&cache, &kernel(&cache, g)?, args.all),
        Command::Fsck => fsck(&cache),
        Command::Load(cmd) => load(&cache, g, cmd),
        Command::Attach(args) => attach(&cache, g, &kernel(&cache, g)?, args),
        Command::Detach { link } => {
            let (id, l) = kernel(&cache, g)?.detach(link)?;
            println!("detached link {link} ({}) from program {id}", l.attachment);
            Ok(())
        }
        Command::Unload { ids } => {
            let loader = kernel(&cache, g)?;
            for id in ids {
                let r = loader.unload(id)?;
                println!("unloaded {id} ({})", r.name);
            }
            Ok(())
        }
        Command::List(args) => list_programs(&kernel(&cache, g)?, args),
        Command::Get { id, output } => get(&kernel(&cache, g)?, id, output),
    }
}

/// The loader, after reconciling the state with the kernel and bpffs
/// (reported on stderr).
fn kernel(cache: &Cache, g: &Global) -> Result<Loader> {
    let fs = Bpffs::open(&g.bpffs, &g.root)?;
    let loader = Loader::new(State::open(cache)?, fs);
    let report = loader
        .reconcile()
        .context("cannot reconcile the program state with the kernel")?;
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
    Ok(loader)
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

/// Gets an image into the cache per the pull policy, verifies it against
/// the policy in force, and narrows it to this host.
fn admit(
    cache: &Cache,
    g: &Global,
    image: &ImageRef,
    pull_policy: PullPolicyArg,
    transport: &TransportArgs,
) -> Result<(Admitted, Loadable)> {
    let policy = load_policy(g)?;
    let opts = transport.options()?;
    let record = runtime()?
        .block_on(images::ensure(cache, &opts, image, pull_policy.into()))
        .with_context(|| format!("cannot pull {image}"))?;
    let admitted = images::verify_cached(cache, image, record, &policy)?;
    let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())
        .with_context(|| format!("{image} cannot be loaded on this host"))?;
    Ok((admitted, loadable))
}

fn pull(cache: &Cache, g: &Global, args: PullArgs) -> Result<()> {
    let (admitted, loadable) = admit(cache, g, &args.image, args.pull_policy, &args.transport)?;
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

fn verify(cache: &Cache, g: &Global, image: &ImageRef) -> Result<()> {
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
        images::identity(image)?,
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

/// The cached images loaded programs came from.
fn in_use(loader: &Loader) -> Result<Vec<(bpfman_image_spec::digest::Digest, u32)>> {
    Ok(loader
        .state()
        .all()?
        .into_iter()
        .filter_map(|r| match r.source {
            Source::Image { image, .. } => Some((image, r.id)),
            Source::File { .. } => None,
        })
        .collect())
}

fn rmi(cache: &Cache, loader: &Loader, what: &[String]) -> Result<()> {
    let used = in_use(loader)?;
    for w in what {
        let Some(record) = images::find(cache, w)? else {
            anyhow::bail!("no cached image matches '{w}'; see bpfman-load images");
        };
        if let Some((_, id)) = used.iter().find(|(d, _)| *d == record.digest) {
            anyhow::bail!(
                "{} is in use by loaded program {id}; unload it first (bpfman-load unload {id})",
                record.digest
            );
        }
        cache.remove_image(&record.digest)?;
        println!("removed {}", record.digest);
    }
    let (_, blobs, bytes) = cache.prune(|_| true)?;
    eprintln!("freed {blobs} blobs ({bytes} bytes)");
    Ok(())
}

fn prune(cache: &Cache, loader: &Loader, all: bool) -> Result<()> {
    let used = in_use(loader)?;
    let keep = |r: &ImageRecord| {
        used.iter().any(|(d, _)| *d == r.digest) || (!all && !r.references.is_empty())
    };
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

fn load(cache: &Cache, g: &Global, cmd: LoadCommand) -> Result<()> {
    let (records, output) = match cmd {
        LoadCommand::Image {
            image,
            pull_policy,
            load,
            transport,
        } => {
            // Pull and verify before touching the kernel; the kernel side
            // gets only a Loadable, which exists only with a proof.
            let (admitted, loadable) = admit(cache, g, &image, pull_policy, &transport)?;
            let loader = kernel(cache, g)?;
            let opts = load_options(&load);
            let records = loader
                .load_image(
                    &loadable,
                    &images::cache_key(&image),
                    &admitted.record.digest,
                    &opts,
                )
                .with_context(|| format!("cannot load {image}"))?;
            (records, load.output)
        }
        LoadCommand::File { path, load } => {
            let loader = kernel(cache, g)?;
            let records = loader
                .load_file(&path, &load_options(&load))
                .with_context(|| format!("cannot load '{}'", path.display()))?;
            (records, load.output)
        }
    };
    print_programs(&records, output)
}

fn load_options(a: &LoadArgs) -> LoadOptions {
    LoadOptions {
        programs: a.programs.clone(),
        globals: a.globals.clone(),
        share_maps_with: a.share_maps_with,
    }
}

fn xdp_mode(mode: XdpModeArg) -> aya::programs::XdpMode {
    match mode {
        XdpModeArg::Default => aya::programs::XdpMode::Default,
        XdpModeArg::Skb => aya::programs::XdpMode::Skb,
        XdpModeArg::Driver => aya::programs::XdpMode::Driver,
        XdpModeArg::Hw => aya::programs::XdpMode::Hardware,
    }
}

/// The bytes a program was loaded from, verified again: an image is
/// re-verified from the cache against the policy in force; a file must
/// still hash to what was loaded.
fn program_object(cache: &Cache, g: &Global, r: &ProgramRecord) -> Result<Vec<u8>> {
    match &r.source {
        Source::File { path, sha256 } => {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "cannot read '{}', which program {} was loaded from",
                    path.display(),
                    r.id
                )
            })?;
            if bpfman_image_spec::digest::Digest::of(&bytes) != *sha256 {
                anyhow::bail!(
                    "'{}' changed since program {} was loaded from it (it was {sha256}); load it again",
                    path.display(),
                    r.id
                );
            }
            Ok(bytes)
        }
        Source::Image {
            reference, image, ..
        } => {
            let policy = load_policy(g)?;
            let parsed: ImageRef = reference
                .parse()
                .with_context(|| format!("program {}'s image reference '{reference}'", r.id))?;
            let Some(record) = cache.image(image)? else {
                anyhow::bail!(
                    "{image}, which program {} came from, is no longer cached; load it again",
                    r.id
                );
            };
            let admitted = images::verify_cached(cache, &parsed, record, &policy)?;
            let loadable = Loadable::for_host(&admitted.content, admitted.proof.clone())?;
            Ok(loadable.image().object.clone())
        }
    }
}

fn chain_request(
    hook: crate::dispatcher::Hook,
    interface: String,
    netns: Option<PathBuf>,
    chain: &ChainArgs,
    mode: aya::programs::XdpMode,
    clsact: bool,
) -> Result<ChainRequest> {
    let proceed_on = if chain.proceed_on.is_empty() {
        None
    } else {
        Some(
            crate::dispatcher::parse_actions(hook, &chain.proceed_on)
                .map_err(anyhow::Error::msg)?,
        )
    };
    Ok(ChainRequest {
        hook,
        interface,
        netns,
        priority: chain.priority,
        proceed_on,
        xdp_mode: mode,
        clsact,
    })
}

fn attach(cache: &Cache, g: &Global, loader: &Loader, args: AttachArgs) -> Result<()> {
    use crate::dispatcher::Hook as H;
    let chained = match &args.hook {
        Hook::Xdp {
            iface,
            netns,
            mode,
            exclusive: false,
            chain,
        } => Some(chain_request(
            H::Xdp,
            iface.clone(),
            netns.clone(),
            chain,
            xdp_mode(*mode),
            false,
        )?),
        Hook::Tc {
            iface,
            direction,
            netns,
            clsact,
            chain,
        } => {
            let hook = match direction {
                Direction::Ingress => H::TcIngress,
                Direction::Egress => H::TcEgress,
            };
            Some(chain_request(
                hook,
                iface.clone(),
                netns.clone(),
                chain,
                Default::default(),
                *clsact,
            )?)
        }
        _ => None,
    };
    if let Some(req) = chained {
        let record = loader.record(args.id)?;
        let object = program_object(cache, g, &record)?;
        let link = loader
            .attach_chained(args.id, &req, &object)
            .with_context(|| format!("cannot attach program {}", args.id))?;
        println!("{}", link.id);
        eprintln!(
            "attached program {} as link {}: {}",
            args.id, link.id, link.attachment
        );
        return Ok(());
    }
    let request = match args.hook {
        Hook::Xdp {
            iface, netns, mode, ..
        } => AttachRequest::Xdp {
            interface: iface,
            netns,
            mode: xdp_mode(mode),
        },
        Hook::Tc { .. } => unreachable!("handled above"),
        Hook::Tcx {
            iface,
            direction,
            netns,
            first,
            before,
            after,
        } => AttachRequest::Tcx {
            interface: iface,
            netns,
            ingress: matches!(direction, Direction::Ingress),
            order: match (first, before, after) {
                (true, _, _) => TcxOrder::First,
                (_, Some(id), _) => TcxOrder::Before(id),
                (_, _, Some(id)) => TcxOrder::After(id),
                _ => TcxOrder::Last,
            },
        },
        Hook::Tracepoint { tracepoint } => {
            let Some((category, name)) = tracepoint.split_once('/') else {
                anyhow::bail!(
                    "'{tracepoint}' is not CATEGORY/NAME (e.g. syscalls/sys_enter_openat)"
                );
            };
            AttachRequest::Tracepoint {
                category: category.into(),
                name: name.into(),
            }
        }
        Hook::Kprobe { function, offset } => AttachRequest::Kprobe { function, offset },
        Hook::Uprobe {
            target,
            function,
            offset,
            pid,
        } => AttachRequest::Uprobe {
            target,
            function,
            offset: offset.unwrap_or(0),
            pid,
        },
        Hook::Fentry | Hook::Fexit => AttachRequest::Tracing,
    };
    let link = loader
        .attach(args.id, &request)
        .with_context(|| format!("cannot attach program {}", args.id))?;
    println!("{}", link.id);
    eprintln!(
        "attached program {} as link {}: {}",
        args.id, link.id, link.attachment
    );
    Ok(())
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
                    r.name,
                    kind.as_str().unwrap_or("?"),
                    source,
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

fn list_programs(loader: &Loader, args: ListArgs) -> Result<()> {
    if !args.all {
        let mut records = loader.state().all()?;
        records.sort_by_key(|r| r.id);
        return print_programs(&records, args.output);
    }
    let programs = loader.kernel_programs()?;
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
                    if p.ours { "yes" } else { "no" }
                )?;
            }
        }
    }
    Ok(())
}

fn get(loader: &Loader, id: u32, output: Output) -> Result<()> {
    let r = loader.record(id)?;
    if let Output::Json = output {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    let kind = serde_json::to_value(r.kind)?;
    println!("id:        {}", r.id);
    println!("name:      {}", r.name);
    println!(
        "type:      {} (section '{}')",
        kind.as_str().unwrap_or("?"),
        r.section
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
        println!("map:       {} at {}{shared}", m.name, m.pin.display());
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
