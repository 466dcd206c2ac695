//! Validation against good images and against images broken one rule at a
//! time. Each broken image must fail with the error of the rule it breaks.

use std::collections::BTreeMap;

use bpfman_image_spec::Arch;
use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::image::{AssembledImage, ImageInput, assemble, assemble_index};
use bpfman_image_spec::labels::LabelFormat;
use bpfman_image_spec::layer::{LayerError, build_layer};
use bpfman_image_spec::media;
use bpfman_image_spec::oci::{ImageConfig, ImageManifest, Platform, to_canonical_json};
use bpfman_image_spec::validate::{ValidationError, parse_index, validate_image};

const COUNTER_EL: &[u8] = include_bytes!("../../testdata/bpf/xdp_counter.bpfel.o");
const COUNTER_EB: &[u8] = include_bytes!("../../testdata/bpf/xdp_counter.bpfeb.o");
const TC_EL: &[u8] = include_bytes!("../../testdata/bpf/tc_libbpf.bpfel.o");

fn build(arch: Arch, object: &[u8]) -> AssembledImage {
    let empty = BTreeMap::new();
    assemble(&ImageInput {
        arch,
        file_name: "xdp_counter.o",
        object,
        labels: &empty,
        annotations: &empty,
        epoch: 0,
    })
    .expect("assembles")
}

/// The three blobs of an image, editable.
#[derive(Clone)]
struct Parts {
    manifest: ImageManifest,
    config: ImageConfig,
    layer: Vec<u8>,
}

impl Parts {
    fn good() -> Self {
        let img = build(Arch::Amd64, COUNTER_EL);
        Self {
            manifest: serde_json::from_slice(&img.manifest).expect("manifest"),
            config: serde_json::from_slice(&img.config).expect("config"),
            layer: img.layer,
        }
    }

    /// Re-serializes, re-pointing descriptors at the edited blobs, so only
    /// the rule under test is broken.
    fn sealed(mut self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let config = to_canonical_json(&self.config);
        self.manifest.config.digest = Digest::of(&config);
        self.manifest.config.size = config.len() as u64;
        if let Some(l) = self.manifest.layers.first_mut() {
            l.digest = Digest::of(&self.layer);
            l.size = self.layer.len() as u64;
        }
        (to_canonical_json(&self.manifest), config, self.layer)
    }

    fn validate(self) -> Result<bpfman_image_spec::validate::ValidImage, ValidationError> {
        let (m, c, l) = self.sealed();
        validate_image(&m, &c, &l, None)
    }

    fn with_object(mut self, object: &[u8]) -> Self {
        let layer = build_layer("xdp_counter.o", object, 0).expect("layer");
        self.config.rootfs.diff_ids = vec![layer.diff_id];
        self.layer = layer.blob;
        self
    }
}

#[test]
fn a_built_image_validates() {
    let v = Parts::good().validate().expect("valid");
    assert_eq!(v.arch, Arch::Amd64);
    assert_eq!(v.label_format, LabelFormat::V2);
    assert_eq!(v.file_name, "xdp_counter.o");
    assert_eq!(v.object, COUNTER_EL);
    assert_eq!(v.metadata.programs["xdp_stats"], "xdp");
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert_eq!(v.metadata.maps["xdp_stats_map"], "per_cpu_array");
}

#[test]
fn docker_media_types_are_accepted() {
    let mut p = Parts::good();
    p.manifest.media_type = Some(media::DOCKER_MANIFEST.into());
    p.manifest.config.media_type = media::DOCKER_CONFIG.into();
    p.manifest.layers[0].media_type = media::DOCKER_LAYER_TAR_GZIP.into();
    p.validate().expect("docker media types are valid");
}

#[test]
fn legacy_v1_labels_are_accepted() {
    let mut p = Parts::good();
    p.config.config.labels = BTreeMap::from([
        (media::LABEL_V1_PROGRAM_NAME.into(), "counter".into()),
        (media::LABEL_V1_FUNCTION_NAME.into(), "xdp_stats".into()),
        (media::LABEL_V1_PROGRAM_TYPE.into(), "xdp".into()),
        (media::LABEL_V1_FILENAME.into(), "xdp_counter.o".into()),
    ]);
    assert_eq!(p.validate().expect("valid").label_format, LabelFormat::V1);
}

