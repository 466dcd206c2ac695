//! The libbpf section rewriter (libbpf names to aya's), on any ELF.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Nothing wanted (every unknown section may be hidden), and one name
    // wanted (its section must reach aya, or be refused).
    let _ = bpfman_load::sections::for_aya(data, &[]);
    let _ = bpfman_load::sections::for_aya(data, &["prog"]);
    let _ = bpfman_load::sections::has_core_relocations(data);
});
