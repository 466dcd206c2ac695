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
use crate::program::{ProgramType, UnknownProgramType};

/// Programs and maps an image declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMetadata {
    /// Function name -> coarse program type.
    pub programs: BTreeMap<String, ProgramType>,
    /// Map name -> map type label name.
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
}

/// Why an image's labels cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("the image config has neither an '{LABEL_PROGRAMS}' label nor the legacy V1 labels")]
    MissingPrograms,
    #[error("label '{label}' is not valid JSON")]
    NotJson {
        label: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("label '{label}' must be a JSON object of strings, e.g. {{\"name\":\"type\"}}")]
    NotAnObjectOfStrings { label: &'static str },
    #[error("label '{LABEL_PROGRAMS}' lists no programs")]
    NoPrograms,
    #[error("program '{program}' in the labels")]
    UnknownProgramType {
        program: String,
        #[source]
        source: UnknownProgramType,
    },
    #[error("map '{map}' in the labels has unknown map type '{map_type}'")]
    UnknownMapType { map: String, map_type: String },
    #[error("legacy label '{label}' is missing")]
    MissingV1Label { label: &'static str },
}

impl ImageMetadata {
    /// The metadata an object's own contents imply.
    pub fn from_object(info: &ObjectInfo) -> Self {
        Self {
            programs: info
                .programs
                .iter()
                .map(|p| (p.name.clone(), p.kind().program_type()))
                .collect(),
            maps: info
                .maps
                .iter()
                .map(|m| (m.name.clone(), m.map_type.to_string()))
                .collect(),
        }
    }

    /// The two labels, values serialized with sorted keys.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let programs: BTreeMap<&str, &str> = self
            .programs
            .iter()
            .map(|(k, v)| (k.as_str(), v.name()))
            .collect();
        let json = |v: &BTreeMap<&str, &str>| {
            serde_json::to_string(v).unwrap_or_else(|e| unreachable!("string map: {e}"))
        };
        let maps: BTreeMap<&str, &str> = self
            .maps
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        BTreeMap::from([
            (LABEL_PROGRAMS.to_string(), json(&programs)),
            (LABEL_MAPS.to_string(), json(&maps)),
        ])
    }

    /// Reads the metadata from config labels, V2 first, then V1.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
    ) -> Result<(Self, LabelFormat), LabelError> {
        if let Some(raw) = labels.get(LABEL_PROGRAMS) {
            let mut programs = BTreeMap::new();
            for (name, ty) in string_object(LABEL_PROGRAMS, raw)? {
                let ty = program_type(&name, &ty)?;
                programs.insert(name, ty);
            }
            if programs.is_empty() {
                return Err(LabelError::NoPrograms);
            }
            let mut maps = BTreeMap::new();
            if let Some(raw) = labels.get(LABEL_MAPS) {
                for (name, ty) in string_object(LABEL_MAPS, raw)? {
                    if map_type_number(&ty).is_none() {
                        return Err(LabelError::UnknownMapType {
                            map: name,
                            map_type: ty,
                        });
                    }
                    maps.insert(name, ty);
                }
            }
            return Ok((Self { programs, maps }, LabelFormat::V2));
        }
        let v1 = [
            LABEL_V1_PROGRAM_TYPE,
            LABEL_V1_FUNCTION_NAME,
            LABEL_V1_PROGRAM_NAME,
        ];
        if v1.iter().all(|l| !labels.contains_key(*l)) {
            return Err(LabelError::MissingPrograms);
        }
        let get = |label: &'static str| {
            labels
                .get(label)
                .ok_or(LabelError::MissingV1Label { label })
        };
        let function = get(LABEL_V1_FUNCTION_NAME)?;
        let ty = program_type(function, get(LABEL_V1_PROGRAM_TYPE)?)?;
        Ok((
            Self {
                programs: BTreeMap::from([(function.clone(), ty)]),
                maps: BTreeMap::new(),
            },
            LabelFormat::V1,
        ))
    }
}

