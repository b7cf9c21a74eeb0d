use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(wfe::cli::run())
}
