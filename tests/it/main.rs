//! Integration tests, one binary: the CLIs against real files and real
//! third-party tools.

mod support;

mod build;
mod interop;
