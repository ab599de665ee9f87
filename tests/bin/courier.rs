//! The `courier` command line built inside the test package, so that the integration tests
//! can run the real binary (`CARGO_BIN_EXE_courier-under-test`): a dependency's binaries are
//! not built for another package's tests.

fn main() -> std::process::ExitCode {
    courier::cli::main()
}
