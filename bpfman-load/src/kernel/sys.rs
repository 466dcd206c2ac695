//! The real kernel, through aya and rustix.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{
    NlOptions, SchedClassifierLink, TcAttachOptions, TcAttachType, TcHandle, qdisc_add_clsact,
};
use aya::programs::xdp::XdpLink;
use aya::programs::{Extension, Program, ProgramError, ProgramFd, SchedClassifier, Xdp};
use aya::util::KernelVersion;
use aya_obj::programs::XdpAttachType;
use bpfman_image_spec::program::SectionKind;

use super::netns::{self, in_netns};
use super::{
    DirLock, ExtensionSpec, Feature, FsType, Interface, Kernel, KernelError, KernelProgram,
    LoadedObject, ObjectSpec, ProgramId, ProgramSpec, ProgramView, Support, XdpAttached, XdpMode,
    netlink,
};
use crate::bpffs::pin_name;
use crate::dispatcher::{ChainHook, TcFilter};

const EPERM: i32 = 1;
const EBUSY: i32 = 16;
const EEXIST: i32 = 17;
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
const TRACEFS_MAGIC: u64 = 0x7472_6163;

/// The running kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sys;

/// The kernel half of a direct attachment: each hook module implements it
/// for its resolved request, with aya.
pub trait SysAttach: std::fmt::Debug + Sync {
    /// Attaches the program pinned at `program`; the link is not pinned yet.
    fn sys_attach(&self, program: &Path) -> Result<FdLink, KernelError>;
}

