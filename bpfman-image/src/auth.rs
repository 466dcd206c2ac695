//! Registry credentials: where they come from (`--creds`, the standard auth
//! files, docker credential helpers) and `login`/`logout`.
//!
//! Files, in the order they are searched (the first that knows the registry
//! wins), as podman and skopeo do:
//! 1. `--authfile FILE`, if given (then nothing else is read);
//! 2. `$REGISTRY_AUTH_FILE`;
//! 3. `$XDG_RUNTIME_DIR/containers/auth.json`;
//! 4. `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`.
//!
//! Within a file: `credHelpers[registry]`, then an `auths` entry (the most
//! specific of `registry/repo/...` down to `registry`), then `credsStore`.
//!
//! Secrets are held in [`Credentials`], whose `Debug` redacts them; no error
//! message here ever includes one.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::reference::{DOCKER_HUB, RegistryRef};

/// The key docker uses for Docker Hub in auth files and helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or access token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Parses `USER:PASSWORD` (the password may contain ':').
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(Self::new(u, p)),
            _ => Err(AuthError::BadCreds),
        }
    }

    /// Reads `USER:PASSWORD` from the first line of `path`.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = fs::read_to_string(path).map_err(|source| AuthError::Io {
            action: "read",
            path: path.into(),
            source,
        })?;
        let line = text.lines().next().unwrap_or_default();
        Self::parse(line.trim_end_matches('\r'))
            .map_err(|_| AuthError::BadCredsFile { path: path.into() })
    }
}

/// Where credentials were found, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    CommandLine,
    File(PathBuf),
    Helper(String),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommandLine => f.write_str("--creds"),
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Helper(h) => write!(f, "credential helper docker-credential-{h}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials must be USER:PASSWORD, both non-empty")]
    BadCreds,
    #[error("'{path}' must hold USER:PASSWORD on its first line")]
    BadCredsFile { path: PathBuf },
    #[error("cannot {action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("auth file '{path}' is not valid JSON; fix or remove it")]
    BadJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the entry for '{key}' in '{path}' is not base64 of USER:PASSWORD; log in again with bpfman-image login"
    )]
    BadEntry { path: PathBuf, key: String },
    #[error(
        "credential helper docker-credential-{helper} failed to {action} credentials for {server}: {message}"
    )]
    Helper {
        helper: String,
        action: &'static str,
        server: String,
        message: String,
    },
    #[error(
        "credential helper docker-credential-{helper} for {server} returned an identity token; only user/password or access-token credentials are supported"
    )]
    IdentityToken { helper: String, server: String },
    #[error("not logged in to {registry}: no entry for it in {searched}")]
    NotLoggedIn { registry: String, searched: String },
}

/// The environment the auth files are found from; [`AuthFiles::from_env`]
/// reads the process's.
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    pub registry_auth_file: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl AuthEnv {
    pub fn from_process() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
        }
    }
}

/// The auth files to search, in order, and the one `login` writes.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    search: Vec<PathBuf>,
    write: PathBuf,
}

impl AuthFiles {
    /// `explicit` is `--authfile`.
    pub fn new(explicit: Option<PathBuf>, env: &AuthEnv) -> Self {
        if let Some(f) = explicit {
            return Self {
                search: vec![f.clone()],
                write: f,
            };
        }
        let docker = match (&env.docker_config, &env.home) {
            (Some(d), _) => d.join("config.json"),
            (None, Some(h)) => h.join(".docker/config.json"),
            (None, None) => PathBuf::from(".docker/config.json"),
        };
        let mut search = Vec::new();
        search.extend(env.registry_auth_file.clone());
        search.extend(
            env.xdg_runtime_dir
                .as_ref()
                .map(|d| d.join("containers/auth.json")),
        );
        search.push(docker.clone());
        let write = env.registry_auth_file.clone().unwrap_or(docker);
        Self { search, write }
    }

    pub fn from_env(explicit: Option<PathBuf>) -> Self {
        Self::new(explicit, &AuthEnv::from_process())
    }

    /// The file `login` writes.
    pub fn login_file(&self) -> &Path {
        &self.write
    }

