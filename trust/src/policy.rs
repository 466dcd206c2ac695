//! The host's trust policy: which images may be used, as data.
//!
//! ```toml
//! # Used when no scope matches. Without it, nothing outside the scopes is
//! # admitted.
//! [default]
//! rule = "reject"
//!
//! [[scope]]
//! match = "quay.io/bpfman-bytecode"        # a registry/repository prefix
//! rule = "require-signature"
//! keys = ["bpfman.pub"]                     # relative to this file
//!
//! [[scope]]
//! match = "127.0.0.1:*/dev/*"               # `*` globs inside one segment
//! rule = "accept-unsigned"
//!
//! [[scope]]
//! match = "oci:/srv/images"                 # local OCI layouts, by path
//! rule = "require-signature"
//! keys = ["/etc/bpfman/keys/build.pub"]
//! ```
//!
//! A scope matches an image when its pattern matches the first segments of
//! the image's name (`registry[:port]/repository`, or `oci:/path` for a
//! layout), segment by segment; `*` matches any run of characters within a
//! segment. The most specific matching scope decides: the one with more
//! segments, then more literal (non-`*`) characters; of two equally
//! specific scopes, the one written first. Patterns are made canonical
//! as names are (`bpfman_image_spec::name`, and `oci:` paths resolved),
//! so no spelling of a name escapes the scope written for it.
//!
//! Rules: `require-signature` (a valid signature by one of `keys`),
//! `accept-unsigned` (any image; `keys`, if given, are still checked and
//! reported), `reject`. With no policy at all, a signature is required and
//! no key is trusted: nothing is admitted.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::file::{Links, read_text};
use std::sync::Arc;

use crate::keys::PublicKey;
use crate::sigstore::cert::GITHUB_EXTENSIONS;
use crate::sigstore::{IdentityRule, Signers, Subject, TrustedRoot};

/// The largest policy file read.
pub const MAX_POLICY: u64 = 1 << 20;
/// The largest key file read.
pub const MAX_KEY: u64 = 64 << 10;

/// What a scope demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A signature over the image's digest by one of these keys.
    RequireSignature { keys: Vec<PublicKey> },
    /// Any image. Signatures by `keys` are checked and recorded.
    AcceptUnsigned { keys: Vec<PublicKey> },
    /// No image.
    Reject,
}

impl Rule {
    pub fn name(&self) -> &'static str {
        match self {
            Rule::RequireSignature { .. } => "require-signature",
            Rule::AcceptUnsigned { .. } => "accept-unsigned",
            Rule::Reject => "reject",
        }
    }

    pub fn keys(&self) -> &[PublicKey] {
        match self {
            Rule::RequireSignature { keys } | Rule::AcceptUnsigned { keys } => keys,
            Rule::Reject => &[],
        }
    }
}

/// One scope of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The pattern as written, or a description for built-in scopes.
    pub pattern: String,
    pub rule: Rule,
    /// Certificate (keyless) signers this scope trusts besides its keys.
    pub keyless: Option<Keyless>,
    /// Where the scope was written (`policy.toml:12`), or `built-in`.
    pub origin: String,
    segments: Vec<String>,
    line: usize,
}

/// Keyless trust for a scope: a Sigstore trusted root (certificate
/// authorities, logs, timestamp authorities) and the identities whose
/// certificates it accepts.
#[derive(Debug, Clone)]
pub struct Keyless {
    pub root: Arc<TrustedRoot>,
    /// The trusted root's file, for messages.
    pub root_path: PathBuf,
    pub identities: Vec<IdentityRule>,
    /// A transparency log entry is required (`transparency-log =
    /// "required"`, the default).
    pub require_log: bool,
    /// A verified SCT is required (`sct = "required"`, the default).
    pub require_sct: bool,
}

impl PartialEq for Keyless {
    fn eq(&self, other: &Self) -> bool {
        let ids = |k: &Keyless| {
            k.identities
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        self.root_path == other.root_path
            && ids(self) == ids(other)
            && self.require_log == other.require_log
            && self.require_sct == other.require_sct
    }
}

impl Eq for Keyless {}

impl Keyless {
    /// Trust in `identities` under `root`, a transparency log entry and
    /// an SCT required (the defaults).
    pub fn new(root: TrustedRoot, root_path: PathBuf, identities: Vec<IdentityRule>) -> Self {
        Self {
            root: Arc::new(root),
            root_path,
            identities,
            require_log: true,
            require_sct: true,
        }
    }