/// A failed aya call, with what was asked of what.
pub(crate) fn call_err(
    call: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(ProgramError) -> KernelError {
    let what = what.into();
    move |e| KernelError::call(call, what, e)
}

/// The errno of an aya error, when it carries one.
pub(crate) fn errno(e: &ProgramError) -> Option<i32> {
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

/// True for the errors an XDP attach gives when the interface has a
/// program already (EBUSY: a link; EEXIST: a netlink program).
pub(crate) fn is_busy(e: &ProgramError) -> bool {
    matches!(errno(e), Some(EBUSY | EEXIST))
}

/// A failed BPF_PROG_LOAD, typed: the verifier's log, lockdown's EPERM
/// (a missing feature for tracing and extension programs), or privilege.
pub(crate) fn load_error(e: ProgramError, kind: SectionKind, name: &str) -> KernelError {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    {
        let log = format!("{verifier_log:?}");
        let log = log.trim();
        if io_error.raw_os_error() == Some(EPERM) && log.is_empty() {
            let feature = match kind {
                SectionKind::Fentry | SectionKind::Fexit => Some(Feature::Tracing),
                SectionKind::Freplace => Some(Feature::Freplace),
                SectionKind::Lsm => Some(Feature::BpfLsm),
                _ => None,
            };
            return match feature {
                Some(feature) => KernelError::NotSupported {
                    feature,
                    kernel: Sys.release(),
                    subject: if feature == Feature::Tracing {
                        format!("{} program '{name}'", tracing_kind(kind))
                    } else if feature == Feature::BpfLsm {
                        format!("LSM program '{name}'")
                    } else {
                        format!("'{name}'")
                    },
                    instead: None,
                },
                None => KernelError::PermissionDenied {
                    program: name.to_string(),
                },
            };
        }
        if !log.is_empty() {
            return KernelError::Verifier {
                program: name.to_string(),
                errno: io_error,
                log: log.to_string(),
            };
        }
        return KernelError::LoadRefused {
            program: name.to_string(),
            errno: io_error,
        };
    }
    KernelError::call("load program", format!("'{name}'"), e)
}

pub(crate) fn tracing_kind(kind: SectionKind) -> &'static str {
    if kind == SectionKind::Fexit {
        "fexit"
    } else {
        "fentry"
    }
}

pub(crate) fn aya_mode(mode: XdpMode) -> aya::programs::XdpMode {
    match mode {
        XdpMode::Default => aya::programs::XdpMode::Default,
        XdpMode::Skb => aya::programs::XdpMode::Skb,
        XdpMode::Driver => aya::programs::XdpMode::Driver,
        XdpMode::Hw => aya::programs::XdpMode::Hardware,
    }
}

/// The TC attach point of a TC hook.
fn tc_direction(hook: ChainHook) -> TcAttachType {
    if hook == ChainHook::TcIngress {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    }
}

fn link_id(link: &FdLink) -> Result<u32, KernelError> {
    Ok(link
        .info()
        .map_err(|e| KernelError::call("read the id of", "the new link", e))?
        .id())
}

/// Pins a link at `pin`; dropping an unpinned link detaches it, so an
/// error here leaves nothing behind.
fn pin_link(link: FdLink, pin: &Path) -> Result<u32, KernelError> {
    let id = link_id(&link)?;
    link.pin(pin)
        .map_err(|e| KernelError::call("pin link at", pin.display().to_string(), e))?;
    Ok(id)
}

fn info(prog: &Program, name: &str) -> Result<ProgramId, KernelError> {
    let info = prog
        .info()
        .map_err(call_err("read the info of program", name))?;
    Ok(ProgramId {
        id: info.id(),
        tag: info.tag(),
    })
}

/// A dispatcher's program fd, opened from its pin.
fn dispatcher_fd(hook: ChainHook, pin: &Path) -> Result<ProgramFd, KernelError> {
    let what = || pin.display().to_string();
    let fd = match hook {
        ChainHook::Xdp => Xdp::from_pin(pin, XdpAttachType::Interface)
            .map_err(call_err("open dispatcher", what()))?
            .fd()
            .map_err(call_err("open dispatcher", what()))?
            .try_clone(),
        ChainHook::TcIngress | ChainHook::TcEgress => SchedClassifier::from_pin(pin)
            .map_err(call_err("open dispatcher", what()))?
            .fd()
            .map_err(call_err("open dispatcher", what()))?
            .try_clone(),
    };
    fd.map_err(|e| KernelError::call("duplicate the fd of dispatcher", what(), e))
}

/// An opened object: aya's maps and programs.
#[derive(Debug)]
pub struct SysObject {
    ebpf: Ebpf,
}

impl LoadedObject for SysObject {
    fn load_program(
        &mut self,
        p: &ProgramSpec<'_>,
        dir: &Path,
    ) -> Result<(ProgramId, PathBuf), KernelError> {
        let btf = if crate::attach::needs_btf(p.kind) {
            Some(super::btf::kernel_btf()?)
        } else {
            None
        };
        let prog = self.ebpf.program_mut(p.name).ok_or_else(|| {
            KernelError::call(
                "find program",
                p.name.to_string(),
                "aya did not find it in the object",
            )
        })?;
        let result = crate::attach::sys_load(prog, p, btf)?;
        result.map_err(|e| load_error(e, p.kind, p.name))?;
        let id = info(prog, p.name)?;
        let pin = dir.join(id.id.to_string());
        prog.pin(&pin).map_err(|e| {
            KernelError::call(
                "pin program",
                format!("{} at '{}'", p.name, pin.display()),
                e,
            )
        })?;
        Ok((id, pin))
    }

    fn pin_maps(
        &mut self,
        dir: &Path,
        skip: &[&str],
    ) -> Result<Vec<(String, PathBuf)>, KernelError> {
        let mut out = Vec::new();
        for (name, map) in self.ebpf.maps() {
            if skip.contains(&name) {
                continue;
            }
            let pin = dir.join(pin_name(name));
            // Maps the object asks to pin by name are pinned already.
            if !pin.exists() {
                map.pin(&pin).map_err(|e| {
                    KernelError::call("pin map", format!("{name} at '{}'", pin.display()), e)
                })?;
            }
            out.push((name.to_string(), pin));
        }
        Ok(out)
    }
}

fn fs_type(path: &Path) -> io::Result<u64> {
    Ok(rustix::fs::statfs(path)?.f_type as u64)
}

impl Kernel for Sys {
    type Object = SysObject;

    fn mount(&self, fs: FsType, dir: &Path) -> Result<bool, KernelError> {
        if !dir.is_dir() {
            return Err(KernelError::NoMountPoint {
                fs,
                path: dir.into(),
            });
        }
        let magic = match fs {
            FsType::Bpf => BPF_FS_MAGIC,
            FsType::Trace => TRACEFS_MAGIC,
        };
        if fs_type(dir).map_err(KernelError::fs("stat", dir))? == magic {
            return Ok(false);
        }
        // Mounting over contents or over another filesystem would hide
        // them: only an empty directory that is not a mount point will do.
        let refuse = |why: &'static str| KernelError::MountRefused {
            fs,
            path: dir.into(),
            why,
        };
        let mut entries = fs::read_dir(dir).map_err(KernelError::fs("list", dir))?;
        if entries.next().is_some() {
            return Err(refuse("it is not empty"));
        }
        let parent = dir.join("..");
        let (here, above) = (
            rustix::fs::stat(dir).map_err(|e| KernelError::fs("stat", dir)(e.into()))?,
            rustix::fs::stat(&parent).map_err(|e| KernelError::fs("stat", &parent)(e.into()))?,
        );
        if here.st_dev != above.st_dev {
            return Err(refuse("another filesystem is mounted there"));
        }
        let mount = || -> io::Result<bool> {
            rustix::mount::mount(
                fs.fstype(),
                dir,
                fs.fstype(),
                rustix::mount::MountFlags::empty(),
                None,
            )?;
            Ok(true)
        };
        let mounted = mount().map_err(|source| KernelError::Mount {
            fs,
            path: dir.into(),
            source,
        })?;
        if mounted {
            tracing::info!("mounted {} on {}", fs.name(), dir.display());
        }
        Ok(mounted)
    }

    fn create_dir(&self, dir: &Path) -> Result<(), KernelError> {
        fs::create_dir_all(dir).map_err(KernelError::fs("create", dir))
    }

    fn remove_empty_dirs(&self, dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for d in entries.flatten() {
                if d.file_type().is_ok_and(|t| t.is_dir()) {
                    self.remove_empty_dirs(&d.path());
                }
            }
        }
        // Fails (and is left) when not empty.
        let _ = fs::remove_dir(dir);
    }

    fn pins(&self, dir: &Path) -> Result<BTreeSet<PathBuf>, KernelError> {
        let mut out = BTreeSet::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                r => r.map_err(KernelError::fs("list", &dir))?,
            };
            for entry in entries {
                let entry = entry.map_err(KernelError::fs("list", &dir))?;
                let path = entry.path();
                if entry
                    .file_type()
                    .map_err(KernelError::fs("stat", &path))?
                    .is_dir()
                {
                    stack.push(path);
                } else {
                    out.insert(path);
                }
            }
        }
        Ok(out)
    }

    fn is_pinned(&self, pin: &Path) -> bool {
        pin.exists()
    }

    fn unpin(&self, pin: &Path) -> Result<(), KernelError> {
        match fs::remove_file(pin) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(KernelError::fs("remove pin", pin)(e))
            }
            _ => Ok(()),
        }
    }

    fn probe(&self, feature: Feature) -> Support {
        let has = |paths: &[&str]| {
            if paths.iter().any(|p| Path::new(p).exists()) {
                Support::Yes
            } else {
                Support::No
            }
        };
        match feature {
            Feature::Tcx => match KernelVersion::current() {
                Ok(v) if v < KernelVersion::new(6, 6, 0) => Support::No,
                Ok(_) => Support::Yes,
                Err(_) => Support::Unknown,
            },
            Feature::Kprobes => has(&[
                "/sys/bus/event_source/devices/kprobe/type",
                "/sys/kernel/tracing/kprobe_events",
                "/sys/kernel/debug/tracing/kprobe_events",
            ]),
            Feature::KernelBtf => has(&["/sys/kernel/btf/vmlinux"]),
            // The active LSMs, where securityfs shows them.
            Feature::BpfLsm => match fs::read_to_string("/sys/kernel/security/lsm") {
                Ok(list) if list.trim().split(',').any(|l| l == "bpf") => Support::Yes,
                Ok(list) if !list.trim().is_empty() => Support::No,
                _ => Support::Unknown,
            },
            // Lockdown refuses these at load time with nothing to read
            // beforehand; the link types show when they are made.
            Feature::Tracing | Feature::Freplace | Feature::XdpLink | Feature::PerfLink => {
                Support::Unknown
            }
        }
    }

    fn release(&self) -> String {
        KernelVersion::current().map_or_else(|_| "unknown".into(), |v| v.to_string())
    }

    fn open_object(&self, spec: &ObjectSpec<'_>) -> Result<SysObject, KernelError> {
        let mut loader = super::btf::loader(spec.bytes)?;
        loader.default_map_pin_directory(spec.map_dir);
        for (name, value) in spec.globals {
            loader.override_global(name, value.as_slice(), true);
        }
        for (name, pin) in spec.shared_maps {
            loader.map_pin_path(name, pin.as_path());
        }
        let ebpf = loader.load(spec.bytes).map_err(|e| match e {
            aya::EbpfError::ParseError(aya_obj::ParseError::SymbolNotFound { name }) => {
                KernelError::Symbol { name }
            }
            e => KernelError::call("load the object's", "maps", e),
        })?;
        Ok(SysObject { ebpf })
    }

    fn program(&self, pin: &Path) -> Result<ProgramId, KernelError> {
        let info = aya::programs::ProgramInfo::from_pin(pin).map_err(call_err(
            "read program pinned at",
            pin.display().to_string(),
        ))?;
        Ok(ProgramId {
            id: info.id(),
            tag: info.tag(),
        })
    }

    fn programs(&self) -> Result<Vec<KernelProgram>, KernelError> {
        let mut out = Vec::new();
        for info in aya::programs::loaded_programs() {
            let info = info.map_err(call_err("list", "the kernel's programs"))?;
            let raw = format!("{:?}", info.program_type());
            out.push(KernelProgram {
                id: info.id(),
                name: info.name_as_str().unwrap_or("").to_string(),
                kind: raw
                    .strip_prefix("BPF_PROG_TYPE_")
                    .unwrap_or(&raw)
                    .to_lowercase(),
                tag: format!("{:016x}", info.tag()),
                role: None,
            });
        }
        Ok(out)
    }

    fn interface(&self, name: &str, netns: Option<&Path>) -> Result<Interface, KernelError> {
        netns::interface(name, netns)
    }

    fn attach(
        &self,
        program: &Path,
        target: &crate::attach::Target,
        dir: &Path,
    ) -> Result<(u32, PathBuf), KernelError> {
        let link = target.sys().sys_attach(program)?;
        let pin = dir.join(link_id(&link)?.to_string());
        let id = pin_link(link, &pin)?;
        Ok((id, pin))
    }

    fn load_dispatcher(
        &self,
        hook: ChainHook,
        config: &[u8],
        pin: &Path,
    ) -> Result<ProgramId, KernelError> {
        let object = hook.object_for(config);
        let mut ebpf = super::btf::loader(object)?
            .override_global("conf", config, true)
            .load(object)
            .map_err(|e| KernelError::call("load", "the dispatcher object", e))?;
        let prog = ebpf.program_mut(hook.program()).ok_or_else(|| {
            KernelError::call(
                "find",
                hook.program().to_string(),
                "not in the dispatcher object",
            )
        })?;
        match prog {
            Program::Xdp(p) => p.load(),
            Program::SchedClassifier(p) => p.load(),
            _ => {
                return Err(KernelError::call(
                    "load",
                    hook.program().to_string(),
                    "the dispatcher object has the wrong program type",
                ));
            }
        }
        .map_err(|e| load_error(e, SectionKind::Xdp, hook.program()))?;
        let id = info(prog, hook.program())?;
        prog.pin(pin).map_err(|e| {
            KernelError::call("pin the dispatcher at", pin.display().to_string(), e)
        })?;
        Ok(id)
    }

    fn load_extension(
        &self,
        hook: ChainHook,
        spec: &ExtensionSpec<'_>,
        dispatcher: &Path,
        slot: usize,
        pin: &Path,
        link: &Path,
    ) -> Result<ProgramId, KernelError> {
        let target = dispatcher_fd(hook, dispatcher)?;
        let mut loader = super::btf::loader(spec.bytes)?;
        loader.extension(spec.name);
        for (n, v) in spec.globals {
            loader.override_global(n, v.as_slice(), true);
        }
        // The user's maps, so the extension counts where the program
        // does. Internal maps (.rodata, .bss) are the extension's own,
        // with the same globals.
        for (name, p) in spec.maps.iter().filter(|(n, _)| !n.starts_with('.')) {
            loader.map_pin_path(name, p.as_path());
        }
        let mut ebpf = loader
            .load(spec.bytes)
            .map_err(|e| KernelError::call("load again", "the program's object", e))?;
        let ext: &mut Extension = ebpf
            .program_mut(spec.name)
            .ok_or_else(|| {
                KernelError::call(
                    "find program",
                    spec.name.to_string(),
                    "not in its object any more",
                )
            })?
            .try_into()
            .map_err(call_err("load as an extension", spec.name))?;
        ext.load(target, &format!("prog{slot}"))
            .map_err(|e| load_error(e, SectionKind::Freplace, spec.name))?;
        let info = ext
            .info()
            .map_err(call_err("read the info of extension", spec.name))?;
        let id = ProgramId {
            id: info.id(),
            tag: info.tag(),
        };
        ext.pin(pin)
            .map_err(|e| KernelError::call("pin the extension at", pin.display().to_string(), e))?;
        let attached = ext
            .attach()
            .and_then(|l| ext.take_link(l))
            .map_err(call_err("attach the extension", spec.name))
            .and_then(|l| pin_link(FdLink::from(l), link));
        if let Err(e) = attached {
            let _ = self.unpin(pin);
            return Err(e);
        }
        Ok(id)
    }

    fn attach_extension(
        &self,
        hook: ChainHook,
        extension: &Path,
        dispatcher: &Path,
        slot: usize,
        link: &Path,
    ) -> Result<(), KernelError> {
        let target = dispatcher_fd(hook, dispatcher)?;
        let what = || {
            format!(
                "'{}' to prog{slot} of the new dispatcher",
                extension.display()
            )
        };
        let mut ext = Extension::from_pin(extension).map_err(call_err("open extension", what()))?;
        let l = ext
            .attach_to_program(&target, &format!("prog{slot}"))
            .map_err(call_err("attach extension", what()))?;
        let l = ext
            .take_link(l)
            .map_err(call_err("attach extension", what()))?;
        pin_link(FdLink::from(l), link)?;
        Ok(())
    }

    fn attach_dispatcher(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        mode: XdpMode,
        link: &Path,
    ) -> Result<u32, KernelError> {
        let made = in_netns(at.netns.as_deref(), || -> Result<FdLink, KernelError> {
            match hook {
                ChainHook::Xdp => {
                    let mut p = Xdp::from_pin(dispatcher, XdpAttachType::Interface)
                        .map_err(call_err("open the dispatcher", at.name.clone()))?;
                    let id = p
                        .attach_to_if_index(at.ifindex, aya_mode(mode))
                        .map_err(|e| {
                            if is_busy(&e) {
                                KernelError::Busy {
                                    interface: at.name.clone(),
                                }
                            } else {
                                KernelError::call(
                                    "attach the XDP dispatcher to",
                                    at.name.clone(),
                                    e,
                                )
                            }
                        })?;
                    let l = p
                        .take_link(id)
                        .map_err(call_err("attach the XDP dispatcher to", at.name.clone()))?;
                    FdLink::try_from(l).map_err(|_| KernelError::NotSupported {
                        feature: Feature::XdpLink,
                        kernel: self.release(),
                        subject: at.name.clone(),
                        instead: None,
                    })
                }
                ChainHook::TcIngress | ChainHook::TcEgress => {
                    let mut p = SchedClassifier::from_pin(dispatcher)
                        .map_err(call_err("open the dispatcher", at.name.clone()))?;
                    let id = p
                        .attach_with_options(
                            &at.name,
                            tc_direction(hook),
                            TcAttachOptions::TcxOrder(LinkOrder::last()),
                        )
                        .map_err(call_err("attach the TC dispatcher to", at.name.clone()))?;
                    let l = p
                        .take_link(id)
                        .map_err(call_err("attach the TC dispatcher to", at.name.clone()))?;
                    FdLink::try_from(l).map_err(|_| KernelError::NotSupported {
                        feature: Feature::Tcx,
                        kernel: self.release(),
                        subject: at.name.clone(),
                        instead: None,
                    })
                }
            }
        })?;
        if let Some(parent) = link.parent() {
            self.create_dir(parent)?;
        }
        pin_link(made, link)
    }

    fn update_link(&self, hook: ChainHook, link: &Path, program: &Path) -> Result<(), KernelError> {
        let what = || link.display().to_string();
        let pinned = PinnedLink::from_pin(link)
            .map_err(|e| KernelError::call("open the hook's link", what(), e))?;
        let fd = FdLink::from(pinned);
        match hook {
            ChainHook::Xdp => {
                let mut p = Xdp::from_pin(program, XdpAttachType::Interface)
                    .map_err(call_err("open the dispatcher", what()))?;
                let l = XdpLink::try_from(fd).map_err(|e| KernelError::call("swap", what(), e))?;
                p.attach_to_link(l)
                    .map_err(call_err("swap the XDP dispatcher on", what()))?;
            }
            ChainHook::TcIngress | ChainHook::TcEgress => {
                let mut p = SchedClassifier::from_pin(program)
                    .map_err(call_err("open the dispatcher", what()))?;
                let l = SchedClassifierLink::try_from(fd)
                    .map_err(|e| KernelError::call("swap", what(), e))?;
                p.attach_to_link(l)
                    .map_err(call_err("swap the TC dispatcher on", what()))?;
            }
        }
        Ok(())
    }

    fn clsact_attach(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        existing: Option<TcFilter>,
    ) -> Result<TcFilter, KernelError> {
        let dir = tc_direction(hook);
        // Netlink works per namespace, so this runs in the interface's.
        in_netns(at.netns.as_deref(), || {
            let mut p = SchedClassifier::from_pin(dispatcher)
                .map_err(call_err("open the dispatcher", at.name.clone()))?;
            let id = match existing {
                Some(f) => {
                    let link = SchedClassifierLink::attached(
                        &at.name,
                        dir,
                        f.priority,
                        TcHandle::from(f.handle),
                        None,
                    )
                    .map_err(|e| {
                        KernelError::call("find the TC dispatcher's filter on", at.name.clone(), e)
                    })?;
                    p.attach_to_link(link).map_err(call_err(
                        "replace the TC dispatcher's cls_bpf filter on",
                        at.name.clone(),
                    ))?
                }
                None => {
                    if let Err(e) = qdisc_add_clsact(&at.name) {
                        // EEXIST: the interface has its clsact already.
                        tracing::debug!("clsact on {}: {e}", at.name);
                    }
                    p.attach_with_options(
                        &at.name,
                        dir,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .map_err(call_err(
                        "add the TC dispatcher's filter to",
                        at.name.clone(),
                    ))?
                }
            };
            let link = p.take_link(id).map_err(call_err(
                "add the TC dispatcher's filter to",
                at.name.clone(),
            ))?;
            let made = (|| {
                Ok::<_, ProgramError>(TcFilter {
                    priority: link.priority()?,
                    handle: link.handle()?.into(),
                })
            })()
            .map_err(call_err("read the filter of", at.name.clone()))?;
            // Dropping the link would delete the filter: it must outlive
            // us, held by the kernel alone.
            std::mem::forget(link);
            Ok(made)
        })
    }

    fn clsact_detach(
        &self,
        hook: ChainHook,
        at: &Interface,
        filter: TcFilter,
    ) -> Result<(), KernelError> {
        let dir = tc_direction(hook);
        in_netns(at.netns.as_deref(), || {
            // Dropping the link detaches it: the filter goes.
            let _link = SchedClassifierLink::attached(
                &at.name,
                dir,
                filter.priority,
                TcHandle::from(filter.handle),
                None,
            )
            .map_err(|e| {
                KernelError::call(
                    "find the TC dispatcher's filter to remove on",
                    at.name.clone(),
                    e,
                )
            })?;
            Ok(())
        })
    }

    fn xdp_attached(&self, at: &Interface) -> Result<Option<XdpAttached>, KernelError> {
        in_netns(at.netns.as_deref(), || netlink::query(at))
    }

    fn program_view(&self, id: u32) -> Result<ProgramView, KernelError> {
        let info = loaded_program(id)
            .ok_or_else(|| KernelError::call("find program", id.to_string(), "no such program"))?;
        let name = info.name_as_str().unwrap_or_default().to_string();
        let maps = info
            .map_ids()
            .map_err(call_err("read the maps of program", id.to_string()))?
            .unwrap_or_default();
        let map_value = match maps.as_slice() {
            [map] => Some(
                first_value(*map)
                    .map_err(|e| KernelError::call("read the map of program", id.to_string(), e))?,
            ),
            _ => None,
        };
        Ok(ProgramView {
            name,
            maps: maps.len(),
            map_value,
        })
    }

    fn pin_again(&self, from: &Path, to: &Path) -> Result<(), KernelError> {
        let what = || format!("'{}' at '{}'", from.display(), to.display());
        let mut p = aya::programs::Extension::from_pin(from).map_err(call_err("open", what()))?;
        p.pin(to).map_err(|e| KernelError::call("pin", what(), e))
    }

    fn xdp_netlink(
        &self,
        at: &Interface,
        program: Option<&Path>,
        expected: Option<u32>,
        mode: XdpMode,
    ) -> Result<(), KernelError> {
        use std::os::fd::AsFd;
        let new = program
            .map(|p| {
                Xdp::from_pin(p, XdpAttachType::Interface)
                    .map_err(call_err("open program", p.display().to_string()))
            })
            .transpose()?;
        let new_fd = new
            .as_ref()
            .map(|p| p.fd().map_err(call_err("open program", at.name.clone())))
            .transpose()?;
        let old_fd = expected
            .map(|id| {
                loaded_program(id)
                    .ok_or_else(|| {
                        KernelError::call(
                            "find the program on the XDP hook of",
                            at.name.clone(),
                            format!("program {id} is gone"),
                        )
                    })?
                    .fd()
                    .map_err(call_err(
                        "open the program on the XDP hook of",
                        at.name.clone(),
                    ))
            })
            .transpose()?;
        in_netns(at.netns.as_deref(), || {
            netlink::set(
                at,
                new_fd.map(AsFd::as_fd),
                old_fd.as_ref().map(AsFd::as_fd),
                mode,
            )
        })
    }

    fn lock_dir(&self, dir: &Path) -> Result<DirLock, KernelError> {
        fs::create_dir_all(dir).map_err(KernelError::fs("create", dir))?;
        let file = fs::File::open(dir).map_err(KernelError::fs("open", dir))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| KernelError::fs("lock", dir)(io::Error::from(e)))?;
        Ok(DirLock(Some(file)))
    }
}

/// The program with id `id`, if it is loaded. aya opens programs by id
/// only while listing them all.
fn loaded_program(id: u32) -> Option<aya::programs::ProgramInfo> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
}

/// The value at key 0 of map `id`, whatever its size.
fn first_value(id: u32) -> Result<Vec<u8>, aya::maps::MapError> {
    use aya::maps::{Array, Map, MapData};
    fn read<const N: usize>(data: MapData) -> Result<Vec<u8>, aya::maps::MapError> {
        let map = Map::Array(data);
        let array: Array<MapData, [u8; N]> = Array::try_from(map)?;
        Ok(array.get(&0, 0)?.to_vec())
    }
    let data = MapData::from_id(id)?;
    let size = data.info()?.value_size() as usize;
    match size {
        84 => read::<84>(data),
        124 => read::<124>(data),
        128 => read::<128>(data),
        _ => Ok(vec![0; size]),
    }
}
