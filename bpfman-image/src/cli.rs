//! The `bpfman-image` command line. It lives in the library so the
//! integration tests can build an entry point from exactly this code (see
//! `tests/bin`); `main.rs` only calls [`main`]. This is binary code: it is the
//! one place in the crate that uses `anyhow`.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use crate::builder::{self, BuildOptions, ObjectArg};
use crate::inspect::{self, Report};
use crate::layout::{self, WriteOutcome};
use crate::reference::ImageRef;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Show the programs, maps, platforms, digests and labels of an image.
    Inspect(InspectArgs),
    /// Print the PROGRAMS=, MAPS= and BC_<ARCH>_<EL|EB>= build args for
    /// bpfman's Containerfile flow.
    GenerateBuildArgs(GenerateArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    #[command(flatten)]
    objects: Objects,
    /// Where to write the image: oci:DIR[:TAG] (an OCI image layout; TAG
    /// defaults to latest).
    #[arg(long, value_name = "oci:DIR[:TAG]")]
    output: ImageRef,
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
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The image: oci:DIR[:TAG].
    #[arg(value_name = "IMAGE")]
    image: ImageRef,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
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
        Command::GenerateBuildArgs(args) => generate(args),
    };
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

fn init_tracing() {
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

fn build(args: BuildArgs) -> Result<()> {
    let opts = BuildOptions {
        objects: args.objects.objects,
        labels: to_map(args.labels, "label")?,
        annotations: to_map(args.annotations, "annotation")?,
        epoch: args.source_date_epoch,
        force_index: args.index,
    };
    let built = builder::build(&opts)?;
    let ImageRef::Layout(target) = &args.output;
    let tag = target.tag_or_default();
    let outcome = layout::write_image(&target.dir, tag, &built.top, &built.blobs(), args.force)?;
    tracing::info!(?outcome, digest = %built.top.digest, "image written");
    let mut out = io::stdout().lock();
    if !args.quiet {
        let verb = match outcome {
            WriteOutcome::Created | WriteOutcome::Updated => "wrote",
            WriteOutcome::Unchanged => "unchanged",
        };
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
    writeln!(
        out,
        "oci:{}:{tag}@{}",
        target.dir.display(),
        built.top.digest
    )?;
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<()> {
    let ImageRef::Layout(r) = &args.image;
    let (layout, tag, top) = inspect::resolve_layout(r)?;
    let read = inspect::read_image(&layout, &top)
        .with_context(|| format!("cannot inspect {}", args.image))?;
    let shown = ImageRef::Layout(crate::reference::LayoutRef {
        dir: r.dir.clone(),
        tag: Some(tag),
    });
    let report = inspect::report(&shown, &read);
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
    writeln!(out, "Reference:  {}", r.reference)?;
    writeln!(out, "Digest:     {}", r.digest)?;
    writeln!(out, "Media type: {} ({} bytes)", r.media_type, r.size)?;
    for (k, v) in &r.annotations {
        writeln!(out, "Annotation: {k}={v}")?;
    }
    writeln!(out)?;
    let mut rows = vec![row(["PLATFORM", "MANIFEST", "OBJECT", "PROGRAMS", "MAPS"])];
    rows.extend(r.images.iter().map(|i| {
        vec![
            i.platform.clone(),
            i.manifest_digest.to_string(),
            i.object.clone(),
            i.programs.len().to_string(),
            i.maps.len().to_string(),
        ]
    }));
    write_table(out, &rows, "")?;
    for i in &r.images {
        writeln!(out)?;
        writeln!(out, "{}:", i.platform)?;
        writeln!(
            out,
            "  object {} ({}, labels {:?}), layer {} ({} bytes), config {}",
            i.object, i.endianness, i.label_format, i.layer_digest, i.layer_size, i.config_digest
        )?;
        if let Some(created) = &i.created {
            writeln!(out, "  created {created}")?;
        }
        let mut progs = vec![row(["PROGRAM", "TYPE", "SECTION"])];
        progs.extend(
            i.programs
                .iter()
                .map(|p| vec![p.name.clone(), p.program_type.clone(), p.section.clone()]),
        );
        write_table(out, &progs, "  ")?;
        if !i.maps.is_empty() {
            let mut maps = vec![row(["MAP", "TYPE"])];
            maps.extend(
                i.maps
                    .iter()
                    .map(|m| vec![m.name.clone(), m.map_type.clone()]),
            );
            write_table(out, &maps, "  ")?;
        }
        for (k, v) in &i.labels {
            writeln!(out, "  label {k}={v}")?;
        }
        for (k, v) in &i.annotations {
            writeln!(out, "  annotation {k}={v}")?;
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