    /// The signers a Sigstore verification accepts under this scope.
    pub fn signers<'a>(&'a self, keys: &'a [Vec<u8>]) -> Signers<'a> {
        Signers {
            keys,
            identities: &self.identities,
            require_log: self.require_log,
            require_sct: self.require_sct,
        }
    }
}

impl Scope {
    /// Does this scope's pattern match `identity`?
    fn matches(&self, identity: &str) -> bool {
        let id: Vec<&str> = identity.split('/').collect();
        id.len() >= self.segments.len()
            && self
                .segments
                .iter()
                .zip(&id)
                .all(|(p, s)| glob_match(p.as_bytes(), s.as_bytes()))
    }

    /// Larger is more specific.
    fn specificity(&self) -> (usize, usize) {
        let literal = self
            .segments
            .iter()
            .map(|s| s.bytes().filter(|&b| b != b'*').count())
            .sum();
        (self.segments.len(), literal)
    }
}

/// A whole policy: scopes plus the fallback when none matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it came from, for messages.
    pub origin: String,
    scopes: Vec<Scope>,
    default: Scope,
}

/// Why a policy could not be loaded. Each names the file and, where there
/// is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read trust policy '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trust policy '{path}' is not valid: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("trust policy '{path}' line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("trust policy '{path}' line {line}: cannot use key file '{key}': {reason}")]
    Key {
        path: PathBuf,
        line: usize,
        key: PathBuf,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Option<Spanned<RawScope>>,
    #[serde(default)]
    scope: Vec<Spanned<RawScope>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(rename = "match")]
    pattern: Option<Spanned<String>>,
    rule: Spanned<String>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(rename = "trusted-root")]
    trusted_root: Option<Spanned<String>>,
    #[serde(default)]
    identities: Vec<Spanned<RawIdentity>>,
    #[serde(rename = "transparency-log")]
    transparency_log: Option<Spanned<String>>,
    sct: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawIdentity {
    issuer: Option<String>,
    subject: Option<String>,
    subject_regex: Option<String>,
    github_workflow_trigger: Option<String>,
    github_workflow_sha: Option<String>,
    github_workflow_name: Option<String>,
    github_workflow_repository: Option<String>,
    github_workflow_ref: Option<String>,
}

impl Policy {
    /// The policy when none is configured: a signature is required and no
    /// key is trusted, so nothing is admitted.
    pub fn closed() -> Self {
        Self {
            origin: "no trust policy configured".into(),
            scopes: Vec::new(),
            default: Scope {
                pattern: "*".into(),
                rule: Rule::RequireSignature { keys: Vec::new() },
                keyless: None,
                origin: "built-in default".into(),
                segments: Vec::new(),
                line: 0,
            },
        }
    }

    /// A policy of one rule for everything: what `verify --key` checks.
    pub fn everything(rule: Rule, origin: &str) -> Self {
        Self::everything_with(rule, None, origin)
    }

    /// A policy of one rule and keyless trust for everything: what
    /// `verify --trusted-root ... --certificate-identity ...` checks.
    pub fn everything_with(rule: Rule, keyless: Option<Keyless>, origin: &str) -> Self {
        Self {
            origin: origin.into(),
            scopes: Vec::new(),
            default: Scope {
                pattern: "*".into(),
                rule,
                keyless,
                origin: "the only scope".into(),
                segments: Vec::new(),
                line: 0,
            },
        }
    }