    /// Credentials for `r`, if any file (or its helper) has them.
    pub fn lookup(
        &self,
        r: &RegistryRef,
    ) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
        for path in &self.search {
            let Some(config) = read_config(path)? else {
                continue;
            };
            if let Some(found) = lookup_in(&config, path, r)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Verified credentials go into the login file (or its helper), mode 0600.
    /// Returns where they went.
    pub fn login(
        &self,
        registry: &str,
        creds: &Credentials,
    ) -> Result<CredentialSource, AuthError> {
        let path = &self.write;
        let mut config = read_config(path)?.unwrap_or_default();
        let server = helper_server(registry);
        if let Some(helper) = helper_for(&config, registry) {
            let input = serde_json::json!({
                "ServerURL": server,
                "Username": creds.username,
                "Secret": creds.password,
            });
            run_helper(&helper, "store", &server, &input.to_string())?;
            return Ok(CredentialSource::Helper(helper));
        }
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            let auth = B64.encode(format!("{}:{}", creds.username, creds.password));
            let key = auth_key(registry);
            let mut entry = match auths.remove(&key) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            entry.remove("username");
            entry.remove("password");
            entry.remove("identitytoken");
            entry.insert("auth".into(), Value::String(auth));
            auths.insert(key, Value::Object(entry));
        }
        write_config(path, &config)?;
        Ok(CredentialSource::File(path.clone()))
    }

    /// Removes `registry`'s credentials from every file searched (and their
    /// helpers). Errors if none had any.
    pub fn logout(&self, registry: &str) -> Result<Vec<CredentialSource>, AuthError> {
        let mut removed = Vec::new();
        for path in &self.search {
            let Some(mut config) = read_config(path)? else {
                continue;
            };
            let server = helper_server(registry);
            if let Some(helper) = helper_for(&config, registry)
                && run_helper(&helper, "erase", &server, &server).is_ok()
            {
                removed.push(CredentialSource::Helper(helper));
            }
            let keys = candidate_keys(registry);
            let mut changed = false;
            if let Some(Value::Object(auths)) = config.get_mut("auths") {
                for key in &keys {
                    changed |= auths.remove(key).is_some();
                }
            }
            if changed {
                write_config(path, &config)?;
                removed.push(CredentialSource::File(path.clone()));
            }
        }
        if removed.is_empty() {
            return Err(AuthError::NotLoggedIn {
                registry: registry.into(),
                searched: self
                    .search
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(removed)
    }
}

type Config = Map<String, Value>;

fn read_config(path: &Path) -> Result<Option<Config>, AuthError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::Io {
                action: "read",
                path: path.into(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Config::new()));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| AuthError::BadJson {
            path: path.into(),
            source,
        })
}

/// Writes the config atomically with mode 0600 (the directory, if created,
/// 0700): it holds secrets. An auth file that is a symbolic link (to a
/// file managed elsewhere) stays one: its target is what gets replaced.
fn write_config(path: &Path, config: &Config) -> Result<(), AuthError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthError::Io {
            action,
            path,
            source,
        }
    };
    let resolved;
    let path = match fs::read_link(path) {
        Ok(target) => {
            resolved = match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
            resolved.as_path()
        }
        Err(_) => path,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".auth-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    let mut bytes = serde_json::to_vec_pretty(config).unwrap_or_default();
    bytes.push(b'\n');
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("replace", path)(e.error))?;
    Ok(())
}

/// The `auths` key `login` writes for a registry.
fn auth_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_KEY.into()
    } else {
        registry.into()
    }
}

/// The server name a credential helper is asked about.
fn helper_server(registry: &str) -> String {
    auth_key(registry)
}

/// Every key an `auths` map may use for a registry.
fn candidate_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == DOCKER_HUB {
        keys.extend(
            [
                DOCKER_HUB_KEY,
                "index.docker.io",
                "registry-1.docker.io",
                "https://index.docker.io",
            ]
            .map(String::from),
        );
    }
    keys
}

/// `credHelpers[registry]`.
fn registry_helper(config: &Config, registry: &str) -> Option<String> {
    let helpers = config.get("credHelpers").and_then(Value::as_object)?;
    candidate_keys(registry)
        .iter()
        .find_map(|k| helpers.get(k).and_then(Value::as_str).map(String::from))
}

