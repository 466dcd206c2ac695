//! The tests' own build of the `bpfman-load` command, from the same code as
//! the real binary, so `cargo test -p bpfman-tests` can never run a stale one.

fn main() -> std::process::ExitCode {
    bpfman_load::cli::main()
}
