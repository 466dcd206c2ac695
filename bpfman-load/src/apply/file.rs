//! The desired-state files: TOML, one `[deployment.NAME]` table per
//! deployment, read from a file or every `*.toml` of a directory (merged;
//! a name may appear only once). Everything is validated before anything
//! is touched, and each error names the file, the line and the field.
//!
//! An attachment is written as the `attach` command's flags, as keys: its
//! `hook` is the subcommand and every other key one of that hook's flags
//! (`proceed-on = ["pass", "drop"]`, `exclusive = true`). The command's
//! own parser checks them, so the file says exactly what the CLI can.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bpfman_image::reference::ImageRef;
use clap::{ArgAction, FromArgMatches, Subcommand};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::attach::AttachRequest;
use crate::images::PullPolicy;

/// The most a desired-state file may hold.
const MAX_FILE: u64 = 1 << 20;

/// Why the desired state could not be read; names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the desired state '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("desired state '{path}': {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("'{path}' holds no deployments (no *.toml files with [deployment.NAME] tables)")]
    Empty { path: PathBuf },
}

/// Where a deployment's programs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploySource {
    /// An image, pulled per the pull policy and verified against the
    /// trust policy.
    Image(ImageRef),
    /// A local object file (no signature: the operator vouches).
    File(PathBuf),
}

impl fmt::Display for DeploySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(r) => r.fmt(f),
            Self::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// A program of another deployment, named where the CLI takes an id
/// (tcx's `before`/`after`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramRef {
    pub deployment: String,
    pub program: Option<String>,
}

/// One attachment of a deployment's program.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// The program (function); `None`: the deployment's only one.
    pub program: Option<String>,
    /// `file:line`, for messages.
    pub at: String,
    /// The `attach` command line this entry stands for (after the id).
    argv: Vec<String>,
    /// Flags naming another deployment's program, resolved at apply.
    refs: Vec<(String, ProgramRef)>,
}

impl AttachSpec {
    /// The request, with other deployments' programs resolved to ids.
    pub fn request(
        &self,
        mut resolve: impl FnMut(&ProgramRef) -> anyhow::Result<u32>,
    ) -> anyhow::Result<AttachRequest> {
        let mut argv = self.argv.clone();
        for (flag, r) in &self.refs {
            argv.push(format!("--{flag}"));
            argv.push(resolve(r)?.to_string());
        }
        parse_request(&argv).map_err(|m| anyhow::anyhow!("{}: {m}", self.at))
    }

    /// The hook's name (the subcommand).
    pub fn hook(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The deployments this attachment's order refers to.
    pub fn refers_to(&self) -> impl Iterator<Item = &str> {
        self.refs.iter().map(|(_, r)| r.deployment.as_str())
    }
}

/// One declared deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    /// `file:line` of its table.
    pub at: String,
    pub source: DeploySource,
    pub pull_policy: PullPolicy,
    pub programs: Vec<String>,
    pub globals: Vec<(String, Vec<u8>)>,
    /// Another deployment whose maps these programs reuse.
    pub share_maps_with: Option<String>,
    pub attach: Vec<AttachSpec>,
}

