//! Trust policy files (key files are never read: each is refused).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = bpfman_trust::policy::Policy::parse(
        text,
        Path::new("/etc/bpfman-load/policy.toml"),
        |_| Err(std::io::Error::other("no key files while fuzzing")),
    );
});
