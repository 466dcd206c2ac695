//! Where images come from and go to: OCI image layouts (`oci:DIR[:TAG]`) and
//! registries (`[docker://]HOST[:PORT]/REPO[:TAG][@DIGEST]`, with Docker's
//! defaults: no host means docker.io, a one-part name there means
//! `library/NAME`, no tag means `latest`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use bpfman_image_spec::digest::Digest;

/// The tag used when a reference gives none.
pub const DEFAULT_TAG: &str = "latest";

/// Docker Hub's canonical name, used when a reference names no registry.
pub use bpfman_image_spec::name::DOCKER_HUB;

/// An image location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory and an optional tag.
    Layout(LayoutRef),
    /// A repository in a registry.
    Registry(RegistryRef),
}

/// `oci:DIR[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    pub dir: PathBuf,
    pub tag: Option<String>,
}

impl LayoutRef {
    /// The tag, or [`DEFAULT_TAG`].
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }
}

/// `HOST[:PORT]/REPO[:TAG][@DIGEST]`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`, lowercase host; `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// When given, the image is pinned: whatever a tag says, only these bytes
    /// are accepted.
    pub digest: Option<Digest>,
}

impl RegistryRef {
    /// The same repository, pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository under `tag`, unpinned.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        }
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.into(),
        }
    }

    /// The tag, or [`DEFAULT_TAG`] when neither a tag nor a digest is given.
    pub fn tag_or_default(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG),
        }
    }

    /// `registry/repository`, the name credentials and policies are scoped by.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host without the port, for loopback and insecure checks.
    pub fn host(&self) -> &str {
        split_port(&self.registry).0
    }

    /// `name@digest`.
    pub fn pinned(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }
}

/// A reference we cannot parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error(
        "'{input}' is not an image reference: write oci:DIR[:TAG] for an OCI layout or HOST[:PORT]/REPO[:TAG][@sha256:...] for a registry"
    )]
    Empty { input: String },
    #[error("'{input}' names no directory; write oci:DIR[:TAG]")]
    EmptyPath { input: String },
    #[error(
        "tag '{tag}' in '{input}' is not valid: use up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    BadTag { input: String, tag: String },
    #[error(
        "'{input}': repository '{repository}' is not valid: use lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/'"
    )]
    BadRepository { input: String, repository: String },
    #[error("'{input}': registry '{registry}' is not a valid HOST[:PORT]")]
    BadRegistry { input: String, registry: String },
    #[error("'{input}': {source}")]
    BadDigest {
        input: String,
        #[source]
        source: bpfman_image_spec::digest::DigestError,
    },
    #[error(
        "'{input}' is a layout reference where a registry is needed; write HOST[:PORT]/REPO[:TAG]"
    )]
    NotARegistry { input: String },
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("oci:") {
            Some(rest) => parse_layout(s, rest).map(Self::Layout),
            None => s.parse().map(Self::Registry),
        }
    }
}

fn parse_layout(input: &str, rest: &str) -> Result<LayoutRef, RefError> {
    // The tag follows the last ':' unless that ':' is part of the path.
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err(RefError::EmptyPath {
            input: input.into(),
        });
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Err(RefError::BadTag {
            input: input.into(),
            tag: tag.into(),
        });
    }
    Ok(LayoutRef {
        dir: dir.into(),
        tag: tag.map(Into::into),
    })
}

impl FromStr for RegistryRef {
    type Err = RefError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.starts_with("oci:") {
            return Err(RefError::NotARegistry {
                input: input.into(),
            });
        }
        let s = input.strip_prefix("docker://").unwrap_or(input);
        if s.is_empty() {
            return Err(RefError::Empty {
                input: input.into(),
            });
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|source| RefError::BadDigest {
                    input: input.into(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(RefError::BadTag {
                input: input.into(),
                tag: tag.into(),
            });
        }
        // Docker's rule for the registry, one spelling for each registry
        // and Docker Hub repository: the same function canonicalises
        // policy patterns.
        let (registry, repository) = bpfman_image_spec::name::canonical_name(name);
        if name.contains('*') || !valid_registry(&registry) {
            return Err(RefError::BadRegistry {
                input: input.into(),
                registry,
            });
        }
        if !valid_repository(&repository) {
            return Err(RefError::BadRepository {
                input: input.into(),
                repository,
            });
        }
        Ok(Self {
            registry,
            repository,
            tag: tag.map(Into::into),
            digest,
        })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(l) => match &l.tag {
                Some(t) => write!(f, "oci:{}:{t}", l.dir.display()),
                None => write!(f, "oci:{}", l.dir.display()),
            },
            Self::Registry(r) => r.fmt(f),
        }
    }
}

