//! Kernel feature probes, and errors that say which feature is missing,
//! which kernel has it, and what to do instead.
//!
//! Probes run before anything is loaded, so a refusal leaves nothing
//! behind. Where a feature can only be found out by trying (fentry under
//! lockdown), the kernel's refusal is translated instead.

use std::io;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use aya::programs::ProgramError;
use aya::util::KernelVersion;
use bpfman_image_spec::program::SectionKind;

const EPERM: i32 = 1;

fn kernel() -> String {
    KernelVersion::current().map_or_else(|_| "unknown".into(), |v| v.to_string())
}

/// Whether programs of `kind` can be loaded at all on this kernel.
pub fn can_load(kind: SectionKind, name: &str) -> Result<()> {
    match kind {
        SectionKind::Kprobe | SectionKind::Kretprobe => {
            kprobes().map_err(|e| e.context(format!("cannot load kprobe program '{name}'")))
        }
        SectionKind::Fentry | SectionKind::Fexit => {
            if Path::new("/sys/kernel/btf/vmlinux").exists() {
                Ok(())
            } else {
                bail!(
                    "cannot load {} program '{name}': this kernel ({}) has no BTF (/sys/kernel/btf/vmlinux); fentry/fexit need CONFIG_DEBUG_INFO_BTF (Linux 5.5 or later). Use a kprobe or a tracepoint instead.",
                    tracing_kind(kind),
                    kernel()
                )
            }
        }
        _ => Ok(()),
    }
}

/// kprobes need CONFIG_KPROBES: the kprobe PMU or kprobe_events.
pub fn kprobes() -> Result<()> {
    if Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
    {
        return Ok(());
    }
    bail!(
        "this kernel ({}) has no kprobes: it was built without CONFIG_KPROBES (there is no /sys/bus/event_source/devices/kprobe). BPF kprobes need that option (Linux 4.1 or later). Attach to a tracepoint instead (SEC(\"tracepoint/<category>/<name>\"), see /sys/kernel/tracing/events), or run on a kernel with kprobes.",
        kernel()
    )
}

/// tcx arrived in Linux 6.6.
pub fn tcx() -> Result<()> {
    match KernelVersion::current() {
        Ok(v) if v < KernelVersion::new(6, 6, 0) => bail!(
            "this kernel ({v}) has no tcx: tcx links need Linux 6.6 or later. Use a newer kernel; on this one TC programs need the TC dispatcher (clsact)."
        ),
        _ => Ok(()),
    }
}

fn tracing_kind(kind: SectionKind) -> &'static str {
    if kind == SectionKind::Fexit {
        "fexit"
    } else {
        "fentry"
    }
}

/// Turns a failed BPF_PROG_LOAD into an error that says why.
pub fn explain_load(e: ProgramError, kind: SectionKind, name: &str) -> anyhow::Error {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = &e
    {
        let log = format!("{verifier_log:?}");
        let log = log.trim();
        if io_error.raw_os_error() == Some(EPERM) && log.is_empty() {
            return match kind {
                SectionKind::Fentry | SectionKind::Fexit => anyhow!(
                    "the kernel ({}) refused to load {} program '{name}' (EPERM, before the verifier ran): it does not allow BPF tracing programs here. This is what kernel lockdown does (integrity or confidentiality mode), or a kernel without BPF trampolines; fentry/fexit need Linux 5.5 or later without lockdown. Use a tracepoint or a kprobe instead, or run on a kernel that allows fentry.",
                    kernel(),
                    tracing_kind(kind)
                ),
                _ => anyhow!(
                    "the kernel refused to load program '{name}' (EPERM): bpfman-load needs root (CAP_BPF and CAP_SYS_ADMIN or CAP_PERFMON/CAP_NET_ADMIN)"
                ),
            };
        }
        if !log.is_empty() {
            return anyhow!(
                "the kernel's verifier rejected program '{name}' ({io_error}); its log:\n{log}"
            );
        }
        return anyhow!("the kernel refused to load program '{name}': {io_error}");
    }
    anyhow!(e).context(format!("cannot load program '{name}'"))
}

/// The errno of an aya error, when it carries one.
pub fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => None,
    }
    .or_else(|| {
        std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error)
    })
}
