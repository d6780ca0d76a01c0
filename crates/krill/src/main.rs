//! The `krill` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    krill::cli::main()
}
