//! Integration tests, one binary: the CLIs against real files, real
//! registries and real third-party tools.

mod support;

mod apply;
mod build;
mod deploy;
mod fake_registry;
mod fleet;
mod front_door;
mod interop;
mod kernel;
mod keyless;
mod libxdp;
mod load_cache;
mod mirrors;
mod registry;
mod registry_harness;
mod signing;
mod upstream;
mod vm;
mod vmbench;
