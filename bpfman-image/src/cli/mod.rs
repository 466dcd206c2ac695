//! The `bpfman-image` command line. It lives in the library so the
//! integration tests can build an entry point from exactly this code (see
//! `tests/bin`); `main.rs` only calls [`main`]. This is binary code: it is the
//! one place in the crate that uses `anyhow`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use crate::auth::{AuthFiles, Credentials};
use crate::builder::{self, BuildOptions, ObjectArg};
use crate::inspect::{self, Report};
use crate::layout::{self, WriteOutcome};
use crate::ops;
use crate::reference::{ImageRef, LayoutRef, RegistryRef};
use crate::registry::{NoProgress, Progress, Registry, Stats};
use crate::store::ImageStore;
use anyhow::{Context, Result, bail};
use bpfman_image_spec::oci::Descriptor;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::frontend::{TransportArgs, exit, init_tracing};

mod sign;

#[derive(Debug, Parser)]
#[command(bin_name = "bpfman-image", name = "bpfman-image", version, about = "Package eBPF objects as OCI images", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a reproducible image from eBPF objects.
    ///
    /// Programs and maps are read from the objects and written to the
    /// io.ebpf.programs and io.ebpf.maps labels. One object makes an image;
    /// several (one per architecture) make a multi-arch index.
    Build(BuildArgs),
    /// Show the programs, maps, platforms, digests and labels of an image,
    /// in a layout or a registry.
    Inspect(InspectArgs),
    /// Push an image (or index) from a layout to a registry.
    Push(PushArgs),
    /// Pull an image (or a whole index) from a registry into a layout.
    Pull(PullArgs),
    /// Copy an image between registries and layouts, in any direction.
    Copy(CopyArgs),
    /// Give an image more tags, in the same layout or repository.
    Tag(TagArgs),
    /// Check a layout: every blob hashes to its name, every tag's image is
    /// whole (--repair removes damaged blob files).
    Fsck(FsckArgs),
    /// Check credentials against a registry and store them (mode 0600).
    Login(LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(LogoutArgs),
    /// Print the PROGRAMS=, MAPS= and BC_<ARCH>_<EL|EB>= build args for
    /// bpfman's Containerfile flow.
    GenerateBuildArgs(GenerateArgs),
    /// Write a cosign key pair: PREFIX.key (encrypted) and PREFIX.pub.
    Keygen(sign::KeygenArgs),
    /// Print the public key of a cosign private key, as PEM.
    PublicKey(sign::PublicKeyArgs),
    /// Sign the digest an image reference resolves to, cosign-compatibly.
    ///
    /// Signatures are added next to the image (in the registry, or in the
    /// layout), keeping those already there.
    Sign(sign::SignArgs),
    /// Check and report every signature of an image, against keys or a
    /// trust policy. Exits non-zero unless the image is verified.
    Verify(sign::VerifyArgs),
    /// Verify a Sigstore bundle over a file, offline, against a trusted
    /// root: a certificate signature for an identity, or a key signature.
    ///
    /// The checks and their order are those images get: certificate chain
    /// and validity at the logged or timestamped time, SCTs, identity,
    /// transparency log entry (signed entry timestamp, inclusion proof,
    /// checkpoint), RFC 3161 timestamps, and the signature.
    VerifyBlob(sign::VerifyBlobArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    #[command(flatten)]
    objects: Objects,
    /// Where to write the image: oci:DIR[:TAG] (an OCI image layout; TAG
    /// defaults to latest).
    #[arg(long, value_name = "oci:DIR[:TAG]", required_unless_present = "push")]
    output: Option<ImageRef>,
    /// Push the image to this registry reference (as well as writing
    /// --output, if given).
    #[arg(long, value_name = "REGISTRY/REPO[:TAG]")]
    push: Option<RegistryRef>,
    /// Extra config label KEY=VALUE (repeatable). io.ebpf.* is reserved.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Manifest annotation KEY=VALUE (repeatable), e.g.
    /// org.opencontainers.image.source=https://...
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    annotations: Vec<(String, String)>,
    /// Seconds since the epoch recorded as the creation time and in the layer.
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        value_parser = parse_epoch
    )]
    source_date_epoch: u64,
    /// Write an image index even for a single object.
    #[arg(long)]
    index: bool,
    /// Replace an image already under the tag.
    #[arg(long)]
    force: bool,
    /// Print only the reference.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    sign: sign::BuildSignArgs,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The image: oci:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST].
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The image to push: oci:DIR[:TAG].
    #[arg(value_name = "oci:DIR[:TAG]", value_parser = parse_layout_ref)]
    source: LayoutRef,
    /// Where to push it: REGISTRY/REPO[:TAG].
    #[arg(value_name = "REGISTRY/REPO[:TAG]")]
    destination: RegistryRef,
    #[command(flatten)]
    opts: CopyOptions,
}

