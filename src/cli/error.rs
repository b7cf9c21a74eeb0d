//! The CLI's error: a sentence for the user, the causes, a hint, and the
//! kind that picks the exit code. Library errors are converted here and
//! nowhere else, and [`exit_code`] is the only place exit codes are spelt.

use std::process::ExitCode;

use crate::artifact::ArtifactError;
use crate::engine::compare::CompareError;
use crate::engine::view::ViewError;
use crate::engine::{EngineError, Refusal, RunStatus};
use crate::index::IndexError;
use crate::provider::registry::SeatProblem;
use crate::store::StoreError;
use crate::template::{ArgsError, TemplateError};

/// What went wrong, as far as the exit code is concerned (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input (usage, template, args, schema, config, unknown run);
    /// nothing was written.
    Input,
    /// The run failed, or the work the command was asked to do did.
    Failed,
    /// The run stopped before the end: paused, waiting for an approval,
    /// cancelled, interrupted.
    Stopped,
    /// Another process got in the way: the run changed under this writer,
    /// or something it needed was busy.
    Conflict,
    /// Something broke that the user did not ask for: I/O, git, a
    /// checkpoint wfe cannot read.
    Internal,
}

/// How a command ended when it returned normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it was asked, or the run completed.
    Success,
    /// It ended without success, and has said why on its own terms (a run
    /// that failed or stopped, a diff with differences, templates that do
    /// not validate): no `error:` line follows.
    Reported(ErrorKind),
}

impl From<RunStatus> for Outcome {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Completed => Outcome::Success,
            RunStatus::Failed => Outcome::Reported(ErrorKind::Failed),
            RunStatus::Pending
            | RunStatus::Running
            | RunStatus::Paused
            | RunStatus::Waiting
            | RunStatus::Cancelled => Outcome::Reported(ErrorKind::Stopped),
        }
    }
}

/// The process's exit code for how the command ended.
pub fn exit_code(outcome: Outcome) -> ExitCode {
    ExitCode::from(code(outcome))
}

/// The exit code as a number: 0 success or the run completed; 1 the run
/// failed, or a conflict or internal error; 2 bad input; 3 the run stopped.
fn code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => 0,
        Outcome::Reported(kind) => match kind {
            ErrorKind::Failed | ErrorKind::Conflict | ErrorKind::Internal => 1,
            ErrorKind::Input => 2,
            ErrorKind::Stopped => 3,
        },
    }
}

/// An error as the user sees it.
#[derive(Debug)]
pub struct CliError {
    /// What kind of error it is; it picks the exit code.
    pub kind: ErrorKind,
    /// The main message (may span lines, e.g. a list of template problems).
    pub message: String,
    /// The chain of causes, outermost first.
    pub causes: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }

    /// Bad input: nothing was written.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }

    /// The work the command was asked to do failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// Another process got in the way.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Something broke that the user did not ask for.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// How the command ended, once this error has been printed.
    pub fn outcome(&self) -> Outcome {
        Outcome::Reported(self.kind)
    }

    /// Adds the source chain of `error` as causes.
    fn with_sources(mut self, error: &dyn std::error::Error) -> Self {
        let mut next = error.source();
        while let Some(e) = next {
            self.causes.push(e.to_string());
            next = e.source();
        }
        self
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        let base = match &e {
            StoreError::NotARepo { .. } => {
                CliError::input(message).hint("run wfe inside a git repository (`git init` makes one), or pass `-C PATH`")
            }
            StoreError::NoCommits { .. } => CliError::input(message)
                .hint("a run records the commit it started from: make a first commit (`git commit --allow-empty -m init`)"),
            StoreError::NoSuchRun { .. } => CliError::input(message).hint("`wfe list` shows the runs of this repository"),
            StoreError::AmbiguousRun { .. } => CliError::input(message).hint("give more characters of the run id"),
            // A held lock stays bad input (exit 2), as it always was: scripts
            // and tests rely on a refused second runner exiting 2.
            StoreError::Locked { .. } => CliError::input(message)
                .hint("another wfe process is running this run; wait for it, or stop it first"),
            StoreError::Reftable { .. }
            | StoreError::NoWorkTree { .. }
            | StoreError::RestoreConflict { .. } => CliError::input(message),
            StoreError::NothingTrashed { .. } => CliError::input(message),
            StoreError::NoSuchRemote { .. } => CliError::input(message)
                .hint("`git remote -v` lists the remotes; `git remote add NAME URL` adds one"),
            StoreError::Conflict { run, .. } => CliError::conflict(message).hint(format!(
                "another wfe process changed run {run} at the same moment, so nothing was written; look at where it stands now with `wfe status {run}` (what it did: `wfe log {run}`), then run the command again"
            )),
            StoreError::NoSuchCheckpoint { .. } => CliError::failed(message),
            StoreError::InvalidPath { .. }
            | StoreError::Malformed { .. }
            | StoreError::Io { .. }
            | StoreError::Git { .. } => CliError::internal(message),
        };
        base.with_sources(&e)
    }
}

