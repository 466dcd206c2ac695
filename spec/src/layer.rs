//! The one layer of a bytecode image: a gzip-compressed tar holding a single
//! eBPF object. Writers put it alone at the root; readers take the one eBPF
//! ELF wherever it is, beside other files, as upstream bpfman's loader does.
//!
//! Writing is deterministic: fixed tar header fields (ustar, mode 0644, uid
//! and gid 0, no user names, the given mtime) and a gzip stream with no name,
//! mtime 0, OS "unknown" and a fixed compression level. The same object and
//! mtime give the same bytes with the same (locked) flate2/miniz_oxide.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::digest::Digest;

/// The largest object a layer may decompress to (a guard against gzip bombs;
/// real eBPF objects are kilobytes to a few megabytes).
pub const MAX_OBJECT_SIZE: u64 = 64 << 20;

/// A built layer: the compressed blob and the uncompressed tar's digest
/// (the config's `diff_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub diff_id: Digest,
}

/// What a layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerContents {
    /// The object's path in the tar (without any leading `./`).
    pub file_name: String,
    pub object: Vec<u8>,
    pub diff_id: Digest,
    /// What is odd about the layer but does not stop it from loading: the
    /// object in a subdirectory, without a `.o` name, or beside other files.
    pub warnings: Vec<String>,
}

/// Why a layer is not a valid bytecode layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("object file name '{name}' must be a plain file name ending in .o")]
    BadFileName { name: String },
    #[error("layer is not valid gzip")]
    Gzip(#[source] std::io::Error),
    #[error("layer decompresses to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("layer is not a valid tar archive")]
    Tar(#[source] std::io::Error),
    #[error("layer entry '{path}' is an absolute path or climbs out of the archive with '..'")]
    Traversal { path: String },
    #[error("layer entry '{path}' is a {kind}, not a regular file or directory")]
    NotAFile { path: String, kind: &'static str },
    #[error("the layer holds no files; a bytecode layer holds one eBPF object")]
    Empty,
    #[error(
        "the layer holds no eBPF ELF object (files: {files}); a bytecode layer holds one object built with clang -target bpf"
    )]
    NoObject { files: String },
    #[error(
        "the layer holds {count} eBPF ELF objects ({paths}); a bytecode image carries one, so which to load is ambiguous"
    )]
    SeveralObjects { count: usize, paths: String },
}

/// Builds the layer for `object`, stored as `file_name`, with tar mtime `mtime`
/// (seconds since the epoch; `SOURCE_DATE_EPOCH`, 0 by default).
pub fn build_layer(file_name: &str, object: &[u8], mtime: u64) -> Result<Layer, LayerError> {
    if !is_plain_object_name(file_name) {
        return Err(LayerError::BadFileName {
            name: file_name.into(),
        });
    }
    let mut header = tar::Header::new_ustar();
    header
        .set_path(file_name)
        .map_err(|_| LayerError::BadFileName {
            name: file_name.into(),
        })?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(object.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_cksum();

    // Writing into Vecs cannot fail.
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, object)
        .and_then(|()| builder.finish())
        .unwrap_or_else(|e| unreachable!("tar into memory: {e}"));
    let tar = builder
        .into_inner()
        .unwrap_or_else(|e| unreachable!("tar into memory: {e}"));

    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(tar.len() / 2), Compression::best());
    gz.write_all(&tar)
        .unwrap_or_else(|e| unreachable!("gzip into memory: {e}"));
    let blob = gz
        .finish()
        .unwrap_or_else(|e| unreachable!("gzip into memory: {e}"));
    Ok(Layer {
        blob,
        diff_id: Digest::of(&tar),
    })
}

