//! The libbpf section rewriter (libbpf names to aya's), on any ELF.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpfman_load::sections::for_aya(data);
});
