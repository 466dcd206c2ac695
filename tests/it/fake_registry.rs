//! An in-process adversarial registry: serves one image read-only over plain
//! HTTP on 127.0.0.1, misbehaving in one chosen way. Only for fault
//! injection; everything else runs against the real `docker-registry`.

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
}

/// A running fake registry; stops when dropped.
#[derive(Debug)]
pub struct FakeRegistry {
    pub addr: String,
    stop: Arc<AtomicBool>,
    pub manifest_requests: Arc<AtomicUsize>,
    /// Every request line's path, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
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
    /// Path suffix (`manifests/<ref>` or `blobs/<digest>`) -> (type, bytes).
    content: HashMap<String, (String, Vec<u8>)>,
    layer: String,
    manifest_requests: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeRegistry {
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
        let state = Arc::new(Mutex::new(State {
            fault,
            content,
            layer: format!("blobs/{layer}"),
            manifest_requests: manifest_requests.clone(),
            requests: requests.clone(),
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
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut out = conn;
    let (fault, found, layer, counter) = {
        let st = state.lock().expect("lock");
        st.requests.lock().expect("lock").push(path.clone());
        let key = path
            .strip_prefix("/v2/test/img/")
            .unwrap_or_default()
            .to_string();
        (
            st.fault,
            st.content.get(&key).cloned().map(|c| (key, c)),
            st.layer.clone(),
            st.manifest_requests.clone(),
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
