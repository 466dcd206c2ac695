//! containers' `registries.conf` (version 2), as fleets configure pulls
//! through mirrors: `[[registry]]` tables with `prefix`, `location`,
//! `insecure` and `blocked`, each with `[[registry.mirror]]` tables
//! (`location`, `insecure`, `pull-from-mirror`).
//!
//! A reference matches the registry with the longest `prefix` (a
//! `host[:port][/path]` that ends at a path boundary, or `*.domain` for
//! any host under it). Its `location` replaces the prefix. Pulls try the
//! mirrors in order, then the location; pushes go to the location only.
//! Whatever a mirror serves is still checked by digest, and signatures
//! are judged by the policy under the reference as written, never the
//! mirror's name.
//!
//! Read from `--registries-conf`, else `$CONTAINERS_REGISTRIES_CONF`, else
//! `/etc/containers/registries.conf` and the `*.conf` drop-ins of
//! `/etc/containers/registries.conf.d` (in name order, later ones
//! overriding earlier entries with the same prefix). Keys this tool does
//! not use (short names, search registries, aliases) are ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::RegistryRef;

/// The default file, and the directory of drop-ins beside it.
pub const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
pub const DEFAULT_REGISTRIES_CONF_D: &str = "/etc/containers/registries.conf.d";

/// Why a registries.conf could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("cannot read '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("'{path}': {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Where to send pulls of one prefix, and pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub prefix: String,
    /// Empty: the prefix itself.
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
    /// The file it came from, for messages.
    pub origin: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFrom,
}

/// Which references a mirror serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFrom {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

/// One place to try: the reference rewritten for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub at: RegistryRef,
    /// Plain HTTP allowed.
    pub insecure: bool,
    /// A mirror (as opposed to the registry itself).
    pub mirror: bool,
}

/// What the registries.conf files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub registries: Vec<RegistryEntry>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    #[serde(default)]
    registry: Vec<RawRegistry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
}

