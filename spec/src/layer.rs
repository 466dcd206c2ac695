//! The one layer of a bytecode image: a gzip-compressed tar holding a single
//! eBPF object at its root.
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
    /// The object's file name in the tar (without any leading `./`).
    pub file_name: String,
    pub object: Vec<u8>,
    pub diff_id: Digest,
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
    #[error("layer entry '{path}' is not at the root of the archive")]
    NotAtRoot { path: String },
    #[error("layer entry '{path}' is a {kind}, not a regular file")]
    NotAFile { path: String, kind: &'static str },
    #[error("layer holds {count} files; a bytecode layer holds exactly one .o file")]
    FileCount { count: usize },
    #[error("layer file '{path}' does not end in .o")]
    NotAnObject { path: String },
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

/// Unpacks a layer blob (already digest-checked by the caller) and returns its
/// one object.
pub fn read_layer(blob: &[u8]) -> Result<LayerContents, LayerError> {
    let mut tar = Vec::new();
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
    let mut files = Vec::new();
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = raw.trim_start_matches("./").to_string();
        let kind = entry.header().entry_type();
        if kind.is_dir() && path.trim_end_matches('/').is_empty() {
            continue; // "./" itself
        }
        if path.contains('/') || path.is_empty() {
            return Err(LayerError::NotAtRoot { path: raw });
        }
        if !kind.is_file() {
            return Err(LayerError::NotAFile {
                path: raw,
                kind: entry_kind(kind),
            });
        }
        let mut object = Vec::new();
        entry.read_to_end(&mut object).map_err(LayerError::Tar)?;
        files.push((path, object));
    }
    if files.len() != 1 {
        return Err(LayerError::FileCount { count: files.len() });
    }
    let (file_name, object) = files.remove(0);
    if !file_name.ends_with(".o") {
        return Err(LayerError::NotAnObject { path: file_name });
    }
    Ok(LayerContents {
        file_name,
        object,
        diff_id,
    })
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
            h.set_path(path).expect("path");
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

    #[test]
    fn rejects_bad_layers() {
        use tar::EntryType as E;
        assert!(matches!(read_layer(b"not gzip"), Err(LayerError::Gzip(_))));
        assert!(matches!(
            read_layer(&tar_of(&[
                ("a.o", E::Regular, b"1"),
                ("b.o", E::Regular, b"2")
            ])),
            Err(LayerError::FileCount { count: 2 })
        ));
        assert!(matches!(
            read_layer(&tar_of(&[])),
            Err(LayerError::FileCount { count: 0 })
        ));
        assert!(matches!(
            read_layer(&tar_of(&[("dir/a.o", E::Regular, b"1")])),
            Err(LayerError::NotAtRoot { .. })
        ));
        assert!(matches!(
            read_layer(&tar_of(&[("a.o", E::Symlink, b"")])),
            Err(LayerError::NotAFile {
                kind: "symlink",
                ..
            })
        ));
        assert!(matches!(
            read_layer(&tar_of(&[("a.txt", E::Regular, b"1")])),
            Err(LayerError::NotAnObject { .. })
        ));
        // "./" entries and "./name.o" paths, as docker writes them, are fine.
        let ok = read_layer(&tar_of(&[
            ("./", E::Directory, b""),
            ("./a.o", E::Regular, b"1"),
        ]))
        .expect("reads");
        assert_eq!(ok.file_name, "a.o");
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
