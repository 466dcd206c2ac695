//! Inspection of eBPF ELF objects: which programs and maps an object holds.
//!
//! Pure and machine-independent ("spec vs object"): the same bytes give the
//! same answer everywhere; nothing here touches the running kernel.

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};

use crate::arch::Endianness;
use crate::btf::{Btf, BtfError};
use crate::maps::map_type_name;
use crate::program::{ProgramSection, SectionKind};

/// `EM_BPF`.
pub const EM_BPF: u16 = 247;
const SHF_EXECINSTR: u64 = 0x4;
const LEGACY_MAPS_SECTION: &str = "maps";
const BTF_MAPS_SECTION: &str = ".maps";

/// What an eBPF object holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectInfo {
    pub endianness: Endianness,
    /// Sorted by name.
    pub programs: Vec<ProgramInfo>,
    /// Sorted by name.
    pub maps: Vec<MapInfo>,
    /// Functions in executable sections neither libbpf nor aya would take
    /// for a program, sorted by name: not loadable, reported, never fatal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedProgram>,
}

/// A function in a section no loader knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedProgram {
    pub name: String,
    pub section_name: String,
}

impl ObjectInfo {
    /// What a reader should be told about the object: programs skipped,
    /// programs in aya-style sections, map types newer than this version.
    pub fn warnings(&self) -> Vec<String> {
        use crate::text::printable;
        let mut out: Vec<String> = self
            .skipped
            .iter()
            .map(|s| {
                format!(
                    "function '{}' is in section '{}', which neither libbpf nor aya knows as a program section; it is skipped (it cannot be loaded)",
                    printable(&s.name),
                    printable(&s.section_name)
                )
            })
            .collect();
        out.extend(self.maps.iter().filter(|m| m.map_type_number.is_none()).map(|m| {
            format!(
                "map '{}' has a map type this version does not know ({}); the kernel decides whether it can be created",
                printable(&m.name),
                m.map_type
            )
        }));
        out
    }
}

/// One program: its function name and what its section says it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramInfo {
    pub name: String,
    pub section_name: String,
    pub section: ProgramSection,
}

/// One user map (`.rodata`, `.data`, `.bss` and `.kconfig` are not listed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MapInfo {
    pub name: String,
    /// The label name of the map type, e.g. `per_cpu_array`; for a kernel
    /// type number this version does not know, `maptype(N)` (the spelling
    /// upstream bpfman's builder falls back to).
    pub map_type: String,
    /// The kernel's number for it, when this version knows the type.
    #[serde(skip)]
    pub map_type_number: Option<u32>,
    /// `true` for a pre-BTF `SEC("maps")` definition.
    pub legacy: bool,
}

/// Why an object is not a usable eBPF object.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("ELF class {class} is not 64-bit; eBPF objects are ELF64")]
    Not64Bit { class: u8 },
    #[error("ELF byte order {data} is neither little- (1) nor big-endian (2)")]
    BadByteOrder { data: u8 },
    #[error(
        "ELF machine is {machine} ({machine_name}), not eBPF (247); compile with clang -target bpfel or bpfeb"
    )]
    NotBpf {
        machine: u16,
        machine_name: &'static str,
    },
    #[error("truncated ELF: the file ends inside the ELF header")]
    TruncatedHeader,
    #[error("malformed or truncated ELF: {what}")]
    Malformed {
        what: &'static str,
        #[source]
        source: object::Error,
    },
    #[error("the object defines no eBPF programs (no function in a program section)")]
    NoPrograms,
    #[error(
        "the object's only functions are in sections neither libbpf nor aya knows as program sections: {sections}"
    )]
    OnlyUnknownSections { sections: String },
    #[error("the object has BTF-defined maps ('.maps') but no usable .BTF section")]
    MissingBtf,
    #[error("the object's BTF cannot be read")]
    Btf(#[from] BtfError),
    #[error("map '{map}' has no 'type' member in its BTF definition")]
    MapWithoutType { map: String },
    #[error("legacy map '{map}' lies outside the 'maps' section")]
    LegacyMapOutOfBounds { map: String },
}

/// Reads the ELF header far enough to tell an eBPF object from anything else,
/// and returns its byte order. Cheap; [`inspect`] calls it first.
pub fn identify(bytes: &[u8]) -> Result<Endianness, ElfError> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let class = *bytes.get(4).ok_or(ElfError::TruncatedHeader)?;
    let data = *bytes.get(5).ok_or(ElfError::TruncatedHeader)?;
    let endian = match data {
        1 => Endianness::Little,
        2 => Endianness::Big,
        data => return Err(ElfError::BadByteOrder { data }),
    };
    let machine: [u8; 2] = bytes
        .get(18..20)
        .and_then(|b| b.try_into().ok())
        .ok_or(ElfError::TruncatedHeader)?;
    let machine = match endian {
        Endianness::Little => u16::from_le_bytes(machine),
        Endianness::Big => u16::from_be_bytes(machine),
    };
    if machine != EM_BPF {
        return Err(ElfError::NotBpf {
            machine,
            machine_name: machine_name(machine),
        });
    }
    if class != 2 {
        return Err(ElfError::Not64Bit { class });
    }
    Ok(endian)
}