macro_rules! broken {
    ($name:ident, |$p:ident| $edit:block, $pat:pat) => {
        #[test]
        fn $name() {
            #[allow(unused_mut)]
            let mut $p = Parts::good();
            let $p = $edit;
            let err = $p.validate().expect_err("must be rejected");
            assert!(matches!(err, $pat), "wrong error: {err:?}");
        }
    };
}

broken!(
    schema_version,
    |p| {
        p.manifest.schema_version = 1;
        p
    },
    ValidationError::SchemaVersion { .. }
);
broken!(
    manifest_media_type,
    |p| {
        p.manifest.media_type = Some(media::OCI_INDEX.into());
        p
    },
    ValidationError::MediaType {
        what: "the manifest",
        ..
    }
);
broken!(
    config_media_type,
    |p| {
        p.manifest.config.media_type = "application/json".into();
        p
    },
    ValidationError::MediaType {
        what: "the config",
        ..
    }
);
broken!(
    layer_media_type,
    |p| {
        p.manifest.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+zstd".into();
        p
    },
    ValidationError::MediaType {
        what: "the layer",
        ..
    }
);
broken!(
    two_layers,
    |p| {
        let extra = p.manifest.layers[0].clone();
        p.manifest.layers.push(extra);
        p
    },
    ValidationError::LayerCount { found: 2 }
);
broken!(
    no_layers,
    |p| {
        p.manifest.layers.clear();
        p
    },
    ValidationError::LayerCount { found: 0 }
);
broken!(
    not_linux,
    |p| {
        p.config.os = "windows".into();
        p
    },
    ValidationError::NotLinux { .. }
);
broken!(
    unknown_arch,
    |p| {
        p.config.architecture = "vax".into();
        p
    },
    ValidationError::Arch(_)
);
broken!(
    wrong_endianness,
    |p| {
        p.config.architecture = "s390x".into();
        p
    },
    ValidationError::Endianness {
        arch: Arch::S390x,
        ..
    }
);
broken!(
    big_endian_object_as_amd64,
    |p| { p.with_object(COUNTER_EB) },
    ValidationError::Endianness { .. }
);
broken!(
    diff_id,
    |p| {
        p.config.rootfs.diff_ids = vec![Digest::of(b"other")];
        p
    },
    ValidationError::DiffId { .. }
);
broken!(
    rootfs_type,
    |p| {
        p.config.rootfs.kind = "other".into();
        p
    },
    ValidationError::RootFs
);
broken!(
    labelled_program_missing,
    |p| {
        p.config
            .config
            .labels
            .insert(media::LABEL_PROGRAMS.into(), r#"{"ghost":"xdp"}"#.into());
        p
    },
    ValidationError::ProgramMissing { .. }
);
broken!(
    object_not_bpf,
    |p| { p.with_object(include_bytes!("../../testdata/bad/x86_64.o")) },
    ValidationError::Object { .. }
);
broken!(
    object_other_program,
    |p| { p.with_object(TC_EL) },
    ValidationError::ProgramMissing { .. }
);
broken!(
    layer_not_gzip,
    |p| {
        p.layer = b"plain".to_vec();
        p
    },
    ValidationError::Layer(LayerError::Gzip(_))
);

#[test]
fn descriptor_mismatches_are_caught() {
    let (m, c, l) = Parts::good().sealed();
    let mut bad_layer = l.clone();
    bad_layer[20] ^= 1;
    let err = validate_image(&m, &c, &bad_layer, None).expect_err("tampered layer");
    assert!(
        matches!(
            err,
            ValidationError::DescriptorMismatch {
                what: "the layer",
                ..
            }
        ),
        "{err:?}"
    );
    let err = validate_image(&m, b"{}", &l, None).expect_err("wrong config");
    assert!(
        matches!(
            err,
            ValidationError::DescriptorMismatch {
                what: "the config",
                ..
            }
        ),
        "{err:?}"
    );
    let err = validate_image(b"{not json", &c, &l, None).expect_err("bad json");
    assert!(
        matches!(
            err,
            ValidationError::Json {
                what: "the manifest",
                ..
            }
        ),
        "{err:?}"
    );
    let huge = vec![b' '; 5 << 20];
    let err = validate_image(&huge, &c, &l, None).expect_err("huge");
    assert!(matches!(err, ValidationError::TooLarge { .. }), "{err:?}");
}

#[test]
fn platform_from_index_must_match_config() {
    let (m, c, l) = Parts::good().sealed();
    let arm = Platform {
        architecture: "arm64".into(),
        os: "linux".into(),
        variant: None,
    };
    let err = validate_image(&m, &c, &l, Some(&arm)).expect_err("mismatch");
    assert!(
        matches!(err, ValidationError::PlatformMismatch { .. }),
        "{err:?}"
    );
    let amd = Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
    };
    validate_image(&m, &c, &l, Some(&amd)).expect("matches");
}

