//! Phase executors: run one attempt of one phase and report what happened.
//!
//! An executor gets everything already resolved (rendered command, paths,
//! environment, compiled output schemas) and returns an [`AttemptOutcome`];
//! it never touches the store. The engine decides what the outcome means
//! for the run (retry, fail, go on) and records it.

mod outcome;
pub(crate) mod process_group;
mod script;

pub use outcome::{
    ArtifactProblem, AttemptError, AttemptOutcome, AttemptUsage, LogLine, LogSink, Stream,
};
pub use script::{OutputSpec, ScriptJob, run_script};
pub(crate) use script::{cancelled, deadline};
