//! An in-process adversarial registry: serves one image over plain HTTP on
//! 127.0.0.1 and takes uploads (blob sessions and manifests) in repository
//! `test/img`, misbehaving in one chosen way. Only for fault injection;
//! everything else runs against the real `docker-registry`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the registry misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The layer's bytes are changed (same length).
    BlobWrongBytes,
    /// The layer body is shorter than its descriptor (honest Content-Length).
    BlobShort,
    /// The layer body is longer than its descriptor.
    BlobLong,
    /// The layer body is longer, sent chunked (no Content-Length).
    BlobLongChunked,
    /// The manifest is padded past the 4 MiB limit.
    HugeManifest,
    /// Every request gets 401 without a WWW-Authenticate challenge.
    Unauthorized,
    /// Every manifest request gets 404.
    NotFound,
    /// The first manifest request gets 500, later ones succeed.
    ServerErrorOnce,
    /// Every manifest request gets 500.
    ServerErrorAlways,
    /// Manifest requests are accepted but never answered.
    Stall,
    /// Uploads only in chunks: a PATCH over 8 MiB gets 416 and a
    /// monolithic PUT (a body on the closing PUT) gets 400, as some
    /// registries and proxies do; `OCI-Chunk-Min-Length` asks for 1 MiB.
    ChunksOnly,
    /// The layer is served elsewhere: a relative redirect, then one to
    /// another host name (`localhost` for `127.0.0.1`) under `/cdn/`.
    BlobRedirect,
}

/// The largest PATCH [`Fault::ChunksOnly`] takes.
pub const CHUNKS_ONLY_MAX: usize = 8 << 20;

/// A running fake registry; stops when dropped.
#[derive(Debug)]
pub struct FakeRegistry {
    pub addr: String,
    stop: Arc<AtomicBool>,
    pub manifest_requests: Arc<AtomicUsize>,
    /// Every request line's path, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Every request as `METHOD path (body bytes)`, in order.
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(&self.addr);
    }
}

struct State {
    fault: Fault,
    addr: String,
    /// Path suffix (`manifests/<ref>` or `blobs/<digest>`) -> (type, bytes).
    content: HashMap<String, (String, Vec<u8>)>,
    layer: String,
    manifest_requests: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    calls: Arc<Mutex<Vec<String>>>,
    /// Open upload sessions: id -> bytes so far.
    uploads: HashMap<String, Vec<u8>>,
}

impl FakeRegistry {
    /// The calls with this method whose path contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let prefix = format!("{method} ");
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.starts_with(&prefix) && c.contains(path))
            .count()
    }

    /// Serves `manifest` (under `tag` and its digest) and `blobs` in
    /// repository `test/img`. `layer` is the digest the blob faults hit.
    pub fn start(
        fault: Fault,
        tag: &str,
        manifest: (&str, Vec<u8>),
        blobs: Vec<(String, Vec<u8>)>,
        layer: &str,
    ) -> Self {
        Self::start_with(fault, tag, manifest, blobs, layer, Vec::new())
    }

    /// Like [`Self::start`], also serving `extra` documents: (path under
    /// `/v2/test/img/`, including any query string; media type; bytes).
    pub fn start_with(
        fault: Fault,
        tag: &str,
        manifest: (&str, Vec<u8>),
        blobs: Vec<(String, Vec<u8>)>,
        layer: &str,
        extra: Vec<(String, String, Vec<u8>)>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mut content = HashMap::new();
        let digest = crate::registry::sha256(&manifest.1);
        let mut manifest_bytes = manifest.1;
        if fault == Fault::HugeManifest {
            // Valid JSON, just huge: pad with whitespace.
            let end = manifest_bytes.len() - 1;
            manifest_bytes.splice(end..end, std::iter::repeat_n(b' ', 5 << 20));
        }
        for r in [tag.to_string(), digest] {
            content.insert(
                format!("manifests/{r}"),
                (manifest.0.to_string(), manifest_bytes.clone()),
            );
        }
        for (d, b) in blobs {
            content.insert(format!("blobs/{d}"), ("application/octet-stream".into(), b));
        }
        for (path, media_type, bytes) in extra {
            content.insert(path, (media_type, bytes));
        }
        let manifest_requests = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(State {
            fault,
            addr: addr.clone(),
            content,
            layer: format!("blobs/{layer}"),
            manifest_requests: manifest_requests.clone(),
            requests: requests.clone(),
            calls: calls.clone(),
            uploads: HashMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &state);
                });
            }
        });
        Self {
            addr,
            stop,
            manifest_requests,
            requests,
            calls,
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    // A TLS ClientHello (the client probing for HTTPS): hang up.
    if reader.fill_buf()?.first() == Some(&0x16) {
        return Ok(());
    }
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    let mut auth = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            auth |= name.eq_ignore_ascii_case("authorization");
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut body = vec![0u8; length];
    std::io::Read::read_exact(&mut reader, &mut body)?;
    let mut out = conn;
    state
        .lock()
        .expect("lock")
        .calls
        .lock()
        .expect("lock")
        .push(format!(
            "{method} {path} ({length} bytes){}",
            if auth { " [auth]" } else { "" }
        ));
    if matches!(method.as_str(), "POST" | "PATCH" | "PUT") {
        return write(&mut out, state, &method, &path, body);
    }
    let (fault, found, layer, counter, addr) = {
        let st = state.lock().expect("lock");
        st.requests.lock().expect("lock").push(path.clone());
        // BlobRedirect's hops serve the blob under /redirect/ and /cdn/.
        let key = match path
            .strip_prefix("/cdn/")
            .or_else(|| path.strip_prefix("/redirect/"))
        {
            Some(digest) => format!("blobs/{digest}"),
            None => path
                .strip_prefix("/v2/test/img/")
                .unwrap_or_default()
                .to_string(),
        };
        (
            st.fault,
            st.content.get(&key).cloned().map(|c| (key, c)),
            st.layer.clone(),
            st.manifest_requests.clone(),
            st.addr.clone(),
        )
    };
    if fault == Fault::Unauthorized {
        return respond(
            &mut out,
            401,
            "application/json",
            b"{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"no\"}]}",
            &method,
        );
    }
    if path == "/v2/" {
        return respond(&mut out, 200, "application/json", b"{}", &method);
    }
    let is_manifest = path.contains("/manifests/");
    if is_manifest {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::NotFound => {
                return respond(&mut out, 404, "application/json", b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}", &method);
            }
            Fault::ServerErrorAlways => {
                return respond(&mut out, 500, "text/plain", b"internal error", &method);
            }
            Fault::ServerErrorOnce if n == 0 => {
                return respond(&mut out, 500, "text/plain", b"internal error", &method);
            }
            Fault::Stall => {
                std::thread::sleep(Duration::from_secs(20));
                return Ok(());
            }
            _ => {}
        }
    }
    let Some((key, (media_type, mut body))) = found else {
        return respond(
            &mut out,
            404,
            "application/json",
            b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"unknown\"}]}",
            &method,
        );
    };
    if key == layer && fault == Fault::BlobRedirect && !path.starts_with("/cdn/") {
        let digest = key.trim_start_matches("blobs/");
        let location = if path.starts_with("/redirect/") {
            let port = addr.rsplit(':').next().unwrap_or_default();
            format!("http://localhost:{port}/cdn/{digest}")
        } else {
            format!("/redirect/{digest}")
        };
        let status = if path.starts_with("/redirect/") {
            302
        } else {
            307
        };
        return respond_with(&mut out, status, &[("Location", location)], b"");
    }
    if key == layer {
        match fault {
            Fault::BlobWrongBytes => {
                let last = body.len() - 1;
                body[last] ^= 0xff;
            }
            Fault::BlobShort => body.truncate(body.len() / 2),
            Fault::BlobLong => body.extend_from_slice(&[0u8; 100]),
            Fault::BlobLongChunked => {
                body.extend_from_slice(&[0u8; 100]);
                return respond_chunked(&mut out, &body);
            }
            _ => {}
        }
    }
    respond(&mut out, 200, &media_type, &body, &method)
}