    /// Reads a policy file; key paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text =
            read_text(path, MAX_POLICY, Links::Follow).map_err(|source| PolicyError::Read {
                path: path.into(),
                source,
            })?;
        // Keys and trusted roots; a root lists certificates, so it may be
        // larger than a key.
        Self::parse(&text, path, |p| read_text(p, MAX_POLICY, Links::Follow))
    }

    /// Parses policy `text` that came from `path`, reading key files with
    /// `read_key` (so tests need no files).
    pub fn parse(
        text: &str,
        path: &Path,
        mut read_key: impl FnMut(&Path) -> io::Result<String>,
    ) -> Result<Self, PolicyError> {
        let file: File = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut ctx = Ctx {
            text,
            path,
            base,
            read_key: &mut read_key,
        };
        let mut scopes: Vec<Scope> = Vec::new();
        for raw in file.scope {
            let scope = ctx.scope(raw, false)?;
            if let Some(prev) = scopes.iter().find(|s| s.segments == scope.segments) {
                return Err(PolicyError::Invalid {
                    path: path.into(),
                    line: scope.line,
                    message: format!(
                        "scope '{}' repeats the scope at {}; merge them",
                        scope.pattern, prev.origin
                    ),
                });
            }
            scopes.push(scope);
        }
        let default = match file.default {
            Some(raw) => ctx.scope(raw, true)?,
            None => Scope {
                pattern: "*".into(),
                rule: Rule::Reject,
                keyless: None,
                origin: format!("{} (no [default] section)", path.display()),
                segments: Vec::new(),
                line: 0,
            },
        };
        Ok(Self {
            origin: path.display().to_string(),
            scopes,
            default,
        })
    }

    /// The scope that decides for `identity`.
    pub fn scope_for(&self, identity: &str) -> &Scope {
        let mut best: Option<&Scope> = None;
        for s in self.scopes.iter().filter(|s| s.matches(identity)) {
            // Strictly more specific replaces; ties keep the first written.
            if best.is_none_or(|b| s.specificity() > b.specificity()) {
                best = Some(s);
            }
        }
        best.unwrap_or(&self.default)
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
}

struct Ctx<'a, F> {
    text: &'a str,
    path: &'a Path,
    base: &'a Path,
    read_key: &'a mut F,
}