/// Unpacks a layer blob (already digest-checked by the caller) and returns
/// its one eBPF object: the single regular file that is an eBPF ELF, at any
/// depth. Other files are ignored with a warning; links, devices and paths
/// that leave the archive are refused; several eBPF objects are ambiguous.
pub fn read_layer(blob: &[u8]) -> Result<LayerContents, LayerError> {
    // gzip's trailer gives the uncompressed size (mod 2^32): reserve it, up
    // to the limit, rather than growing (and copying) the buffer as it fills.
    let isize = blob
        .len()
        .checked_sub(4)
        .and_then(|at| blob.get(at..))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes);
    let mut tar = Vec::with_capacity((isize as usize).min(MAX_OBJECT_SIZE as usize + 1));
    GzDecoder::new(blob)
        .take(MAX_OBJECT_SIZE + 1)
        .read_to_end(&mut tar)
        .map_err(LayerError::Gzip)?;
    if tar.len() as u64 > MAX_OBJECT_SIZE {
        return Err(LayerError::TooLarge {
            limit: MAX_OBJECT_SIZE,
        });
    }
    let diff_id = Digest::of(&tar);
    let mut archive = tar::Archive::new(tar.as_slice());
    // Each file as its path and where its bytes lie in the tar: the object
    // is cut out of the tar in the end, never copied per file.
    let mut files: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let entry = entry.map_err(LayerError::Tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue; // pax global metadata, not a file
        }
        let path = clean_path(&raw).ok_or_else(|| LayerError::Traversal { path: raw.clone() })?;
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(LayerError::NotAFile {
                path: raw,
                kind: entry_kind(kind),
            });
        }
        if path.is_empty() {
            return Err(LayerError::Traversal { path: raw });
        }
        let range = usize::try_from(entry.raw_file_position())
            .ok()
            .zip(usize::try_from(entry.size()).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= tar.len())
            .ok_or_else(|| {
                LayerError::Tar(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("entry '{raw}' runs past the end of the archive"),
                ))
            })?;
        files.push((path, range));
    }
    pick_object(tar, files, diff_id)
}

/// The one eBPF ELF among `files`. When there is none, a lone file (or a
/// lone `.o`) is still returned, so the object check says what is wrong
/// with it.
fn pick_object(
    mut tar: Vec<u8>,
    mut files: Vec<(String, std::ops::Range<usize>)>,
    diff_id: Digest,
) -> Result<LayerContents, LayerError> {
    if files.is_empty() {
        return Err(LayerError::Empty);
    }
    let is_bpf = |r: &std::ops::Range<usize>| crate::elf::identify(&tar[r.clone()]).is_ok();
    let candidates: Vec<usize> = (0..files.len()).filter(|&i| is_bpf(&files[i].1)).collect();
    let chosen = match candidates.as_slice() {
        [one] => *one,
        [] => {
            let objects: Vec<usize> = (0..files.len())
                .filter(|&i| files[i].0.ends_with(".o"))
                .collect();
            match (files.len(), objects.as_slice()) {
                (1, _) => 0,
                (_, [one]) => *one,
                _ => {
                    return Err(LayerError::NoObject {
                        files: list(files.iter().map(|f| f.0.as_str())),
                    });
                }
            }
        }
        many => {
            return Err(LayerError::SeveralObjects {
                count: many.len(),
                paths: list(many.iter().map(|&i| files[i].0.as_str())),
            });
        }
    };
    let (file_name, range) = files.remove(chosen);
    tar.truncate(range.end);
    tar.drain(..range.start);
    let object = tar;
    let mut warnings = Vec::new();
    let shown = crate::text::printable(&file_name).into_owned();
    if file_name.contains('/') {
        warnings.push(format!(
            "the object '{shown}' is in a subdirectory of the layer, not at its root"
        ));
    }
    if !file_name.ends_with(".o") {
        warnings.push(format!("the object '{shown}' has no .o suffix"));
    }
    if !files.is_empty() {
        warnings.push(format!(
            "the layer also holds {}, which {} ignored",
            list(files.iter().map(|f| f.0.as_str())),
            if files.len() == 1 { "is" } else { "are" }
        ));
    }
    Ok(LayerContents {
        file_name,
        object,
        diff_id,
        warnings,
    })
}

/// `a, b, c`, escaped for printing, at most ten named.
fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<_> = names.collect();
    let mut out: Vec<String> = names
        .iter()
        .take(10)
        .map(|n| format!("'{}'", crate::text::printable(n)))
        .collect();
    if names.len() > 10 {
        out.push(format!("and {} more", names.len() - 10));
    }
    out.join(", ")
}