impl From<TemplateError> for CliError {
    fn from(e: TemplateError) -> Self {
        CliError::input(e.to_string())
    }
}

impl From<ArgsError> for CliError {
    fn from(e: ArgsError) -> Self {
        CliError::input(e.to_string())
            .hint("`wfe template show NAME` prints the template with its args schema")
    }
}

impl From<ArtifactError> for CliError {
    fn from(e: ArtifactError) -> Self {
        CliError::input(e.to_string()).with_sources(&e)
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::NotRunnable { .. }
            | EngineError::NoSuchPhase { .. }
            | EngineError::NoSuchArtifact { .. }
            | EngineError::NotAcceptable { .. }
            | EngineError::NotControllable { .. }
            | EngineError::Refused { .. }
            | EngineError::NotInRun { .. }
            | EngineError::BadTarget { .. } => {
                let hint = refusal_hint(&e);
                let error = CliError::input(e.to_string());
                match hint {
                    Some(hint) => error.hint(hint),
                    None => error,
                }
            }
            other => CliError::internal(other.to_string()).with_sources(&other),
        }
    }
}

/// The command that does what a refused request could not, when there is one.
fn refusal_hint(e: &EngineError) -> Option<String> {
    match e {
        EngineError::Refused {
            reason: Refusal::NotRunYet,
            run,
            ..
        } => Some(format!("`wfe resume {run}` runs it")),
        EngineError::Refused {
            reason: Refusal::Completed,
            run,
            phase,
            ..
        } => Some(format!(
            "`wfe retry {run} {phase}` runs it again; to go back to a checkpoint before it, `wfe log {run}` numbers them for rollback"
        )),
        EngineError::NotAcceptable {
            reason: Refusal::NeverWritten { artifact },
            run,
            phase,
        } => Some(format!("`wfe edit {run} {phase} {artifact}` writes it")),
        EngineError::NotAcceptable {
            reason: Refusal::Unparsable { artifact, .. },
            run,
            phase,
        } => Some(format!("`wfe edit {run} {phase} {artifact}` can fix it")),
        // What moves the run on without a runner: approving a waiting
        // phase, else resuming (a run that is over is refused as `Over`,
        // with no hint: nothing would go on).
        EngineError::NotControllable {
            reason: Refusal::NoRunner { status, reason },
            run,
        } => super::reasons::next_step(*status, reason.as_deref(), run, false)
            .or_else(|| Some(format!("`wfe resume {run}` goes on"))),
        _ => None,
    }
}

/// How to fix each of `problems` (seats of agent phases that cannot be
/// filled), one fix a line, each said once; None when there is no fix to give.
pub(super) fn seat_hint<'a>(problems: impl Iterator<Item = &'a SeatProblem>) -> Option<String> {
    let mut fixes: Vec<String> = Vec::new();
    for problem in problems {
        let fix = match problem {
            SeatProblem::MissingKey { provider, var, .. } => {
                let env = var
                    .as_ref()
                    .map(|v| format!(" (or set {v})"))
                    .unwrap_or_default();
                format!("`wfe provider set-key {provider}` stores its key{env}")
            }
            SeatProblem::UnknownRole { .. } => format!(
                "add {} to {CONFIG_FILE}: {{\"provider\": NAME, \"model\": MODEL}}",
                at(problem)
            ),
            SeatProblem::UnknownProvider { role: Some(_), .. } => format!(
                "edit {} in {CONFIG_FILE} to name one of its `providers`",
                at(problem)
            ),
            SeatProblem::UnknownProvider { role: None, .. } => format!(
                "add {} to {CONFIG_FILE}, or name one it has (`wfe provider list`)",
                at(problem)
            ),
            SeatProblem::NoModel { role: Some(_), .. } => {
                format!("add {} to {CONFIG_FILE}", at(problem))
            }
            SeatProblem::NoModel { role: None, .. } => {
                "give the phase a `model` beside its `provider`".to_string()
            }
            // Its message says what to do (the file's mode, or its syntax).
            SeatProblem::UnreadableKeys { .. } => continue,
        };
        if !fixes.contains(&fix) {
            fixes.push(fix);
        }
    }
    (!fixes.is_empty()).then(|| fixes.join("\n  "))
}

