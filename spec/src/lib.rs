//! The eBPF bytecode image format, as a pure library: media types, label
//! keys, the OCI documents, ELF inspection of eBPF objects, and validation of
//! a whole image. No I/O, no async: the builder, the loader and a fuzzer all
//! use the same code. The normative description is `spec/README.md`.

pub mod arch;
pub mod btf;
pub mod digest;
pub mod elf;
pub mod image;
pub mod labels;
pub mod layer;
pub mod maps;
pub mod media;
pub mod name;
pub mod oci;
pub mod program;
pub mod text;
pub mod validate;

pub use arch::{Arch, Endianness};
pub use digest::Digest;