/// Uploads: `POST blobs/uploads/` opens a session, `PATCH` appends,
/// `PUT ?digest=` closes it (checking the digest); `PUT manifests/<ref>`
/// stores a document.
fn write(
    out: &mut TcpStream,
    state: &Mutex<State>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> std::io::Result<()> {
    let mut st = state.lock().expect("lock");
    let chunks_only = st.fault == Fault::ChunksOnly;
    let Some(rest) = path.strip_prefix("/v2/test/img/") else {
        return respond(out, 404, "application/json", b"{}", method);
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let err =
        |code: &str| format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"{code}\"}}]}}");
    match (method, rest.strip_prefix("blobs/uploads/")) {
        ("POST", Some("")) => {
            let id = format!("s{}", st.uploads.len() + 1);
            st.uploads.insert(id.clone(), Vec::new());
            let mut headers = vec![
                ("Location", format!("/v2/test/img/blobs/uploads/{id}")),
                ("Range", "0-0".to_string()),
            ];
            if chunks_only {
                headers.push(("OCI-Chunk-Min-Length", (1 << 20).to_string()));
            }
            respond_with(out, 202, &headers, b"")
        }
        ("PATCH", Some(id)) if st.uploads.contains_key(id) => {
            if chunks_only && body.len() > CHUNKS_ONLY_MAX {
                return respond_with(out, 416, &[], err("BLOB_UPLOAD_INVALID").as_bytes());
            }
            let buf = st.uploads.get_mut(id).expect("session");
            buf.extend_from_slice(&body);
            let range = format!("0-{}", buf.len().saturating_sub(1));
            let location = format!("/v2/test/img/blobs/uploads/{id}");
            respond_with(out, 202, &[("Location", location), ("Range", range)], b"")
        }
        ("PUT", Some(id)) if st.uploads.contains_key(id) => {
            if chunks_only && !body.is_empty() {
                return respond_with(out, 400, &[], err("BLOB_UPLOAD_INVALID").as_bytes());
            }
            let mut data = st.uploads.remove(id).expect("session");
            data.extend_from_slice(&body);
            let digest = crate::registry::sha256(&data);
            if query.strip_prefix("digest=") != Some(digest.as_str()) {
                return respond_with(out, 400, &[], err("DIGEST_INVALID").as_bytes());
            }
            st.content.insert(
                format!("blobs/{digest}"),
                ("application/octet-stream".into(), data),
            );
            let location = format!("/v2/test/img/blobs/{digest}");
            respond_with(
                out,
                201,
                &[("Location", location), ("Docker-Content-Digest", digest)],
                b"",
            )
        }
        ("PUT", None) if rest.starts_with("manifests/") => {
            let digest = crate::registry::sha256(&body);
            let media_type = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or_default();
            st.content
                .insert(rest.to_string(), (media_type.clone(), body.clone()));
            st.content
                .insert(format!("manifests/{digest}"), (media_type, body));
            respond_with(out, 201, &[("Docker-Content-Digest", digest)], b"")
        }
        _ => respond_with(out, 404, &[], err("BLOB_UPLOAD_UNKNOWN").as_bytes()),
    }
}

fn respond_with(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    method: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()
}

fn respond_chunked(out: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    for chunk in body.chunks(512) {
        write!(out, "{:x}\r\n", chunk.len())?;
        out.write_all(chunk)?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}
