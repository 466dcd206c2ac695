//! A recording fake of the kernel and bpffs, for unit tests without root.
//!
//! It models what the loader's logic depends on: pins (programs, maps,
//! links, extensions, dispatchers with their config bytes), directories,
//! what runs on each hook (through a link or a clsact filter), and that
//! unpinning a link detaches it. Objects are parsed for real
//! (`bpfman_image_spec::elf`), so map names are the object's.
//!
//! Every effectful call is a numbered step, logged. A test can make step
//! `n` fail ([`Failure::Error`]) or crash the process there
//! ([`Failure::Crash`]): a panic, after which every call does nothing, as
//! after `kill -9` no cleanup reaches the kernel. [`Fake::revive`] brings
//! the same world back for the next run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{
    DirLock, ExtensionSpec, Feature, FsType, Interface, Kernel, KernelError, KernelProgram,
    LoadedObject, ObjectSpec, ProgramId, ProgramSpec, ProgramView, Support, XdpAttached, XdpMode,
};
use crate::attach::Target;
use crate::bpffs::pin_name;
use crate::dispatcher::{ChainHook, TcFilter};

/// The panic payload of a simulated crash.
#[derive(Debug)]
pub struct Crash(pub usize);

/// What happens at the chosen step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The call fails and does nothing.
    Error,
    /// The process dies as the call starts.
    Crash,
    /// The process dies just after the call has taken effect.
    CrashAfter,
}

/// A kernel object held by a pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obj {
    Program {
        id: u32,
        name: String,
    },
    Map {
        name: String,
    },
    Dispatcher {
        id: u32,
        hook: ChainHook,
        config: Vec<u8>,
    },
    Extension {
        id: u32,
        name: String,
    },
    /// A link: the program it runs, and where (a hook, or a dispatcher
    /// slot).
    Link {
        id: u32,
        program: u32,
        target: String,
    },
}

/// The fake kernel's state.
#[derive(Debug, Default)]
pub struct World {
    next_id: u32,
    steps: usize,
    /// Every effectful call, in order: `"<step> <call> <what>"`.
    pub log: Vec<String>,
    pub pins: BTreeMap<PathBuf, Obj>,
    pub dirs: BTreeSet<PathBuf>,
    /// The program running on each hook (`"xdp@<ifindex>"`,
    /// `"tc-ingress@<ifindex>"`...), whatever attached it.
    pub hooks: BTreeMap<String, u32>,
    /// clsact filters by hook.
    pub filters: BTreeMap<String, TcFilter>,
    pub interfaces: BTreeMap<String, u32>,
    /// XDP hooks set through netlink, with their mode (the program is in
    /// `hooks`).
    pub netlink: BTreeMap<String, XdpMode>,
    /// Programs alive only because a netlink hook holds them.
    pub held: BTreeMap<u32, Obj>,
    /// Directories locked with `lock_dir`, ever.
    pub locked: Vec<PathBuf>,
    pub unsupported: Vec<Feature>,
    fail: Option<(usize, Failure)>,
    crashed: bool,
}

/// The fake; clones share one world.
#[derive(Debug, Clone, Default)]
pub struct Fake(pub Rc<RefCell<World>>);

fn injected(step: usize, call: &str) -> KernelError {
    KernelError::call(
        "run",
        call.to_string(),
        format!("fault injected at step {step}"),
    )
}

impl Fake {
    /// A world with interfaces `lo` (1) and `veth1` (7), bpffs mounted at
    /// `/bpffs`, tracefs at its usual place, every feature present.
    pub fn new() -> Self {
        crash_hook();
        let f = Self::default();
        {
            let mut w = f.0.borrow_mut();
            w.next_id = 100;
            w.interfaces.insert("lo".into(), 1);
            w.interfaces.insert("veth1".into(), 7);
            w.dirs.insert("/bpffs".into());
            w.dirs.insert("/sys/kernel/tracing".into());
        }
        f
    }