/// `credsStore`, the helper for every registry without its own.
fn store_helper(config: &Config) -> Option<String> {
    config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn helper_for(config: &Config, registry: &str) -> Option<String> {
    registry_helper(config, registry).or_else(|| store_helper(config))
}

fn lookup_in(
    config: &Config,
    path: &Path,
    r: &RegistryRef,
) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
    let registry = r.registry.as_str();
    let server = helper_server(registry);
    if let Some(helper) = registry_helper(config, registry) {
        return helper_get(&helper, &server);
    }
    if let Some(Value::Object(auths)) = config.get("auths") {
        // Most specific first: registry/a/b, registry/a, then the registry.
        let mut scoped: Vec<String> = Vec::new();
        let mut prefix = r.repository.as_str();
        loop {
            scoped.push(format!("{registry}/{prefix}"));
            match prefix.rsplit_once('/') {
                Some((p, _)) => prefix = p,
                None => break,
            }
        }
        scoped.extend(candidate_keys(registry));
        for key in scoped {
            if let Some(entry) = auths.get(&key)
                && let Some(creds) = parse_entry(entry, path, &key)?
            {
                return Ok(Some((creds, CredentialSource::File(path.into()))));
            }
        }
    }
    if let Some(helper) = store_helper(config) {
        return helper_get(&helper, &server);
    }
    Ok(None)
}

fn parse_entry(entry: &Value, path: &Path, key: &str) -> Result<Option<Credentials>, AuthError> {
    let bad = || AuthError::BadEntry {
        path: path.into(),
        key: key.into(),
    };
    if let (Some(u), Some(p)) = (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) && !u.is_empty()
    {
        return Ok(Some(Credentials::new(u, p)));
    }
    let Some(auth) = entry.get("auth").and_then(Value::as_str) else {
        return Ok(None);
    };
    if auth.is_empty() {
        return Ok(None);
    }
    let decoded = B64.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    Credentials::parse(&text).map(Some).map_err(|_| bad())
}

