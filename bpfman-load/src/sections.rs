//! libbpf section names that aya does not know, renamed in memory.
//!
//! aya 0.14 knows `classifier` but not libbpf's `tc`, `tcx/ingress`,
//! `tcx/egress`, `tc/ingress` or `tc/egress`. Users' objects must load
//! unchanged, so before aya sees the bytes each such program section is
//! renamed to `classifier/<old name>`: aya reads the kind from the first
//! segment and ignores the rest, and keeping the old name makes the new names
//! unique.
//!
//! A section name lives in two places: the ELF section header string table,
//! and the BTF string table, which `.BTF.ext` uses to key its function, line
//! and CO-RE records by section. Both get the new names appended (the grown
//! tables move to the end of the file, and their headers point there), and
//! `.BTF.ext` is re-pointed at the new strings, so line info in the
//! verifier's log and CO-RE relocations survive the rename.
//!
//! aya also refuses a whole object for one program section it cannot
//! parse (`ksyscall`, `usdt`, aya's own old `xdp/<name>` ...). Such a
//! section is renamed when a name aya takes means the same (`xdp/<name>`
//! becomes `xdp`), and otherwise, when it holds none of the programs being
//! loaded, hidden from aya (its executable flag cleared in memory), so the
//! object's other programs still load.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bpfman_image_spec::program::{ProgramSection, SectionKind};

/// What is wrong with an object we tried to rewrite. Objects that need no
/// rewriting are never parsed here, so these only concern libbpf-style ones.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("not a 64-bit ELF file")]
    NotElf64,
    #[error("the ELF file is truncated or its {0} is out of bounds")]
    OutOfBounds(&'static str),
    #[error("the .BTF section is malformed: {0}")]
    Btf(&'static str),
    #[error("the .BTF.ext section is malformed: {0}")]
    BtfExt(&'static str),
    #[error(
        "program '{program}' is in section '{section}', which the loader (aya) cannot load; rebuild it with a libbpf section name"
    )]
    Unloadable { program: String, section: String },
    #[error(
        "programs {programs} are in sections that all load as '{name}'; load them one at a time"
    )]
    Collision { programs: String, name: String },
}

/// The name aya knows for a section name, when it needs one.
pub fn aya_name(section: &str) -> Option<String> {
    let parsed = ProgramSection::parse(section)?;
    match parsed.kind {
        SectionKind::Tc | SectionKind::TcxIngress | SectionKind::TcxEgress
            if section != "classifier" && !section.starts_with("classifier/") =>
        {
            Some(format!("classifier/{section}"))
        }
        // aya once wrote `xdp/<name>`; it now takes only `xdp`.
        SectionKind::Xdp if parsed.aya_style => Some("xdp".into()),
        SectionKind::XdpFrags if parsed.aya_style => Some("xdp.frags".into()),
        _ => None,
    }
}

/// Whether aya 0.14 parses `section` as a program section.
fn aya_parses(section: &str) -> bool {
    section.parse::<aya_obj::ProgramSection>().is_ok()
}

