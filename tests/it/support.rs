//! Shared helpers for the integration tests: finding the built binaries and
//! the repository's test data, running commands, and the skip policy.
//!
//! Skip policy: a test that needs something this machine lacks (a tool, root,
//! a registry) may skip with a printed reason on a developer's machine, but
//! when `BPFMAN_TEST_NO_SKIP=1` (set by `.ci/run`) every such skip fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The variable that turns skips into failures.
pub const NO_SKIP_ENV: &str = "BPFMAN_TEST_NO_SKIP";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file under `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    repo_root().join("testdata").join(rel)
}

/// Path of the `bpfman-image` command under test: this package's own build of
/// it (`bin/bpfman-image.rs`), which cargo rebuilds before running the tests.
pub fn image_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_it-bpfman-image"))
}

/// Path of the `bpfman-load` command under test (`bin/bpfman-load.rs`).
pub fn load_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_it-bpfman-load"))
}

/// Skips (returns false) or, under `BPFMAN_TEST_NO_SKIP`, fails.
pub fn skip(test: &str, reason: &str) -> bool {
    if std::env::var_os(NO_SKIP_ENV).is_some_and(|v| v == "1") {
        panic!("{test}: would skip ({reason}), but {NO_SKIP_ENV}=1 forbids skipping");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

/// True if `tool` runs; otherwise skips (or fails in CI) with the reason.
pub fn have_tool(test: &str, tool: &str, install: &str) -> bool {
    have_tool_with(test, tool, "--version", install)
}

/// Like [`have_tool`], for tools that print their version with `arg`.
pub fn have_tool_with(test: &str, tool: &str, arg: &str, install: &str) -> bool {
    let found = Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    found || skip(test, &format!("{tool} is not installed ({install})"))
}

/// The result of running a command, with helpers for assertions.
#[derive(Debug)]
pub struct Run {
    /// The exit code, or -1 when a signal ended the process.
    pub status: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The result of `cmd`, printed for the test log.
    pub fn from(cmd: &Command, out: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let run = Self {
            status: out.status.code().unwrap_or(-1),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("$ {cmd:?}\n-> {}\n{}{}", run.status, run.stdout, run.stderr);
        run
    }

    /// Panics unless the command succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.status, 0, "command failed:\n{}", self.stderr);
        self
    }

    /// Panics unless the command failed with exit status 1 and `needle` in
    /// its error output.
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.status, 1,
            "expected failure, got:\n{}{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "error output lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `program` with `args` and `envs`. Each run has a cache directory
/// of its own (so no run mounts blobs another test pushed) unless `envs`
/// names one.
pub fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
    let cache = tempfile::TempDir::new().expect("cache dir");
    cmd.env("XDG_CACHE_HOME", cache.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run::from(&cmd, out)
}

/// Runs `bpfman-image` with `args`.
pub fn image(args: &[&str]) -> Run {
    run(&image_bin(), args, &[])
}

/// Every file under `dir`, relative, sorted, with contents.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// True when running as root; otherwise skips (or fails in CI).
pub fn privileged(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    });
    root || skip(test, "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
}

/// A directory `bpfman-load --bpffs` mounts bpffs on, so tests never touch
/// the host's /sys/fs/bpf; unmounted on drop.
#[derive(Debug)]
pub struct BpfMount {
    dir: tempfile::TempDir,
}

impl BpfMount {
    pub fn new() -> Self {
        Self {
            dir: tempfile::TempDir::new().expect("tmp"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for BpfMount {
    fn drop(&mut self) {
        // Not mounted when the test never reached the kernel: fine.
        let _ = Command::new("umount")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
