//! ELF and BTF inspection: any bytes, an error or an answer, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpfman_image_spec::elf::identify(data);
    let _ = bpfman_image_spec::elf::inspect(data);
    let _ = bpfman_image_spec::elf::btf_struct_defs(data, ".xdp_run_config");
});
