//! The host side: pulling, verifying, caching and loading eBPF bytecode
//! images. So far it holds the platform selection every load starts with;
//! the cache, policy, kernel and dispatcher modules arrive with their issues.

pub mod platform;
