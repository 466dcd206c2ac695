//! Sharing an XDP hook with Debian's xdp-loader (libxdp 1.3.1, dispatcher
//! v2), both ways, in the VM (the host kernel refuses freplace): theirs
//! then ours, ours then theirs, adds and removes from both sides
//! interleaved under a continuous ping, priorities interleaving across
//! the tools, a program removed by the other tool, and the interface
//! clean after the last program leaves.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::kernel::{Host, Netns, counter, guest};
use crate::support::skip;

/// Runs xdp-loader in the namespace of `ns`, with libxdp's pins in the
/// test's bpffs (`ip netns exec` remounts /sys, so /sys/fs/bpf would be
/// another, empty bpffs there).
fn xdp_loader(host: &Host, ns: &Netns, args: &[&str]) -> String {
    let bpffs = host.bpf.path().display().to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "env"])
        .arg(format!("LIBXDP_BPFFS={bpffs}"))
        .arg("xdp-loader")
        .args(args)
        .output()
        .expect("xdp-loader");
    assert!(
        out.status.success(),
        "xdp-loader {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `xdp-loader load -P PRIO veth1 OBJECT`; returns the new program's id
/// (the one in the chain that was not there before).
fn their_load(host: &Host, ns: &Netns, prio: u32, object: &str) -> u64 {
    let before = chain(host, ns);
    let path = crate::support::testdata(&format!("bpf/{object}"))
        .display()
        .to_string();
    xdp_loader(host, ns, &["load", "-P", &prio.to_string(), "veth1", &path]);
    let after = chain(host, ns);
    let new: Vec<u64> = after.into_iter().filter(|i| !before.contains(i)).collect();
    assert_eq!(new.len(), 1, "xdp-loader added one program");
    new[0]
}

/// The (id, priority) of each program in libxdp's chain on veth1, in run
/// order, as `xdp-loader status` shows them.
fn status(host: &Host, ns: &Netns) -> Vec<(u64, u64)> {
    xdp_loader(host, ns, &["status", "veth1"])
        .lines()
        .filter(|l| l.trim_start().starts_with("=>"))
        // `=> PRIO NAME ID TAG ACTIONS`
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let prio = w.next()?.parse().ok()?;
            let id = w.nth(1)?.parse().ok()?;
            Some((id, prio))
        })
        .collect()
}

fn chain(host: &Host, ns: &Netns) -> Vec<u64> {
    status(host, ns).into_iter().map(|(id, _)| id).collect()
}

/// Our bpfman-load, with libxdp's directory where xdp-loader has it.
fn ours(host: &Host, args: &[&str]) -> crate::support::Run {
    let bpffs = host.bpf.path().display().to_string();
    host.run_env(args, &[("LIBXDP_BPFFS", bpffs.as_str())])
}

/// Attaches our program `rec` to veth1 at `prio`; returns the link id
/// (its extension's id, which xdp-loader shows too).
fn our_attach(host: &Host, ns: &Netns, rec: &[Value], prio: u32, extra: &[&str]) -> u64 {
    let id = rec[0]["id"].to_string();
    let p = prio.to_string();
    let mut args = vec![
        "attach",
        id.as_str(),
        "xdp",
        "--iface",
        "veth1",
        "--netns",
        ns.name.as_str(),
        "--priority",
        p.as_str(),
    ];
    args.extend_from_slice(extra);
    let out = ours(host, &args).ok();
    out.stdout.trim().parse().expect("link id")
}

fn stats(rec: &[Value]) -> u64 {
    counter(&Host::map_pin(&rec[0], "xdp_stats_map"))
}

/// No XDP program on veth1 and no libxdp pins left.
fn assert_hook_clean(host: &Host, ns: &Netns) {
    let link = ns.link_show("veth1");
    assert!(!link.contains("prog/xdp"), "{link}");
    let dir = host.bpf.path().join("xdp");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "libxdp pins left: {left:?}");
}

