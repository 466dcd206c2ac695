//! Sigstore material from untrusted places: bundles, trusted roots,
//! cosign's keyless annotations (the certificate, the Rekor bundle, the
//! RFC 3161 timestamp), checkpoints, and the DER inside certificates and
//! timestamps, verified against a fixed miniature Sigstore.
#![no_main]
use std::collections::BTreeMap;
use std::sync::OnceLock;

use bpfman_image_spec::digest::Digest;
use bpfman_trust::cosign::{self, Found, Trust};
use bpfman_trust::policy::Keyless;
use bpfman_trust::sigstore::testpki::TestPki;
use bpfman_trust::sigstore::{self, Artifact, Bundle, Signers, Subject, TrustedRoot, tlog, tsa};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn keyless() -> &'static Keyless {
    static K: OnceLock<Keyless> = OnceLock::new();
    K.get_or_init(|| {
        TestPki::new(NOW).keyless(
            "https://issuer.example",
            Subject::Exact("me@example.com".into()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keyless();
    let _ = TrustedRoot::from_json(data);
    if let Ok(bundle) = Bundle::from_json(data) {
        let signers = Signers::new(&[], &k.identities);
        let _ = sigstore::verify(&bundle, Artifact::Blob(b"a"), &k.root, signers, NOW);
        let _ = sigstore::verify(&bundle, Artifact::Sha256([7; 32]), &k.root, signers, NOW);
    }
    let _ = tsa::verify(data, b"signature", &k.root);
    if let Some(log) = k.root.tlogs.first() {
        let _ = tlog::verify_checkpoint(&String::from_utf8_lossy(data), log);
    }
    let _ = sigstore::cert::Cert::parse(data).map(|c| (c.identity(), c.tbs().map(<[u8]>::len)));
    // cosign's keyless annotations: the input split into certificate,
    // Rekor bundle and timestamp at NUL bytes.
    let mut parts = data
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let (cert, rekor, ts) = (parts.next(), parts.next(), parts.next());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        sigstore::bundle::COSIGN_CERTIFICATE.to_string(),
        cert.unwrap_or_default(),
    );
    if let Some(r) = rekor {
        annotations.insert(sigstore::bundle::COSIGN_REKOR_BUNDLE.to_string(), r);
    }
    if let Some(t) = ts {
        annotations.insert(sigstore::bundle::COSIGN_TIMESTAMP.to_string(), t);
    }
    let found = Found::Legacy {
        origin: "fuzz".into(),
        payload: data.to_vec(),
        signature: Some("MEUCIQ==".into()),
        annotations,
    };
    let trust = Trust {
        keys: &[],
        keyless: Some(k),
        now: NOW,
    };
    let _ = cosign::check_with(&found, &Digest::of(b"subject"), &trust);
    let _ = cosign::check_with(
        &Found::Bundle {
            origin: "fuzz".into(),
            bundle: data.to_vec(),
        },
        &Digest::of(b"subject"),
        &trust,
    );
});
