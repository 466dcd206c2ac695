//! `bpfman-image generate-build-args`: the `--build-arg` lines bpfman's
//! Containerfile flow expects, so its users can switch over gradually.

use crate::builder::{BuildError, ObjectArg, load_objects};

/// The lines, in order: `PROGRAMS=...`, `MAPS=...`, then one
/// `BC_<ARCH>_<EL|EB>=<path>` per object, sorted by arch.
pub fn generate(objects: &[ObjectArg]) -> Result<Vec<String>, BuildError> {
    let loaded = load_objects(objects)?;
    let labels = loaded[0].metadata().to_labels();
    let mut lines = vec![
        format!(
            "PROGRAMS={}",
            labels[bpfman_image_spec::media::LABEL_PROGRAMS]
        ),
        format!("MAPS={}", labels[bpfman_image_spec::media::LABEL_MAPS]),
    ];
    lines.extend(
        loaded
            .iter()
            .map(|o| format!("{}={}", o.arch.build_arg(), o.path.display())),
    );
    Ok(lines)
}
