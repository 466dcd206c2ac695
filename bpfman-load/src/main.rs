fn main() -> std::process::ExitCode {
    bpfman_load::cli::main()
}
