//! Phase executors: run one attempt of one phase and report what happened.
//!
//! An executor gets everything already resolved (rendered command, paths,
//! environment, compiled output schemas) and returns an
//! [`AttemptOutcome`](crate::attempt::AttemptOutcome); it never touches the
//! store. The engine decides what the outcome means for the run (retry,
//! fail, go on) and records it. Processes are run by [`crate::process`];
//! the outcome types live in [`crate::attempt`], so `agent` never needs
//! this module (the two never import each other).

mod files;
mod script;

pub use files::{DEFAULT_MAX_FILES_BYTES, FilesJob};
pub use script::{ScriptJob, run_script};