    pub fn world(&self) -> std::cell::RefMut<'_, World> {
        self.0.borrow_mut()
    }

    /// Makes step `n` (counted from now, from 1) fail as given.
    pub fn fail_at(&self, n: usize, how: Failure) {
        let mut w = self.world();
        let at = w.steps + n;
        w.fail = Some((at, how));
    }

    /// Effectful steps taken so far.
    pub fn steps(&self) -> usize {
        self.0.borrow().steps
    }

    /// After a crash: the same world, working again (a new process).
    pub fn revive(&self) {
        let mut w = self.world();
        w.crashed = false;
        w.fail = None;
    }

    pub fn without(&self, feature: Feature) -> &Self {
        self.world().unsupported.push(feature);
        self
    }

    /// Every pin, sorted.
    pub fn pin_set(&self) -> BTreeSet<PathBuf> {
        self.0.borrow().pins.keys().cloned().collect()
    }

    /// The dispatcher config bytes of the program `id`.
    pub fn config_of(&self, id: u32) -> Option<Vec<u8>> {
        self.0.borrow().pins.values().find_map(|o| match o {
            Obj::Dispatcher { id: d, config, .. } if *d == id => Some(config.clone()),
            _ => None,
        })
    }

    /// A numbered step doing `f`: logged, and failing or crashing where
    /// told.
    fn effect<T>(
        &self,
        call: &str,
        f: impl FnOnce() -> Result<T, KernelError>,
    ) -> Result<T, KernelError> {
        let mut w = self.world();
        if w.crashed {
            return Err(KernelError::call(
                "run",
                call.to_string(),
                "the process is dead",
            ));
        }
        w.steps += 1;
        let n = w.steps;
        w.log.push(format!("{n} {call}"));
        let fail = w.fail.filter(|(at, _)| *at == n).map(|(_, how)| how);
        drop(w);
        match fail {
            Some(Failure::Error) => Err(injected(n, call)),
            Some(Failure::Crash) => self.crash(n),
            Some(Failure::CrashAfter) => {
                let out = f();
                if out.is_ok() {
                    self.crash(n);
                }
                out
            }
            None => f(),
        }
    }

    fn crash(&self, n: usize) -> ! {
        self.world().crashed = true;
        std::panic::panic_any(Crash(n))
    }

    fn id(&self) -> u32 {
        let mut w = self.world();
        w.next_id += 1;
        w.next_id
    }

    fn put(&self, pin: &Path, obj: Obj) -> Result<(), KernelError> {
        let mut w = self.world();
        let parent = pin.parent().map(Path::to_path_buf).unwrap_or_default();
        if !w.dirs.contains(&parent) {
            return Err(KernelError::call(
                "pin at",
                pin.display().to_string(),
                "no such directory",
            ));
        }
        if w.pins.contains_key(pin) {
            return Err(KernelError::call(
                "pin at",
                pin.display().to_string(),
                "file exists",
            ));
        }
        w.pins.insert(pin.to_path_buf(), obj);
        Ok(())
    }

    fn program_id(&self, pin: &Path) -> Result<u32, KernelError> {
        match self.0.borrow().pins.get(pin) {
            Some(
                Obj::Program { id, .. } | Obj::Dispatcher { id, .. } | Obj::Extension { id, .. },
            ) => Ok(*id),
            _ => Err(KernelError::call(
                "open program",
                pin.display().to_string(),
                "no program pinned there",
            )),
        }
    }

    fn link(&self, pin: &Path, program: u32, target: String) -> Result<u32, KernelError> {
        let id = self.id();
        self.put(
            pin,
            Obj::Link {
                id,
                program,
                target,
            },
        )?;
        Ok(id)
    }
}

fn hook_key(hook: ChainHook, at: &Interface) -> String {
    format!("{}@{}", hook.name(), at.ifindex)
}

/// Silences the panics of simulated crashes (only those).
fn crash_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Crash>().is_none() {
                default(info);
            }
        }));
    });
}

/// An opened object: its maps as the ELF has them.
#[derive(Debug)]
pub struct FakeObject {
    fake: Fake,
    maps: Vec<String>,
}

impl LoadedObject for FakeObject {
    fn load_program(
        &mut self,
        p: &ProgramSpec<'_>,
        dir: &Path,
    ) -> Result<(ProgramId, PathBuf), KernelError> {
        self.fake.effect(&format!("load_program {}", p.name), || {
            let id = self.fake.id();
            let pin = dir.join(id.to_string());
            self.fake.put(
                &pin,
                Obj::Program {
                    id,
                    name: p.name.to_string(),
                },
            )?;
            Ok((
                ProgramId {
                    id,
                    tag: u64::from(id) * 7,
                },
                pin,
            ))
        })
    }

    fn pin_maps(
        &mut self,
        dir: &Path,
        skip: &[&str],
    ) -> Result<Vec<(String, PathBuf)>, KernelError> {
        let mut out = Vec::new();
        for name in self.maps.clone() {
            if skip.contains(&name.as_str()) {
                continue;
            }
            let pin = dir.join(pin_name(&name));
            self.fake.effect(&format!("pin_map {name}"), || {
                self.fake.put(&pin, Obj::Map { name: name.clone() })
            })?;
            out.push((name, pin));
        }
        Ok(out)
    }
}