impl<F: FnMut(&Path) -> io::Result<String>> Ctx<'_, F> {
    fn line(&self, span: &Range<usize>) -> usize {
        crate::file::line_of(self.text, span.start)
    }

    fn at(&self, span: &Range<usize>) -> String {
        format!("{}:{}", self.path.display(), self.line(span))
    }

    fn scope(&mut self, raw: Spanned<RawScope>, is_default: bool) -> Result<Scope, PolicyError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let origin = self.at(&span);
        let invalid = |ctx: &Self, s: &Range<usize>, message: String| PolicyError::Invalid {
            path: ctx.path.into(),
            line: ctx.line(s),
            message,
        };
        let (pattern, segments) = match (&raw.pattern, is_default) {
            (Some(p), true) => {
                return Err(invalid(
                    self,
                    &p.span(),
                    "[default] applies to everything; it takes no 'match'".into(),
                ));
            }
            (None, true) => ("*".to_string(), Vec::new()),
            (None, false) => {
                return Err(invalid(
                    self,
                    &span,
                    "this [[scope]] has no 'match' (a registry, registry/repository prefix or oci:/path, with * globs)".into(),
                ));
            }
            (Some(p), false) => {
                let segments = parse_pattern(p.get_ref(), self.base).map_err(|m| {
                    invalid(self, &p.span(), format!("match '{}': {m}", p.get_ref()))
                })?;
                (p.get_ref().clone(), segments)
            }
        };
        let mut keys = Vec::new();
        for k in &raw.keys {
            keys.push(self.key(k)?);
        }
        let keyless = self.keyless(&raw, &span)?;
        let rule = match raw.rule.get_ref().as_str() {
            "require-signature" => {
                if keys.is_empty() && keyless.is_none() {
                    return Err(invalid(
                        self,
                        &raw.rule.span(),
                        "rule 'require-signature' needs 'keys' (the public keys whose signatures are trusted), or 'trusted-root' and 'identities' (the certificate signers)".into(),
                    ));
                }
                Rule::RequireSignature { keys }
            }
            "accept-unsigned" => Rule::AcceptUnsigned { keys },
            "reject" => {
                if let Some(k) = raw.keys.first() {
                    return Err(invalid(
                        self,
                        &k.span(),
                        "rule 'reject' takes no keys".into(),
                    ));
                }
                if let Some(r) = &raw.trusted_root {
                    return Err(invalid(
                        self,
                        &r.span(),
                        "rule 'reject' takes no trusted root or identities".into(),
                    ));
                }
                Rule::Reject
            }
            other => {
                return Err(invalid(
                    self,
                    &raw.rule.span(),
                    format!(
                        "unknown rule '{other}'; expected require-signature, accept-unsigned or reject"
                    ),
                ));
            }
        };
        Ok(Scope {
            pattern,
            rule,
            keyless,
            origin,
            segments,
            line: self.line(&span),
        })
    }

    fn relative(&self, p: &str) -> PathBuf {
        let rel = Path::new(p);
        if rel.is_absolute() {
            rel.to_path_buf()
        } else {
            self.base.join(rel)
        }
    }

    /// The scope's keyless trust: both 'trusted-root' and 'identities', or
    /// neither.
    fn keyless(
        &mut self,
        raw: &RawScope,
        span: &Range<usize>,
    ) -> Result<Option<Keyless>, PolicyError> {
        let invalid = |ctx: &Self, s: &Range<usize>, message: String| PolicyError::Invalid {
            path: ctx.path.into(),
            line: ctx.line(s),
            message,
        };
        let flag = |ctx: &Self, v: &Option<Spanned<String>>, name: &str| match v {
            None => Ok(true),
            Some(v) => match v.get_ref().as_str() {
                "required" => Ok(true),
                "optional" => Ok(false),
                other => Err(invalid(
                    ctx,
                    &v.span(),
                    format!("'{name}' is 'required' or 'optional', not '{other}'"),
                )),
            },
        };
        let require_log = flag(self, &raw.transparency_log, "transparency-log")?;
        let require_sct = flag(self, &raw.sct, "sct")?;
        let root = match (&raw.trusted_root, raw.identities.is_empty()) {
            (None, true) => {
                if let Some(v) = raw.transparency_log.as_ref().or(raw.sct.as_ref()) {
                    return Err(invalid(
                        self,
                        &v.span(),
                        "'transparency-log' and 'sct' apply to certificate signers: add 'trusted-root' and 'identities'".into(),
                    ));
                }
                return Ok(None);
            }
            (None, false) => {
                return Err(invalid(
                    self,
                    span,
                    "'identities' need a 'trusted-root' (a Sigstore trusted_root.json naming the certificate authorities and logs)".into(),
                ));
            }
            (Some(r), true) => {
                return Err(invalid(
                    self,
                    &r.span(),
                    "'trusted-root' needs 'identities': the issuer and subject of each trusted signer".into(),
                ));
            }
            (Some(r), false) => r,
        };
        let file = self.relative(root.get_ref());
        let line = self.line(&root.span());
        let text = (self.read_key)(&file).map_err(|e| PolicyError::Invalid {
            path: self.path.into(),
            line,
            message: format!("cannot read trusted root '{}': {e}", file.display()),
        })?;
        let parsed = TrustedRoot::from_json(text.as_bytes()).map_err(|e| PolicyError::Invalid {
            path: self.path.into(),
            line,
            message: format!("cannot use trusted root '{}': {e}", file.display()),
        })?;
        let mut identities = Vec::new();
        for id in &raw.identities {
            let at = id.span();
            let id = id.get_ref();
            let issuer = id.issuer.clone().ok_or_else(|| {
                invalid(
                    self,
                    &at,
                    "an identity needs 'issuer': the OIDC issuer URL, exact".into(),
                )
            })?;
            let subject = match (&id.subject, &id.subject_regex) {
                (Some(s), None) => Subject::Exact(s.clone()),
                (None, Some(r)) => Subject::regex(r).map_err(|m| invalid(self, &at, m))?,
                _ => {
                    return Err(invalid(
                        self,
                        &at,
                        "an identity needs exactly one of 'subject' (exact) and 'subject-regex' (anchored)".into(),
                    ));
                }
            };
            let values = [
                &id.github_workflow_trigger,
                &id.github_workflow_sha,
                &id.github_workflow_name,
                &id.github_workflow_repository,
                &id.github_workflow_ref,
            ];
            let extensions = GITHUB_EXTENSIONS
                .iter()
                .zip(values)
                .filter_map(|((name, _), v)| v.clone().map(|v| ((*name).to_string(), v)))
                .collect();
            identities.push(IdentityRule {
                issuer,
                subject,
                extensions,
            });
        }
        Ok(Some(Keyless {
            require_log,
            require_sct,
            ..Keyless::new(parsed, file, identities)
        }))
    }

    fn key(&mut self, k: &Spanned<String>) -> Result<PublicKey, PolicyError> {
        let file = self.relative(k.get_ref());
        let (path, line) = (self.path, self.line(&k.span()));
        let err = |reason: String| PolicyError::Key {
            path: path.into(),
            line,
            key: file.clone(),
            reason,
        };
        let pem = (self.read_key)(&file).map_err(|e| err(e.to_string()))?;
        PublicKey::from_pem(&pem).map_err(|e| err(e.to_string()))
    }
}