/// The path without `./` segments or a trailing `/`; `None` when it is
/// absolute or has a `..` segment.
fn clean_path(raw: &str) -> Option<String> {
    if raw.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn is_plain_object_name(name: &str) -> bool {
    name.len() > 2
        && name.ends_with(".o")
        && name.len() <= 100
        && !name.contains(['/', '\\', '\0'])
        && name != ".."
}

fn entry_kind(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "special entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_is_deterministic_and_reads_back() {
        let a = build_layer("prog.o", b"\x7fELF...", 0).expect("builds");
        let b = build_layer("prog.o", b"\x7fELF...", 0).expect("builds");
        assert_eq!(a, b);
        let c = build_layer("prog.o", b"\x7fELF...", 1_700_000_000).expect("builds");
        assert_ne!(a.blob, c.blob, "mtime is part of the tar");
        let back = read_layer(&a.blob).expect("reads");
        assert_eq!(back.file_name, "prog.o");
        assert_eq!(back.object, b"\x7fELF...");
        assert_eq!(back.diff_id, a.diff_id);
    }

    #[test]
    fn gzip_header_has_no_timestamp_or_name() {
        let l = build_layer("prog.o", b"x", 0).expect("builds");
        // ID1 ID2 CM FLG MTIME(4) XFL OS
        assert_eq!(&l.blob[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&l.blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(l.blob[9], 255);
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["a/b.o", "prog", ".o", "../x.o"] {
            assert!(build_layer(name, b"x", 0).is_err(), "{name}");
        }
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            // Raw, so hostile names ("../x") can be written too.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        let tar = b.into_inner().expect("tar");
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).expect("gz");
        gz.finish().expect("gz")
    }

    const BPF: &[u8] = include_bytes!("../../testdata/bpf/xdp_pass.bpfel.o");
    const X86: &[u8] = include_bytes!("../../testdata/bad/x86_64.o");

    #[test]
    fn rejects_bad_layers() {
        use tar::EntryType as E;
        assert!(matches!(read_layer(b"not gzip"), Err(LayerError::Gzip(_))));
        assert!(matches!(
            read_layer(&tar_of(&[
                ("a.o", E::Regular, BPF),
                ("b/c.o", E::Regular, BPF)
            ])),
            Err(LayerError::SeveralObjects { count: 2, .. })
        ));
        assert!(matches!(read_layer(&tar_of(&[])), Err(LayerError::Empty)));
        assert!(matches!(
            read_layer(&tar_of(&[("./", E::Directory, b"")])),
            Err(LayerError::Empty)
        ));
        assert!(matches!(
            read_layer(&tar_of(&[
                ("a.txt", E::Regular, b"1"),
                ("b", E::Regular, b"2")
            ])),
            Err(LayerError::NoObject { .. })
        ));
        for path in ["../a.o", "x/../../a.o"] {
            assert!(
                matches!(
                    read_layer(&tar_of(&[(path, E::Regular, BPF)])),
                    Err(LayerError::Traversal { .. })
                ),
                "{path}"
            );
        }
        for (kind, name) in [
            (E::Symlink, "symlink"),
            (E::Link, "hard link"),
            (E::Char, "character device"),
            (E::Fifo, "fifo"),
        ] {
            let err = read_layer(&tar_of(&[("a.o", kind, b"")])).expect_err("refused");
            assert!(
                matches!(err, LayerError::NotAFile { kind, .. } if kind == name),
                "{name}"
            );
        }
    }

    #[test]
    fn finds_the_one_object_wherever_it_is() {
        use tar::EntryType as E;
        // "./" entries and "./name.o" paths, as docker writes them, are fine.
        let ok = read_layer(&tar_of(&[
            ("./", E::Directory, b""),
            ("./a.o", E::Regular, BPF),
        ]))
        .expect("reads");
        assert_eq!((ok.file_name.as_str(), ok.warnings.len()), ("a.o", 0));
        // In a subdirectory, beside a README and a host binary, without .o.
        let ok = read_layer(&tar_of(&[
            ("README.md", E::Regular, b"# hi"),
            ("bpf/", E::Directory, b""),
            ("bpf/prog", E::Regular, BPF),
            ("bin/tool.o", E::Regular, X86),
        ]))
        .expect("reads");
        assert_eq!(ok.file_name, "bpf/prog");
        assert_eq!(ok.object, BPF);
        assert_eq!(ok.warnings.len(), 3, "{:?}", ok.warnings);
        // A lone file that is not eBPF is still handed on, so the object
        // check can say exactly what it is.
        let lone = read_layer(&tar_of(&[("a.txt", E::Regular, b"1")])).expect("handed on");
        assert_eq!(lone.file_name, "a.txt");
        let lone = read_layer(&tar_of(&[
            ("README", E::Regular, b"1"),
            ("x.o", E::Regular, X86),
        ]))
        .expect("handed on");
        assert_eq!(lone.file_name, "x.o");
    }

    #[test]
    fn rejects_gzip_bombs() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..=(MAX_OBJECT_SIZE >> 20) {
            gz.write_all(&zeros).expect("gz");
        }
        let blob = gz.finish().expect("gz");
        assert!(matches!(
            read_layer(&blob),
            Err(LayerError::TooLarge { .. })
        ));
    }
}