#[derive(Debug, Args)]
struct PullArgs {
    /// The image: REGISTRY/REPO[:TAG][@DIGEST].
    #[arg(value_name = "REGISTRY/REPO[:TAG][@DIGEST]")]
    source: RegistryRef,
    /// The layout to write: oci:DIR[:TAG] (TAG defaults to the source's).
    #[arg(long, value_name = "oci:DIR[:TAG]", value_parser = parse_layout_ref)]
    output: LayoutRef,
    #[command(flatten)]
    opts: CopyOptions,
}

#[derive(Debug, Args)]
struct CopyArgs {
    /// oci:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST].
    source: ImageRef,
    /// oci:DIR[:TAG] or REGISTRY/REPO[:TAG].
    destination: ImageRef,
    #[command(flatten)]
    opts: CopyOptions,
}

/// Options of `push`, `pull` and `copy`.
#[derive(Debug, Args)]
struct CopyOptions {
    /// Print only the written reference.
    #[arg(long, short)]
    quiet: bool,
    /// Do not copy the image's signatures (both cosign formats), which are
    /// copied by default.
    #[arg(long)]
    no_signatures: bool,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct TagArgs {
    /// The image: oci:DIR[:TAG] or REGISTRY/REPO[:TAG][@DIGEST].
    source: ImageRef,
    /// The new tags, in the same layout or repository.
    #[arg(required = true, value_name = "TAG")]
    tags: Vec<String>,
    /// Move a tag that names another image.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct FsckArgs {
    /// The layout: oci:DIR.
    #[arg(value_name = "LAYOUT", value_parser = parse_layout_ref)]
    layout: LayoutRef,
    /// Remove damaged blob files (a rebuild or pull then writes them
    /// again).
    #[arg(long)]
    repair: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The registry: HOST[:PORT].
    registry: String,
    /// The user name; the password is read from stdin (--password-stdin).
    #[arg(long, short, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    #[command(flatten)]
    transport: TransportArgs,
}

#[derive(Debug, Args)]
struct LogoutArgs {
    /// The registry: HOST[:PORT].
    registry: String,
    /// The auth file to edit instead of the standard ones.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
}

fn parse_layout_ref(s: &str) -> Result<LayoutRef, String> {
    match s.parse::<ImageRef>() {
        Ok(ImageRef::Layout(l)) => Ok(l),
        Ok(ImageRef::Registry(_)) => Err(format!("'{s}' is not a layout: write oci:DIR[:TAG]")),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
struct GenerateArgs {
    #[command(flatten)]
    objects: Objects,
}

/// The `--object` arguments of `build` and `generate-build-args`.
#[derive(Debug, Args)]
struct Objects {
    /// An object, as PATH or ARCH=PATH (e.g. s390x=prog_bpfeb.o); repeat it,
    /// one per architecture. Without ARCH a little-endian object is amd64.
    #[arg(
        long = "object",
        short = 'o',
        value_name = "[ARCH=]PATH",
        required = true
    )]
    objects: Vec<ObjectArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.into())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

fn parse_epoch(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| {
        format!("'{s}' is not a SOURCE_DATE_EPOCH: give whole seconds since 1970-01-01 UTC, e.g. $(git log -1 --format=%ct)")
    })
}

fn to_map(pairs: Vec<(String, String)>, what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            bail!("{what} '{k}' is given twice");
        }
    }
    Ok(map)
}

/// Parses the command line, runs the command, prints any error as a chain.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build(args),
        Command::Inspect(args) => inspect(args),
        Command::Push(args) => {
            let src = ImageRef::Layout(args.source);
            let dst = ImageRef::Registry(args.destination);
            copy(&src, &dst, &args.opts)
        }
        Command::Pull(args) => {
            let mut output = args.output;
            if output.tag.is_none() {
                output.tag = args.source.tag.clone();
            }
            let src = ImageRef::Registry(args.source);
            copy(&src, &ImageRef::Layout(output), &args.opts)
        }
        Command::Copy(args) => copy(&args.source, &args.destination, &args.opts),
        Command::Tag(args) => tag(args),
        Command::Fsck(args) => fsck(args),
        Command::Login(args) => login(args),
        Command::Logout(args) => logout(args),
        Command::GenerateBuildArgs(args) => generate(args),
        Command::Keygen(args) => sign::keygen(args),
        Command::PublicKey(args) => sign::public_key(args),
        Command::Sign(args) => sign::sign(args),
        Command::Verify(args) => sign::verify(args),
        Command::VerifyBlob(args) => sign::verify_blob(args),
    };
    exit(result)
}

