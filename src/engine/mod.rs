//! The engine: a state machine over the DAG that turns every transition
//! into one checkpoint.
//!
//! One runner drives a run: it alone commits to the run's ref (phases run
//! as tasks and report back over a channel), so parallel phases never race
//! on the ref. Transitions that happen together (a phase completing and the
//! phases it unblocks starting) fold into one checkpoint. The engine never
//! prints: it reports through an [`Observer`].

pub mod compare;
pub mod control;
mod dag;
mod error;
pub mod layout;
pub mod manual;
mod observer;
mod record;
pub mod recovery;
mod runner;
mod seats;
mod snapshot;
#[cfg(test)]
mod testing;
pub mod view;

pub use crate::agent::ToolCall;
pub use dag::Dag;
pub use error::EngineError;
pub use observer::{Event, Observer};
pub use record::{Comment, PhaseState, PhaseStatus, RunRecord, RunStatus, to_file_bytes};
pub use runner::{NewRun, Settings, create, drive, ensure_runnable, resumable};
pub use seats::{REVIEW_SCHEMA, SeatRole, Seats};
pub use snapshot::RunSnapshot;
