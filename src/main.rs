//! The `wfe` binary: build the runtime, run the CLI, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(wfe::cli::run()),
        Err(e) => wfe::cli::runtime_failed(&e),
    }
}
