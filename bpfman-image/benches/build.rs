//! Build benchmark: the time to build images from every committed object
//! (and a multi-arch index), beside the time of the work a build cannot
//! avoid, gzip + sha256 of the same object bytes in process.
//!
//! Run with `cargo bench -p bpfman-image`. Prints medians and their ratio;
//! asserts nothing (machines are shared and noisy).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bpfman_image::builder::{BuildOptions, ObjectArg, build};
use bpfman_image::layout::write_image;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

const ROUNDS: usize = 30;

fn objects() -> Vec<Vec<ObjectArg>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/bpf");
    let mut sets = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/bpf")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".bpfel.o"))
        .collect();
    names.sort();
    for el in names {
        let eb = PathBuf::from(el.to_string_lossy().replace(".bpfel.o", ".bpfeb.o"));
        sets.push(vec![ObjectArg {
            arch: None,
            path: el.clone(),
        }]);
        sets.push(vec![
            ObjectArg {
                arch: Some("amd64".parse().expect("arch")),
                path: el,
            },
            ObjectArg {
                arch: Some("s390x".parse().expect("arch")),
                path: eb,
            },
        ]);
    }
    sets
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let sets = objects();
    let bytes: Vec<Vec<u8>> = sets
        .iter()
        .flatten()
        .map(|o| std::fs::read(&o.path).expect("object"))
        .collect();
    let total: usize = bytes.iter().map(Vec::len).sum();

    // The unavoidable work: compress each object as the layer does, and hash
    // both the compressed and uncompressed bytes.
    let baseline = time(|| {
        for b in &bytes {
            let mut gz = GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), Compression::best());
            gz.write_all(b).expect("gzip");
            let blob = gz.finish().expect("gzip");
            black_box(Sha256::digest(&blob));
            black_box(Sha256::digest(b));
        }
    });

    let opts: Vec<BuildOptions> = sets
        .iter()
        .map(|objects| BuildOptions {
            objects: objects.clone(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            epoch: 0,
            force_index: false,
        })
        .collect();
    let in_memory = time(|| {
        for o in &opts {
            black_box(build(o).expect("build"));
        }
    });

    let tmp = tempfile::tempdir().expect("tmp");
    let mut n = 0u64;
    let to_layout = time(|| {
        for o in &opts {
            let built = build(o).expect("build");
            n += 1;
            let dir = tmp.path().join(format!("l{n}"));
            write_image(&dir, "bench", &built.top, &built.blobs(), false).expect("write");
        }
    });

    println!(
        "build benchmark: {} images from {} objects ({} KiB), median of {ROUNDS} rounds",
        sets.len(),
        bytes.len(),
        total / 1024
    );
    println!("  baseline gzip+sha256 in process : {baseline:>10.2?}");
    println!(
        "  build in memory                 : {in_memory:>10.2?}  ({:.2}x baseline)",
        in_memory.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  build + write OCI layout (fsync): {to_layout:>10.2?}  ({:.2}x baseline)",
        to_layout.as_secs_f64() / baseline.as_secs_f64()
    );
}