fn helper_get(
    helper: &str,
    server: &str,
) -> Result<Option<(Credentials, CredentialSource)>, AuthError> {
    let out = match run_helper(helper, "get", server, server) {
        Ok(out) => out,
        // The protocol's "no credentials" answer.
        Err(AuthError::Helper { message, .. })
            if message.contains("credentials not found") || message.is_empty() =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: Answer = serde_json::from_str(&out).map_err(|_| AuthError::Helper {
        helper: helper.into(),
        action: "get",
        server: server.into(),
        message: "its answer is not the JSON {Username, Secret} the protocol defines".into(),
    })?;
    if answer.username == "<token>" {
        return Err(AuthError::IdentityToken {
            helper: helper.into(),
            server: server.into(),
        });
    }
    Ok(Some((
        Credentials::new(answer.username, answer.secret),
        CredentialSource::Helper(helper.into()),
    )))
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin.
fn run_helper(
    helper: &str,
    action: &'static str,
    server: &str,
    input: &str,
) -> Result<String, AuthError> {
    let fail = |message: String| AuthError::Helper {
        helper: helper.into(),
        action,
        server: server.into(),
        message,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run {program}: {e}; is it installed and on PATH?"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported by its status.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program} did not finish: {e}")))?;
    if !out.status.success() {
        // Helpers print their error on stdout; never echo more than a line.
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect::<String>();
        return Err(fail(text.trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env(dir: &Path) -> AuthEnv {
        AuthEnv {
            registry_auth_file: None,
            xdg_runtime_dir: Some(dir.join("run")),
            docker_config: Some(dir.join("docker")),
            home: Some(dir.join("home")),
        }
    }

    fn r(s: &str) -> RegistryRef {
        s.parse().expect("ref")
    }

    #[test]
    fn login_writes_0600_and_lookup_reads_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = AuthFiles::new(None, &env(dir.path()));
        assert_eq!(files.login_file(), dir.path().join("docker/config.json"));
        let creds = Credentials::new("alice", "s3:cret");
        files.login("reg.example:5000", &creds).expect("login");
        let path = files.login_file();
        let mode = fs::metadata(path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (found, src) = files
            .lookup(&r("reg.example:5000/a/b:t"))
            .expect("lookup")
            .expect("found");
        assert_eq!(found, creds);
        assert_eq!(src, CredentialSource::File(path.into()));
        assert!(files.lookup(&r("other.example/a")).expect("ok").is_none());
        // The secret is not in Debug output.
        assert!(!format!("{found:?}").contains("s3:cret"));

        files.logout("reg.example:5000").expect("logout");
        assert!(
            files
                .lookup(&r("reg.example:5000/a"))
                .expect("ok")
                .is_none()
        );
        assert!(matches!(
            files.logout("reg.example:5000"),
            Err(AuthError::NotLoggedIn { .. })
        ));
    }

    #[test]
    fn login_through_a_symlinked_auth_file_keeps_the_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let managed = dir.path().join("managed");
        fs::create_dir_all(&managed).expect("mkdir");
        fs::write(managed.join("auth.json"), r#"{"auths":{}}"#).expect("write");
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink("managed/auth.json", &link).expect("symlink");
        let files = AuthFiles::new(Some(link.clone()), &AuthEnv::default());
        files
            .login("y.io", &Credentials::new("u", "p"))
            .expect("login");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        let v: Value = serde_json::from_slice(&fs::read(managed.join("auth.json")).expect("read"))
            .expect("json");
        assert_eq!(v["auths"]["y.io"]["auth"], B64.encode("u:p"));
    }

    #[test]
    fn login_keeps_other_settings() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = AuthFiles::new(Some(dir.path().join("a.json")), &AuthEnv::default());
        fs::write(
            files.login_file(),
            r#"{"auths":{"x.io":{"auth":"dTpw"}},"psFormat":"table"}"#,
        )
        .expect("write");
        files
            .login("y.io", &Credentials::new("u", "p"))
            .expect("login");
        let v: Value =
            serde_json::from_slice(&fs::read(files.login_file()).expect("read")).expect("json");
        assert_eq!(v["psFormat"], "table");
        assert_eq!(v["auths"]["x.io"]["auth"], "dTpw");
        assert_eq!(v["auths"]["y.io"]["auth"], B64.encode("u:p"));
    }

    #[test]
    fn precedence_and_scopes() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = env(dir.path());
        let podman = dir.path().join("run/containers/auth.json");
        fs::create_dir_all(podman.parent().expect("parent")).expect("mkdir");
        fs::write(
            &podman,
            format!(
                r#"{{"auths":{{"r.io/team":{{"auth":"{}"}},"r.io":{{"auth":"{}"}}}}}}"#,
                B64.encode("team:1"),
                B64.encode("all:2")
            ),
        )
        .expect("write");
        let docker = dir.path().join("docker/config.json");
        fs::create_dir_all(docker.parent().expect("parent")).expect("mkdir");
        fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"r.io":{{"auth":"{}"}}}}}}"#,
                B64.encode("hub:3"),
                B64.encode("docker:4")
            ),
        )
        .expect("write");
        let files = AuthFiles::new(None, &e);
        let user = |s: &str| {
            files
                .lookup(&r(s))
                .expect("lookup")
                .map(|(c, _)| c.username)
        };
        assert_eq!(user("r.io/team/app").as_deref(), Some("team"));
        assert_eq!(user("r.io/other").as_deref(), Some("all"));
        assert_eq!(user("busybox").as_deref(), Some("hub"));
        assert_eq!(user("nowhere.io/x"), None);
    }

    #[test]
    fn bad_entries_name_the_file_not_the_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.json");
        fs::write(
            &path,
            r#"{"auths":{"r.io":{"auth":"!!not-base64-secret"}}}"#,
        )
        .expect("w");
        let files = AuthFiles::new(Some(path.clone()), &AuthEnv::default());
        let err = files.lookup(&r("r.io/x")).expect_err("bad").to_string();
        assert!(err.contains("a.json") && err.contains("r.io"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        fs::write(&path, "{not json").expect("w");
        assert!(matches!(
            files.lookup(&r("r.io/x")),
            Err(AuthError::BadJson { .. })
        ));
    }

    #[test]
    fn creds_parse() {
        assert_eq!(
            Credentials::parse("u:p:q").expect("ok"),
            Credentials::new("u", "p:q")
        );
        assert!(Credentials::parse("u").is_err());
        assert!(Credentials::parse(":p").is_err());
        assert!(Credentials::parse("u:").is_err());
    }
}