impl Kernel for Fake {
    type Object = FakeObject;

    fn mount(&self, fs: FsType, dir: &Path) -> Result<bool, KernelError> {
        if !self.0.borrow().dirs.contains(dir) {
            return Err(KernelError::NoMountPoint {
                fs,
                path: dir.into(),
            });
        }
        Ok(false)
    }

    fn create_dir(&self, dir: &Path) -> Result<(), KernelError> {
        self.effect(&format!("create_dir {}", dir.display()), || {
            let mut w = self.world();
            for a in dir.ancestors() {
                if a.as_os_str().is_empty() || a == Path::new("/") {
                    break;
                }
                w.dirs.insert(a.to_path_buf());
            }
            Ok(())
        })
    }

    fn remove_empty_dirs(&self, dir: &Path) {
        let mut w = self.world();
        if w.crashed {
            return;
        }
        let under: Vec<PathBuf> = w
            .dirs
            .iter()
            .filter(|d| d.starts_with(dir))
            .cloned()
            .collect();
        // Deepest first.
        for d in under.into_iter().rev() {
            let busy = w.pins.keys().any(|p| p.starts_with(&d))
                || w.dirs.iter().any(|o| o != &d && o.starts_with(&d));
            if !busy {
                w.dirs.remove(&d);
            }
        }
    }

    fn pins(&self, dir: &Path) -> Result<BTreeSet<PathBuf>, KernelError> {
        Ok(self
            .0
            .borrow()
            .pins
            .keys()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect())
    }

    fn is_pinned(&self, pin: &Path) -> bool {
        self.0.borrow().pins.contains_key(pin)
    }

    fn unpin(&self, pin: &Path) -> Result<(), KernelError> {
        if !self.is_pinned(pin) {
            return Ok(());
        }
        self.effect(&format!("unpin {}", pin.display()), || {
            let mut w = self.world();
            // A link held by nothing else detaches.
            if let Some(Obj::Link {
                program, target, ..
            }) = w.pins.remove(pin)
                && w.hooks.get(&target) == Some(&program)
            {
                w.hooks.remove(&target);
            }
            Ok(())
        })
    }

    fn probe(&self, feature: Feature) -> Support {
        if self.0.borrow().unsupported.contains(&feature) {
            Support::No
        } else {
            Support::Yes
        }
    }

    fn release(&self) -> String {
        "6.1.0-fake".into()
    }

    fn open_object(&self, spec: &ObjectSpec<'_>) -> Result<FakeObject, KernelError> {
        self.effect("open_object", || {
            let info = bpfman_image_spec::elf::inspect(spec.bytes)
                .map_err(|e| KernelError::call("parse", "the object", e))?;
            Ok(FakeObject {
                fake: self.clone(),
                maps: info.maps.into_iter().map(|m| m.name).collect(),
            })
        })
    }

    fn program(&self, pin: &Path) -> Result<ProgramId, KernelError> {
        let id = self.program_id(pin)?;
        Ok(ProgramId {
            id,
            tag: u64::from(id) * 7,
        })
    }

    fn programs(&self) -> Result<Vec<KernelProgram>, KernelError> {
        Ok(self
            .0
            .borrow()
            .pins
            .values()
            .filter_map(|o| {
                let (id, name, kind) = match o {
                    Obj::Program { id, name } => (*id, name.clone(), "xdp"),
                    Obj::Extension { id, name } => (*id, name.clone(), "ext"),
                    Obj::Dispatcher { id, hook, .. } => {
                        (*id, format!("{}_dispatcher", hook.name()), "xdp")
                    }
                    _ => return None,
                };
                Some((
                    id,
                    KernelProgram {
                        id,
                        name,
                        kind: kind.into(),
                        tag: format!("{:016x}", u64::from(id) * 7),
                        role: None,
                    },
                ))
            })
            // Pinned twice is still one program.
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .collect())
    }

    fn interface(&self, name: &str, netns: Option<&Path>) -> Result<Interface, KernelError> {
        let ifindex = self
            .0
            .borrow()
            .interfaces
            .get(name)
            .copied()
            .ok_or_else(|| KernelError::NoInterface {
                name: name.into(),
                netns: netns.map(Path::to_path_buf),
            })?;
        Ok(Interface {
            name: name.into(),
            ifindex,
            netns: netns.map(Path::to_path_buf),
        })
    }

