//! The command line: the only layer that prints or reads the environment.

/// Runs the CLI and returns the process exit code.
pub fn run() -> u8 {
    0
}
