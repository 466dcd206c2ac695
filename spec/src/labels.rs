//! The image metadata carried in config labels: `io.ebpf.programs` and
//! `io.ebpf.maps` (each a JSON object serialized as a string), or the legacy
//! V1 labels that describe a single program.

use std::collections::BTreeMap;

use crate::elf::ObjectInfo;
use crate::maps::map_type_number;
use crate::media::{
    LABEL_MAPS, LABEL_PROGRAMS, LABEL_V1_FUNCTION_NAME, LABEL_V1_PROGRAM_NAME,
    LABEL_V1_PROGRAM_TYPE,
};

/// Programs and maps an image's labels declare, as they spell them. The
/// object is the truth: labels are information, compared with the object
/// and reported on, never needed to load it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMetadata {
    /// Function name -> program type, as labelled (`xdp`, `kprobe`, `tc` ...).
    pub programs: BTreeMap<String, String>,
    /// Map name -> map type, as labelled (`hash`, `per_cpu_array` ...).
    pub maps: BTreeMap<String, String>,
}

/// Which label scheme an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelFormat {
    /// `io.ebpf.programs` / `io.ebpf.maps`.
    V2,
    /// `io.ebpf.program_type` / `io.ebpf.bpf_function_name` / ...
    V1,
    /// No usable program labels: what the image holds comes from the object.
    None,
}

impl ImageMetadata {
    /// The labels upstream bpfman's builder would write for this object:
    /// every program with [`SectionKind::label`](crate::program::SectionKind::label),
    /// every user map with its type name.
    pub fn from_object(info: &ObjectInfo) -> Self {
        Self {
            programs: info
                .programs
                .iter()
                .map(|p| (p.name.clone(), p.kind().label(&p.section_name).to_string()))
                .collect(),
            maps: info
                .maps
                .iter()
                .map(|m| (m.name.clone(), m.map_type.clone()))
                .collect(),
        }
    }

    /// The two labels, values serialized with sorted keys.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let json = |v: &BTreeMap<String, String>| {
            serde_json::to_string(v).unwrap_or_else(|e| unreachable!("string map: {e}"))
        };
        BTreeMap::from([
            (LABEL_PROGRAMS.to_string(), json(&self.programs)),
            (LABEL_MAPS.to_string(), json(&self.maps)),
        ])
    }

    /// Reads the metadata from config labels, V2 first, then V1. Never
    /// fails: what cannot be read is reported in the warnings and treated
    /// as not given (an empty `io.ebpf.maps`, which upstream's
    /// Containerfile writes without `--build-arg MAPS`, is not given).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> (Self, LabelFormat, Vec<String>) {
        let mut warnings = Vec::new();
        let mut read = |label: &'static str| -> Option<BTreeMap<String, String>> {
            let raw = labels.get(label)?;
            if raw.trim().is_empty() {
                return None;
            }
            match string_object(raw) {
                Ok(map) => Some(map),
                Err(why) => {
                    warnings.push(format!("label '{label}' {why}; it is ignored"));
                    None
                }
            }
        };
        let programs = read(LABEL_PROGRAMS).filter(|p| !p.is_empty());
        let maps = read(LABEL_MAPS).unwrap_or_default();
        if let Some(programs) = programs {
            return (Self { programs, maps }, LabelFormat::V2, warnings);
        }
        let v1 = (
            labels.get(LABEL_V1_FUNCTION_NAME),
            labels.get(LABEL_V1_PROGRAM_TYPE),
        );
        if let (Some(function), Some(ty)) = v1 {
            let programs = BTreeMap::from([(function.clone(), ty.clone())]);
            return (Self { programs, maps }, LabelFormat::V1, warnings);
        }
        if labels.contains_key(LABEL_V1_PROGRAM_NAME) || v1.0.is_some() || v1.1.is_some() {
            warnings.push(format!(
                "the legacy labels are incomplete ('{LABEL_V1_FUNCTION_NAME}' and '{LABEL_V1_PROGRAM_TYPE}' go together); they are ignored"
            ));
        }
        warnings.push(format!(
            "the image has no '{LABEL_PROGRAMS}' label; its programs are read from the object"
        ));
        (
            Self {
                programs: BTreeMap::new(),
                maps,
            },
            LabelFormat::None,
            warnings,
        )
    }

    /// How the labels differ from the object, one warning each: a
    /// labelled type that does not match the program's section, an
    /// unknown type name, a map the object lacks or types differently.
    /// A labelled program the object lacks is not here: that is an error
    /// ([`crate::validate::ValidationError::ProgramMissing`]).
    pub fn differences(&self, object: &ObjectInfo) -> Vec<String> {
        use crate::text::printable;
        let mut out = Vec::new();
        for (name, labelled) in &self.programs {
            let Some(p) = object.programs.iter().find(|p| &p.name == name) else {
                continue;
            };
            if !p.kind().agrees_with_label(&p.section_name, labelled) {
                out.push(format!(
                    "the labels say program '{}' is '{}', but its section '{}' makes it '{}'; the section is used",
                    printable(name),
                    printable(labelled),
                    printable(&p.section_name),
                    p.kind().label(&p.section_name),
                ));
            }
        }
        for (name, labelled) in &self.maps {
            match object.maps.iter().find(|m| &m.name == name) {
                None => out.push(format!(
                    "the io.ebpf.maps label names map '{}', which the object does not define; the label is wrong (the object is used as it is)",
                    printable(name)
                )),
                Some(m) if map_type_number(labelled).is_none() => {
                    if map_type_number(&m.map_type).is_some() {
                        out.push(format!(
                            "the labels give map '{}' type '{}', which this version does not know; the object says '{}'",
                            printable(name),
                            printable(labelled),
                            m.map_type
                        ));
                    }
                }
                Some(m) if map_type_number(labelled) != m.map_type_number => out.push(format!(
                    "the labels say map '{}' is '{}', but the object defines it as '{}'; the object is used",
                    printable(name),
                    printable(labelled),
                    m.map_type
                )),
                Some(_) => {}
            }
        }
        out
    }
}

