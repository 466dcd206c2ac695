//! Real registries for the tests: Debian's `docker-registry` (distribution
//! 2.8) on a free 127.0.0.1 port with a temporary storage directory, either
//! plain HTTP or TLS (a test CA and a leaf certificate for 127.0.0.1) with
//! htpasswd basic auth. The harness starts the process and kills it on drop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{have_tool, have_tool_with, run};

pub const USER: &str = "ebpf-user";
pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    dir: TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The CA that signed the server certificate, for TLS registries.
    pub ca: Option<PathBuf>,
}

impl TestRegistry {
    /// A plain-HTTP registry, or `None` if the test must skip.
    pub fn plain(test: &str) -> Option<Self> {
        if !have_tool(test, "docker-registry", "apt-get install docker-registry") {
            return None;
        }
        Some(Self::start(false, "127.0.0.1"))
    }

    /// A plain-HTTP registry on this machine's first global (non-loopback)
    /// IPv4 address, or `None` if the test must skip.
    pub fn plain_non_loopback(test: &str) -> Option<Self> {
        if !have_tool(test, "docker-registry", "apt-get install docker-registry") {
            return None;
        }
        let out = std::process::Command::new("ip")
            .args(["-4", "-o", "addr", "show", "scope", "global"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let ip = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .map(String::from);
        match ip {
            Some(ip) => Some(Self::start(false, &ip)),
            None => {
                crate::support::skip(test, "this machine has no global IPv4 address");
                None
            }
        }
    }

    /// A TLS registry requiring [`USER`]/[`PASSWORD`], or `None` if the test
    /// must skip.
    pub fn tls_with_auth(test: &str) -> Option<Self> {
        if !have_tool(test, "docker-registry", "apt-get install docker-registry")
            || !have_tool_with(test, "openssl", "version", "apt-get install openssl")
            || !htpasswd_present(test)
        {
            return None;
        }
        Some(Self::start(true, "127.0.0.1"))
    }

    fn start(tls: bool, host: &str) -> Self {
        let dir = TempDir::new().expect("tmp");
        let mut extra = String::new();
        let mut ca = None;
        if tls {
            ca = Some(make_certs(dir.path()));
            let htpasswd = run(Path::new("htpasswd"), &["-Bbn", USER, PASSWORD], &[]).ok();
            std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).expect("htpasswd");
            extra = format!(
                "auth:\n  htpasswd:\n    realm: bpfman-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        // A port that was free a moment ago; retried if taken meanwhile.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port(host);
            let addr = format!("{host}:{port}");
            let tls_conf = if tls {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("leaf.crt").display(),
                    dir.path().join("leaf.key").display()
                )
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{extra}http:\n  addr: {addr}\n{tls_conf}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("config");
            let log_path = dir.path().join("log");
            let log = std::fs::File::create(&log_path).expect("log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                // The access log goes to stdout, the rest to stderr.
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_ready(&mut child, &addr) {
                return Self {
                    child,
                    dir,
                    addr,
                    ca,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    /// The registry's log (access log included).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// How many requests with `method` whose path contains `path` the
    /// access log shows.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains(path) && l.contains(" HTTP/1.1\" "))
            .count()
    }

    /// `127.0.0.1:PORT/<repo>`.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.addr)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr: SocketAddr = addr.parse().expect("addr");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

fn htpasswd_present(test: &str) -> bool {
    let ok = Command::new("htpasswd")
        .arg("-h")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("Usage"));
    ok || crate::support::skip(
        test,
        "htpasswd is not installed (apt-get install apache2-utils)",
    )
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it (CA:FALSE, as
/// rustls requires of an end-entity certificate). Returns the CA's path.
fn make_certs(dir: &Path) -> PathBuf {
    let p = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| run(Path::new("openssl"), args, &[]).ok();
    // A P-256 key, unencrypted.
    const EC_KEY: [&str; 5] = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = p("ca.key");
    let ca_crt = p("ca.crt");
    let mut args = vec!["req", "-x509"];
    args.extend(EC_KEY);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=bpfman test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&args);
    let leaf_key = p("leaf.key");
    let leaf_csr = p("leaf.csr");
    let mut args = vec!["req"];
    args.extend(EC_KEY);
    args.extend([
        "-keyout",
        &leaf_key,
        "-out",
        &leaf_csr,
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&args);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("leaf.crt"),
        "-days",
        "2",
        "-extfile",
        &p("leaf.ext"),
    ]);
    dir.join("ca.crt")
}
