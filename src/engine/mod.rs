//! The engine: a state machine over the DAG that turns every transition
//! into one checkpoint.
//!
//! One runner drives a run: it alone commits to the run's ref (phases run
//! as tasks and report back over a channel), so parallel phases never race
//! on the ref. Transitions that happen together (a phase completing and the
//! phases it unblocks starting) fold into one checkpoint. The engine never
//! prints: it reports through an [`Observer`].
//!
//! Layout, one concept per file:
//!
//! - [`PhaseState`] (`phase_state.rs`): a phase's `state.json` and the one
//!   state machine over its status ([`Transition`]); nothing else sets a
//!   phase's status. `record.rs` holds `run.json` ([`RunRecord`]) and
//!   comments; `reason.rs` the typed reasons a run stops or waits for
//!   ([`StopReason`]) and an operation is refused for ([`Refusal`]).
//! - `runner/`: the live runner. `mod.rs` holds its state and drive loop;
//!   `create` (a run's first checkpoint), `schedule` (what may start),
//!   `launch` (resolving a phase into a job and running its attempts
//!   through an executor), `finish` (recording an attempt, the run's end),
//!   `requests` (control requests), `checkpoint` (folding transitions into
//!   one commit), `iteration` (loops) and `agent` (agent phases).
//! - [`operations`]: what a person does to a run outside its runner, one
//!   file per operation as `cli/commands/` has one per command (pause,
//!   cancel, approve, continue, auto, comment, accept, edit, retry, skip,
//!   rollback, undo). Approving and cancelling use the same functions as
//!   the runner.
//! - [`control`]: the request files a live runner listens to; `snapshot`,
//!   `compare`, [`layout`] (the checkpoint tree's paths), `dag`, `seats`,
//!   `observer`, `error`.

pub mod compare;
pub mod control;
mod dag;
mod error;
mod executor;
pub mod layout;
pub mod live;
mod message;
mod observer;
pub mod operations;
mod phase_state;
mod reason;
mod record;
mod runner;
mod seats;
mod snapshot;
#[cfg(test)]
mod testing;
pub mod view;
pub mod worker;

pub use crate::agent::ToolCall;
pub use dag::Dag;
pub use error::EngineError;
pub use executor::{Executor, System};
pub use message::{CheckpointEvent, CheckpointMessage, Noted};
pub use observer::{Event, Observer};
pub use phase_state::{
    AttemptModel, Failure, IllegalTransition, PhaseState, PhaseStatus, Transition,
};
pub use reason::{Refusal, StopReason, Unrunnable};
pub use record::{Comment, RunRecord, RunStatus, to_file_bytes};
pub use runner::{
    DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_KILL_GRACE, NewRun, Settings, create, drive, drive_with,
    end_leftovers, ensure_runnable, longest_kill_grace, ready_phases, resumable, settled,
};
pub use seats::{
    DEFAULT_REVIEWER_ROLE, REVIEW_SCHEMA, SeatRequest, SeatRole, Seats, pending_seat_requests,
    retry_seat_requests, seat_requests,
};
pub use snapshot::RunSnapshot;