    fn attach(
        &self,
        program: &Path,
        target: &Target,
        dir: &Path,
    ) -> Result<(u32, PathBuf), KernelError> {
        self.effect(&format!("attach {}", target.what()), || {
            let prog = self.program_id(program)?;
            let id = self.id();
            let pin = dir.join(id.to_string());
            self.put(
                &pin,
                Obj::Link {
                    id,
                    program: prog,
                    target: target.what().to_string(),
                },
            )?;
            Ok((id, pin))
        })
    }

    fn load_dispatcher(
        &self,
        hook: ChainHook,
        config: &[u8],
        pin: &Path,
    ) -> Result<ProgramId, KernelError> {
        self.effect(&format!("load_dispatcher {}", hook.name()), || {
            let id = self.id();
            self.put(
                pin,
                Obj::Dispatcher {
                    id,
                    hook,
                    config: config.to_vec(),
                },
            )?;
            Ok(ProgramId { id, tag: 0 })
        })
    }

    fn load_extension(
        &self,
        _hook: ChainHook,
        spec: &ExtensionSpec<'_>,
        dispatcher: &Path,
        slot: usize,
        pin: &Path,
        link: &Path,
    ) -> Result<ProgramId, KernelError> {
        self.effect(&format!("load_extension {} prog{slot}", spec.name), || {
            if self.probe(Feature::Freplace) == Support::No {
                return Err(KernelError::NotSupported {
                    feature: Feature::Freplace,
                    kernel: self.release(),
                    subject: format!("'{}'", spec.name),
                    instead: None,
                });
            }
            let target = self.program_id(dispatcher)?;
            let id = self.id();
            self.put(
                pin,
                Obj::Extension {
                    id,
                    name: spec.name.to_string(),
                },
            )?;
            if let Err(e) = self.link(link, id, format!("{target}/prog{slot}")) {
                self.world().pins.remove(pin);
                return Err(e);
            }
            Ok(ProgramId { id, tag: 0 })
        })
    }

    fn attach_extension(
        &self,
        _hook: ChainHook,
        extension: &Path,
        dispatcher: &Path,
        slot: usize,
        link: &Path,
    ) -> Result<(), KernelError> {
        self.effect(
            &format!("attach_extension {} prog{slot}", extension.display()),
            || {
                let ext = self.program_id(extension)?;
                let target = self.program_id(dispatcher)?;
                self.link(link, ext, format!("{target}/prog{slot}"))?;
                Ok(())
            },
        )
    }

    fn attach_dispatcher(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        _mode: XdpMode,
        link: &Path,
    ) -> Result<u32, KernelError> {
        self.effect(
            &format!("attach_dispatcher {}@{}", hook.name(), at.name),
            || {
                let program = self.program_id(dispatcher)?;
                let key = hook_key(hook, at);
                if self.0.borrow().hooks.contains_key(&key) {
                    return Err(KernelError::Busy {
                        interface: at.name.clone(),
                    });
                }
                if let Some(parent) = link.parent() {
                    self.world().dirs.insert(parent.to_path_buf());
                }
                let id = self.link(link, program, key.clone())?;
                self.world().hooks.insert(key, program);
                Ok(id)
            },
        )
    }

    fn update_link(
        &self,
        _hook: ChainHook,
        link: &Path,
        program: &Path,
    ) -> Result<(), KernelError> {
        self.effect(&format!("update_link {}", link.display()), || {
            let new = self.program_id(program)?;
            let mut w = self.world();
            let Some(Obj::Link {
                program, target, ..
            }) = w.pins.get_mut(link)
            else {
                return Err(KernelError::call(
                    "open the hook's link",
                    link.display().to_string(),
                    "no link pinned there",
                ));
            };
            *program = new;
            let target = target.clone();
            w.hooks.insert(target, new);
            Ok(())
        })
    }

    fn clsact_attach(
        &self,
        hook: ChainHook,
        dispatcher: &Path,
        at: &Interface,
        existing: Option<TcFilter>,
    ) -> Result<TcFilter, KernelError> {
        self.effect(
            &format!("clsact_attach {}@{}", hook.name(), at.name),
            || {
                let program = self.program_id(dispatcher)?;
                let key = hook_key(hook, at);
                let mut w = self.world();
                let filter = match existing {
                    Some(f) if w.filters.get(&key) == Some(&f) => f,
                    Some(_) => {
                        return Err(KernelError::call(
                            "find the TC dispatcher's filter on",
                            at.name.clone(),
                            "no such filter",
                        ));
                    }
                    None => TcFilter {
                        priority: 1,
                        handle: 1 + w.filters.len() as u32,
                    },
                };
                w.filters.insert(key.clone(), filter);
                w.hooks.insert(key, program);
                Ok(filter)
            },
        )
    }

