//! The layer reader (gzip, tar, the one object in it).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpfman_image_spec::layer::read_layer(data);
});
