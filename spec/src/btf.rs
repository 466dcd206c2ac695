//! A minimal, pure BTF reader: just enough to read BTF-defined structs in a
//! data section, such as the map definitions in `.maps`
//! (`__uint(type, BPF_MAP_TYPE_HASH)` is encoded as a member
//! `int (*type)[BPF_MAP_TYPE_HASH]`) and, for the dispatcher, libxdp's
//! `.xdp_run_config`.
//!
//! It never trusts the input: every offset and count is bounds-checked, and
//! type chains are followed a bounded number of steps.

use crate::arch::Endianness;

const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;
const MAX_CHAIN: usize = 32;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why BTF could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF is shorter than its header ({len} bytes)")]
    TooShort { len: usize },
    #[error("BTF magic is {found:#06x}, expected 0xeb9f in the object's byte order")]
    BadMagic { found: u16 },
    #[error("BTF {what} section lies outside the data ({offset}+{len} > {total})")]
    OutOfBounds {
        what: &'static str,
        offset: usize,
        len: usize,
        total: usize,
    },
    #[error("BTF type #{id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u32 },
    #[error("BTF type #{id} refers to type #{target}, which does not exist")]
    DanglingType { id: u32, target: u32 },
    #[error("BTF string offset {offset} is outside the string section")]
    BadString { offset: u32 },
    #[error("BTF variable '{var}' in {section}: {problem}")]
    BadDefinition {
        section: String,
        var: String,
        problem: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
struct RawType {
    name_off: u32,
    kind: u32,
    vlen: u32,
    size_or_type: u32,
    /// Offset of the kind-specific data that follows the common header.
    extra: usize,
}

/// Parsed BTF: the type table and the string section.
#[derive(Debug)]
pub struct Btf<'a> {
    data: &'a [u8],
    endian: Endianness,
    types: Vec<RawType>,
    strings: &'a [u8],
}

/// One integer-valued member of a BTF-defined struct, e.g. `type` = 6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntMember {
    pub name: String,
    pub value: u32,
}

/// One member of a struct as laid out in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Bytes from the start of the struct.
    pub offset: u32,
    /// Bytes the member occupies (arrays: all their elements).
    pub size: u32,
}

/// A variable of a data section whose type is a struct of `__uint()` members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructDef {
    pub name: String,
    pub members: Vec<IntMember>,
}

impl StructDef {
    /// The value of member `name`, if present.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

impl<'a> Btf<'a> {
    /// Parses a `.BTF` section written in `endian` byte order.
    pub fn parse(data: &'a [u8], endian: Endianness) -> Result<Self, BtfError> {
        if data.len() < HEADER_MIN {
            return Err(BtfError::TooShort { len: data.len() });
        }
        let rd = Reader { data, endian };
        let magic = rd.u16(0).unwrap_or_default();
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic { found: magic });
        }
        let hdr_len = rd.usize_at(4);
        let type_off = rd.usize_at(8);
        let type_len = rd.usize_at(12);
        let str_off = rd.usize_at(16);
        let str_len = rd.usize_at(20);
        let types_area = slice(data, hdr_len.saturating_add(type_off), type_len, "type")?;
        let strings = slice(data, hdr_len.saturating_add(str_off), str_len, "string")?;
        let base = hdr_len + type_off;

