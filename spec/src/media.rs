//! Media types, label keys and annotation keys: the names the format is made of.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-arch).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip-compressed tar layer: the one layer of a bytecode image.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI empty descriptor (`{}`), used by artifacts such as signatures.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker v2 schema 2 manifest; readers accept it.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list; readers accept it as an index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker container config; readers accept it.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer; readers accept it.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Config label: JSON object `{"<function name>": "<program type>"}`.
pub const LABEL_PROGRAMS: &str = "io.ebpf.programs";
/// Config label: JSON object `{"<map name>": "<map type>"}`.
pub const LABEL_MAPS: &str = "io.ebpf.maps";
/// Legacy (V1) labels, one program per image; readers accept them.
pub const LABEL_V1_PROGRAM_NAME: &str = "io.ebpf.program_name";
pub const LABEL_V1_FUNCTION_NAME: &str = "io.ebpf.bpf_function_name";
pub const LABEL_V1_PROGRAM_TYPE: &str = "io.ebpf.program_type";
pub const LABEL_V1_FILENAME: &str = "io.ebpf.filename";
/// Every label under this prefix is reserved for the format.
pub const RESERVED_LABEL_PREFIX: &str = "io.ebpf.";

/// Standard OCI annotations the builder sets or passes through.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
pub const ANNOTATION_DESCRIPTION: &str = "org.opencontainers.image.description";
/// The tag of a manifest in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// True for the manifest media types a reader accepts.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// True for the index media types a reader accepts.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// True for the config media types a reader accepts.
pub fn is_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// True for the layer media types a reader accepts.
pub fn is_layer(media_type: &str) -> bool {
    media_type == OCI_LAYER_TAR_GZIP || media_type == DOCKER_LAYER_TAR_GZIP
}
