//! cosign signature payloads (with their annotation) and Sigstore bundles,
//! checked against a fixed key and digest.
#![no_main]
use std::sync::OnceLock;

use bpfman_image_spec::digest::Digest;
use bpfman_trust::cosign::{self, Found};
use bpfman_trust::keys::PublicKey;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2zx0R/V98AphFUUbqDlbawv8Xcf3
ar3ynxNE/9ecw9YiflPvhqN42m1dDQLG1z58yu7GAaarTUTHMuxlzX1Avg==
-----END PUBLIC KEY-----
";

fn key() -> &'static PublicKey {
    static K: OnceLock<PublicKey> = OnceLock::new();
    K.get_or_init(|| PublicKey::from_pem(KEY).expect("the fixed key"))
}

fuzz_target!(|data: &[u8]| {
    let digest = Digest::of(b"subject");
    let keys = std::slice::from_ref(key());
    // The first line, if any, is the signature annotation.
    let (signature, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            Some(String::from_utf8_lossy(&data[..i]).into_owned()),
            &data[i + 1..],
        ),
        None => (None, data),
    };
    let legacy = Found::Legacy {
        origin: "fuzz".into(),
        payload: payload.to_vec(),
        signature,
        annotations: Default::default(),
    };
    let _ = cosign::check(&legacy, &digest, keys);
    let _ = cosign::payload_annotations(data);
    let bundle = Found::Bundle {
        origin: "fuzz".into(),
        bundle: data.to_vec(),
    };
    let _ = cosign::check(&bundle, &digest, keys);
});