fn string_object(raw: &str) -> Result<BTreeMap<String, String>, &'static str> {
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| "is not valid JSON")?;
    let serde_json::Value::Object(obj) = value else {
        return Err("is not a JSON object of strings");
    };
    obj.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err("is not a JSON object of strings"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::inspect;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        labels(pairs)
    }

    #[test]
    fn v2_round_trip_is_sorted_and_stable() {
        let md = ImageMetadata {
            programs: strings(&[("z_prog", "tc"), ("a_prog", "xdp")]),
            maps: strings(&[("m", "per_cpu_array")]),
        };
        let l = md.to_labels();
        assert_eq!(l[LABEL_PROGRAMS], r#"{"a_prog":"xdp","z_prog":"tc"}"#);
        assert_eq!(l[LABEL_MAPS], r#"{"m":"per_cpu_array"}"#);
        let (back, format, warnings) = ImageMetadata::from_labels(&l);
        assert_eq!((back, format), (md, LabelFormat::V2));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn v1_labels_are_read() {
        let (md, format, warnings) = ImageMetadata::from_labels(&labels(&[
            (LABEL_V1_PROGRAM_NAME, "counter"),
            (LABEL_V1_FUNCTION_NAME, "xdp_stats"),
            (LABEL_V1_PROGRAM_TYPE, "xdp"),
            (crate::media::LABEL_V1_FILENAME, "counter.o"),
        ]));
        assert_eq!(format, LabelFormat::V1);
        assert_eq!(md.programs["xdp_stats"], "xdp");
        assert!(warnings.is_empty());
    }

    #[test]
    fn missing_empty_or_garbled_labels_are_not_given() {
        // What upstream's Containerfile.bytecode writes without build args.
        for pairs in [
            &[][..],
            &[(LABEL_PROGRAMS, ""), (LABEL_MAPS, "")][..],
            &[(LABEL_PROGRAMS, "{}")][..],
            &[(LABEL_PROGRAMS, "{")][..],
            &[(LABEL_PROGRAMS, r#"["x"]"#)][..],
            &[(LABEL_PROGRAMS, r#"{"x":1}"#)][..],
            &[(LABEL_V1_PROGRAM_TYPE, "xdp")][..],
        ] {
            let (md, format, warnings) = ImageMetadata::from_labels(&labels(pairs));
            assert_eq!(format, LabelFormat::None, "{pairs:?}");
            assert!(md.programs.is_empty());
            assert!(
                warnings.iter().any(|w| w.contains("read from the object")),
                "{pairs:?}: {warnings:?}"
            );
        }
        let (md, format, warnings) = ImageMetadata::from_labels(&labels(&[
            (LABEL_PROGRAMS, r#"{"x":"xdp"}"#),
            (LABEL_MAPS, ""),
        ]));
        assert_eq!(format, LabelFormat::V2);
        assert!(md.maps.is_empty());
        assert!(
            warnings.is_empty(),
            "an empty maps label is not odd: {warnings:?}"
        );
    }

    #[test]
    fn differences_warn_and_the_object_wins() {
        let info = inspect(include_bytes!("../../testdata/bpf/tcx.bpfel.o")).expect("inspects");
        let md = |programs: &[(&str, &str)], maps: &[(&str, &str)]| ImageMetadata {
            programs: strings(programs),
            maps: strings(maps),
        };
        // Upstream's Go builder labels tcx sections "tcx" and its families agree.
        let same = md(
            &[("tcx_ingress", "tcx"), ("tcx_egress", "tc")],
            &[
                ("tcx_ingress_map", "percpu_array"),
                ("tcx_egress_map", "PERCPU_ARRAY"),
            ],
        );
        assert!(
            same.differences(&info).is_empty(),
            "{:?}",
            same.differences(&info)
        );
        let odd = md(
            &[("tcx_ingress", "xdp"), ("tcx_egress", "warp")],
            &[("tcx_ingress_map", "hash"), ("gone", "array")],
        );
        let w = odd.differences(&info);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].contains("'tcx_egress' is 'warp'"), "{w:?}");
        assert!(w[1].contains("'tcx_ingress' is 'xdp'"), "{w:?}");
        assert!(w[2].contains("map 'gone'"), "{w:?}");
        assert!(w[3].contains("map 'tcx_ingress_map' is 'hash'"), "{w:?}");
    }

    #[test]
    fn written_labels_follow_upstream() {
        let info = inspect(include_bytes!("../../testdata/bpf/kprobe.bpfel.o")).expect("inspects");
        let md = ImageMetadata::from_object(&info);
        assert_eq!(
            md.programs,
            strings(&[
                ("kprobe_openat", "kprobe"),
                ("kretprobe_openat", "kretprobe")
            ])
        );
        assert_eq!(md.maps["kprobe_count_map"], "per_cpu_array");
    }
}
