//! Read models: what a run, a phase and the list of runs look like to
//! someone reading them, built from a checkpoint and nothing else.
//!
//! `wfe show`, `wfe status` and `wfe list` render these, and a web page can
//! render the same ones. A view only reads the store: it never writes,
//! prints or decides how anything is laid out on a screen. Where the CLI's
//! `--json` prints a view, the view's `Serialize` is that document.

mod files;
mod fsck;
mod gantt;
mod graph;
mod list;
mod phase;
mod run;

pub(crate) use files::entries as file_entries;
pub use files::{FileEntry, PhaseExport, phase_export, phase_file};
pub use fsck::{FsckReport, Problem, RunCheck, check_run, check_runs};
pub use gantt::{
    AttemptSpan, Bar, Timeline, TimelineRow, attempt_spans, current_span, render_gantt_svg,
    stamp_ms, system_ms, timeline_run,
};
pub use graph::{
    Chip, DEFAULT_COLLAPSE_ABOVE, Edge, GroupInfo, Layout, LayoutOptions, Node, NodeKind,
    STATE_ORDER, count_states, counts_text, escape, expand_href, format_duration, group_state,
    layout_run, matrix_of, phase_href, render_svg, state_class, state_mark,
};
pub use list::{ListFilter, Listing, RunRow, list_all, list_runs};
pub use phase::{AttemptView, LoopSpec, PhaseView, RejectedOutput, artifact};
pub use run::{ClaimView, PhaseCounts, PhaseRow, RunDetail, RunView};

use super::EngineError;

/// Why a view could not be built: a phase, iteration or artifact that is
/// not in the run (the asker's mistake), or the engine failing to read it.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// `CHILD@N` with an `N` that is not a number.
    #[error(
        "`{asked}`: expected CHILD@N with N an iteration number (CHILD@J.K inside a loop in a loop: one per loop, outermost first)"
    )]
    BadIteration {
        /// What was asked for.
        asked: String,
    },
    /// `PHASE@N` for a phase that is not a loop's child.
    #[error("`{phase}` is not inside a loop; `@N` picks an iteration of a loop's child phase")]
    NotInLoop {
        /// The phase.
        phase: String,
    },
    /// A loop's child asked for before its loop ran at all.
    #[error("loop `{parent}` of run {run} has no iteration yet, so `{phase}` has not run")]
    NoIterationYet {
        /// The run.
        run: String,
        /// The loop.
        parent: String,
        /// The child asked for.
        phase: String,
    },
    /// A loop's child in an iteration the loop has not reached.
    #[error(
        "loop `{parent}` of run {run} has iterations 1 to {ran}; there is no `{phase}@{asked}`"
    )]
    NoSuchIteration {
        /// The run.
        run: String,
        /// The loop.
        parent: String,
        /// The child asked for.
        phase: String,
        /// The iterations the loop has run.
        ran: u32,
        /// The iteration asked for (`2.3` inside a nested loop).
        asked: String,
    },
    /// A loop's iteration without a state for one of its children.
    #[error("run {run} has no phase `{phase}`")]
    NoSuchChild {
        /// The run.
        run: String,
        /// The child asked for.
        phase: String,
    },
    /// The phase has no artifact of that name (yet).
    #[error("phase `{phase}` of run {run} has no artifact `{name}`; it has: {}", if .have.is_empty() { "none".to_string() } else { .have.join(", ") })]
    NoSuchArtifact {
        /// The run.
        run: String,
        /// The phase.
        phase: String,
        /// The artifact asked for.
        name: String,
        /// The artifacts it has.
        have: Vec<String>,
    },
    /// The phase has no file artifact of that name (or the name is an
    /// output that kept several files).
    #[error("phase `{phase}` of run {run} has no file artifact `{name}`; {}", if .have.is_empty() { "it has none".to_string() } else { format!("it has: {}", .have.join(", ")) })]
    NoSuchFile {
        /// The run.
        run: String,
        /// The phase.
        phase: String,
        /// The file asked for.
        name: String,
        /// The files it has (those under `name`, when it names a directory).
        have: Vec<String>,
    },
    /// Reading the run failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ViewError {
    fn from(e: crate::store::StoreError) -> Self {
        ViewError::Engine(e.into())
    }
}

#[cfg(test)]
mod testing;