fn build(args: BuildArgs) -> Result<()> {
    let opts = BuildOptions {
        objects: args.objects.objects,
        labels: to_map(args.labels, "label")?,
        annotations: to_map(args.annotations, "annotation")?,
        epoch: args.source_date_epoch,
        force_index: args.index,
    };
    // The key first: a wrong password must fail before anything is written.
    let key = match &args.sign.sign_key {
        Some(path) => Some(sign::load_private_key(path)?),
        None => None,
    };
    let sign_annotations = args.sign.annotations()?;
    let built = builder::build(&opts)?;
    // What will not load from the image: said even with --quiet.
    for img in &built.images {
        for w in img.info.warnings() {
            eprintln!("warning: linux/{}: {w}", img.arch);
        }
    }
    let rt = runtime()?;
    let sign_with = key.as_ref().map(|key| ops::SignWith {
        key,
        format: args.sign.format,
        annotations: &sign_annotations,
    });
    let mut out = io::stdout().lock();
    let mut verb = "built";
    if let Some(output) = &args.output {
        let ImageRef::Layout(target) = output else {
            bail!(
                "--output must be a layout, oci:DIR[:TAG]; to send the image to a registry use --push {output}"
            );
        };
        let published = rt.block_on(ops::publish_to_layout(
            &built, target, args.force, sign_with,
        ))?;
        tracing::info!(outcome = ?published.outcome, digest = %built.top.digest, "image written");
        verb = match published.outcome {
            Some(WriteOutcome::Unchanged) => "unchanged",
            _ => "wrote",
        };
        writeln!(out, "{}", published.pinned)?;
        if let Some(signed) = &published.signed {
            sign::print_signed(signed)?;
        }
    }
    if !args.quiet {
        for img in &built.images {
            let programs: Vec<_> = img.metadata.programs.keys().map(String::as_str).collect();
            eprintln!(
                "{verb} linux/{}: {} ({})",
                img.arch,
                img.descriptor.digest,
                programs.join(", ")
            );
        }
    }
    if let Some(dst) = &args.push {
        let opts = transport(&args.transport)?;
        let store = rt.block_on(ImageStore::open(&ImageRef::Registry(dst.clone()), &opts))?;
        let published = rt.block_on(ops::publish_to_registry(
            &built,
            &store,
            sign_with,
            progress(args.quiet),
        ));
        report_stats(&store, args.quiet);
        let published = published?;
        writeln!(out, "{}", published.pinned)?;
        if let Some(signed) = &published.signed {
            sign::print_signed(signed)?;
        }
    }
    Ok(())
}

/// The current-thread runtime each command runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    crate::runtime().context("cannot start the async runtime")
}

/// Copies an image, and its signatures unless `opts.no_signatures`.
fn copy(src: &ImageRef, dst: &ImageRef, opts: &CopyOptions) -> Result<()> {
    let transport = transport(&opts.transport)?;
    let copied = runtime()?.block_on(async {
        let src = ImageStore::open_to_read(src, &transport).await?;
        let dst = ImageStore::open(dst, &transport).await?;
        let copied = ops::copy(&src, &dst, !opts.no_signatures, progress(opts.quiet)).await;
        report_stats(&src, opts.quiet);
        report_stats(&dst, opts.quiet);
        Ok::<_, anyhow::Error>(copied?)
    })?;
    writeln!(io::stdout().lock(), "{}", copied.written)?;
    if copied.signatures > 0 && !opts.quiet {
        eprintln!("copied {} signature(s)", copied.signatures);
    }
    Ok(())
}

fn tag(args: TagArgs) -> Result<()> {
    let opts = transport(&args.transport)?;
    let tagged = runtime()?.block_on(async {
        let store = ImageStore::open(&args.source, &opts).await?;
        Ok::<_, anyhow::Error>(ops::tag(&store, &args.tags, args.force).await?)
    })?;
    let mut out = io::stdout().lock();
    for t in tagged {
        writeln!(out, "{t}")?;
    }
    Ok(())
}