#[derive(Clone, Copy)]
struct Endian(bool);

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Result<u16, RewriteError> {
        let s: [u8; 2] = b
            .get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .ok_or(RewriteError::OutOfBounds("header"))?;
        Ok(if self.0 {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Result<u32, RewriteError> {
        let s: [u8; 4] = b
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(RewriteError::OutOfBounds("header"))?;
        Ok(if self.0 {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }
    fn u64(self, b: &[u8], at: usize) -> Result<u64, RewriteError> {
        let s: [u8; 8] = b
            .get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .ok_or(RewriteError::OutOfBounds("header"))?;
        Ok(if self.0 {
            u64::from_be_bytes(s)
        } else {
            u64::from_le_bytes(s)
        })
    }
    fn put_u32(self, b: &mut [u8], at: usize, v: u32) {
        let bytes = if self.0 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        b[at..at + 4].copy_from_slice(&bytes);
    }
    fn put_u64(self, b: &mut [u8], at: usize, v: u64) {
        let bytes = if self.0 {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        b[at..at + 8].copy_from_slice(&bytes);
    }
}

const SH_NAME: usize = 0;
const SH_FLAGS: usize = 8;
const SHF_EXECINSTR: u64 = 0x4;
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;
const BTF_MAGIC: u16 = 0xeb9f;

struct Section {
    header: usize,
    name: String,
    flags: u64,
    offset: usize,
    size: usize,
}

fn cstr(table: &[u8], at: usize) -> Option<&str> {
    let rest = table.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn sections(elf: &[u8], e: Endian) -> Result<(Vec<Section>, usize), RewriteError> {
    let shoff = usize::try_from(e.u64(elf, 0x28)?).map_err(|_| RewriteError::NotElf64)?;
    let shentsize = usize::from(e.u16(elf, 0x3a)?);
    let shnum = usize::from(e.u16(elf, 0x3c)?);
    let shstrndx = usize::from(e.u16(elf, 0x3e)?);
    if shentsize < 64 || shstrndx >= shnum {
        return Err(RewriteError::OutOfBounds("section header table"));
    }
    let raw = (0..shnum)
        .map(|i| {
            let h = shoff + i * shentsize;
            Ok((
                h,
                e.u32(elf, h + SH_NAME)?,
                e.u64(elf, h + SH_FLAGS)?,
                usize::try_from(e.u64(elf, h + SH_OFFSET)?).unwrap_or(usize::MAX),
                usize::try_from(e.u64(elf, h + SH_SIZE)?).unwrap_or(usize::MAX),
            ))
        })
        .collect::<Result<Vec<_>, RewriteError>>()?;
    let (_, _, _, str_off, str_size) = raw[shstrndx];
    let strtab = elf
        .get(str_off..str_off.saturating_add(str_size))
        .ok_or(RewriteError::OutOfBounds("section name table"))?;
    let sections = raw
        .into_iter()
        .map(|(header, name_off, flags, offset, size)| Section {
            header,
            name: cstr(strtab, name_off as usize)
                .unwrap_or_default()
                .to_string(),
            flags,
            offset,
            size,
        })
        .collect();
    Ok((sections, shstrndx))
}

/// Appends `data` at the end of `out`, 8-byte aligned, and points section
/// header `header` at it.
fn relocate(out: &mut Vec<u8>, e: Endian, header: usize, data: &[u8]) {
    out.resize(out.len().next_multiple_of(8), 0);
    let at = out.len() as u64;
    out.extend_from_slice(data);
    e.put_u64(out, header + SH_OFFSET, at);
    e.put_u64(out, header + SH_SIZE, data.len() as u64);
}

/// Whether the object has CO-RE relocations (a non-empty `core_relo`
/// block in `.BTF.ext`), the only thing aya needs the kernel's BTF for
/// when it opens an object. Unreadable objects say no: aya reports them.
pub fn has_core_relocations(elf: &[u8]) -> bool {
    let relocations = || -> Result<bool, RewriteError> {
        if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
            return Ok(false);
        }
        let e = Endian(elf.get(5) == Some(&2));
        let (sections, _) = sections(elf, e)?;
        let Some(ext) = sections.iter().find(|s| s.name == ".BTF.ext") else {
            return Ok(false);
        };
        let data = elf
            .get(ext.offset..ext.offset.saturating_add(ext.size))
            .ok_or(RewriteError::OutOfBounds(".BTF.ext"))?;
        let hdr_len = e.u32(data, 4)?;
        Ok(hdr_len >= 32 && e.u32(data, 28)? > 0)
    };
    relocations().unwrap_or(false)
}

/// What becomes of the program sections aya cannot take as they are.
#[derive(Debug, Default)]
struct Plan {
    /// Old name -> the name aya knows.
    renames: BTreeMap<String, String>,
    /// Sections aya is not to see.
    hidden: Vec<String>,
    /// Renamed sections that share their new name with another: their
    /// `.BTF.ext` records keep the old name, since aya keys those records
    /// by section name and would hand one section's to the other. Their
    /// programs load without BTF function and line info.
    btf_unrenamed: Vec<String>,
}

/// Decides, for each executable section, whether aya takes it as it is,
/// under another name, or not at all. `wanted` are the functions about to
/// be loaded: their sections must reach aya.
fn plan(elf: &[u8], sections: &[Section], wanted: &[&str]) -> Result<Plan, RewriteError> {
    // Which functions each section holds, by the spec's reading (programs
    // and skipped functions alike); an object it cannot read is left to
    // aya to report.
    let mut functions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if let Ok(info) = bpfman_image_spec::elf::inspect(elf) {
        let all = info
            .programs
            .iter()
            .map(|p| (&p.section_name, &p.name))
            .chain(info.skipped.iter().map(|p| (&p.section_name, &p.name)));
        for (section, name) in all {
            if let Some(s) = sections.iter().find(|s| &s.name == section) {
                functions.entry(&s.name).or_default().push(name.clone());
            }
        }
    }
    let wanted_in = |section: &str| -> Vec<String> {
        functions
            .get(section)
            .map(|f| {
                f.iter()
                    .filter(|n| wanted.contains(&n.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut plan = Plan::default();
    // Final name -> the sections that would carry it.
    let mut finals: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for s in sections {
        let executable = s.flags & SHF_EXECINSTR != 0;
        if !executable || s.name.starts_with(".text") || s.size == 0 {
            continue;
        }
        let new = aya_name(&s.name);
        let final_name = match (&new, aya_parses(&s.name)) {
            (Some(new), _) => new.clone(),
            (None, true) => s.name.clone(),
            (None, false) => {
                if let Some(program) = wanted_in(&s.name).into_iter().next() {
                    return Err(RewriteError::Unloadable {
                        program,
                        section: s.name.clone(),
                    });
                }
                plan.hidden.push(s.name.clone());
                continue;
            }
        };
        if let Some(new) = new {
            plan.renames.insert(s.name.clone(), new);
        }
        finals.entry(final_name).or_default().push(&s.name);
    }
    // Two sections under one name would confuse aya's per-section BTF
    // records. Sections that are all renamed (aya-style `xdp/<a>`,
    // `xdp/<b>`) keep their records under the old names; a section that
    // has the name already keeps it, and renamed ones not wanted are hidden.
    for (name, group) in finals.into_iter().filter(|(_, g)| g.len() > 1) {
        if group.iter().all(|s| plan.renames.contains_key(*s)) {
            plan.btf_unrenamed
                .extend(group.iter().map(|s| (*s).to_string()));
            continue;
        }
        let keep: Vec<&str> = group
            .iter()
            .copied()
            .filter(|s| !plan.renames.contains_key(*s) || !wanted_in(s).is_empty())
            .collect();
        if keep.len() > 1 {
            let programs: Vec<String> = keep.iter().flat_map(|s| wanted_in(s)).collect();
            return Err(RewriteError::Collision {
                programs: programs.join(", "),
                name,
            });
        }
        for s in group.into_iter().filter(|s| !keep.contains(s)) {
            plan.renames.remove(s);
            plan.hidden.push(s.to_string());
        }
    }
    Ok(plan)
}

/// Returns the object as aya can take it: libbpf and aya-style section
/// names aya does not know renamed, program sections it cannot load and
/// `wanted` does not need hidden; or the bytes untouched when nothing
/// needs changing. `wanted` names the programs about to be loaded.
pub fn for_aya<'a>(elf: &'a [u8], wanted: &[&str]) -> Result<Cow<'a, [u8]>, RewriteError> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) {
        return Err(RewriteError::NotElf64);
    }
    let e = Endian(elf.get(5) == Some(&2));
    let (sections, shstrndx) = sections(elf, e)?;
    let Plan {
        renames,
        hidden,
        btf_unrenamed,
    } = plan(elf, &sections, wanted)?;
    if renames.is_empty() && hidden.is_empty() {
        return Ok(Cow::Borrowed(elf));
    }
    let mut out = elf.to_vec();
    for s in sections.iter().filter(|s| hidden.contains(&s.name)) {
        e.put_u64(&mut out, s.header + SH_FLAGS, s.flags & !SHF_EXECINSTR);
    }
    if renames.is_empty() {
        return Ok(Cow::Owned(out));
    }

    // The section header string table: old names stay (other sections may
    // share their suffixes), new ones are appended.
    let shstr = &sections[shstrndx];
    let mut table = elf[shstr.offset..shstr.offset + shstr.size].to_vec();
    let mut new_offsets = BTreeMap::new();
    for (old, new) in &renames {
        new_offsets.insert(old.as_str(), table.len() as u32);
        table.extend_from_slice(new.as_bytes());
        table.push(0);
    }
    for s in &sections {
        if let Some(&off) = new_offsets.get(s.name.as_str()) {
            e.put_u32(&mut out, s.header + SH_NAME, off);
        }
    }
    relocate(&mut out, e, shstr.header, &table);

    let find = |name: &str| sections.iter().find(|s| s.name == name);
    if let (Some(btf), Some(ext)) = (find(".BTF"), find(".BTF.ext")) {
        let btf_data = elf
            .get(btf.offset..btf.offset + btf.size)
            .ok_or(RewriteError::OutOfBounds(".BTF"))?;
        let btf_renames: BTreeMap<String, String> = renames
            .iter()
            .filter(|(old, _)| !btf_unrenamed.contains(old))
            .map(|(o, n)| (o.clone(), n.clone()))
            .collect();
        let (grown, btf_offsets) = grow_btf_strings(btf_data, e, &btf_renames)?;
        relocate(&mut out, e, btf.header, &grown);
        let ext_range = ext.offset..ext.offset + ext.size;
        if out.get(ext_range.clone()).is_none() {
            return Err(RewriteError::OutOfBounds(".BTF.ext"));
        }
        repoint_btf_ext(&mut out[ext_range], e, btf_data, &btf_offsets)?;
    }
    Ok(Cow::Owned(out))
}

/// The BTF blob with the new names appended to its string table, and for
/// each old name the offset of its new name.
fn grow_btf_strings(
    btf: &[u8],
    e: Endian,
    renames: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, BTreeMap<String, u32>), RewriteError> {
    if e.u16(btf, 0).map_err(|_| RewriteError::Btf("no header"))? != BTF_MAGIC {
        return Err(RewriteError::Btf("bad magic"));
    }
    let hdr_len = e.u32(btf, 4)? as usize;
    let type_off = e.u32(btf, 8)? as usize;
    let type_len = e.u32(btf, 12)? as usize;
    let str_off = e.u32(btf, 16)? as usize;
    let str_len = e.u32(btf, 20)? as usize;
    let str_end = hdr_len + str_off + str_len;
    if str_end > btf.len() || str_off < type_off + type_len {
        // Strings after the types is what every compiler writes; anything
        // else we would have to re-lay out.
        return Err(RewriteError::Btf("string table is not the last part"));
    }
    let mut grown = btf[..str_end].to_vec();
    let mut offsets = BTreeMap::new();
    for (old, new) in renames {
        offsets.insert(old.clone(), (grown.len() - hdr_len - str_off) as u32);
        grown.extend_from_slice(new.as_bytes());
        grown.push(0);
    }
    let new_len = (grown.len() - hdr_len - str_off) as u32;
    e.put_u32(&mut grown, 20, new_len);
    Ok((grown, offsets))
}

/// Re-points every `.BTF.ext` section record that names a renamed section.
fn repoint_btf_ext(
    ext: &mut [u8],
    e: Endian,
    btf: &[u8],
    new_offsets: &BTreeMap<String, u32>,
) -> Result<(), RewriteError> {
    let bad = RewriteError::BtfExt;
    if e.u16(ext, 0).map_err(|_| bad("no header"))? != BTF_MAGIC {
        return Err(bad("bad magic"));
    }
    let btf_hdr = e.u32(btf, 4)? as usize;
    let btf_strings = btf_hdr + e.u32(btf, 16)? as usize;
    let hdr_len = e.u32(ext, 4)? as usize;
    // func_info, line_info, and (in longer headers) core_relo.
    let blocks = if hdr_len >= 32 { 3 } else { 2 };
    for block in 0..blocks {
        let off = e.u32(ext, 8 + block * 8)? as usize;
        let len = e.u32(ext, 12 + block * 8)? as usize;
        if len == 0 {
            continue;
        }
        let start = hdr_len + off;
        let end = start + len;
        if end > ext.len() {
            return Err(bad("a record block runs past the section"));
        }
        let rec_size = e.u32(ext, start)? as usize;
        let mut at = start + 4;
        while at < end {
            let name_off = e.u32(ext, at)? as usize;
            let count = e.u32(ext, at + 4)? as usize;
            let name =
                cstr(btf, btf_strings + name_off).ok_or(bad("a section name is not in .BTF"))?;
            if let Some(&new) = new_offsets.get(name) {
                e.put_u32(ext, at, new);
            }
            at = count
                .checked_mul(rec_size)
                .and_then(|n| n.checked_add(at + 8))
                .filter(|&n| n <= end)
                .ok_or(bad("a record count runs past its block"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_tc_names_are_renamed() {
        assert_eq!(aya_name("tc").as_deref(), Some("classifier/tc"));
        assert_eq!(
            aya_name("tcx/ingress").as_deref(),
            Some("classifier/tcx/ingress")
        );
        assert_eq!(
            aya_name("tc/egress").as_deref(),
            Some("classifier/tc/egress")
        );
        assert_eq!(aya_name("classifier"), None);
        assert_eq!(aya_name("classifier/x"), None);
        assert_eq!(aya_name("xdp"), None);
        assert_eq!(aya_name("tracepoint/syscalls/sys_enter_openat"), None);
        assert_eq!(aya_name(".text"), None);
    }

    #[test]
    fn non_elf_is_refused() {
        assert_eq!(for_aya(b"not an elf", &[]), Err(RewriteError::NotElf64));
    }
}

/// A committed test object, for unit tests here and in `chain`.
#[cfg(test)]
pub(crate) fn test_object(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/bpf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod objects {
    use aya_obj::{Object, ProgramSection as Aya};

    use super::test_object as object;
    use super::*;

    #[test]
    fn libbpf_tc_objects_parse_in_aya_after_rewriting() {
        for name in [
            "tc_libbpf.bpfel.o",
            "tc_libbpf.bpfeb.o",
            "tcx.bpfel.o",
            "tcx.bpfeb.o",
        ] {
            let raw = object(name);
            assert!(
                Object::parse(&raw).is_err(),
                "{name}: aya learnt libbpf names; drop the rewrite"
            );
            let all: Vec<String> = bpfman_image_spec::elf::inspect(&raw)
                .expect("inspect")
                .programs
                .into_iter()
                .map(|p| p.name)
                .collect();
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let fixed = for_aya(&raw, &all).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(fixed, Cow::Owned(_)), "{name}");
            let after = bpfman_image_spec::elf::inspect(&fixed).expect("inspect");
            assert!(
                after
                    .programs
                    .iter()
                    .all(|p| p.section_name.starts_with("classifier/")),
                "{name}: {:?}",
                after.programs
            );
            // The rest of the object is what it was.
            let before = bpfman_image_spec::elf::inspect(&raw).expect("inspect");
            assert_eq!(before.maps, after.maps, "{name}");
            assert_eq!(
                before.programs.iter().map(|p| &p.name).collect::<Vec<_>>(),
                after.programs.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "{name}"
            );
            if name.contains("bpfeb") {
                // aya 0.14 reads BTF in host byte order only, so it cannot
                // parse big-endian objects here; the loader refuses them
                // on a little-endian host before this point anyway.
                continue;
            }
            let obj = Object::parse(&fixed).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!obj.programs.is_empty(), "{name}");
            for (prog, p) in &obj.programs {
                assert!(matches!(p.section, Aya::SchedClassifier), "{name}: {prog}");
                // Function info followed the rename: the kernel needs it to
                // print source lines in the verifier log.
                let f = &obj.functions[&p.function_key()];
                assert!(
                    f.func_info.num_info > 0,
                    "{name}: {prog} lost its BTF func info"
                );
                assert!(
                    f.line_info.num_info > 0,
                    "{name}: {prog} lost its BTF line info"
                );
            }
        }
    }

    #[test]
    fn aya_style_sections_load_and_unknown_ones_are_hidden() {
        let raw = object("aya_style.bpfel.o");
        assert!(Object::parse(&raw).is_err(), "aya learnt xdp/<name>");
        for wanted in [&["aya_count", "aya_drop"][..], &["aya_drop"][..], &[][..]] {
            let fixed = for_aya(&raw, wanted).unwrap_or_else(|e| panic!("{wanted:?}: {e}"));
            let obj = Object::parse(&fixed).unwrap_or_else(|e| panic!("{wanted:?}: {e}"));
            let mut names: Vec<&String> = obj.programs.keys().collect();
            names.sort();
            assert_eq!(names, ["aya_count", "aya_drop"], "{wanted:?}");
            for p in obj.programs.values() {
                assert!(matches!(p.section, Aya::Xdp { frags: false, .. }));
            }
        }
        assert_eq!(
            for_aya(&raw, &["stray"]),
            Err(RewriteError::Unloadable {
                program: "stray".into(),
                section: "warp/drive".into()
            })
        );
    }

    #[test]
    fn core_relocations_are_found_where_they_are() {
        // Our test objects use no CO-RE; the dispatchers neither.
        for name in ["xdp_counter.bpfel.o", "fentry.bpfel.o", "tcx.bpfeb.o"] {
            assert!(!has_core_relocations(&object(name)), "{name}");
        }
        // A .BTF.ext whose core_relo block is not empty.
        let mut raw = object("xdp_counter.bpfel.o");
        let e = Endian(false);
        let (sections, _) = sections(&raw, e).expect("sections");
        let ext = sections.iter().find(|s| s.name == ".BTF.ext").expect("ext");
        assert!(e.u32(&raw, ext.offset + 4).expect("hdr") >= 32);
        e.put_u32(&mut raw, ext.offset + 28, 16);
        assert!(has_core_relocations(&raw));
        assert!(!has_core_relocations(b"not an elf"));
    }

    #[test]
    fn objects_aya_knows_are_passed_through() {
        for name in [
            "xdp_pass.bpfel.o",
            "tracepoint.bpfel.o",
            "tc_classifier.bpfel.o",
        ] {
            let raw = object(name);
            assert!(matches!(for_aya(&raw, &[]), Ok(Cow::Borrowed(_))), "{name}");
        }
    }
}
