//! The host side: pulling, verifying, caching and (with its issue) loading
//! eBPF bytecode images.
//!
//! - [`cache`]: the content-addressed blob store and its sled index.
//! - [`images`]: pull policies, pulling with signatures, and verifying a
//!   cached image against the policy in force, offline.
//! - [`loadable`]: the gate before the kernel: an admitted image narrowed
//!   to this host's object, only with a proof for its digest.
//! - [`lock`]: one invocation at a time per root.
//! - [`platform`]: the index entry for this host, and the byte-order guard.
//! - [`cli`]: the command line.

pub mod bpffs;
pub mod cache;
pub mod chain;
pub mod cli;
pub mod dispatcher;
pub mod images;
pub mod loadable;
pub mod loader;
pub mod lock;
pub mod platform;
pub mod probe;
pub mod sections;
pub mod state;