fn fsck(args: FsckArgs) -> Result<()> {
    let report = layout::fsck(&args.layout.dir, args.repair)
        .with_context(|| format!("cannot check oci:{}", args.layout.dir.display()))?;
    let mut out = io::stdout().lock();
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => {
            for (path, why) in &report.corrupt {
                writeln!(out, "corrupt {}: {why}", path.display())?;
            }
            for (tag, digest) in &report.broken {
                writeln!(out, "broken tag {tag}: blob {digest} is missing or damaged")?;
            }
            for path in &report.removed {
                writeln!(out, "removed {}", path.display())?;
            }
            writeln!(
                out,
                "checked {} blobs: {} corrupt, {} broken tags, {} unreferenced",
                report.blobs_checked,
                report.corrupt.len(),
                report.broken.len(),
                report.unreferenced.len()
            )?;
        }
    }
    if report.is_clean() {
        Ok(())
    } else if args.repair {
        bail!("damaged blobs were removed; build or pull the broken tags again")
    } else {
        bail!("the layout has damaged blobs; run fsck --repair, then build or pull again")
    }
}

/// `HOST[:PORT]` as a reference, for credential lookups and checks.
fn registry_only(registry: &str) -> Result<RegistryRef> {
    let registry = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r: RegistryRef = format!("{registry}/x")
        .parse()
        .with_context(|| format!("'{registry}' is not a registry HOST[:PORT]"))?;
    if r.registry != registry
        && !(registry == "index.docker.io" || registry == "registry-1.docker.io")
    {
        bail!("'{registry}' is not a registry HOST[:PORT]");
    }
    Ok(r)
}

fn login(args: LoginArgs) -> Result<()> {
    let r = registry_only(&args.registry)?;
    let mut opts = transport(&args.transport)?;
    if let Some(user) = &args.username {
        let mut password = String::new();
        io::stdin()
            .read_to_string(&mut password)
            .context("cannot read the password from stdin")?;
        let password = password.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("no password on stdin");
        }
        opts.creds = Some(Credentials::new(user, password));
    }
    let Some(creds) = opts.creds.clone() else {
        bail!(
            "give credentials: --username USER --password-stdin, --creds USER:PASSWORD or --creds-file FILE"
        );
    };
    runtime()?
        .block_on(async {
            let reg = Registry::connect(&opts, &r).await?;
            reg.ping(&r).await
        })
        .with_context(|| format!("login to {} failed", r.registry))?;
    let stored = opts.auth_files.login(&r.registry, &creds)?;
    eprintln!("Login succeeded; credentials stored in {stored}");
    Ok(())
}

fn logout(args: LogoutArgs) -> Result<()> {
    let r = registry_only(&args.registry)?;
    let files = AuthFiles::from_env(args.authfile);
    for src in files.logout(&r.registry)? {
        eprintln!("Removed credentials for {} from {src}", r.registry);
    }
    Ok(())
}

/// The transport options the flags give, with the blob-location cache
/// (`$XDG_CACHE_HOME/bpfman-image/blob-locations.json`) that lets a push
/// mount blobs the registry holds in another repository.
fn transport(t: &crate::frontend::TransportArgs) -> Result<crate::registry::TransportOptions> {
    let mut opts = t.options()?;
    opts.blob_locations = crate::registry::locations::BlobLocations::default_path()
        .map(|p| Arc::new(crate::registry::locations::BlobLocations::open(p)));
    Ok(opts)
}

fn report_stats(store: &ImageStore, quiet: bool) {
    let Some(reg) = store.registry() else { return };
    if quiet {
        return;
    }
    let s = &reg.stats;
    let g = Stats::get;
    let (up, skipped, down) = (
        g(&s.blobs_uploaded),
        g(&s.blobs_skipped),
        g(&s.blobs_downloaded),
    );
    let mounted = g(&s.blobs_mounted);
    if up + skipped + mounted > 0 || g(&s.manifests_pushed) > 0 {
        let mounted = if mounted > 0 {
            format!(", {mounted} mounted from other repositories")
        } else {
            String::new()
        };
        eprintln!(
            "{}: uploaded {up} blobs ({} bytes), {skipped} already present{mounted}, {} manifests",
            reg.name(),
            g(&s.bytes_uploaded),
            g(&s.manifests_pushed)
        );
    }
    if down > 0 {
        eprintln!(
            "{}: downloaded {down} blobs ({} bytes)",
            reg.name(),
            g(&s.bytes_downloaded)
        );
    }
    if g(&s.retries) > 0 {
        eprintln!(
            "{}: {} retries after transient failures",
            reg.name(),
            g(&s.retries)
        );
    }
}

/// Progress bars on a terminal, nothing otherwise.
fn progress(quiet: bool) -> Arc<dyn Progress> {
    if quiet || !io::stderr().is_terminal() {
        return Arc::new(NoProgress);
    }
    Arc::new(Bars::default())
}