fn have_xdp_loader(test: &str) -> bool {
    // xdp-loader has no --version of its own (`xdp-loader load --version`).
    (Path::new("/usr/sbin/xdp-loader").exists()
        && Path::new("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o").exists())
        || skip(
            test,
            "xdp-loader is not installed (apt-get install xdp-tools)",
        )
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_libxdp_theirs_then_ours_interleaved_under_ping() {
    let test = "guest_libxdp_theirs_then_ours_interleaved_under_ping";
    let Some(host) = guest(test) else { return };
    if !have_xdp_loader(test) {
        return;
    }
    let ns = Netns::new("glx", 21);
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    let b = host.load_file("xdp_counter.bpfel.o", &[]);

    // All of it under one continuous ping: every program passes, so no
    // request may be lost at any step, whichever tool makes it.
    let (sent, received, stat) = ns.ping_during("0.02", || {
        // Theirs first: xdp-loader makes the dispatcher; we join it.
        let t10 = their_load(&host, &ns, 10, "xdp_pass.bpfel.o");
        let a20 = our_attach(&host, &ns, &a, 20, &[]);
        assert_eq!(status(&host, &ns), vec![(t10, 10), (a20, 20)]);
        let got = ours(&host, &["get", &a[0]["id"].to_string()]).ok();
        assert!(got.stdout.contains("libxdp"), "{}", got.stdout);
        let before = stats(&a);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(stats(&a) > before, "ours runs behind theirs");

        // Priorities interleave across the tools, whoever adds.
        let mut t30 = their_load(&host, &ns, 30, "xdp_pass.bpfel.o");
        let mut b5 = our_attach(&host, &ns, &b, 5, &[]);
        assert_eq!(
            status(&host, &ns),
            vec![(b5, 5), (t10, 10), (a20, 20), (t30, 30)]
        );

        // Adds and removes from both sides, interleaved: each round takes
        // one of theirs and one of ours out, puts others in at priorities
        // between the rest, and ends with the chain it began with.
        for round in 0..3 {
            xdp_loader(&host, &ns, &["unload", "veth1", "--id", &t30.to_string()]);
            ours(&host, &["detach", &b5.to_string()]).ok();
            let t15 = their_load(&host, &ns, 15, "xdp_pass.bpfel.o");
            let b25 = our_attach(&host, &ns, &b, 25, &[]);
            assert_eq!(
                status(&host, &ns),
                vec![(t10, 10), (t15, 15), (a20, 20), (b25, 25)],
                "round {round}"
            );
            xdp_loader(&host, &ns, &["unload", "veth1", "--id", &t15.to_string()]);
            ours(&host, &["detach", &b25.to_string()]).ok();
            assert_eq!(chain(&host, &ns), vec![t10, a20], "round {round}");
            t30 = their_load(&host, &ns, 30, "xdp_pass.bpfel.o");
            b5 = our_attach(&host, &ns, &b, 5, &[]);
            assert_eq!(chain(&host, &ns), vec![b5, t10, a20, t30], "round {round}");
        }

        // xdp-loader removes one of ours: noticed and reported, not undone.
        xdp_loader(&host, &ns, &["unload", "veth1", "--id", &b5.to_string()]);
        let listed = ours(&host, &["list", "--output", "json"]).ok();
        assert!(
            listed.stderr.contains("no longer in the libxdp dispatcher"),
            "{}",
            listed.stderr
        );
        assert_eq!(chain(&host, &ns), vec![t10, a20, t30], "not put back");
        let b_rec = ours(&host, &["get", &b[0]["id"].to_string()]).ok();
        assert!(!b_rec.stdout.contains("libxdp"), "{}", b_rec.stdout);

        // Ours leaves; theirs keep running; the last out leaves it clean.
        ours(&host, &["detach", &a20.to_string()]).ok();
        assert_eq!(status(&host, &ns), vec![(t10, 10), (t30, 30)]);
        xdp_loader(&host, &ns, &["unload", "veth1", "--all"]);
        assert_hook_clean(&host, &ns);
    });
    assert!(sent > 0);
    assert_eq!(received, sent, "the changes lost packets: {stat}");
    host.unload(a.iter().chain(&b));
    host.assert_clean();
}

#[test]
#[ignore = "guest: runs inside the VM tier (vm::guest_tests_pass_on_linux_*)"]
fn guest_libxdp_ours_then_theirs() {
    let test = "guest_libxdp_ours_then_theirs";
    let Some(host) = guest(test) else { return };
    if !have_xdp_loader(test) {
        return;
    }
    let ns = Netns::new("glo", 22);
    let a = host.load_file("xdp_counter.bpfel.o", &[]);
    let b = host.load_file("xdp_counter.bpfel.o", &["--global", "verdict=01000000"]);

    // Ours first, in libxdp's layout: xdp-loader sees a dispatcher with
    // our program in it (a lone program still gets one here).
    let a20 = our_attach(&host, &ns, &a, 20, &["--libxdp"]);
    assert_eq!(status(&host, &ns), vec![(a20, 20)]);
    assert!(ns.ping(2));

    // Theirs join beside ours, before and after it.
    let t10 = their_load(&host, &ns, 10, "xdp_pass.bpfel.o");
    let t30 = their_load(&host, &ns, 30, "xdp_pass.bpfel.o");
    assert_eq!(status(&host, &ns), vec![(t10, 10), (a20, 20), (t30, 30)]);
    let before = stats(&a);
    assert!(ns.ping(3));
    assert!(stats(&a) >= before + 3);

    // Our dropping program at 25 stops the chain before theirs at 30 only
    // if it says so: it proceeds on pass (its default), and it drops.
    let b25 = our_attach(&host, &ns, &b, 25, &[]);
    assert_eq!(chain(&host, &ns), vec![t10, a20, b25, t30]);
    assert!(!ns.ping(2), "b drops");
    ours(&host, &["detach", &b25.to_string()]).ok();
    assert!(ns.ping(2));

    // xdp-loader takes theirs away again; ours stays in its slot.
    xdp_loader(&host, &ns, &["unload", "veth1", "--id", &t10.to_string()]);
    xdp_loader(&host, &ns, &["unload", "veth1", "--id", &t30.to_string()]);
    assert_eq!(status(&host, &ns), vec![(a20, 20)]);
    let before = stats(&a);
    assert!(ns.ping(2));
    assert!(stats(&a) >= before + 2);

    // Ours is the last out: the interface is left clean.
    ours(&host, &["detach", &a20.to_string()]).ok();
    assert_hook_clean(&host, &ns);
    host.unload(a.iter().chain(&b));
    host.assert_clean();
}