        let mut types = Vec::new();
        let mut pos = 0usize;
        while pos < types_area.len() {
            let id = u32::try_from(types.len() + 1).unwrap_or(u32::MAX);
            let at = base + pos;
            let (Some(name_off), Some(info), Some(size_or_type)) =
                (rd.u32(at), rd.u32(at + 4), rd.u32(at + 8))
            else {
                return Err(out_of_bounds("type", at, 12, data.len()));
            };
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let vlen_us = vlen as usize;
            let extra_len = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen_us,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen_us,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                _ => return Err(BtfError::UnknownKind { id, kind }),
            };
            let extra = at + 12;
            if pos + 12 + extra_len > types_area.len() {
                return Err(out_of_bounds("type", extra, extra_len, base + type_len));
            }
            types.push(RawType {
                name_off,
                kind,
                vlen,
                size_or_type,
                extra,
            });
            pos += 12 + extra_len;
        }
        Ok(Self {
            data,
            endian,
            types,
            strings,
        })
    }

    fn rd(&self) -> Reader<'a> {
        Reader {
            data: self.data,
            endian: self.endian,
        }
    }

    fn ty(&self, from: u32, id: u32) -> Result<&RawType, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.types.get(i as usize))
            .ok_or(BtfError::DanglingType {
                id: from,
                target: id,
            })
    }

    fn name(&self, off: u32) -> Result<String, BtfError> {
        let start = off as usize;
        let rest = self
            .strings
            .get(start..)
            .ok_or(BtfError::BadString { offset: off })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString { offset: off })?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<(u32, &RawType), BtfError> {
        for _ in 0..MAX_CHAIN {
            let t = self.ty(id, id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Ok((id, t)),
            }
        }
        Err(BtfError::DanglingType { id, target: id })
    }

    /// The byte size of a type (ints, structs, unions, enums, arrays).
    fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let mut id = id;
        let mut count: u32 = 1;
        for _ in 0..MAX_CHAIN {
            let (rid, t) = self.resolve(id)?;
            match t.kind {
                KIND_ARRAY => {
                    let rd = self.rd();
                    let (Some(elem), Some(n)) = (rd.u32(t.extra), rd.u32(t.extra + 8)) else {
                        return Err(out_of_bounds("type", t.extra, 12, self.data.len()));
                    };
                    count = count.saturating_mul(n);
                    id = elem;
                }
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                    return Ok(count.saturating_mul(t.size_or_type));
                }
                KIND_PTR => return Ok(count.saturating_mul(8)),
                _ => {
                    return Err(BtfError::DanglingType {
                        id: rid,
                        target: rid,
                    });
                }
            }
        }
        Err(BtfError::DanglingType { id, target: id })
    }

    /// The members of struct `name`, with their byte offsets and sizes;
    /// `None` if there is no such struct. Bit-fields are not supported.
    pub fn struct_layout(&self, name: &str) -> Result<Option<Vec<Member>>, BtfError> {
        let mut found = None;
        for (i, t) in self.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && self.name(t.name_off)? == name {
                found = Some((u32::try_from(i + 1).unwrap_or(u32::MAX), *t));
                break;
            }
        }
        let Some((_, st)) = found else {
            return Ok(None);
        };
        let rd = self.rd();
        let mut members = Vec::new();
        for m in 0..st.vlen as usize {
            let at = st.extra + m * 12;
            let (Some(name_off), Some(mtype), Some(bits)) =
                (rd.u32(at), rd.u32(at + 4), rd.u32(at + 8))
            else {
                return Err(out_of_bounds("type", at, 12, self.data.len()));
            };
            members.push(Member {
                name: self.name(name_off)?,
                offset: (bits & 0x00ff_ffff) / 8,
                size: self.size_of(mtype)?,
            });
        }
        Ok(Some(members))
    }

    /// The variables of data section `section` (e.g. `.maps`) whose types are
    /// structs, with every member of the form `int (*name)[N]` decoded to N.
    /// Other members (`__type(key, ...)`, `__array(values, ...)`) are skipped.
    /// Returns `None` if the section has no BTF description.
    pub fn struct_defs(&self, section: &str) -> Result<Option<Vec<StructDef>>, BtfError> {
        let mut found = None;
        for (i, t) in self.types.iter().enumerate() {
            if t.kind == KIND_DATASEC && self.name(t.name_off)? == section {
                found = Some((u32::try_from(i + 1).unwrap_or(u32::MAX), *t));
                break;
            }
        }
        let Some((sec_id, sec)) = found else {
            return Ok(None);
        };
        let rd = self.rd();
        let mut defs = Vec::new();
        for v in 0..sec.vlen as usize {
            let var_id = rd.u32(sec.extra + v * 12).unwrap_or_default();
            let var = self.ty(sec_id, var_id)?;
            if var.kind != KIND_VAR {
                continue;
            }
            let var_name = self.name(var.name_off)?;
            let bad = |problem| BtfError::BadDefinition {
                section: section.into(),
                var: var_name.clone(),
                problem,
            };
            let (struct_id, st) = self.resolve(var.size_or_type)?;
            if st.kind != KIND_STRUCT {
                return Err(bad("its type is not a struct"));
            }
            let mut members = Vec::new();
            for m in 0..st.vlen as usize {
                let at = st.extra + m * 12;
                let (Some(name_off), Some(mtype)) = (rd.u32(at), rd.u32(at + 4)) else {
                    return Err(bad("member table is truncated"));
                };
                let member = self.ty(struct_id, mtype)?;
                if member.kind != KIND_PTR {
                    continue;
                }
                let (_, pointee) = self.resolve(member.size_or_type)?;
                if pointee.kind != KIND_ARRAY {
                    continue;
                }
                let Some(nelems) = rd.u32(pointee.extra + 8) else {
                    return Err(bad("array type is truncated"));
                };
                members.push(IntMember {
                    name: self.name(name_off)?,
                    value: nelems,
                });
            }
            defs.push(StructDef {
                name: var_name,
                members,
            });
        }
        Ok(Some(defs))
    }
}

fn out_of_bounds(what: &'static str, offset: usize, len: usize, total: usize) -> BtfError {
    BtfError::OutOfBounds {
        what,
        offset,
        len,
        total,
    }
}

fn slice<'a>(
    data: &'a [u8],
    off: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], BtfError> {
    off.checked_add(len)
        .and_then(|end| data.get(off..end))
        .ok_or_else(|| out_of_bounds(what, off, len, data.len()))
}

#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    endian: Endianness,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self.endian {
            Endianness::Little => u16::from_le_bytes(b),
            Endianness::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self.endian {
            Endianness::Little => u32::from_le_bytes(b),
            Endianness::Big => u32::from_be_bytes(b),
        })
    }

    fn usize_at(&self, at: usize) -> usize {
        self.u32(at).unwrap_or_default() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_bad_magic() {
        assert_eq!(
            Btf::parse(&[0; 4], Endianness::Little).map(|_| ()),
            Err(BtfError::TooShort { len: 4 })
        );
        let mut hdr = [0u8; 24];
        hdr[0] = 0x9f;
        hdr[1] = 0xeb;
        // Little-endian magic read as big-endian is wrong.
        assert!(matches!(
            Btf::parse(&hdr, Endianness::Big),
            Err(BtfError::BadMagic { found: 0x9feb })
        ));
    }

    #[test]
    fn rejects_sections_past_the_end() {
        let mut hdr = [0u8; 24];
        hdr[..2].copy_from_slice(&BTF_MAGIC.to_le_bytes());
        hdr[4..8].copy_from_slice(&24u32.to_le_bytes());
        hdr[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            Btf::parse(&hdr, Endianness::Little),
            Err(BtfError::OutOfBounds { what: "type", .. })
        ));
    }
}