/// One indicatif bar per blob.
#[derive(Default)]
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, desc: &Descriptor) -> Option<indicatif::ProgressBar> {
        self.bars
            .lock()
            .ok()
            .and_then(|b| b.get(&desc.digest.to_string()).cloned())
    }

    fn short(desc: &Descriptor) -> String {
        desc.digest.hex().chars().take(12).collect()
    }
}

impl Progress for Bars {
    fn start(&self, desc: &Descriptor, verb: &'static str) {
        let bar = self.multi.add(indicatif::ProgressBar::new(desc.size));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(verb);
        bar.set_message(Self::short(desc));
        if let Ok(mut bars) = self.bars.lock()
            && let Some(old) = bars.insert(desc.digest.to_string(), bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, desc: &Descriptor, n: u64) {
        if let Some(bar) = self.bar(desc) {
            bar.inc(n);
        }
    }

    fn finish(&self, desc: &Descriptor, skipped: bool) {
        match self.bar(desc) {
            Some(bar) if skipped => bar.finish_with_message("exists"),
            Some(bar) => bar.finish(),
            None if skipped => {
                let bar = self.multi.add(indicatif::ProgressBar::new(desc.size));
                bar.finish_with_message(format!("{} exists", Self::short(desc)));
            }
            None => {}
        }
    }
}

fn inspect(args: InspectArgs) -> Result<()> {
    let opts = transport(&args.transport)?;
    let image = runtime()?.block_on(async {
        let store = ImageStore::open_to_read(&args.image, &opts).await?;
        Ok::<_, anyhow::Error>(store.read(&NoProgress).await?)
    })?;
    let report = inspect::report(&image.shown, &image.read);
    let mut out = io::stdout().lock();
    match args.output {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => print_report(&mut out, &report)?,
    }
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    let mut out = io::stdout().lock();
    for line in crate::buildargs::generate(&args.objects.objects)? {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn print_report(out: &mut impl Write, r: &Report) -> io::Result<()> {
    // Names from the image are untrusted: escaped before they print.
    use bpfman_image_spec::text::printable as p;
    writeln!(out, "Reference:  {}", r.reference)?;
    writeln!(out, "Digest:     {}", r.digest)?;
    writeln!(out, "Media type: {} ({} bytes)", r.media_type, r.size)?;
    for (k, v) in &r.annotations {
        writeln!(out, "Annotation: {}={}", p(k), p(v))?;
    }
    writeln!(out)?;
    let mut rows = vec![row(["PLATFORM", "MANIFEST", "OBJECT", "PROGRAMS", "MAPS"])];
    rows.extend(r.images.iter().map(|i| {
        vec![
            i.platform.clone(),
            i.manifest_digest.to_string(),
            p(&i.object).into_owned(),
            i.programs.len().to_string(),
            i.maps.len().to_string(),
        ]
    }));
    write_table(out, &rows, "")?;
    for a in &r.artifacts {
        writeln!(
            out,
            "skipped {a}: an attestation or other artifact, not an image"
        )?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {w}")?;
    }
    for i in &r.images {
        writeln!(out)?;
        writeln!(out, "{}:", i.platform)?;
        writeln!(
            out,
            "  object {} ({}, labels {:?}), layer {} ({} bytes), config {}",
            p(&i.object),
            i.endianness,
            i.label_format,
            i.layer_digest,
            i.layer_size,
            i.config_digest
        )?;
        if let Some(created) = &i.created {
            writeln!(out, "  created {created}")?;
        }
        let mut progs = vec![row(["PROGRAM", "TYPE", "SECTION"])];
        progs.extend(i.programs.iter().map(|x| {
            vec![
                p(&x.name).into_owned(),
                p(&x.program_type).into_owned(),
                p(&x.section).into_owned(),
            ]
        }));
        write_table(out, &progs, "  ")?;
        if !i.maps.is_empty() {
            let mut maps = vec![row(["MAP", "TYPE"])];
            maps.extend(
                i.maps
                    .iter()
                    .map(|m| vec![p(&m.name).into_owned(), p(&m.map_type).into_owned()]),
            );
            write_table(out, &maps, "  ")?;
        }
        for (k, v) in &i.labels {
            writeln!(out, "  label {}={}", p(k), p(v))?;
        }
        for (k, v) in &i.annotations {
            writeln!(out, "  annotation {}={}", p(k), p(v))?;
        }
        for w in &i.warnings {
            writeln!(out, "  warning: {w}")?;
        }
    }
    Ok(())
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_string()).collect()
}

fn write_table(out: &mut impl Write, rows: &[Vec<String>], indent: &str) -> io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::from(indent);
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
