//! The `courier` binary: everything lives in the library (`courier::cli`); this only starts it.

use std::process::ExitCode;

fn main() -> ExitCode {
    courier::cli::main()
}
