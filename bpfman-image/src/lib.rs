//! Building and moving eBPF bytecode images.
//!
//! - [`builder`]: objects to a reproducible image, in memory.
//! - [`layout`]: OCI image layouts on disk, written atomically, read with
//!   every blob digest-checked.
//! - [`inspect`]: reading an image back, validated, and describing it.
//! - [`buildargs`]: bpfman's Containerfile build args.
//! - [`reference`]: where images live.
//! - [`content`]: an image held in memory, every blob verified.
//! - [`registry`], [`transfer`], [`auth`]: the registry transport, whole
//!   image pushes and pulls, and credentials.
//! - [`store`]: one type for where images live, a layout or a registry
//!   repository with its connection.
//! - [`signing`]: cosign signatures beside an image, in either store.
//! - [`ops`]: the operations (build into a layout, push, copy, tag, sign,
//!   verify), for the CLI and any other front end.
//! - `cli`, `frontend` (features of the same names): the command line,
//!   and what both tools' command lines share.

pub mod auth;
pub mod buildargs;
pub mod builder;
#[cfg(feature = "cli")]
pub mod cli;
pub mod content;
#[cfg(feature = "frontend")]
pub mod frontend;
pub mod inspect;
pub mod layout;
pub mod ops;
pub mod reference;
pub mod registry;
pub mod signing;
pub mod store;
pub mod transfer;

/// A current-thread async runtime, what every operation here runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