fn parse(bytes: &[u8]) -> Result<ElfFile64<'_, object::Endianness>, ElfError> {
    ElfFile64::<object::Endianness>::parse(bytes).map_err(|source| ElfError::Malformed {
        what: "cannot parse headers, sections or symbols",
        source,
    })
}

/// A global variable: what `--global NAME=HEX` can set before loading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalVar {
    pub name: String,
    /// `.rodata`, `.data`, `.bss` or one of their `.name` variants.
    pub section: String,
    pub size: u64,
}

/// The object's global variables (named data symbols in `.rodata*`,
/// `.data*` and `.bss*`), sorted by name.
pub fn globals(bytes: &[u8]) -> Result<Vec<GlobalVar>, ElfError> {
    identify(bytes)?;
    let file = parse(bytes)?;
    let mut out = Vec::new();
    for sym in file.symbols() {
        let (Some(index), SymbolKind::Data) = (sym.section_index(), sym.kind()) else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let Ok(section_name) = section.name() else {
            continue;
        };
        let data_section = [".rodata", ".data", ".bss"]
            .iter()
            .any(|p| section_name == *p || section_name.starts_with(&format!("{p}.")));
        if !data_section {
            continue;
        }
        if let Ok(name) = sym.name()
            && !name.is_empty()
        {
            out.push(GlobalVar {
                name: name.to_string(),
                section: section_name.to_string(),
                size: sym.size(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The BTF-defined structs of data section `section` (e.g.
/// `.xdp_run_config`), from the object's `.BTF`; empty if it has none.
pub fn btf_struct_defs(
    bytes: &[u8],
    section: &str,
) -> Result<Vec<crate::btf::StructDef>, ElfError> {
    let endianness = identify(bytes)?;
    let file = parse(bytes)?;
    let Some(btf) = file.section_by_name(".BTF") else {
        return Ok(Vec::new());
    };
    let data = btf.data().map_err(|source| ElfError::Malformed {
        what: "the .BTF section is not readable",
        source,
    })?;
    let btf = Btf::parse(data, endianness)?;
    Ok(btf.struct_defs(section)?.unwrap_or_default())
}

/// Lists the programs and maps of an eBPF object.
pub fn inspect(bytes: &[u8]) -> Result<ObjectInfo, ElfError> {
    let endianness = identify(bytes)?;
    let file = parse(bytes)?;

    let mut programs = Vec::new();
    let mut skipped = Vec::new();
    let mut btf_map_names = Vec::new();
    let mut legacy_maps = Vec::new();
    for sym in file.symbols() {
        let Some(index) = sym.section_index() else {
            continue;
        };
        let section = file
            .section_by_index(index)
            .map_err(|source| ElfError::Malformed {
                what: "a symbol points at a missing section",
                source,
            })?;
        let section_name = section.name().map_err(|source| ElfError::Malformed {
            what: "a section name is not readable",
            source,
        })?;
        let symbol_name = || {
            sym.name()
                .map(str::to_owned)
                .map_err(|source| ElfError::Malformed {
                    what: "a symbol name is not readable",
                    source,
                })
        };
        let executable = matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & SHF_EXECINSTR != 0);
        if sym.kind() == SymbolKind::Text && executable {
            // Functions in .text are subprograms called by programs.
            if section_name == ".text" {
                continue;
            }
            let function = symbol_name()?;
            match ProgramSection::parse(section_name) {
                Some(parsed) => programs.push(ProgramInfo {
                    name: function,
                    section_name: section_name.into(),
                    section: parsed,
                }),
                None => skipped.push(SkippedProgram {
                    name: function,
                    section_name: section_name.into(),
                }),
            }
        } else if section_name == BTF_MAPS_SECTION && sym.is_global() {
            btf_map_names.push(symbol_name()?);
        } else if (section_name == LEGACY_MAPS_SECTION || section_name.starts_with("maps/"))
            && sym.is_global()
            && sym.kind() != SymbolKind::Section
        {
            let name = symbol_name()?;
            let data = section.data().map_err(|source| ElfError::Malformed {
                what: "the 'maps' section data is not readable",
                source,
            })?;
            let at = usize::try_from(sym.address()).unwrap_or(usize::MAX);
            let raw: [u8; 4] = at
                .checked_add(4)
                .and_then(|end| data.get(at..end))
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ElfError::LegacyMapOutOfBounds { map: name.clone() })?;
            let map_type = match endianness {
                Endianness::Little => u32::from_le_bytes(raw),
                Endianness::Big => u32::from_be_bytes(raw),
            };
            legacy_maps.push((name, map_type));
        }
    }
    if programs.is_empty() {
        if skipped.is_empty() {
            return Err(ElfError::NoPrograms);
        }
        let mut sections: Vec<&str> = skipped.iter().map(|s| s.section_name.as_str()).collect();
        sections.sort_unstable();
        sections.dedup();
        return Err(ElfError::OnlyUnknownSections {
            sections: crate::text::printable(&sections.join(", ")).into_owned(),
        });
    }

    let mut maps = Vec::new();
    for (name, map_type) in legacy_maps {
        maps.push(MapInfo::new(name, map_type, true));
    }
    if !btf_map_names.is_empty() || file.section_by_name(BTF_MAPS_SECTION).is_some() {
        maps.extend(btf_maps(&file, endianness)?);
    }

    programs.sort_by(|a, b| a.name.cmp(&b.name));
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ObjectInfo {
        endianness,
        programs,
        maps,
        skipped,
    })
}

fn btf_maps(
    file: &ElfFile64<'_, object::Endianness>,
    endianness: Endianness,
) -> Result<Vec<MapInfo>, ElfError> {
    let btf_data = file
        .section_by_name(".BTF")
        .and_then(|s| s.data().ok())
        .ok_or(ElfError::MissingBtf)?;
    let btf = Btf::parse(btf_data, endianness)?;
    let defs = btf
        .struct_defs(BTF_MAPS_SECTION)?
        .ok_or(ElfError::MissingBtf)?;
    defs.into_iter()
        .map(|def| {
            let map_type = def.get("type").ok_or_else(|| ElfError::MapWithoutType {
                map: def.name.clone(),
            })?;
            Ok(MapInfo::new(def.name, map_type, false))
        })
        .collect()
}

impl MapInfo {
    fn new(name: String, number: u32, legacy: bool) -> Self {
        let known = map_type_name(number);
        let unnamed = || match number {
            0 => "unspec".to_string(),
            n => format!("maptype({n})"),
        };
        Self {
            name,
            map_type: known.map_or_else(unnamed, str::to_string),
            map_type_number: known.map(|_| number),
            legacy,
        }
    }
}

impl ProgramInfo {
    /// Shorthand for the section kind.
    pub fn kind(&self) -> SectionKind {
        self.section.kind
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "ARM",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "not eBPF",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::SectionKind as K;

    macro_rules! obj {
        ($name:literal) => {
            include_bytes!(concat!("../../testdata/", $name))
        };
    }

    type Named<T> = Vec<(String, T)>;
    /// Object bytes for bpfel and bpfeb, and the programs and maps both must show.
    type Case<'a> = (
        &'a [u8],
        &'a [u8],
        &'a [(&'a str, K)],
        &'a [(&'a str, &'a str)],
    );

    fn summary(bytes: &[u8]) -> (Named<K>, Named<String>) {
        let info = inspect(bytes).expect("inspects");
        (
            info.programs
                .iter()
                .map(|p| (p.name.clone(), p.kind()))
                .collect(),
            info.maps
                .iter()
                .map(|m| (m.name.clone(), m.map_type.clone()))
                .collect(),
        )
    }

    fn names<T: Copy>(v: &[(&str, T)]) -> Vec<(String, T)> {
        v.iter().map(|(n, t)| ((*n).to_string(), *t)).collect()
    }

    #[test]
    fn committed_objects_both_byte_orders() {
        let cases: &[Case<'_>] = &[
            (
                obj!("bpf/xdp_pass.bpfel.o"),
                obj!("bpf/xdp_pass.bpfeb.o"),
                &[("xdp_pass", K::Xdp)],
                &[],
            ),
            (
                obj!("bpf/xdp_drop.bpfel.o"),
                obj!("bpf/xdp_drop.bpfeb.o"),
                &[("xdp_drop", K::XdpFrags)],
                &[],
            ),
            (
                obj!("bpf/xdp_counter.bpfel.o"),
                obj!("bpf/xdp_counter.bpfeb.o"),
                &[("xdp_stats", K::Xdp)],
                &[("xdp_stats_map", "per_cpu_array")],
            ),
            (
                obj!("bpf/tc_libbpf.bpfel.o"),
                obj!("bpf/tc_libbpf.bpfeb.o"),
                &[("tc_count", K::Tc)],
                &[("tc_count_map", "per_cpu_array")],
            ),
            (
                obj!("bpf/tc_classifier.bpfel.o"),
                obj!("bpf/tc_classifier.bpfeb.o"),
                &[("tc_classify", K::Tc)],
                &[("classifier_count_map", "per_cpu_array")],
            ),
            (
                obj!("bpf/tcx.bpfel.o"),
                obj!("bpf/tcx.bpfeb.o"),
                &[("tcx_egress", K::TcxEgress), ("tcx_ingress", K::TcxIngress)],
                &[
                    ("tcx_egress_map", "per_cpu_array"),
                    ("tcx_ingress_map", "per_cpu_array"),
                ],
            ),
            (
                obj!("bpf/tracepoint.bpfel.o"),
                obj!("bpf/tracepoint.bpfeb.o"),
                &[("tp_getpid", K::Tracepoint)],
                &[("getpid_count_map", "per_cpu_array")],
            ),
            (
                obj!("bpf/kprobe.bpfel.o"),
                obj!("bpf/kprobe.bpfeb.o"),
                &[
                    ("kprobe_openat", K::Kprobe),
                    ("kretprobe_openat", K::Kretprobe),
                ],
                &[
                    ("kprobe_count_map", "per_cpu_array"),
                    ("kretprobe_count_map", "per_cpu_array"),
                ],
            ),
            (
                obj!("bpf/uprobe.bpfel.o"),
                obj!("bpf/uprobe.bpfeb.o"),
                &[
                    ("uprobe_count", K::Uprobe),
                    ("uretprobe_count", K::Uretprobe),
                ],
                &[
                    ("uprobe_count_map", "per_cpu_array"),
                    ("uretprobe_count_map", "per_cpu_array"),
                ],
            ),
            (
                obj!("bpf/fentry.bpfel.o"),
                obj!("bpf/fentry.bpfeb.o"),
                &[("fentry_unlinkat", K::Fentry), ("fexit_unlinkat", K::Fexit)],
                &[
                    ("fentry_count_map", "per_cpu_array"),
                    ("fexit_count_map", "per_cpu_array"),
                ],
            ),
            (
                obj!("bpf/legacy_maps.bpfel.o"),
                obj!("bpf/legacy_maps.bpfeb.o"),
                &[("xdp_legacy", K::Xdp)],
                &[("legacy_array", "array"), ("legacy_hash", "hash")],
            ),
        ];
        for (el, eb, progs, maps) in cases {
            let maps = maps
                .iter()
                .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
                .collect();
            let want = (names(progs), maps);
            assert_eq!(summary(el), want);
            assert_eq!(summary(eb), want);
            assert_eq!(identify(el).expect("el"), Endianness::Little);
            assert_eq!(identify(eb).expect("eb"), Endianness::Big);
        }
    }

    #[test]
    fn section_targets_are_kept() {
        let info = inspect(obj!("bpf/tracepoint.bpfel.o")).expect("inspects");
        assert_eq!(
            info.programs[0].section_name,
            "tracepoint/syscalls/sys_enter_getpid"
        );
        assert_eq!(
            info.programs[0].section.target.as_deref(),
            Some("syscalls/sys_enter_getpid")
        );
    }

    #[test]
    fn bad_objects_get_their_own_errors() {
        assert!(matches!(
            inspect(obj!("bad/not_elf.o")),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(
            inspect(obj!("bad/x86_64.o")),
            Err(ElfError::NotBpf {
                machine: 62,
                machine_name: "x86-64"
            })
        ));
        assert!(matches!(
            inspect(obj!("bad/truncated.o")),
            Err(ElfError::Malformed { .. })
        ));
        assert!(matches!(
            inspect(obj!("bad/no_programs.bpfel.o")),
            Err(ElfError::NoPrograms)
        ));
        assert!(matches!(
            inspect(&[0x7f, b'E', b'L', b'F', 2]),
            Err(ElfError::TruncatedHeader)
        ));
        assert!(matches!(inspect(b""), Err(ElfError::NotElf)));
    }

    #[test]
    fn every_prefix_of_an_object_fails_cleanly() {
        // A truncated object must give an error, never a panic or a partial answer.
        let full = obj!("bpf/xdp_counter.bpfel.o");
        for len in (0..full.len()).step_by(61) {
            assert!(
                inspect(&full[..len]).is_err(),
                "prefix of {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn corrupted_objects_never_panic() {
        // Flip every byte of an object with maps, BTF and relocations, one at
        // a time: each result must be an answer or an error, never a panic.
        let full = obj!("bpf/xdp_counter.bpfel.o");
        let mut copy = full.to_vec();
        for (i, &original) in full.iter().enumerate() {
            copy[i] = !original;
            let _ = inspect(&copy);
            copy[i] = original;
        }
    }
}
