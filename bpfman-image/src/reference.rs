//! Where images come from and go to. Today: OCI image layouts
//! (`oci:DIR[:TAG]`); registries join as another variant.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The tag used when a layout reference gives none.
pub const DEFAULT_TAG: &str = "latest";

/// An image location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory and an optional tag.
    Layout(LayoutRef),
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

/// A reference we cannot parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("'{input}' is not an image reference; write oci:DIR[:TAG] for an OCI layout")]
    UnknownTransport { input: String },
    #[error("'{input}' names no directory; write oci:DIR[:TAG]")]
    EmptyPath { input: String },
    #[error(
        "tag '{tag}' in '{input}' is not valid: use up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    BadTag { input: String, tag: String },
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix("oci:") else {
            return Err(RefError::UnknownTransport { input: s.into() });
        };
        // The tag follows the last ':' unless that ':' is part of the path.
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => (dir, Some(tag)),
            _ => (rest, None),
        };
        if dir.is_empty() {
            return Err(RefError::EmptyPath { input: s.into() });
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(RefError::BadTag {
                input: s.into(),
                tag: tag.into(),
            });
        }
        Ok(Self::Layout(LayoutRef {
            dir: dir.into(),
            tag: tag.map(Into::into),
        }))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(l) => match &l.tag {
                Some(t) => write!(f, "oci:{}:{t}", l.dir.display()),
                None => write!(f, "oci:{}", l.dir.display()),
            },
        }
    }
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
        }
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
            "dir".parse::<ImageRef>(),
            Err(RefError::UnknownTransport { .. })
        ));
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
