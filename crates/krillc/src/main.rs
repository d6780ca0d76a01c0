//! The `krillc` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    krillc::cli::main()
}