impl RegistriesConf {
    /// `explicit`, else `$CONTAINERS_REGISTRIES_CONF`, else the system's
    /// file and drop-ins (none of which need exist).
    pub fn from_env(explicit: Option<&Path>) -> Result<Self, ConfError> {
        if let Some(p) = explicit {
            return Self::load(&[p.to_path_buf()]);
        }
        if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            return Self::load(&[PathBuf::from(p)]);
        }
        let mut files = Vec::new();
        if Path::new(DEFAULT_REGISTRIES_CONF).exists() {
            files.push(PathBuf::from(DEFAULT_REGISTRIES_CONF));
        }
        if let Ok(dir) = std::fs::read_dir(DEFAULT_REGISTRIES_CONF_D) {
            let mut more: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            more.sort();
            files.extend(more);
        }
        Self::load(&files)
    }

    /// Reads `files` in order; an entry for a prefix replaces an earlier
    /// one for the same prefix.
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfError> {
        let mut conf = Self::default();
        for f in files {
            let text = bpfman_trust::file::read_text(f, 1 << 20, bpfman_trust::file::Links::Follow)
                .map_err(|source| ConfError::Read {
                    path: f.clone(),
                    source,
                })?;
            for e in Self::parse(&text, f)?.registries {
                conf.registries.retain(|o| o.prefix != e.prefix);
                conf.registries.push(e);
            }
        }
        Ok(conf)
    }

    /// Parses one file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfError> {
        let invalid = |message: String| ConfError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| invalid(e.to_string().trim_end().replace('\n', "\n  ")))?;
        let mut registries = Vec::new();
        for r in raw.registry {
            let prefix = if r.prefix.is_empty() {
                r.location.clone()
            } else {
                r.prefix.clone()
            };
            if prefix.is_empty() {
                return Err(invalid(
                    "a [[registry]] needs a 'prefix' or a 'location'".into(),
                ));
            }
            if prefix.starts_with("*.") && !r.location.is_empty() {
                return Err(invalid(format!(
                    "[[registry]] prefix '{prefix}' is a wildcard; it cannot have a 'location'"
                )));
            }
            let mut mirrors = Vec::new();
            for m in r.mirror {
                let pull_from = match m.pull_from_mirror.as_deref() {
                    None | Some("all") | Some("") => PullFrom::All,
                    Some("digest-only") => PullFrom::DigestOnly,
                    Some("tag-only") => PullFrom::TagOnly,
                    Some(other) => {
                        return Err(invalid(format!(
                            "mirror '{}' of '{prefix}': pull-from-mirror '{other}' is not one of all, digest-only, tag-only",
                            m.location
                        )));
                    }
                };
                mirrors.push(Mirror {
                    location: m.location,
                    insecure: m.insecure,
                    pull_from,
                });
            }
            registries.push(RegistryEntry {
                prefix,
                location: r.location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors,
                origin: path.to_path_buf(),
            });
        }
        Ok(Self { registries })
    }

    /// The entry deciding for `r`: the longest matching prefix.
    pub fn entry(&self, r: &RegistryRef) -> Option<&RegistryEntry> {
        let name = r.name();
        self.registries
            .iter()
            .filter(|e| matches(&e.prefix, &name))
            .max_by_key(|e| e.prefix.len())
    }

    /// Where to pull `r` from, in order: the mirrors that serve it, then
    /// the registry (rewritten by `location`). Refused when blocked.
    pub fn pull_endpoints(&self, r: &RegistryRef) -> Result<Vec<Endpoint>, String> {
        let Some(e) = self.entry(r) else {
            return Ok(vec![Endpoint {
                at: r.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        let mut out = Vec::new();
        for m in &e.mirrors {
            let serves = match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => r.digest.is_some(),
                PullFrom::TagOnly => r.digest.is_none(),
            };
            if serves && let Some(at) = rewrite(r, &e.prefix, &m.location) {
                out.push(Endpoint {
                    at,
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        if e.blocked {
            if out.is_empty() {
                return Err(blocked(r, e));
            }
            return Ok(out);
        }
        out.push(self.source(r, e)?);
        Ok(out)
    }

    /// Where to push `r` (never a mirror). Refused when blocked.
    pub fn push_endpoint(&self, r: &RegistryRef) -> Result<Endpoint, String> {
        match self.entry(r) {
            None => Ok(Endpoint {
                at: r.clone(),
                insecure: false,
                mirror: false,
            }),
            Some(e) if e.blocked => Err(blocked(r, e)),
            Some(e) => self.source(r, e),
        }
    }

    fn source(&self, r: &RegistryRef, e: &RegistryEntry) -> Result<Endpoint, String> {
        let location = if e.location.is_empty() {
            &e.prefix
        } else {
            &e.location
        };
        let at = if e.prefix.starts_with("*.") {
            Some(r.clone())
        } else {
            rewrite(r, &e.prefix, location)
        };
        let at = at.ok_or_else(|| {
            format!(
                "registries.conf '{}': location '{location}' for prefix '{}' does not make a valid reference of {r}",
                e.origin.display(),
                e.prefix
            )
        })?;
        Ok(Endpoint {
            at,
            insecure: e.insecure,
            mirror: false,
        })
    }
}

fn blocked(r: &RegistryRef, e: &RegistryEntry) -> String {
    format!(
        "{r} is blocked by registries.conf '{}' (prefix '{}'); use another registry, or remove 'blocked = true' there",
        e.origin.display(),
        e.prefix
    )
}

/// Whether `prefix` matches the name `registry/repository` at a path
/// boundary; `*.example.com` matches any host under example.com.
fn matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or_default();
        let host = crate::reference::split_port(host).0;
        return host.ends_with(&format!(".{domain}"));
    }
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// `r` with `prefix` replaced by `location`, tag and digest kept.
fn rewrite(r: &RegistryRef, prefix: &str, location: &str) -> Option<RegistryRef> {
    let name = r.name();
    let rest = name.strip_prefix(prefix)?;
    let new = format!("{location}{rest}");
    let mut text = new;
    if let Some(t) = &r.tag {
        text.push(':');
        text.push_str(t);
    }
    if let Some(d) = &r.digest {
        text.push('@');
        text.push_str(&d.to_string());
    }
    let mut parsed: RegistryRef = text.parse().ok()?;
    // The parser fills in "latest" only when asked to; keep r's own.
    parsed.tag.clone_from(&r.tag);
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::parse(text, Path::new("/etc/containers/registries.conf")).expect("valid")
    }

    fn r(s: &str) -> RegistryRef {
        s.parse().expect("reference")
    }

    fn names(e: &[Endpoint]) -> Vec<String> {
        e.iter().map(|e| e.at.to_string()).collect()
    }

    const FLEET: &str = r#"
unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"

[aliases]
"busybox" = "docker.io/library/busybox"

[[registry]]
prefix = "quay.io/bpfman-bytecode"
location = "quay.io/bpfman-bytecode"

[[registry.mirror]]
location = "mirror.local:5000/bpfman"
insecure = true

[[registry.mirror]]
location = "backup.local/bpfman"
pull-from-mirror = "digest-only"

[[registry]]
location = "quay.io"
blocked = true

[[registry]]
prefix = "registry.example.com"
location = "registry.internal:5000"
"#;

    #[test]
    fn mirrors_come_first_in_order_and_the_source_last() {
        let c = conf(FLEET);
        let e = c
            .pull_endpoints(&r("quay.io/bpfman-bytecode/go-xdp-counter:latest"))
            .expect("endpoints");
        assert_eq!(
            names(&e),
            [
                "mirror.local:5000/bpfman/go-xdp-counter:latest",
                "quay.io/bpfman-bytecode/go-xdp-counter:latest"
            ]
        );
        assert!(e[0].insecure && e[0].mirror && !e[1].mirror);
        // The digest-only mirror serves a pinned reference.
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let pinned = c
            .pull_endpoints(&r(&format!("quay.io/bpfman-bytecode/x@{d}")))
            .expect("endpoints");
        assert_eq!(pinned.len(), 3, "{pinned:?}");
        assert_eq!(
            pinned[1].at.to_string(),
            format!("backup.local/bpfman/x@{d}")
        );
        // Pushes never go to a mirror.
        let p = c
            .push_endpoint(&r("quay.io/bpfman-bytecode/x:v1"))
            .expect("push");
        assert_eq!(p.at.to_string(), "quay.io/bpfman-bytecode/x:v1");
    }

    #[test]
    fn the_longest_prefix_decides_and_blocked_is_refused() {
        let c = conf(FLEET);
        let e = c
            .pull_endpoints(&r("quay.io/other/x:1"))
            .expect_err("blocked");
        assert!(
            e.contains("blocked") && e.contains("registries.conf"),
            "{e}"
        );
        assert!(c.push_endpoint(&r("quay.io/other/x:1")).is_err());
        // A prefix matches at a path boundary only.
        assert!(
            c.entry(&r("quay.io/bpfman-bytecodes/x:1"))
                .is_some_and(|e| e.blocked)
        );
        let moved = c
            .pull_endpoints(&r("registry.example.com/net/x:v2"))
            .expect("endpoints");
        assert_eq!(names(&moved), ["registry.internal:5000/net/x:v2"]);
        // Unconfigured registries are untouched.
        assert_eq!(
            names(&c.pull_endpoints(&r("ghcr.io/a/b:1")).expect("endpoints")),
            ["ghcr.io/a/b:1"]
        );
    }

    #[test]
    fn wildcards_match_hosts_under_a_domain() {
        let c = conf("[[registry]]\nprefix = \"*.corp.example\"\nblocked = true\n");
        assert!(c.pull_endpoints(&r("a.corp.example/x:1")).is_err());
        assert!(c.pull_endpoints(&r("corp.example/x:1")).is_ok());
        let bad = RegistriesConf::parse(
            "[[registry]]\nprefix = \"*.x.example\"\nlocation = \"y\"\n",
            Path::new("f"),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn later_files_override_earlier_prefixes() {
        let dir = tempfile::TempDir::new().expect("tmp");
        let a = dir.path().join("a.conf");
        let b = dir.path().join("b.conf");
        std::fs::write(
            &a,
            "[[registry]]\nlocation = \"r.example\"\nblocked = true\n",
        )
        .expect("a");
        std::fs::write(&b, "[[registry]]\nlocation = \"r.example\"\n").expect("b");
        let c = RegistriesConf::load(&[a, b]).expect("load");
        assert!(c.pull_endpoints(&r("r.example/x:1")).is_ok());
        let e = RegistriesConf::parse("[[registry]]\nblocked = true\n", Path::new("/x.conf"))
            .expect_err("no prefix");
        assert!(e.to_string().contains("/x.conf"));
    }
}
