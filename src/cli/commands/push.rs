//! `wfe push`: send runs to a remote through the git CLI, fast-forward
//! only. Also the arguments and report `wfe pull` shares.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations::{self, RefOutcome, Synced};
use crate::store::{REMOTES_PREFIX, RunStore};

/// Send runs to a remote (fast-forward only; a run that diverged is reported, never forced)
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub share: ShareArgs,
}

/// What `wfe push` and `wfe pull` take.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The remote (default: the current branch's upstream remote, else `origin`), then the runs:
    /// ids, unique prefixes or `latest` (default: every run)
    #[arg(value_name = "REMOTE|RUN")]
    pub names: Vec<String>,
    /// Include the runs' trash entries (refs/wfe/trash/*)
    #[arg(long)]
    pub trash: bool,
}

/// Which way runs travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    Push,
    Pull,
}

/// Runs `wfe push`.
pub(crate) fn run(args: PushArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let (remote, runs) = split_remote(ctx, &args.share.names)?;
    let outcomes = operations::push(&ctx.store, &remote, &runs, args.share.trash, &ctx.clock)?;
    report(ui, &remote, &outcomes, Way::Push)
}

/// The remote and the run names: the first name is the remote when it is
/// one of the repository's remotes, or else when it names no local run
/// (then it must be a remote: an unknown one is bad input). Otherwise all
/// names are runs and the default remote is used.
pub(super) fn split_remote(
    ctx: &Context,
    names: &[String],
) -> Result<(String, Vec<String>), CliError> {
    if let Some(first) = names.first() {
        if ctx.store.remotes()?.contains(first) {
            return Ok((first.clone(), names[1..].to_vec()));
        }
        if ctx.store.resolve(first).is_err() {
            ctx.store.check_remote(first)?;
        }
    }
    let remote = ctx.store.default_remote()?.ok_or_else(|| {
        CliError::input(
            "no remote to share runs with: the current branch has no upstream and there is no `origin`",
        )
        .hint("name one (`wfe push REMOTE`), or add one with `git remote add origin URL`")
    })?;
    Ok((remote, names.to_vec()))
}

/// Prints what happened to each ref; a diverged, held or rejected run
/// makes the command end as a conflict (exit 1), naming each.
pub(super) fn report(
    ui: &Ui,
    remote: &str,
    outcomes: &[RefOutcome],
    way: Way,
) -> Result<Outcome, CliError> {
    let (verb, there) = match way {
        Way::Push => ("pushed", format!("on {remote}")),
        Way::Pull => ("pulled", "here".to_string()),
    };
    let mut same = 0;
    let mut problems = Vec::new();
    for o in outcomes {
        let what = if o.is_trash() {
            o.name.trim_start_matches("refs/wfe/").to_string()
        } else {
            format!("run {}", o.run)
        };
        match &o.synced {
            Synced::UpToDate => same += 1,
            Synced::Created { tip } => {
                ui.note(&format!("{what}: {verb} (new {there}, at {})", tip.short()));
            }
            Synced::FastForwarded { from, to } => ui.note(&format!(
                "{what}: {verb} ({}..{})",
                from.short(),
                to.short()
            )),
            Synced::Reapplied { onto, to, requests } if onto == to => ui.note(&format!(
                "{what}: nothing to send: {remote} (moved on meanwhile by workers) already is as `{}` left it here; both at {}",
                requests.join("`, `"),
                to.short()
            )),
            Synced::Reapplied { onto, to, requests } => ui.note(&format!(
                "{what}: {verb} (`{}` made again on {remote}'s newer tip {}, which workers moved meanwhile; now at {})",
                requests.join("`, `"),
                onto.short(),
                to.short()
            )),
            Synced::Ahead => ui.note(&format!(
                "{what}: has checkpoints {remote} lacks; `wfe push {remote} {}` sends them",
                o.run
            )),
            Synced::Behind => ui.note(&format!(
                "{what}: {remote} has newer checkpoints; `wfe pull {remote} {}` brings them",
                o.run
            )),
            Synced::Diverged {
                local,
                remote: theirs,
                base,
            } => {
                let since = base
                    .as_ref()
                    .map_or("no common checkpoint".to_string(), |b| {
                        format!("both added checkpoints after {}", b.short())
                    });
                problems.push(format!(
                    "{what} diverged: here at {}, on {remote} at {} ({since}); mirrored as {REMOTES_PREFIX}{remote}/{}",
                    local.short(),
                    theirs.short(),
                    o.name.trim_start_matches("refs/wfe/")
                ));
            }
            Synced::Held { holder } => problems.push(format!(
                "{what}: not updated, a live runner holds it here (pid {} on {})",
                holder.pid, holder.host
            )),
            Synced::Rejected { reason } => {
                problems.push(format!("{what}: refused ({reason})"));
            }
        }
    }
    if same > 0 {
        ui.note(&format!(
            "{same} ref{} already up to date with {remote}",
            if same == 1 { "" } else { "s" }
        ));
    }
    if outcomes.is_empty() {
        ui.note(&format!(
            "no runs to {} {remote}",
            match way {
                Way::Push => "push to",
                Way::Pull => "pull from",
            }
        ));
    }
    if problems.is_empty() {
        return Ok(Outcome::Success);
    }
    let diverged = outcomes
        .iter()
        .find(|o| matches!(o.synced, Synced::Diverged { .. }));
    let hint = match diverged {
        Some(o) => {
            let base = match &o.synced {
                Synced::Diverged { base: Some(b), .. } => b.short().to_string(),
                _ => "CHECKPOINT".into(),
            };
            format!(
                "nothing was forced. To take {remote}'s version: `wfe rollback {run} --to {base}` then `wfe pull {remote} {run}` (your checkpoints stay in the trash; `git log {REMOTES_PREFIX}{remote}/runs/{run}` shows theirs). To keep yours instead, take it on the other machine the same way after it pulls, or delete the remote's copy by hand (`git push {remote} --delete refs/wfe/runs/{run}`) and push again",
                run = o.run
            )
        }
        None => format!(
            "pull again once the runner has stopped, then push: `wfe pull {remote}` and `wfe push {remote}`"
        ),
    };
    Err(CliError::conflict(problems.join("\n")).hint(hint))
}