/// Splits `host[:port]`; IPv6 literals are bracketed (`[::1]:5000`).
pub fn split_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, port)) => (host, port.strip_prefix(':')),
            None => (registry, None),
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = split_port(registry);
    let host_ok = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host.split('.').all(|l| {
                !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

/// The distribution spec's repository name grammar.
fn valid_repository(repo: &str) -> bool {
    repo.len() <= 255
        && repo.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
                return false;
            }
            // Separators: '.', '_', '__' or any run of '-', between alnums.
            let mut i = 0;
            while i < bytes.len() {
                if alnum(&bytes[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && !alnum(&bytes[i]) {
                    i += 1;
                }
                let sep = &component[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
                    return false;
                }
            }
            true
        })
}

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(s: &str) -> LayoutRef {
        match s.parse::<ImageRef>().expect("parses") {
            ImageRef::Layout(l) => l,
            other => panic!("not a layout: {other:?}"),
        }
    }

    fn registry(s: &str) -> RegistryRef {
        s.parse().expect("parses")
    }

    const D: &str = "sha256:7796582091bc582f022da1eea5f6f2382890504d037c6d7b7f1dcc0603566f20";

    #[test]
    fn registry_forms() {
        let r = registry("127.0.0.1:5000/ebpf/xdp:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "ebpf/xdp", Some("v1"))
        );
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.reference(), "v1");
        let r = registry("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.tag_or_default(), Some("latest"));
        assert_eq!(registry("docker://quay.io/a/b").registry, "quay.io");
        assert_eq!(registry("index.docker.io/x/y").registry, "docker.io");
        assert_eq!(registry("localhost/x").registry, "localhost");
        assert_eq!(registry("user/repo").name(), "docker.io/user/repo");
        let r = registry(&format!("ghcr.io/o/r:t@{D}"));
        assert_eq!(r.reference(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/o/r:t@{D}"));
        assert_eq!(registry(&format!("[::1]:5000/r@{D}")).host(), "::1");
        assert_eq!(r.with_tag("x").to_string(), "ghcr.io/o/r:x");
        assert_eq!(registry("a.b/c__d/e-f--g").repository, "c__d/e-f--g");
        assert!(matches!(
            "dir".parse::<ImageRef>(),
            Ok(ImageRef::Registry(_))
        ));
    }

    #[test]
    fn bad_registry_refs() {
        for (input, want) in [
            ("", "not an image reference"),
            ("Quay.io/UPPER/x", "repository 'UPPER/x'"),
            ("h.io/a//b", "repository"),
            ("h.io/a_-b", "repository"),
            ("h.io:99999/a", "registry 'h.io:99999'"),
            ("h.io/a:-t", "tag '-t'"),
            ("h.io/a@sha256:12", "64 lowercase hex"),
            ("h.io/a@md5:00", "not supported"),
        ] {
            let err = input.parse::<RegistryRef>().expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        assert!(matches!(
            "oci:x".parse::<RegistryRef>(),
            Err(RefError::NotARegistry { .. })
        ));
    }

    #[test]
    fn layout_forms() {
        assert_eq!(layout("oci:dir:v1").tag.as_deref(), Some("v1"));
        assert_eq!(layout("oci:dir").tag, None);
        assert_eq!(layout("oci:/a/b:c").dir, PathBuf::from("/a/b"));
        assert_eq!(layout("oci:./x:y/z").dir, PathBuf::from("./x:y/z"));
        assert_eq!(layout("oci:dir").tag_or_default(), "latest");
    }

    #[test]
    fn bad_refs() {
        assert!(matches!(
            "oci:".parse::<ImageRef>(),
            Err(RefError::EmptyPath { .. })
        ));
        assert!(matches!(
            "oci:d:-x".parse::<ImageRef>(),
            Err(RefError::BadTag { .. })
        ));
        assert!(matches!(
            "oci:d:".parse::<ImageRef>(),
            Err(RefError::BadTag { .. })
        ));
    }
}

/// Every spelling of a name agrees with every spelling of a policy scope
/// for it: references and patterns are made canonical by the same
/// function (`bpfman_image_spec::name`), so no spelling escapes a scope.
#[cfg(test)]
mod scope_agreement {
    use std::path::Path;

    use bpfman_trust::policy::Policy;

    use super::*;

    /// The scope deciding for `identity` under a policy with one scope.
    fn decided_by(pattern: &str, policy_dir: &Path, identity: &str) -> bool {
        let text = format!(
            "[default]\nrule = \"accept-unsigned\"\n[[scope]]\nmatch = \"{pattern}\"\nrule = \"reject\"\n"
        );
        let policy = Policy::parse(&text, &policy_dir.join("policy.toml"), |_| {
            unreachable!("no keys")
        })
        .unwrap_or_else(|e| panic!("{pattern}: {e}"));
        policy.scope_for(identity).pattern == pattern
    }

    #[test]
    fn every_registry_spelling_agrees_with_every_pattern_spelling() {
        let groups: [&[&str]; 4] = [
            &[
                "127.0.0.1:5123/net/x",
                "127.0.0.1:05123/net/x",
                "127.0.0.1:0005123/net/x",
            ],
            &[
                "x",
                "library/x",
                "docker.io/x",
                "docker.io/library/x",
                "DOCKER.IO/library/x",
                "docker.io:443/library/x",
                "index.docker.io/library/x",
                "registry-1.docker.io/x",
                "index.docker.io:0443/x",
            ],
            &[
                "quay.io/org/x",
                "QUAY.io/org/x",
                "quay.io:443/org/x",
                "Quay.IO:00443/org/x",
            ],
            &["localhost:5000/x", "LOCALHOST:05000/x", "localhost:5000/x/"],
        ];
        let dir = Path::new("/nonexistent");
        for (g, group) in groups.iter().enumerate() {
            for pattern in *group {
                for (h, other) in groups.iter().enumerate() {
                    for spelling in *other {
                        let r: RegistryRef = spelling
                            .trim_end_matches('/')
                            .parse()
                            .unwrap_or_else(|e| panic!("{spelling}: {e}"));
                        assert_eq!(
                            decided_by(pattern, dir, &r.name()),
                            g == h,
                            "pattern '{pattern}' and reference '{spelling}' ({})",
                            r.name()
                        );
                    }
                }
            }
        }
        // A registry-wide pattern covers every spelling of its registry.
        for spelling in ["127.0.0.1:05123/a/b", "127.0.0.1:5123/c"] {
            let r: RegistryRef = spelling.parse().expect("parses");
            assert!(decided_by("127.0.0.1:05123", dir, &r.name()));
        }
    }

    #[test]
    fn every_layout_path_spelling_agrees_with_every_pattern_spelling() {
        let tmp = tempfile::TempDir::new().expect("tmp");
        let real = tmp.path().join("srv/images");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).expect("symlink");
        let identity = format!(
            "oci:{}",
            std::fs::canonicalize(&real).expect("real").display()
        );
        let abs = tmp.path().display().to_string();
        for pattern in [
            format!("oci:{abs}/srv/images"),
            format!("oci:{abs}/srv/./images/"),
            format!("oci:{abs}/srv/other/../images"),
            format!("oci:{abs}/link"),
            "oci:srv/images".to_string(),
            "oci:./link".to_string(),
        ] {
            assert!(
                decided_by(&pattern, tmp.path(), &identity),
                "pattern '{pattern}' and {identity}"
            );
        }
        assert!(!decided_by(
            &format!("oci:{abs}/srv/images2"),
            tmp.path(),
            &identity
        ));
    }
}