/// Splits and checks a scope pattern, and makes it canonical exactly as
/// image names are: registry spellings (case, ports, Docker Hub's aliases
/// and its `library/`) by `bpfman_image_spec::name`, and `oci:` paths
/// made absolute (relative ones are relative to the policy file, like
/// keys), `.` and `..` resolved, and symlinks resolved where the path
/// exists, as a layout's identity is.
fn parse_pattern(p: &str, base: &Path) -> Result<Vec<String>, String> {
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        return Err("empty pattern; use [default] for everything".into());
    }
    if p.contains('@') {
        return Err("scopes name registries and repositories, not digests".into());
    }
    if p.chars().any(char::is_whitespace) {
        return Err("whitespace in pattern".into());
    }
    if p.trim_start_matches("oci:").contains("//") {
        return Err("empty path segment ('//')".into());
    }
    let canonical = match p.strip_prefix("oci:") {
        Some(path) => format!("oci:{}", canonical_path(path, base)?.display()),
        None => {
            let (registry, repository) = bpfman_image_spec::name::canonical_name(p);
            if repository.is_empty() {
                registry
            } else {
                format!("{registry}/{repository}")
            }
        }
    };
    let canonical = canonical.trim_end_matches('/');
    let segments: Vec<String> = canonical.split('/').map(str::to_string).collect();
    let oci = canonical.starts_with("oci:");
    for (i, s) in segments.iter().enumerate() {
        if s.is_empty() && !(oci && i == 1) {
            return Err("empty path segment ('//')".into());
        }
        if i > 0 && !oci && s.contains(':') {
            return Err(
                "a ':' after the registry looks like a tag; scopes cover whole repositories".into(),
            );
        }
    }
    Ok(segments)
}

/// An `oci:` pattern's path as a layout identity spells it.
fn canonical_path(path: &str, base: &Path) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("'oci:' names no directory".into());
    }
    let joined = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    };
    let mut lexical = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    if !lexical.is_absolute() {
        // The policy file's own path was relative: anchor it here.
        lexical = std::env::current_dir()
            .map_err(|e| format!("cannot resolve the relative path: {e}"))?
            .join(lexical);
    }
    // Globs cannot be resolved on disk; literal paths that exist can.
    if !path.contains('*')
        && let Ok(real) = std::fs::canonicalize(&lexical)
    {
        return Ok(real);
    }
    Ok(lexical)
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking to the last star: linear in
    // practice, no recursion.
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pattern.len() && pattern[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    fn pem() -> String {
        PrivateKey::generate().expect("random").public().to_pem()
    }

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        let key = pem();
        Policy::parse(text, Path::new("/etc/bpfman/policy.toml"), |p| {
            if p.ends_with("missing.pub") {
                Err(io::Error::new(io::ErrorKind::NotFound, "No such file"))
            } else if p.ends_with("garbage.pub") {
                Ok("garbage".into())
            } else {
                Ok(key.clone())
            }
        })
    }

    fn rule_for(p: &Policy, id: &str) -> &'static str {
        p.scope_for(id).rule.name()
    }

    #[test]
    fn glob() {
        for (p, s, m) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abd", false),
            ("*.example.com", "r.example.com", true),
            ("*.example.com", "example.com", false),
            ("127.0.0.1:*", "127.0.0.1:5000", true),
            ("a*b*c", "aXbYbZc", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), m, "{p} vs {s}");
        }
    }

    const POLICY: &str = r#"
[default]
rule = "reject"

[[scope]]
match = "quay.io"
rule = "require-signature"
keys = ["a.pub"]

[[scope]]
match = "quay.io/bpfman"
rule = "accept-unsigned"

[[scope]]
match = "quay.io/bpfman/prod*"
rule = "require-signature"
keys = ["/abs/b.pub", "c.pub"]

[[scope]]
match = "*.example.com/team"
rule = "accept-unsigned"

[[scope]]
match = "r.example.com/*"
rule = "reject"

