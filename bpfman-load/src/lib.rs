//! The host side: pulling, verifying and caching eBPF bytecode images,
//! and loading, attaching and keeping their programs in the kernel.
//!
//! - [`host`]: the operations (admit, pull, load, attach, detach, unload,
//!   list), for the CLI and any other front end.
//! - [`cache`], [`images`], [`loadable`], [`platform`], [`lock`]: the
//!   verified image cache, pull policies, the gate before the kernel, this
//!   host's platform, one invocation at a time per root.
//! - [`loader`]: loading, attaching, unloading and reconciling, with
//!   pins first and the state record last.
//! - [`attach`]: one module per hook.
//! - [`chain`], [`dispatcher`]: multi-program dispatcher chains and their
//!   protocol.
//! - [`kernel`]: the one seam to the kernel and bpffs, with the real
//!   implementation and (in tests) a recording fake.
//! - [`state`], [`bpffs`]: the sled records and the pin layout.
//! - [`sections`]: libbpf section names renamed for aya.
//! - [`cli`]: the command line.

pub mod apply;
pub mod attach;
pub mod bpffs;
pub mod cache;
pub mod chain;
pub mod cli;
pub mod dispatcher;
pub mod host;
pub mod images;
pub mod kernel;
pub mod libxdp;
pub mod loadable;
pub mod loader;
pub mod lock;
pub mod platform;
pub mod sections;
pub mod state;
pub mod watch;