    fn clsact_detach(
        &self,
        hook: ChainHook,
        at: &Interface,
        filter: TcFilter,
    ) -> Result<(), KernelError> {
        self.effect(
            &format!("clsact_detach {}@{}", hook.name(), at.name),
            || {
                let key = hook_key(hook, at);
                let mut w = self.world();
                if w.filters.get(&key) == Some(&filter) {
                    w.filters.remove(&key);
                    w.hooks.remove(&key);
                }
                Ok(())
            },
        )
    }

    fn xdp_attached(&self, at: &Interface) -> Result<Option<XdpAttached>, KernelError> {
        let w = self.0.borrow();
        let key = hook_key(ChainHook::Xdp, at);
        Ok(w.hooks.get(&key).map(|&program| XdpAttached {
            program,
            mode: w.netlink.get(&key).copied().unwrap_or(XdpMode::Driver),
        }))
    }

    fn program_view(&self, id: u32) -> Result<ProgramView, KernelError> {
        let w = self.0.borrow();
        let obj = w
            .pins
            .values()
            .chain(w.held.values())
            .find(|o| obj_id(o) == Some(id))
            .ok_or_else(|| KernelError::call("find program", id.to_string(), "no such program"))?;
        Ok(match obj {
            Obj::Dispatcher { config, hook, .. } => ProgramView {
                name: hook.program().into(),
                maps: 1,
                map_value: Some(config.clone()),
            },
            Obj::Program { name, .. } | Obj::Extension { name, .. } => ProgramView {
                name: name.clone(),
                maps: 0,
                map_value: None,
            },
            _ => unreachable!("obj_id is a program's"),
        })
    }

    fn pin_again(&self, from: &Path, to: &Path) -> Result<(), KernelError> {
        self.effect(
            &format!("pin_again {} {}", from.display(), to.display()),
            || {
                let obj = self.0.borrow().pins.get(from).cloned().ok_or_else(|| {
                    KernelError::call("open", from.display().to_string(), "nothing pinned there")
                })?;
                self.put(to, obj)
            },
        )
    }

    fn xdp_netlink(
        &self,
        at: &Interface,
        program: Option<&Path>,
        expected: Option<u32>,
        mode: XdpMode,
    ) -> Result<(), KernelError> {
        let key = hook_key(ChainHook::Xdp, at);
        self.effect(&format!("xdp_netlink {key}"), || {
            let new = program
                .map(|p| {
                    let obj = self.0.borrow().pins.get(p).cloned();
                    obj.filter(|o| obj_id(o).is_some()).ok_or_else(|| {
                        KernelError::call("open program", p.display().to_string(), "not pinned")
                    })
                })
                .transpose()?;
            let mut w = self.world();
            let current = w.hooks.get(&key).copied();
            if current != expected {
                return Err(KernelError::call(
                    "set the XDP program of",
                    at.name.clone(),
                    "File exists (another program is there)",
                ));
            }
            if current.is_some() && !w.netlink.contains_key(&key) {
                return Err(KernelError::call(
                    "set the XDP program of",
                    at.name.clone(),
                    "Device or resource busy (a bpf_link holds the hook)",
                ));
            }
            if let Some(old) = current {
                w.held.remove(&old);
            }
            match new {
                Some(obj) => {
                    let id = obj_id(&obj).unwrap_or_default();
                    w.held.insert(id, obj);
                    w.hooks.insert(key.clone(), id);
                    w.netlink.insert(key, mode);
                }
                None => {
                    w.hooks.remove(&key);
                    w.netlink.remove(&key);
                }
            }
            Ok(())
        })
    }

    fn lock_dir(&self, dir: &Path) -> Result<DirLock, KernelError> {
        let mut w = self.world();
        w.dirs.insert(dir.to_path_buf());
        w.locked.push(dir.to_path_buf());
        Ok(DirLock(None))
    }
}

/// The id of a program object.
fn obj_id(o: &Obj) -> Option<u32> {
    match o {
        Obj::Program { id, .. } | Obj::Dispatcher { id, .. } | Obj::Extension { id, .. } => {
            Some(*id)
        }
        _ => None,
    }
}
