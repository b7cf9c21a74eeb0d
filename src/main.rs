//! The `wfe` binary: run the CLI, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    wfe::cli::main()
}