#[test]
fn index_rules() {
    let a = build(Arch::Amd64, COUNTER_EL);
    let s = build(Arch::S390x, COUNTER_EB);
    let (bytes, _) = assemble_index(&[s.clone(), a.clone()], &BTreeMap::new(), 0);
    let index = parse_index(&bytes).expect("valid index");
    let archs: Vec<_> = index
        .images
        .iter()
        .map(|d| d.platform.clone().expect("p").architecture)
        .collect();
    assert_eq!(
        archs,
        ["amd64", "s390x"],
        "sorted by arch whatever the input order"
    );
    let (again, _) = assemble_index(&[a.clone(), s.clone()], &BTreeMap::new(), 0);
    assert_eq!(bytes, again);

    // A platform listed twice: the first entry is used, with a warning.
    let (dup, _) = assemble_index(&[a.clone(), a.clone()], &BTreeMap::new(), 0);
    let view = parse_index(&dup).expect("lenient");
    assert_eq!(view.images.len(), 1);
    assert!(
        view.warnings[0].contains("listed again"),
        "{:?}",
        view.warnings
    );

    let mut no_platform: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    no_platform["manifests"][0]
        .as_object_mut()
        .expect("obj")
        .remove("platform");
    let no_platform = serde_json::to_vec(&no_platform).expect("json");
    let view = parse_index(&no_platform).expect("lenient");
    assert_eq!(view.images.len(), 2, "read, though no host picks it");
    assert!(
        view.warnings[0].contains("no platform"),
        "{:?}",
        view.warnings
    );

    let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    assert!(matches!(
        parse_index(empty),
        Err(ValidationError::EmptyIndex)
    ));
}

#[test]
fn labels_are_information_the_object_is_the_truth() {
    // No labels at all, empty ones (upstream's Containerfile without build
    // args), and a type that disagrees: all load, each with its warning.
    for (labels, warning) in [
        (vec![], "read from the object"),
        (
            vec![(media::LABEL_PROGRAMS, ""), (media::LABEL_MAPS, "")],
            "read from the object",
        ),
        (
            vec![(media::LABEL_PROGRAMS, r#"{"xdp_stats":"tc"}"#)],
            "makes it 'xdp'",
        ),
        (
            vec![
                (media::LABEL_PROGRAMS, r#"{"xdp_stats":"xdp"}"#),
                (media::LABEL_MAPS, r#"{"xdp_stats_map":"new_kernel_map"}"#),
            ],
            "does not know",
        ),
    ] {
        let mut p = Parts::good();
        p.config.config.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let (m, c, l) = p.sealed();
        let v = validate_image(&m, &c, &l, None).expect("valid");
        assert!(
            v.warnings.iter().any(|w| w.contains(warning)),
            "{labels:?}: {:?}",
            v.warnings
        );
        assert_eq!(v.object_info.programs[0].name, "xdp_stats");
    }
}
