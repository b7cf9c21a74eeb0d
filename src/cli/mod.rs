//! The command line: the only layer that prints or reads the environment.
//!
//! Parse (clap, no I/O) → resolve a [`context::Context`] → run the command →
//! map how it ended to an exit code ([`error::exit_code`], the one place
//! exit codes are spelt).

pub mod args;
pub mod ci;
mod commands;
pub mod config;
pub mod context;
pub mod control;
mod detach;
pub mod error;
pub mod reasons;
mod seats;
mod signals;
pub mod ui;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use context::Context;
use error::{CliError, ErrorKind, Outcome, exit_code};
use ui::Ui;

/// Runs the CLI with the process's arguments and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` come this way too, and succeed.
            let outcome = if e.use_stderr() {
                Outcome::Reported(ErrorKind::Input)
            } else {
                Outcome::Success
            };
            let _ = e.print();
            return exit_code(outcome);
        }
    };
    // Commands that run phases, serve pages or talk to providers get
    // worker threads; the others (listing, showing, requests) finish on
    // this thread, and starting two idle workers was a tenth of `wfe list`
    // at 100 runs.
    let mut builder = if threaded(&cli.command) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit_code(Outcome::Reported(ErrorKind::Internal))
        }
    }
}

/// Whether `command` needs a runtime with worker threads: it awaits
/// phases, agents, a server or providers.
fn threaded(command: &Command) -> bool {
    match command {
        Command::Demo(_)
        | Command::Run(_)
        | Command::Cancel(_)
        | Command::Resume(_)
        | Command::Retry(_)
        | Command::Serve(_)
        | Command::Provider(_)
        | Command::Worker(_)
        | Command::Guard(_) => true,
        Command::Template(_)
        | Command::Schema(_)
        | Command::Init(_)
        | Command::List(_)
        | Command::Status(_)
        | Command::Show(_)
        | Command::Export(_)
        | Command::Log(_)
        | Command::Pause(_)
        | Command::Approve(_)
        | Command::Continue(_)
        | Command::Auto(_)
        | Command::Comment(_)
        | Command::Accept(_)
        | Command::Edit(_)
        | Command::Diff(_)
        | Command::Skip(_)
        | Command::Rollback(_)
        | Command::Undo(_)
        | Command::Search(_)
        | Command::Index(_)
        | Command::Fsck(_)
        | Command::Rm(_)
        | Command::Role(_)
        | Command::Push(_)
        | Command::Pull(_)
        | Command::Remote(_)
        | Command::Gc(_)
        | Command::Plan(_) => false,
    }
}

/// Runs the parsed command line and returns the exit code.
async fn run(cli: Cli) -> ExitCode {
    let ui = Ui::new(&cli.global);
    match dispatch(cli, &ui).await {
        Ok(outcome) => exit_code(outcome),
        Err(e) => {
            ui.error(&e);
            exit_code(e.outcome())
        }
    }
}

async fn dispatch(cli: Cli, ui: &Ui) -> Result<Outcome, CliError> {
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
        Command::Export(args) => commands::export::run(args, &ctx()?, ui),
        Command::Log(args) => commands::log::run(args, &ctx()?, ui),
        Command::Pause(args) => commands::pause::run(args, &ctx()?, ui),
        Command::Cancel(args) => commands::cancel::run(args, &ctx()?, ui).await,
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
        Command::Serve(args) => commands::serve::run(args, &global, ui).await,
        Command::Index(args) => commands::index::run(args, &ctx()?, ui),
        Command::Fsck(args) => commands::fsck::run(args, &ctx()?, ui),
        Command::Rm(args) => commands::rm::run(args, &ctx()?, ui),
        Command::Provider(cmd) => commands::provider::run(cmd, &global, ui).await,
        Command::Role(cmd) => commands::role::run(cmd, &ctx()?, ui),
        Command::Push(args) => commands::push::run(args, &ctx()?, ui),
        Command::Pull(args) => commands::pull::run(args, &ctx()?, ui),
        Command::Remote(cmd) => commands::remote::run(cmd, &ctx()?, ui),
        Command::Gc(args) => commands::gc::run(args, &ctx()?, ui),
        Command::Plan(args) => commands::plan::run(args, &ctx()?, ui),
        Command::Worker(args) => commands::worker::run(args, &ctx()?, ui).await,
        Command::Guard(args) => commands::guard::run(args).await,
    }
}
