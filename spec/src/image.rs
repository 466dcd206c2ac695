//! Assembling a bytecode image from an object: pure and deterministic.
//! Writing it anywhere is the caller's business.

use std::collections::BTreeMap;

use crate::arch::{Arch, Endianness};
use crate::elf::{ElfError, ObjectInfo, inspect};
use crate::labels::ImageMetadata;
use crate::layer::{LayerError, build_layer};
use crate::media;
use crate::oci::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, RootFs, RuntimeConfig,
    to_canonical_json,
};

/// What one platform's image is made of.
#[derive(Debug, Clone)]
pub struct ImageInput<'a> {
    pub arch: Arch,
    /// The object's file name inside the layer.
    pub file_name: &'a str,
    pub object: &'a [u8],
    /// Extra config labels; `io.ebpf.*` keys are reserved.
    pub labels: &'a BTreeMap<String, String>,
    /// Manifest annotations (the `created` annotation is added).
    pub annotations: &'a BTreeMap<String, String>,
    /// Seconds since the epoch, for `created` and the tar mtime.
    pub epoch: u64,
}

/// One assembled image: its three blobs and its descriptor.
#[derive(Debug, Clone)]
pub struct AssembledImage {
    pub arch: Arch,
    pub manifest: Vec<u8>,
    /// Descriptor of the manifest, with its platform.
    pub descriptor: Descriptor,
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub info: ObjectInfo,
    pub metadata: ImageMetadata,
}

/// Why an image cannot be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Object(ElfError),
    #[error("the object is {found} but {arch} needs {expected} (clang -target {target})")]
    Endianness {
        arch: Arch,
        expected: Endianness,
        found: Endianness,
        target: &'static str,
    },
    #[error("label '{key}' is reserved: labels under 'io.ebpf.' are derived from the object")]
    ReservedLabel { key: String },
    #[error(transparent)]
    Layer(LayerError),
}

/// Builds one image. Same input, same bytes.
pub fn assemble(input: &ImageInput<'_>) -> Result<AssembledImage, AssembleError> {
    check_reserved_labels(input)?;
    let info = inspect(input.object).map_err(AssembleError::Object)?;
    assemble_checked(input, info)
}

/// [`assemble`] for a caller that has already inspected `input.object`
/// (`info` must be what [`inspect`] returned for it), so it is not parsed
/// twice.
pub fn assemble_inspected(
    input: &ImageInput<'_>,
    info: ObjectInfo,
) -> Result<AssembledImage, AssembleError> {
    check_reserved_labels(input)?;
    assemble_checked(input, info)
}

fn check_reserved_labels(input: &ImageInput<'_>) -> Result<(), AssembleError> {
    match input
        .labels
        .keys()
        .find(|k| k.starts_with(media::RESERVED_LABEL_PREFIX))
    {
        Some(key) => Err(AssembleError::ReservedLabel { key: key.clone() }),
        None => Ok(()),
    }
}

fn assemble_checked(
    input: &ImageInput<'_>,
    info: ObjectInfo,
) -> Result<AssembledImage, AssembleError> {
    let expected = input.arch.endianness();
    if info.endianness != expected {
        return Err(AssembleError::Endianness {
            arch: input.arch,
            expected,
            found: info.endianness,
            target: expected.clang_target(),
        });
    }
    let metadata = ImageMetadata::from_object(&info);
    let layer =
        build_layer(input.file_name, input.object, input.epoch).map_err(AssembleError::Layer)?;
    let created = rfc3339_utc(input.epoch);

    let mut labels = input.labels.clone();
    labels.extend(metadata.to_labels());
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: input.arch.name().into(),
        os: "linux".into(),
        variant: None,
        config: RuntimeConfig { labels },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id],
        },
    };
    let config = to_canonical_json(&config);

    let mut layer_desc = Descriptor::for_bytes(media::OCI_LAYER_TAR_GZIP, &layer.blob);
    layer_desc
        .annotations
        .insert(media::ANNOTATION_TITLE.into(), input.file_name.into());
    let mut annotations = input.annotations.clone();
    annotations
        .entry(media::ANNOTATION_CREATED.into())
        .or_insert(created);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::for_bytes(media::OCI_CONFIG, &config),
        layers: vec![layer_desc],
        subject: None,
        annotations,
    };
    let manifest = to_canonical_json(&manifest);
    let mut descriptor = Descriptor::for_bytes(media::OCI_MANIFEST, &manifest);
    descriptor.platform = Some(Platform {
        architecture: input.arch.name().into(),
        os: "linux".into(),
        variant: None,
    });
    Ok(AssembledImage {
        arch: input.arch,
        manifest,
        descriptor,
        config,
        layer: layer.blob,
        info,
        metadata,
    })
}

/// Builds the index over several images, ordered by architecture name so the
/// order of the inputs does not change the digest. Like each manifest, the
/// index carries the `created` annotation (from `epoch`) unless given one.
pub fn assemble_index(
    images: &[AssembledImage],
    annotations: &BTreeMap<String, String>,
    epoch: u64,
) -> (Vec<u8>, Descriptor) {
    let mut annotations = annotations.clone();
    annotations
        .entry(media::ANNOTATION_CREATED.into())
        .or_insert_with(|| rfc3339_utc(epoch));
    let mut manifests: Vec<Descriptor> = images.iter().map(|i| i.descriptor.clone()).collect();
    manifests.sort_by(|a, b| {
        let key = |d: &Descriptor| d.platform.as_ref().map(|p| p.architecture.clone());
        key(a).cmp(&key(b))
    });
    let index = ImageIndex::new(manifests, annotations);
    let bytes = to_canonical_json(&index);
    let desc = Descriptor::for_bytes(media::OCI_INDEX, &bytes);
    (bytes, desc)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(epoch: u64) -> String {
    let days = i64::try_from(epoch / 86_400).unwrap_or(i64::MAX / 2);
    let secs = epoch % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
