//! The dispatcher benchmark (benches/dispatcher.sh runs it in the VM; it is
//! not a guest_ test, so CI's VM run leaves it out).
//!
//! Per-packet cost by BPF_PROG_TEST_RUN of whatever is on each hook: the
//! program alone, our chains of 1, 2, 5 and 10 programs, and libxdp's
//! (xdp-loader) with the same object, each on its own veth so that every
//! chain exists at once and the rows can be interleaved: each round
//! measures every row once, in a rotated order, and a row's figure is the
//! median of its rounds, printed with its spread. Then the time to add the
//! 2nd, 5th and 10th program, ours and xdp-loader's, interleaved the same
//! way (the last program leaves the chain and is added again). Before and
//! after measuring, each chain is checked to hold the number of programs
//! its row names (our `list`, `xdp-loader status`), and what is on its hook
//! (the program itself or a dispatcher) is printed beside the figure.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::kernel::{Host, guest, ip};
use crate::support::testdata;

const SIZES: [usize; 4] = [1, 2, 5, 10];
/// The chain sizes whose last addition is timed.
const ADDS: [usize; 3] = [2, 5, 10];

/// `bpftool prog run` of a pinned program or an id on a frame, `repeat`
/// times: the kernel's average ns per run.
fn ns_per_packet(prog: &[&str], frame: &Path, repeat: u32) -> f64 {
    let out = Command::new("bpftool")
        .args(["prog", "run"])
        .args(prog)
        .arg("data_in")
        .arg(frame)
        .args(["repeat", &repeat.to_string()])
        .output()
        .expect("bpftool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bpftool prog run {prog:?}: {text}");
    text.split("duration (average):")
        .nth(1)
        .and_then(|r| r.trim().split("ns").next())
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no duration in: {text}"))
}

/// The id and name of the XDP program on an interface's hook.
fn on_hook(iface: &str) -> (u64, String) {
    let show = Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", iface])
        .output()
        .expect("ip");
    let v: Value = serde_json::from_slice(&show.stdout).expect("json");
    let id = v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {v}"));
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output()
        .expect("bpftool");
    let p: Value = serde_json::from_slice(&out.stdout).expect("json");
    (id, p["name"].as_str().unwrap_or("?").to_string())
}

/// A veth whose end `name` is up (its peer is `<name>p`).
fn veth(name: &str) {
    let peer = format!("{name}p");
    ip(&[
        "link", "add", "name", name, "type", "veth", "peer", "name", &peer,
    ]);
    ip(&["link", "set", "dev", name, "up"]);
    ip(&["link", "set", "dev", &peer, "up"]);
}

