//! The command-line grammar (clap derive); parsing does no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::commands;

/// wfe: git-native workflow runs. Templates of phases; every run is a chain of commits under refs/wfe/runs/.
#[derive(Debug, Parser)]
#[command(name = "wfe", version, about, max_term_width = 100)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if wfe was started in PATH (like `git -C`)
    #[arg(short = 'C', global = true, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// When to colour output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print only errors and the requested output
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is unset
    Auto,
    /// Always colour
    Always,
    /// Never colour
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create .wfe/ with a config, the built-in templates and schemas
    Init(commands::init::InitArgs),
    /// Make a scratch repository and run a bundled example in it
    Demo(commands::demo::DemoArgs),
    /// List, show and validate templates
    #[command(subcommand)]
    Template(commands::template::TemplateCommand),
    /// List and show artifact schemas
    #[command(subcommand)]
    Schema(commands::schema::SchemaCommand),
    /// Start a run of a template
    Run(commands::run::RunArgs),
    /// List runs
    List(commands::list::ListArgs),
    /// Draw a run's DAG with each phase's state
    Status(commands::status::StatusArgs),
    /// Show a run, a phase, or an artifact
    Show(commands::show::ShowArgs),
    /// Write a phase's artifacts (JSON and files) into a directory
    Export(commands::export::ExportArgs),
    /// Show a run's checkpoints, newest first
    Log(commands::log::LogArgs),
    /// Continue a run that was interrupted or whose runner died
    Resume(commands::resume::ResumeArgs),
    /// Pause a run: running phases finish, nothing new starts
    Pause(commands::pause::PauseArgs),
    /// Cancel a run: running phases are killed at once
    Cancel(commands::cancel::CancelArgs),
    /// Approve a phase that waits for approval, optionally attaching its artifact
    Approve(commands::approve::ApproveArgs),
    /// With auto mode off: let the run go on to its next phases
    Continue(commands::r#continue::ContinueArgs),
    /// Switch auto mode: on advances without asking, off waits after every phase
    Auto(commands::auto::AutoArgs),
    /// Leave a comment on a run or one of its phases
    Comment(commands::comment::CommentArgs),
    /// Accept a phase's rejected outputs as they are (marked forced)
    Accept(commands::accept::AcceptArgs),
    /// Edit an artifact in $VISUAL or $EDITOR; it is validated before it is committed
    Edit(commands::edit::EditArgs),
    /// Compare the artifacts of two runs, checkpoints or phases
    Diff(commands::diff::DiffArgs),
    /// Run a phase again, and every phase downstream of it
    Retry(commands::retry::RetryArgs),
    /// Mark a phase skipped; its dependants run without its artifacts
    Skip(commands::skip::SkipArgs),
    /// Move a run back to an earlier checkpoint (the old tip is kept for `wfe undo`)
    Rollback(commands::rollback::RollbackArgs),
    /// Restore the tip the last rollback set aside, or a run `wfe rm` removed
    Undo(commands::undo::UndoArgs),
    /// Search every run's artifacts, logs, comments, tool calls and errors
    Search(commands::search::SearchArgs),
    /// Serve the web view of the runs on 127.0.0.1 (prints the URL with its token)
    Serve(commands::serve::ServeArgs),
    /// Update the search index, or rebuild it from the runs' refs
    Index(commands::index::IndexArgs),
    /// Check runs: refs, checkpoints, files, frozen schemas, artifacts, trailers
    Fsck(commands::fsck::FsckArgs),
    /// Remove runs: to the trash (`wfe undo RUN` restores one), or for good with --purge
    Rm(commands::rm::RmArgs),
    /// List, test and set up LLM providers and their keys
    #[command(subcommand)]
    Provider(commands::provider::ProviderCommand),
    /// Seat roles (`primary`, `reviewer`, …) with a provider and model in .wfe/config.json
    #[command(subcommand)]
    Role(commands::role::RoleCommand),
    /// Send runs to a remote (fast-forward only; a run that diverged is reported, never forced)
    Push(commands::push::PushArgs),
    /// Bring runs from a remote (fast-forward only; a run that diverged is reported, never forced)
    Pull(commands::pull::PullArgs),
    /// Configure a remote for sharing runs
    #[command(subcommand)]
    Remote(commands::remote::RemoteCommand),
    /// Move old runs to the trash, empty old trash, and repack the repository
    Gc(commands::gc::GcArgs),
    /// List the phases of a run that can start now (for `wfe worker` and CI matrices)
    Plan(commands::plan::PlanArgs),
    /// Claim and run ready phases of a run shared through a git remote, with other workers
    Worker(commands::worker::WorkerArgs),
    /// Internal: a runner's guardian (ends its phases when it dies)
    #[command(name = "__guard", hide = true)]
    Guard(commands::guard::GuardArgs),
}
