//! The CLI's error: a sentence for the user, the causes, a hint, and the
//! exit code. Library errors are converted here and nowhere else.

use crate::artifact::ArtifactError;
use crate::engine::EngineError;
use crate::index::IndexError;
use crate::store::StoreError;
use crate::template::{ArgsError, TemplateError};

/// Exit code: bad input (usage, template, args, schema); nothing written.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the run failed, or the command did.
pub const EXIT_FAILED: u8 = 1;

/// An error as the user sees it.
#[derive(Debug)]
pub struct CliError {
    /// The process exit code.
    pub code: u8,
    /// The main message (may span lines, e.g. a list of template problems).
    pub message: String,
    /// The chain of causes, outermost first.
    pub causes: Vec<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// Bad input: exit 2.
    pub fn input(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_BAD_INPUT,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }

    /// A failure: exit 1.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
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
            StoreError::Locked { .. } => CliError::input(message)
                .hint("another wfe process is running this run; wait for it, or stop it first"),
            StoreError::Reftable { .. }
            | StoreError::NoWorkTree { .. }
            | StoreError::RestoreConflict { .. } => CliError::input(message),
            StoreError::NothingTrashed { .. } => CliError::input(message),
            StoreError::Conflict { run, .. } => CliError::input(message).hint(format!(
                "another wfe process changed the run at the same moment and nothing was written; `wfe log {run}` shows what it did"
            )),
            _ => CliError::failed(message),
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
            | EngineError::BadTarget { .. } => CliError::input(e.to_string()),
            other => CliError::failed(other.to_string()).with_sources(&other),
        }
    }
}

impl From<IndexError> for CliError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Store(e) => e.into(),
            _ if e.is_busy() => CliError::failed(
                "another wfe process is writing the search index; try again when it is done",
            ),
            IndexError::Query(_) => CliError::input(e.to_string()).hint(
                "words must all match; \"quote a phrase\"; field:value searches artifact JSON; OR, -word, (groups)",
            ),
            other => CliError::failed(other.to_string())
                .with_sources(&other)
                .hint("`wfe index --rebuild` builds the search index again from the runs' refs"),
        }
    }
}