/// `PATH` of a problem's config path, quoted as a JSON path.
fn at(problem: &SeatProblem) -> String {
    problem
        .config_path()
        .map_or_else(String::new, |path| format!("`{path}`"))
}

/// The repository's config file, as hints name it.
const CONFIG_FILE: &str = ".wfe/config.json";

impl From<crate::provider::edit::EditError> for CliError {
    fn from(e: crate::provider::edit::EditError) -> Self {
        use crate::provider::edit::EditError;
        let message = e.to_string();
        match e {
            EditError::UnknownProvider { .. } => CliError::input(message)
                .hint("`wfe provider add NAME --kind KIND` adds a provider; `wfe provider list` lists them"),
            EditError::InUse { name, .. } => CliError::input(message).hint(format!(
                "`wfe role set ROLE PROVIDER MODEL` seats a role elsewhere, then `wfe provider remove {name}`"
            )),
            EditError::Io { .. } => CliError::failed(message),
            EditError::UnknownKind { .. }
            | EditError::BadName { .. }
            | EditError::Malformed { .. }
            | EditError::Invalid { .. } => CliError::input(message),
        }
    }
}

impl From<IndexError> for CliError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Store(e) => e.into(),
            _ if e.is_busy() => CliError::conflict(
                "another wfe process is writing the search index; try again when it is done",
            ),
            IndexError::Query(_) => CliError::input(e.to_string()).hint(
                "words must all match; \"quote a phrase\"; field:value searches artifact JSON; OR, -word, (groups)",
            ),
            other => CliError::internal(other.to_string())
                .with_sources(&other)
                .hint("`wfe index --rebuild` builds the search index again from the runs' refs"),
        }
    }
}

impl From<CompareError> for CliError {
    fn from(e: CompareError) -> Self {
        let message = e.to_string();
        match e {
            CompareError::Engine(e) => e.into(),
            CompareError::Malformed { .. } => CliError::input(message).hint(
                "name each side as RUN, RUN@N, RUN@COMMIT, RUN:PHASE or RUN:PHASE#ATTEMPT (`wfe diff --help`)",
            ),
            CompareError::NoCheckpointNumber { run, .. } => CliError::input(message).hint(format!(
                "`wfe log {run}` numbers its checkpoints; a commit prefix of digits only needs 7 or more"
            )),
            CompareError::NotInRun { run, .. } => CliError::input(message)
                .hint(format!("`wfe log {run}` lists the run's checkpoints")),
            CompareError::AmbiguousCheckpoint { .. } => {
                CliError::input(message).hint("give more digits of the commit")
            }
            CompareError::NoPhase { .. } => CliError::input(message),
            CompareError::NoAttempt { run, phase, .. } => CliError::input(message)
                .hint(format!("`wfe show {run} {phase}` shows its attempts")),
        }
    }
}

