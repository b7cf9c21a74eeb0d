//! The command line: the only layer that prints or reads the environment.
//!
//! Parse (clap, no I/O) → resolve a [`context::Context`] → run the command →
//! map the result to an exit code: 0 success or run completed, 1 run failed,
//! 2 bad input (nothing written), 3 run stopped before the end.

pub mod args;
mod commands;
pub mod config;
pub mod context;
pub mod control;
pub mod error;
mod seats;
pub mod ui;

use clap::Parser;

use args::{Cli, Command};
use context::Context;
use error::CliError;
use ui::Ui;

use crate::engine::RunStatus;

/// Exit code: the run stopped before the end (paused, waiting, cancelled).
pub const EXIT_STOPPED: u8 = 3;

/// Runs the CLI with the process's arguments and returns the exit code.
pub async fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                error::EXIT_BAD_INPUT
            } else {
                0
            };
            let _ = e.print();
            return code;
        }
    };
    let ui = Ui::new(&cli.global);
    match dispatch(cli, &ui).await {
        Ok(code) => code,
        Err(e) => {
            ui.error(&e);
            e.code
        }
    }
}

async fn dispatch(cli: Cli, ui: &Ui) -> Result<u8, CliError> {
    let global = cli.global;
    // Every command but `demo` works in an existing repository.
    let ctx = || Context::discover(&global);
    match cli.command {
        Command::Demo(args) => commands::demo::run(args, ui).await,
        Command::Template(cmd) => commands::template::run(cmd, &ctx()?, ui),
        Command::Schema(cmd) => commands::schema::run(cmd, &ctx()?, ui),
        Command::Init(args) => commands::init::run(args, &ctx()?, ui),
        Command::Run(args) => commands::run::run(args, &ctx()?, ui).await,
        Command::List(args) => commands::list::run(args, &ctx()?, ui),
        Command::Status(args) => commands::status::run(args, &ctx()?, ui),
        Command::Show(args) => commands::show::run(args, &ctx()?, ui),
        Command::Log(args) => commands::log::run(args, &ctx()?, ui),
        Command::Pause(args) => commands::pause::run(args, &ctx()?, ui),
        Command::Cancel(args) => commands::cancel::run(args, &ctx()?, ui),
        Command::Approve(args) => commands::approve::run(args, &ctx()?, ui),
        Command::Continue(args) => commands::r#continue::run(args, &ctx()?, ui),
        Command::Auto(args) => commands::auto::run(args, &ctx()?, ui),
        Command::Comment(args) => commands::comment::run(args, &ctx()?, ui),
        Command::Accept(args) => commands::accept::run(args, &ctx()?, ui),
        Command::Edit(args) => commands::edit::run(args, &ctx()?, ui),
        Command::Diff(args) => commands::diff::run(args, &ctx()?, ui),
        Command::Resume(args) => commands::resume::run(args, &ctx()?, ui).await,
        Command::Retry(args) => commands::retry::run(args, &ctx()?, ui).await,
        Command::Skip(args) => commands::skip::run(args, &ctx()?, ui),
        Command::Rollback(args) => commands::rollback::run(args, &ctx()?, ui),
        Command::Undo(args) => commands::undo::run(args, &ctx()?, ui),
        Command::Search(args) => commands::search::run(args, &ctx()?, ui),
        Command::Index(args) => commands::index::run(args, &ctx()?, ui),
        Command::Provider(cmd) => commands::provider::run(cmd, &global, ui).await,
    }
}

/// The exit code for a run's status.
pub fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => 0,
        RunStatus::Failed => error::EXIT_FAILED,
        _ => EXIT_STOPPED,
    }
}