fn xdp_loader(args: &[&str]) -> String {
    let out = Command::new("xdp-loader")
        .args(args)
        .output()
        .expect("xdp-loader");
    assert!(
        out.status.success(),
        "xdp-loader {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids of the programs in libxdp's chain on `iface`, in run order,
/// from `xdp-loader status` (the `=>` lines under the dispatcher).
fn libxdp_chain(iface: &str) -> Vec<u64> {
    xdp_loader(&["status", iface])
        .lines()
        .filter(|l| l.trim_start().starts_with("=>"))
        // `=> PRIO NAME ID TAG ACTIONS`
        .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
        .collect()
}

/// Our link ids on `iface`, from `list`.
fn our_chain(host: &Host, iface: &str) -> Vec<u64> {
    host.listed()
        .iter()
        .flat_map(|r| r["links"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["attachment"]["interface"] == iface)
        .filter_map(|l| l["id"].as_u64())
        .collect()
}

/// Median and spread (min, max) of some samples.
fn summary(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

/// One benchmark row: what it measures and its samples.
struct Row {
    name: String,
    iface: Option<String>,
    /// The number of programs the chain must hold (ours or libxdp's).
    programs: usize,
    libxdp: bool,
    samples: Vec<f64>,
}

impl Row {
    fn new(name: String, iface: Option<String>, programs: usize, libxdp: bool) -> Self {
        Self {
            name,
            iface,
            programs,
            libxdp,
            samples: Vec::new(),
        }
    }
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: benches/dispatcher.sh runs it inside the VM"]
fn vmbench_dispatcher_per_packet() {
    let Some(host) = guest("vmbench_dispatcher_per_packet") else {
        return;
    };
    let rounds = env_or("BENCH_ROUNDS", 5) as usize;
    let add_rounds = env_or("BENCH_ADD_ROUNDS", 3) as usize;
    let repeat = env_or("BENCH_REPEAT", 100_000);
    assert!(
        Path::new("/usr/sbin/xdp-loader").exists(),
        "the benchmark compares with libxdp: install xdp-tools"
    );
    let frame = host.dir.path().join("frame");
    let mut pkt = vec![0u8; 64];
    pkt[12] = 0x08; // an IPv4 ethertype; xdp_pass does not look further
    fs::write(&frame, &pkt).expect("frame");
    let obj = testdata("bpf/xdp_pass.bpfel.o").display().to_string();

    // The program alone, loaded but attached nowhere: the baseline.
    let bare = host.load_file("xdp_pass.bpfel.o", &[]);
    let bare_pin = bare[0]["pin"].as_str().expect("pin").to_string();
    let mut rows = vec![Row::new("program alone (baseline)".into(), None, 1, false)];
    // Ours: a chain of n on bo<n>, built one attach at a time.
    let mut ours = Vec::new();
    for n in SIZES {
        let iface = format!("bo{n}");
        veth(&iface);
        let mut progs = Vec::new();
        for i in 0..n {
            let p = host.load_file("xdp_pass.bpfel.o", &[]);
            host.attach(
                &p[0]["id"],
                &["xdp", "--iface", &iface, "--priority", &i.to_string()],
            );
            progs.push(p);
        }
        ours.push(progs);
        rows.push(Row::new(format!("bpfman-load, {n}"), Some(iface), n, false));
    }
    // libxdp's: the same object, one xdp-loader load at a time on bl<n>.
    for n in SIZES {
        let iface = format!("bl{n}");
        veth(&iface);
        for _ in 0..n {
            xdp_loader(&["load", &iface, &obj]);
        }
        rows.push(Row::new(format!("libxdp, {n}"), Some(iface), n, true));
    }
    let check = |rows: &[Row]| {
        for r in rows {
            let Some(iface) = &r.iface else { continue };
            let held = if r.libxdp {
                libxdp_chain(iface).len()
            } else {
                our_chain(&host, iface).len()
            };
            // libxdp may put a lone program on the hook without its
            // dispatcher; then status lists no chain.
            let lone_libxdp = r.libxdp && held == 0 && r.programs == 1;
            assert!(
                held == r.programs || lone_libxdp,
                "{}: the chain on {iface} holds {held} programs, not {}",
                r.name,
                r.programs
            );
        }
    };
    check(&rows);

    // Per packet: every round measures every row, in a rotated order.
    let targets: Vec<(String, String)> = rows
        .iter()
        .map(|r| match &r.iface {
            None => ("pinned".to_string(), bare_pin.clone()),
            Some(iface) => ("id".to_string(), on_hook(iface).0.to_string()),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..rows.len() {
            let i = (k + round) % rows.len();
            let (how, what) = &targets[i];
            let ns = ns_per_packet(&[how, what], &frame, repeat);
            rows[i].samples.push(ns);
        }
    }
    check(&rows);

    // Adding the nth program: the last one leaves and comes back, timed,
    // ours and xdp-loader's in turn.
    let mut adds: Vec<Row> = ADDS
        .iter()
        .flat_map(|&n| {
            [
                Row::new(
                    format!("bpfman-load attach, {n}"),
                    Some(format!("bo{n}")),
                    n,
                    false,
                ),
                Row::new(
                    format!("xdp-loader load, {n}"),
                    Some(format!("bl{n}")),
                    n,
                    true,
                ),
            ]
        })
        .collect();
    for round in 0..add_rounds {
        for k in 0..adds.len() {
            let i = (k + round) % adds.len();
            let n = adds[i].programs;
            let iface = adds[i].iface.clone().expect("iface");
            let ms = if adds[i].libxdp {
                let chain = libxdp_chain(&iface);
                let last = chain.last().expect("a program").to_string();
                xdp_loader(&["unload", &iface, "--id", &last]);
                assert_eq!(libxdp_chain(&iface).len(), n - 1);
                let started = Instant::now();
                xdp_loader(&["load", &iface, &obj]);
                started.elapsed().as_secs_f64() * 1000.0
            } else {
                let s = SIZES.iter().position(|&x| x == n).expect("size");
                let last = &ours[s][n - 1];
                let got = host
                    .run(&["get", &last[0]["id"].to_string(), "--output", "json"])
                    .ok();
                let v: Value = serde_json::from_str(&got.stdout).expect("json");
                let link = v["links"][0]["id"].as_u64().expect("its link").to_string();
                host.run(&["detach", &link]).ok();
                assert_eq!(our_chain(&host, &iface).len(), n - 1);
                let started = Instant::now();
                host.attach(
                    &last[0]["id"],
                    &["xdp", "--iface", &iface, "--priority", &(n - 1).to_string()],
                );
                started.elapsed().as_secs_f64() * 1000.0
            };
            adds[i].samples.push(ms);
        }
    }
    check(&adds);

    let base = summary(&rows[0].samples).0;
    println!(
        "\nBENCH {:<34} {:>9} {:>17} {:>7}  on the hook",
        "per packet, BPF_PROG_TEST_RUN", "median ns", "spread (min-max)", "ratio"
    );
    for r in &rows {
        let (m, lo, hi) = summary(&r.samples);
        let hook = r
            .iface
            .as_deref()
            .map_or_else(|| "(not attached)".to_string(), |i| on_hook(i).1);
        println!(
            "BENCH {:<34} {m:>9.1} {:>17} {:>6.2}x  {hook}",
            r.name,
            format!("{lo:.1}-{hi:.1}"),
            m / base
        );
    }
    // What each slot past the second costs: (10 - 2) / 8.
    let per_slot = |first: usize| {
        let m = |i: usize| summary(&rows[i].samples).0;
        (m(first + 3) - m(first + 1)) / 8.0
    };
    println!(
        "BENCH {:<34} {:>9.1} ns (libxdp's: {:.1} ns)",
        "each slot past the 2nd, ours",
        per_slot(1),
        per_slot(1 + SIZES.len())
    );
    println!(
        "BENCH {:<34} {:>9} {:>17} {:>7}",
        "adding the nth program", "median ms", "spread (min-max)", "ratio"
    );
    for pair in adds.chunks(2) {
        let theirs = summary(&pair[1].samples).0;
        for r in pair {
            let (m, lo, hi) = summary(&r.samples);
            println!(
                "BENCH {:<34} {m:>9.1} {:>17} {:>6.2}x",
                r.name,
                format!("{lo:.0}-{hi:.0}"),
                m / theirs
            );
        }
    }
    println!(
        "BENCH {rounds} rounds x {repeat} runs per row, {add_rounds} rounds of adds, interleaved; \
         in a TCG VM: compare ratios, not absolute numbers"
    );

    for n in SIZES {
        xdp_loader(&["unload", &format!("bl{n}"), "--all"]);
    }
    host.unload(ours.iter().flatten().flatten().chain(&bare));
    host.assert_clean();
}
