fn main() -> std::process::ExitCode {
    postwarden_agent::cli::main()
}
