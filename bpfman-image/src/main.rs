//! `bpfman-image`: package eBPF objects as OCI images.

fn main() -> std::process::ExitCode {
    bpfman_image::cli::main()
}
