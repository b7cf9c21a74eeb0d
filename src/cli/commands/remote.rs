//! `wfe remote setup`: make plain `git fetch` and `git push` carry runs.

use clap::{Args, Subcommand};

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::store::RUNS_REFSPEC;

/// Configure a remote for sharing runs
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Add the runs' refspecs to a remote, so plain `git fetch`/`git push` carry runs (never forced)
    Setup(SetupArgs),
}

/// `wfe remote setup [REMOTE]`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The remote (default: the current branch's upstream remote, else `origin`)
    pub remote: Option<String>,
}

/// Runs `wfe remote …`.
pub(crate) fn run(cmd: RemoteCommand, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let RemoteCommand::Setup(args) = cmd;
    let remote = match args.remote {
        Some(remote) => remote,
        None => ctx.store.default_remote()?.ok_or_else(|| {
            CliError::input(
                "no remote to set up: the current branch has no upstream and there is no `origin`",
            )
            .hint("name one: `wfe remote setup REMOTE`")
        })?,
    };
    let added = ctx.store.setup_remote(&remote)?;
    if added.fetch.is_empty() && added.push.is_empty() {
        ui.note(&format!(
            "remote {remote} already carries runs ({RUNS_REFSPEC})"
        ));
        return Ok(Outcome::Success);
    }
    for line in &added.fetch {
        ui.note(&format!("added remote.{remote}.fetch = {line}"));
    }
    for line in &added.push {
        ui.note(&format!("added remote.{remote}.push = {line}"));
    }
    ui.note(&format!(
        "plain `git fetch {remote}` and `git push {remote}` now carry runs, fast-forward only: a run that diverged is refused, never overwritten (`wfe pull` explains it)"
    ));
    Ok(Outcome::Success)
}