[[scope]]
match = "oci:/srv/images"
rule = "accept-unsigned"
"#;

    #[test]
    fn most_specific_scope_wins() {
        let p = parse(POLICY).expect("parses");
        assert_eq!(rule_for(&p, "quay.io/other/x"), "require-signature");
        assert_eq!(rule_for(&p, "quay.io/bpfman/x"), "accept-unsigned");
        assert_eq!(rule_for(&p, "quay.io/bpfman"), "accept-unsigned");
        assert_eq!(rule_for(&p, "quay.io/bpfman/prod-xdp"), "require-signature");
        assert_eq!(p.scope_for("quay.io/bpfman/prod-xdp").rule.keys().len(), 2);
        assert_eq!(rule_for(&p, "quay.io.evil.com/bpfman/x"), "reject");
        assert_eq!(rule_for(&p, "docker.io/library/x"), "reject");
        // Same segment count: the pattern with more literal characters.
        assert_eq!(rule_for(&p, "r.example.com/team/x"), "accept-unsigned");
        assert_eq!(rule_for(&p, "r.example.com/other"), "reject");
        assert_eq!(rule_for(&p, "s.example.com/team/x"), "accept-unsigned");
        assert_eq!(rule_for(&p, "oci:/srv/images/dev"), "accept-unsigned");
        assert_eq!(rule_for(&p, "oci:/srv/imagesX"), "reject");
        assert_eq!(rule_for(&p, "oci:/tmp/x"), "reject");
        assert_eq!(p.scope_for("quay.io/x").origin, "/etc/bpfman/policy.toml:5");
    }

    #[test]
    fn equally_specific_scopes_keep_file_order() {
        let p = parse(
            r#"
[[scope]]
match = "r.io/a*"
rule = "reject"
[[scope]]
match = "r.io/*b"
rule = "accept-unsigned"
"#,
        )
        .expect("parses");
        assert_eq!(rule_for(&p, "r.io/ab"), "reject");
        assert_eq!(rule_for(&p, "r.io/xb"), "accept-unsigned");
    }

    #[test]
    fn no_default_section_rejects_unmatched() {
        let p = parse("[[scope]]\nmatch = \"a.io\"\nrule = \"accept-unsigned\"\n").expect("ok");
        assert_eq!(rule_for(&p, "b.io/x"), "reject");
        assert!(p.scope_for("b.io/x").origin.contains("no [default]"));
    }

    #[test]
    fn closed_policy_requires_a_signature_and_trusts_no_key() {
        let p = Policy::closed();
        let s = p.scope_for("anything/at/all");
        assert_eq!(s.rule, Rule::RequireSignature { keys: vec![] });
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = error("[[scope]]\nmatch = \"a.io\"\nrule = \n");
        assert!(e.contains("/etc/bpfman/policy.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = error(
            "[[scope]]\nmatch = \"a.io\"\nrule = \"require-signature\"\nkeys = [\"missing.pub\"]\n",
        );
        assert!(
            e.contains("line 4") && e.contains("/etc/bpfman/missing.pub"),
            "{e}"
        );
        assert!(e.contains("No such file"), "{e}");
        let e = error(
            "[[scope]]\nmatch = \"a.io\"\nrule = \"require-signature\"\nkeys = [\"garbage.pub\"]\n",
        );
        assert!(
            e.contains("line 4") && e.contains("BEGIN PUBLIC KEY"),
            "{e}"
        );
        let e = error("\n[[scope]]\nmatch = \"a.io\"\nrule = \"require-signature\"\n");
        assert!(e.contains("line 4") && e.contains("needs 'keys'"), "{e}");
        let e = error("[[scope]]\nmatch = \"a.io\"\nrule = \"allow\"\n");
        assert!(
            e.contains("line 3") && e.contains("unknown rule 'allow'"),
            "{e}"
        );
        let e = error("[[scope]]\nrule = \"reject\"\n");
        assert!(e.contains("line 1") && e.contains("no 'match'"), "{e}");
        let e = error("[[scope]]\nmatch = \"a.io/x:latest\"\nrule = \"reject\"\n");
        assert!(e.contains("line 2") && e.contains("tag"), "{e}");
        let e = error("[[scope]]\nmatch = \"a.io\"\nrule = \"reject\"\nkey = []\n");
        assert!(e.contains("unknown field"), "{e}");
        let e = error(
            "[[scope]]\nmatch = \"a.io\"\nrule = \"reject\"\n\n[[scope]]\nmatch = \"a.io/\"\nrule = \"reject\"\n",
        );
        assert!(e.contains("line 5") && e.contains("policy.toml:1"), "{e}");
        let e = error("[[scope]]\nmatch = \"oci://srv\"\nrule = \"reject\"\n");
        assert!(
            e.contains("line 2") && e.contains("empty path segment"),
            "{e}"
        );
        let e = error("[default]\nmatch = \"a.io\"\nrule = \"reject\"\n");
        assert!(e.contains("line 2") && e.contains("no 'match'"), "{e}");
    }

    #[test]
    fn load_reads_keys_relative_to_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("k.pub"), pem()).expect("write");
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[default]\nrule = \"require-signature\"\nkeys = [\"k.pub\"]\n",
        )
        .expect("write");
        let p = Policy::load(&path).expect("loads");
        assert_eq!(p.scope_for("x").rule.keys().len(), 1);
        let e = Policy::load(&dir.path().join("nope.toml")).expect_err("missing");
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn scopes_trust_certificate_identities_under_a_trusted_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::sigstore::testpki::TestPki::new(1_800_000_000);
        std::fs::write(dir.path().join("root.json"), pki.trusted_root_json()).expect("write");
        let path = dir.path().join("policy.toml");
        let write = |text: &str| std::fs::write(&path, text).expect("write");
        write(
            r#"[[scope]]
match = "ghcr.io/org"
rule = "require-signature"
trusted-root = "root.json"
identities = [
  { issuer = "https://token.actions.githubusercontent.com", subject = "https://github.com/org/a/.github/workflows/r.yml@refs/heads/main" },
  { issuer = "https://token.actions.githubusercontent.com", subject-regex = "https://github.com/org/.*", github-workflow-repository = "org/b" },
]

[[scope]]
match = "registry.internal/ebpf"
rule = "require-signature"
trusted-root = "root.json"
identities = [{ issuer = "https://ca.internal", subject = "ci@internal" }]
transparency-log = "optional"
sct = "optional"
"#,
        );
        let p = Policy::load(&path).expect("loads");
        let k = p
            .scope_for("ghcr.io/org/x")
            .keyless
            .as_ref()
            .expect("keyless");
        assert_eq!(k.identities.len(), 2);
        assert!(k.require_log && k.require_sct);
        assert_eq!(
            k.identities[1].extensions,
            vec![(
                "github-workflow-repository".to_string(),
                "org/b".to_string()
            )]
        );
        let k = p
            .scope_for("registry.internal/ebpf/x")
            .keyless
            .as_ref()
            .expect("keyless");
        assert!(!k.require_log && !k.require_sct);
        assert!(p.scope_for("docker.io/x").keyless.is_none());

        for (text, want) in [
            (
                "[default]\nrule = \"require-signature\"\nidentities = [{ issuer = \"i\", subject = \"s\" }]\n",
                "line 1: 'identities' need a 'trusted-root'",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\n",
                "line 3: 'trusted-root' needs 'identities'",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\nidentities = [{ subject = \"s\" }]\n",
                "line 4: an identity needs 'issuer'",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\nidentities = [{ issuer = \"i\", subject = \"s\", subject-regex = \"s\" }]\n",
                "exactly one of 'subject'",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\nidentities = [{ issuer = \"i\", subject-regex = \"(\" }]\n",
                "not a valid regular expression",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"missing.json\"\nidentities = [{ issuer = \"i\", subject = \"s\" }]\n",
                "line 3: cannot read trusted root",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"policy.toml\"\nidentities = [{ issuer = \"i\", subject = \"s\" }]\n",
                "line 3: cannot use trusted root",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\nidentities = [{ issuer = \"i\", subject = \"s\" }]\nsct = \"maybe\"\n",
                "line 5: 'sct' is 'required' or 'optional'",
            ),
            (
                "[default]\nrule = \"accept-unsigned\"\nsct = \"optional\"\n",
                "apply to certificate signers",
            ),
            (
                "[default]\nrule = \"require-signature\"\ntrusted-root = \"root.json\"\nidentities = [{ issuer = \"i\", subject = \"s\", github-workflow-color = \"red\" }]\n",
                "github-workflow-color",
            ),
        ] {
            write(text);
            let e = Policy::load(&path).expect_err(want).to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