fn program_type(program: &str, ty: &str) -> Result<ProgramType, LabelError> {
    ty.parse().map_err(|source| LabelError::UnknownProgramType {
        program: program.into(),
        source,
    })
}

fn string_object(label: &'static str, raw: &str) -> Result<BTreeMap<String, String>, LabelError> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|source| LabelError::NotJson { label, source })?;
    let serde_json::Value::Object(obj) = value else {
        return Err(LabelError::NotAnObjectOfStrings { label });
    };
    obj.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(LabelError::NotAnObjectOfStrings { label }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn v2_round_trip_is_sorted_and_stable() {
        let md = ImageMetadata {
            programs: BTreeMap::from([
                ("z_prog".into(), ProgramType::Tc),
                ("a_prog".into(), ProgramType::Xdp),
            ]),
            maps: BTreeMap::from([("m".into(), "per_cpu_array".into())]),
        };
        let l = md.to_labels();
        assert_eq!(l[LABEL_PROGRAMS], r#"{"a_prog":"xdp","z_prog":"tc"}"#);
        assert_eq!(l[LABEL_MAPS], r#"{"m":"per_cpu_array"}"#);
        assert_eq!(
            ImageMetadata::from_labels(&l).expect("reads"),
            (md, LabelFormat::V2)
        );
    }

    #[test]
    fn v2_accepts_finer_type_names_and_missing_maps() {
        let (md, _) = ImageMetadata::from_labels(&labels(&[(LABEL_PROGRAMS, r#"{"k":"kprobe"}"#)]))
            .expect("reads");
        assert_eq!(md.programs["k"], ProgramType::Probe);
        assert!(md.maps.is_empty());
    }

    #[test]
    fn v1_labels_are_read() {
        let (md, format) = ImageMetadata::from_labels(&labels(&[
            (LABEL_V1_PROGRAM_NAME, "counter"),
            (LABEL_V1_FUNCTION_NAME, "xdp_stats"),
            (LABEL_V1_PROGRAM_TYPE, "xdp"),
            (crate::media::LABEL_V1_FILENAME, "counter.o"),
        ]))
        .expect("reads");
        assert_eq!(format, LabelFormat::V1);
        assert_eq!(md.programs["xdp_stats"], ProgramType::Xdp);
    }

    #[test]
    fn bad_labels() {
        let err = |pairs: &[(&str, &str)]| {
            ImageMetadata::from_labels(&labels(pairs)).expect_err("must fail")
        };
        assert!(matches!(err(&[]), LabelError::MissingPrograms));
        assert!(matches!(
            err(&[(LABEL_PROGRAMS, "{")]),
            LabelError::NotJson { .. }
        ));
        assert!(matches!(
            err(&[(LABEL_PROGRAMS, r#"["x"]"#)]),
            LabelError::NotAnObjectOfStrings { .. }
        ));
        assert!(matches!(
            err(&[(LABEL_PROGRAMS, r#"{"x":1}"#)]),
            LabelError::NotAnObjectOfStrings { .. }
        ));
        assert!(matches!(
            err(&[(LABEL_PROGRAMS, "{}")]),
            LabelError::NoPrograms
        ));
        assert!(matches!(
            err(&[(LABEL_PROGRAMS, r#"{"x":"warp"}"#)]),
            LabelError::UnknownProgramType { .. }
        ));
        assert!(matches!(
            err(&[
                (LABEL_PROGRAMS, r#"{"x":"xdp"}"#),
                (LABEL_MAPS, r#"{"m":"warp"}"#)
            ]),
            LabelError::UnknownMapType { .. }
        ));
        assert!(matches!(
            err(&[(LABEL_V1_PROGRAM_TYPE, "xdp")]),
            LabelError::MissingV1Label {
                label: LABEL_V1_FUNCTION_NAME
            }
        ));
    }
}
