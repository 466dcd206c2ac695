//! Manifest, index and config parsing with `validate_image`: the input is
//! split in three (manifest, config, layer) at the first two 0xff bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpfman_image_spec::validate::parse_manifest(data);
    let _ = bpfman_image_spec::validate::parse_index(data);
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let (Some(manifest), Some(config), Some(layer)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let _ = bpfman_image_spec::validate::validate_image(manifest, config, layer, None);
});
