//! registries.conf and the desired-state files of `apply`.
#![no_main]
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conf) = bpfman_image::registry::mirrors::RegistriesConf::parse(
        text,
        Path::new("/etc/containers/registries.conf"),
    ) {
        // Whatever was parsed must answer for any reference.
        for r in [
            "quay.io/a/b:1",
            "docker.io/library/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "127.0.0.1:5000/x",
        ] {
            if let Ok(r) = r.parse() {
                let _ = conf.pull_endpoints(&r);
                let _ = conf.push_endpoint(&r);
            }
        }
    }
    let _ = bpfman_load::apply::file::Desired::parse(&[(
        PathBuf::from("/etc/bpfman-load/apply.d/fuzz.toml"),
        text.to_string(),
    )]);
});