impl From<ViewError> for CliError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Engine(e) => e.into(),
            ViewError::BadIteration { .. }
            | ViewError::NotInLoop { .. }
            | ViewError::NoIterationYet { .. }
            | ViewError::NoSuchIteration { .. }
            | ViewError::NoSuchChild { .. }
            | ViewError::NoSuchArtifact { .. }
            | ViewError::NoSuchFile { .. } => CliError::input(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LockHolder, RunId};

    #[test]
    fn every_outcome_has_the_exit_code_the_design_gives_it() {
        let table = [
            (Outcome::Success, 0),
            (Outcome::Reported(ErrorKind::Failed), 1),
            (Outcome::Reported(ErrorKind::Conflict), 1),
            (Outcome::Reported(ErrorKind::Internal), 1),
            (Outcome::Reported(ErrorKind::Input), 2),
            (Outcome::Reported(ErrorKind::Stopped), 3),
        ];
        for (outcome, expected) in table {
            assert_eq!(code(outcome), expected, "{outcome:?}");
            assert_eq!(exit_code(outcome), ExitCode::from(expected), "{outcome:?}");
        }
    }

    #[test]
    fn a_run_exits_0_when_completed_1_when_failed_and_3_when_stopped() {
        let table = [
            (RunStatus::Completed, 0),
            (RunStatus::Failed, 1),
            (RunStatus::Pending, 3),
            (RunStatus::Running, 3),
            (RunStatus::Paused, 3),
            (RunStatus::Waiting, 3),
            (RunStatus::Cancelled, 3),
        ];
        for (status, expected) in table {
            assert_eq!(code(Outcome::from(status)), expected, "{status:?}");
        }
    }

    fn run() -> RunId {
        RunId::parse("01aaaaaaaaaaaaaaaaaaaaaaaa").expect("a ULID")
    }

    #[test]
    fn a_lost_compare_and_swap_is_a_conflict_that_exits_1_and_says_what_to_do() {
        let conflict = || StoreError::Conflict {
            run: run(),
            expected: "aaa".into(),
            found: "bbb".into(),
        };
        for e in [
            CliError::from(conflict()),
            CliError::from(EngineError::Store(conflict())),
        ] {
            assert_eq!(e.kind, ErrorKind::Conflict);
            assert_eq!(code(e.outcome()), 1);
            assert!(e.message.contains("changed underneath"), "{}", e.message);
            let hint = e.hint.as_deref().unwrap_or_default();
            assert!(
                hint.contains("another wfe process changed run 01aaaaaaaaaaaaaaaaaaaaaaaa"),
                "{hint}"
            );
            assert!(
                hint.contains("`wfe status 01aaaaaaaaaaaaaaaaaaaaaaaa`"),
                "{hint}"
            );
            assert!(hint.contains("run the command again"), "{hint}");
        }
    }

    #[test]
    fn seat_hints_give_each_fix_once() {
        let key = SeatProblem::MissingKey {
            provider: "claude".into(),
            var: Some("ANTHROPIC_API_KEY".into()),
            looked_in: vec![],
        };
        let role = SeatProblem::UnknownRole {
            role: "critic".into(),
            known: vec![],
        };
        let by_role = SeatProblem::UnknownProvider {
            provider: "gone".into(),
            role: Some("primary".into()),
            known: vec![],
        };
        let unreadable = SeatProblem::UnreadableKeys {
            provider: "claude".into(),
            message: "mode".into(),
        };
        let hint = seat_hint([&key, &role, &key, &by_role, &unreadable].into_iter());
        assert_eq!(
            hint.as_deref(),
            Some(
                "`wfe provider set-key claude` stores its key (or set ANTHROPIC_API_KEY)\n  \
                 add `roles.critic` to .wfe/config.json: {\"provider\": NAME, \"model\": MODEL}\n  \
                 edit `roles.primary.provider` in .wfe/config.json to name one of its `providers`"
            )
        );
        assert_eq!(seat_hint([&unreadable].into_iter()), None);
    }

    #[test]
    fn bad_input_exits_2_and_breakage_exits_1() {
        let locked = CliError::from(StoreError::Locked {
            run: run(),
            holder: LockHolder {
                pid: 7,
                host: "h".into(),
                since: "now".into(),
            },
        });
        assert_eq!((locked.kind, code(locked.outcome())), (ErrorKind::Input, 2));
        let unknown = CliError::from(StoreError::NoSuchRun { run: "x".into() });
        assert_eq!(code(unknown.outcome()), 2);
        assert!(unknown.hint.is_some());
        let view = CliError::from(ViewError::NotInLoop { phase: "p".into() });
        assert_eq!(code(view.outcome()), 2);
        let git = CliError::from(StoreError::Git {
            message: "broken".into(),
        });
        assert_eq!((git.kind, code(git.outcome())), (ErrorKind::Internal, 1));
        let corrupt = CliError::from(ViewError::Engine(EngineError::Corrupt {
            run: "r".into(),
            checkpoint: "c".into(),
            path: "run.json".into(),
            message: "bad".into(),
        }));
        assert_eq!(code(corrupt.outcome()), 1);
    }
}