impl Deployment {
    /// What the deployment says, normalized: the part of its fingerprint
    /// that does not depend on what the source resolves to.
    pub fn declared(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source.to_string(),
            "programs": self.programs,
            "globals": self.globals.iter().map(|(n, v)| format!("{n}={}", crate::loader::hex(v))).collect::<Vec<_>>(),
            "share_maps_with": self.share_maps_with,
            "attach": self.attach.iter().map(|a| serde_json::json!({
                "program": a.program,
                "argv": a.argv,
                "refs": a.refs,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Every deployment of a desired state, in an order where a deployment
/// comes after those it shares maps with or orders itself against.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub deployments: Vec<Deployment>,
}

impl Desired {
    pub fn get(&self, name: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.name == name)
    }

    /// Reads a file, or every `*.toml` in a directory (in name order).
    pub fn load(path: &Path) -> Result<Self, FileError> {
        Self::load_all(std::slice::from_ref(&path.to_path_buf()))
    }

    /// Reads every file or directory given, as one desired state (a name
    /// may appear only once across all of them); each must declare
    /// something.
    pub fn load_all(paths: &[PathBuf]) -> Result<Self, FileError> {
        let mut texts = Vec::new();
        let mut given = Vec::new();
        for path in paths {
            let files = Self::files(path)?;
            for f in &files {
                let text =
                    bpfman_trust::file::read_text(f, MAX_FILE, bpfman_trust::file::Links::Follow)
                        .map_err(|source| FileError::Read {
                        path: f.clone(),
                        source,
                    })?;
                texts.push((f.clone(), text));
            }
            given.push((path, files));
        }
        let desired = Self::parse(&texts)?;
        for (path, files) in given {
            let declares = |f: &PathBuf| {
                let prefix = format!("{}:", f.display());
                desired
                    .deployments
                    .iter()
                    .any(|d| d.at.starts_with(&prefix))
            };
            if !files.iter().any(declares) {
                return Err(FileError::Empty { path: path.clone() });
            }
        }
        Ok(desired)
    }

    /// `path` itself, or the `*.toml` files of a directory in name order.
    fn files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
        if !path.is_dir() {
            return Ok(vec![path.to_path_buf()]);
        }
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| FileError::Read {
                path: path.into(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Parses and validates files already read: `(path, text)`.
    pub fn parse(files: &[(PathBuf, String)]) -> Result<Self, FileError> {
        let mut deployments: Vec<Deployment> = Vec::new();
        for (path, text) in files {
            let raw: RawFile = toml::from_str(text).map_err(|e| FileError::Syntax {
                path: path.clone(),
                message: e.to_string().trim_end().replace('\n', "\n  "),
            })?;
            let cx = Ctx { path, text };
            for (name, d) in raw.deployment {
                let d = cx.deployment(name, d)?;
                if let Some(prev) = deployments.iter().find(|p| p.name == d.name) {
                    return Err(FileError::Invalid {
                        at: d.at.clone(),
                        message: format!(
                            "deployment '{}' is already declared at {}; a name may appear only once",
                            d.name, prev.at
                        ),
                    });
                }
                deployments.push(d);
            }
        }
        check_references(&deployments)?;
        Ok(Self {
            deployments: in_dependency_order(deployments)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    deployment: BTreeMap<String, Spanned<RawDeployment>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDeployment {
    image: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
    pull_policy: Option<Spanned<String>>,
    #[serde(default)]
    programs: Vec<String>,
    #[serde(default)]
    globals: BTreeMap<String, Spanned<String>>,
    share_maps_with: Option<Spanned<String>>,
    #[serde(default)]
    attach: Vec<Spanned<toml::Table>>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(&self, span: &Range<usize>) -> String {
        let line = bpfman_trust::file::line_of(self.text, span.start);
        format!("{}:{line}", self.path.display())
    }

    fn invalid(&self, span: &Range<usize>, message: impl Into<String>) -> FileError {
        FileError::Invalid {
            at: self.at(span),
            message: message.into(),
        }
    }

    fn deployment(
        &self,
        name: String,
        raw: Spanned<RawDeployment>,
    ) -> Result<Deployment, FileError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let at = self.at(&span);
        if !valid_name(&name) {
            return Err(self.invalid(
                &span,
                format!(
                    "deployment name '{}': use letters, digits, '-', '_' and '.' (at most 63)",
                    name.escape_debug()
                ),
            ));
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let source = match (raw.image, raw.file) {
            (Some(_), Some(f)) => {
                return Err(self.invalid(
                    &f.span(),
                    format!("deployment '{name}': field 'file': give 'image' or 'file', not both"),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    &span,
                    format!("deployment '{name}': needs 'image' (a reference) or 'file' (an object path)"),
                ));
            }
            (Some(i), None) => {
                let r: ImageRef = i.get_ref().parse().map_err(|e| {
                    self.invalid(
                        &i.span(),
                        format!("deployment '{name}': field 'image': {e}"),
                    )
                })?;
                DeploySource::Image(match r {
                    ImageRef::Layout(mut l) if l.dir.is_relative() => {
                        l.dir = base.join(&l.dir);
                        ImageRef::Layout(l)
                    }
                    r => r,
                })
            }
            (None, Some(f)) => DeploySource::File(base.join(f.get_ref())),
        };
        let pull_policy = match raw.pull_policy {
            None => PullPolicy::IfNotPresent,
            Some(p) => match p.get_ref().as_str() {
                "always" => PullPolicy::Always,
                "if-not-present" => PullPolicy::IfNotPresent,
                "never" => PullPolicy::Never,
                other => {
                    return Err(self.invalid(
                        &p.span(),
                        format!(
                            "deployment '{name}': field 'pull-policy': '{other}' is not one of always, if-not-present, never"
                        ),
                    ));
                }
            },
        };
        if matches!(source, DeploySource::File(_)) && pull_policy != PullPolicy::IfNotPresent {
            return Err(self.invalid(
                &span,
                format!("deployment '{name}': field 'pull-policy' applies to images, not files"),
            ));
        }
        let mut globals = Vec::new();
        for (g, v) in raw.globals {
            let parsed =
                crate::loader::parse_global(&format!("{g}={}", v.get_ref())).map_err(|e| {
                    self.invalid(
                        &v.span(),
                        format!("deployment '{name}': field 'globals.{g}': {e}"),
                    )
                })?;
            globals.push(parsed);
        }
        let mut attach = Vec::new();
        for (i, a) in raw.attach.into_iter().enumerate() {
            let a_span = a.span();
            let spec = attach_spec(a.into_inner(), &self.at(&a_span)).map_err(|m| {
                self.invalid(&a_span, format!("deployment '{name}': attach[{i}]: {m}"))
            })?;
            if let Some(p) = &spec.program
                && !raw.programs.is_empty()
                && !raw.programs.contains(p)
            {
                return Err(self.invalid(
                    &a_span,
                    format!(
                        "deployment '{name}': attach[{i}]: field 'program': '{p}' is not among the deployment's programs ({})",
                        raw.programs.join(", ")
                    ),
                ));
            }
            if spec.program.is_none() && raw.programs.len() > 1 {
                return Err(self.invalid(
                    &a_span,
                    format!("deployment '{name}': attach[{i}]: field 'program' is needed: the deployment loads several programs"),
                ));
            }
            attach.push(spec);
        }
        let share_maps_with = raw.share_maps_with.map(|s| s.into_inner());
        Ok(Deployment {
            name,
            at,
            source,
            pull_policy,
            programs: raw.programs,
            globals,
            share_maps_with,
            attach,
        })
    }
}

/// A name usable in messages, pins' neighbours and JSON keys.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The `attach` command, for its flags and its parser.
fn attach_command() -> clap::Command {
    AttachRequest::augment_subcommands(
        clap::Command::new("attach")
            .no_binary_name(true)
            .subcommand_required(true)
            .disable_help_subcommand(true)
            .color(clap::ColorChoice::Never),
    )
}

/// Parses `argv` (hook first) as the `attach` command does.
fn parse_request(argv: &[String]) -> Result<AttachRequest, String> {
    let matches = attach_command()
        .try_get_matches_from(argv)
        .map_err(|e| clap_message(&e))?;
    AttachRequest::from_arg_matches(&matches).map_err(|e| clap_message(&e))
}

/// clap's error, first line, without its "error: " and with flags written
/// as the file writes them.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" ");
    let msg = joined.strip_prefix("error: ").unwrap_or(&joined);
    // '--proceed-on <ACTION,...>' -> 'proceed-on'
    let mut out = String::new();
    let mut rest = msg;
    while let Some(start) = rest.find("'--") {
        out.push_str(&rest[..start + 1]);
        let after = &rest[start + 3..];
        let end = after.find('\'').unwrap_or(after.len());
        let flag = after[..end].split(' ').next().unwrap_or_default();
        out.push_str(flag);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// One `[[deployment.NAME.attach]]` table as an `attach` command line.
fn attach_spec(mut table: toml::Table, at: &str) -> Result<AttachSpec, String> {
    let hook = match table.remove("hook") {
        Some(toml::Value::String(h)) => h,
        Some(_) => return Err("field 'hook' must be a string".into()),
        None => return Err(
            "field 'hook' is missing (xdp, tc, tcx, tracepoint, kprobe, uprobe, fentry or fexit)"
                .into(),
        ),
    };
    let program = match table.remove("program") {
        Some(toml::Value::String(p)) => Some(p),
        Some(_) => return Err("field 'program' must be a string".into()),
        None => None,
    };
    let cmd = attach_command();
    let Some(sub) = cmd.find_subcommand(&hook) else {
        let hooks: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        return Err(format!(
            "field 'hook': '{hook}' is not one of {}",
            hooks.join(", ")
        ));
    };
    let args: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| a.get_id() != "help")
        .collect();
    let fields = || {
        args.iter()
            .map(|a| field_name(a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut argv = vec![hook.clone()];
    let mut positional = Vec::new();
    let mut refs = Vec::new();
    for (key, value) in table {
        let Some(arg) = args.iter().find(|a| field_name(a) == key) else {
            return Err(format!(
                "field '{key}' is not one of {hook}'s: program, {}",
                fields()
            ));
        };
        let flag = arg.get_long().map(str::to_string);
        let values = match value {
            toml::Value::Array(a) => a,
            v => vec![v],
        };
        for v in values {
            let text = match v {
                toml::Value::Boolean(b) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                    if b && let Some(f) = &flag {
                        argv.push(format!("--{f}"));
                    }
                    continue;
                }
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(format!(
                        "field '{key}': {} is not a value it takes",
                        other.type_str()
                    ));
                }
            };
            // tcx orders itself against another deployment's program.
            if matches!(key.as_str(), "before" | "after") && text.parse::<u32>().is_err() {
                let (deployment, program) = match text.split_once('/') {
                    Some((d, p)) => (d.to_string(), Some(p.to_string())),
                    None => (text.clone(), None),
                };
                refs.push((
                    key.clone(),
                    ProgramRef {
                        deployment,
                        program,
                    },
                ));
                continue;
            }
            match &flag {
                Some(f) => {
                    argv.push(format!("--{f}"));
                    argv.push(text);
                }
                None => positional.push(text),
            }
        }
    }
    argv.extend(positional);
    let spec = AttachSpec {
        program,
        at: at.to_string(),
        argv,
        refs,
    };
    // Checked now with placeholder ids, so errors come before any change.
    spec.request(|_| Ok(1)).map_err(|e| {
        let m = e.to_string();
        m.strip_prefix(&format!("{at}: ")).unwrap_or(&m).to_string()
    })?;
    Ok(spec)
}

/// The key a flag is written as in the file.
fn field_name(a: &clap::Arg) -> String {
    a.get_long()
        .map(str::to_string)
        .unwrap_or_else(|| a.get_id().as_str().replace('_', "-"))
}

/// Every deployment named by another exists.
fn check_references(deployments: &[Deployment]) -> Result<(), FileError> {
    let names: BTreeSet<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
    for d in deployments {
        let named = d
            .share_maps_with
            .iter()
            .map(String::as_str)
            .map(|n| (n, "share-maps-with"))
            .chain(
                d.attach
                    .iter()
                    .flat_map(|a| a.refers_to().map(|n| (n, "attach before/after"))),
            );
        for (n, field) in named {
            if n == d.name {
                return Err(FileError::Invalid {
                    at: d.at.clone(),
                    message: format!("deployment '{}': field '{field}' names itself", d.name),
                });
            }
            if !names.contains(n) {
                return Err(FileError::Invalid {
                    at: d.at.clone(),
                    message: format!(
                        "deployment '{}': field '{field}': no deployment '{n}' is declared",
                        d.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The deployments ordered so that each comes after the ones it names;
/// a cycle is refused.
fn in_dependency_order(mut pending: Vec<Deployment>) -> Result<Vec<Deployment>, FileError> {
    let deps = |d: &Deployment| -> Vec<String> {
        d.share_maps_with
            .iter()
            .cloned()
            .chain(
                d.attach
                    .iter()
                    .flat_map(|a| a.refers_to().map(String::from)),
            )
            .collect()
    };
    let mut done: Vec<Deployment> = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|d| deps(d).iter().all(|n| done.iter().any(|x| &x.name == n)));
        match ready {
            Some(i) => done.push(pending.remove(i)),
            None => {
                let d = &pending[0];
                return Err(FileError::Invalid {
                    at: d.at.clone(),
                    message: format!(
                        "deployment '{}' is part of a cycle of share-maps-with/before/after references",
                        d.name
                    ),
                });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Desired, FileError> {
        Desired::parse(&[(
            PathBuf::from("/etc/bpfman-load/apply.d/a.toml"),
            text.into(),
        )])
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("invalid").to_string()
    }

    #[test]
    fn a_complete_file_parses() {
        let d = parse(
            r#"
[deployment.counter]
image = "quay.io/example/counter:v1"
pull-policy = "always"
programs = ["xdp_stats"]
globals = { SAMPLE = "01000000" }

[[deployment.counter.attach]]
hook = "xdp"
iface = "eth0"
netns = "blue"
priority = 10
proceed-on = ["pass", "drop"]
mode = "skb"

[deployment.local]
file = "objects/tc.o"
share-maps-with = "counter"

[[deployment.local.attach]]
hook = "tcx"
iface = "eth0"
direction = "ingress"
after = "counter"

[[deployment.local.attach]]
hook = "tracepoint"
tracepoint = "syscalls/sys_enter_openat"
"#,
        )
        .expect("valid");
        let names: Vec<&str> = d.deployments.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["counter", "local"]);
        let c = d.get("counter").expect("counter");
        assert_eq!(c.pull_policy, PullPolicy::Always);
        assert_eq!(c.globals, [("SAMPLE".to_string(), vec![1, 0, 0, 0])]);
        let req = c.attach[0].request(|_| Ok(1)).expect("request");
        let AttachRequest::Xdp(x) = req else {
            panic!("{req:?}")
        };
        assert_eq!(
            (x.iface.as_str(), x.chain.priority, x.chain.proceed_on.len()),
            ("eth0", Some(10), 2)
        );
        let l = d.get("local").expect("local");
        assert_eq!(
            l.source,
            DeploySource::File("/etc/bpfman-load/apply.d/objects/tc.o".into())
        );
        let req = l.attach[0]
            .request(|r| {
                assert_eq!(r.deployment, "counter");
                Ok(42)
            })
            .expect("tcx");
        let AttachRequest::Tcx(t) = req else {
            panic!("{req:?}")
        };
        assert_eq!(t.after, Some(42));
        assert!(matches!(
            l.attach[1].request(|_| Ok(1)),
            Ok(AttachRequest::Tracepoint(_))
        ));
    }

    #[test]
    fn an_xdp_attachment_may_share_the_hook_with_libxdp() {
        let d = parse(
            "[deployment.a]\nimage = \"x/y:1\"\n[[deployment.a.attach]]\nhook = \"xdp\"\niface = \"eth0\"\nlibxdp = true\nlibxdp-version = 3\n",
        )
        .expect("valid");
        let req = d.get("a").expect("a").attach[0]
            .request(|_| Ok(1))
            .expect("request");
        let AttachRequest::Xdp(x) = req else {
            panic!("{req:?}")
        };
        assert!(x.libxdp);
        assert_eq!(x.libxdp_version, 3);
        let e = err(
            "[deployment.a]\nimage = \"x/y:1\"\n[[deployment.a.attach]]\nhook = \"xdp\"\niface = \"eth0\"\nlibxdp = true\nlibxdp-version = 4\n",
        );
        assert!(e.contains("libxdp-version"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = err(
            "[deployment.a]\nimage = \"x/y:1\"\n[[deployment.a.attach]]\nhook = \"xdp\"\nifac = \"eth0\"\n",
        );
        assert!(
            e.contains("a.toml:3") && e.contains("field 'ifac'") && e.contains("iface"),
            "{e}"
        );
        let e =
            err("[deployment.a]\nimage = \"x/y:1\"\n\n[[deployment.a.attach]]\nhook = \"xdp\"\n");
        assert!(e.contains("a.toml:4") && e.contains("iface"), "{e}");
        let e = err("[deployment.a]\nimage = \"x/y:1\"\npull-policy = \"sometimes\"\n");
        assert!(e.contains("a.toml:3") && e.contains("pull-policy"), "{e}");
        let e = err("[deployment.a]\nimage = \"x/y:1\"\nimagee = 1\n");
        assert!(e.contains("line 3") && e.contains("imagee"), "{e}");
        let e = err("[deployment.a]\nimage = \"x/y:1\"\nglobals = { N = \"zz\" }\n");
        assert!(e.contains("a.toml:3") && e.contains("globals.N"), "{e}");
        let e = err("[deployment.a]\n");
        assert!(e.contains("a.toml:1") && e.contains("'image'"), "{e}");
        let e = err("[deployment.a]\nimage = \"x/y:1\"\nshare-maps-with = \"b\"\n");
        assert!(e.contains("no deployment 'b'"), "{e}");
        let e = err(
            "[deployment.a]\nimage = \"x/y:1\"\n[[deployment.a.attach]]\nhook = \"xdp\"\niface = \"e\"\nexclusive = true\npriority = 3\n",
        );
        assert!(e.contains("a.toml:3") && e.contains("priority"), "{e}");
        let e =
            err("[deployment.a]\nimage = \"x/y:1\"\n[[deployment.a.attach]]\nhook = \"cgroup\"\n");
        assert!(
            e.contains("'cgroup' is not one of xdp, tc") && e.contains("lsm"),
            "{e}"
        );
        let e = err(
            "[deployment.a]\nimage = \"x/y:1\"\nprograms = [\"p\", \"q\"]\n[[deployment.a.attach]]\nhook = \"tracepoint\"\ntracepoint = \"a/b\"\n",
        );
        assert!(e.contains("field 'program' is needed"), "{e}");
    }

    #[test]
    fn a_name_appears_once_across_files() {
        let files = [
            (
                PathBuf::from("/d/a.toml"),
                "[deployment.x]\nimage = \"r/x:1\"\n".to_string(),
            ),
            (
                PathBuf::from("/d/b.toml"),
                "\n[deployment.x]\nfile = \"x.o\"\n".to_string(),
            ),
        ];
        let e = Desired::parse(&files).expect_err("dup").to_string();
        assert!(
            e.contains("/d/b.toml:2") && e.contains("/d/a.toml:1"),
            "{e}"
        );
    }

    #[test]
    fn cycles_are_refused_and_order_follows_references() {
        let e = err(
            "[deployment.a]\nfile = \"a.o\"\nshare-maps-with = \"b\"\n[deployment.b]\nfile = \"b.o\"\nshare-maps-with = \"a\"\n",
        );
        assert!(e.contains("cycle"), "{e}");
        let d = parse("[deployment.a]\nfile = \"a.o\"\nshare-maps-with = \"b\"\n[deployment.b]\nfile = \"b.o\"\n")
            .expect("valid");
        let names: Vec<&str> = d.deployments.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn relative_layouts_are_relative_to_the_file() {
        let d = parse("[deployment.a]\nimage = \"oci:images:v1\"\n").expect("valid");
        assert_eq!(
            d.deployments[0].source.to_string(),
            "oci:/etc/bpfman-load/apply.d/images:v1"
        );
    }
}
