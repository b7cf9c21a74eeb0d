//! `wfe gc`: retention. Moves the runs a policy selects to the trash (as
//! `wfe rm` does, under each run's lock), deletes trash entries older than
//! a limit, and repacks the repository with `git gc`.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations::{self, GcPolicy};
use crate::retry::DurationSpec;
use crate::store::{RunId, StoreError};

/// How long a trash entry is kept when `--trash-older-than` is not given.
const TRASH_KEEP: &str = "30d";

/// Move old runs to the trash, empty old trash, and repack the repository
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep the newest N runs whatever else matches
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Only runs whose last checkpoint is older than this (`30d`, `12h`)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Only runs with this status (repeatable): pending, running, paused, waiting, completed, failed, cancelled
    #[arg(long = "status", value_name = "S")]
    pub statuses: Vec<String>,
    /// Delete trash entries set aside longer ago than this
    #[arg(long, value_name = "DURATION", default_value = TRASH_KEEP)]
    pub trash_older_than: String,
    /// Say what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// The statuses a run can have, as trailers spell them.
const STATUSES: [&str; 7] = [
    "pending",
    "running",
    "paused",
    "waiting",
    "completed",
    "failed",
    "cancelled",
];

/// Runs `wfe gc`.
pub(crate) fn run(args: GcArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let policy = policy(&args)?;
    let now = ctx.clock.epoch_seconds();
    let plan = operations::plan_gc(&ctx.store, &policy, now)?;
    let would = if args.dry_run { "would move" } else { "moving" };
    for row in &plan.runs {
        ui.note(&format!(
            "{would} run {} ({}, {}) to the trash",
            row.id,
            row.template.as_deref().unwrap_or("?"),
            row.status.as_deref().unwrap_or("?")
        ));
    }
    for (run, holder) in &plan.held {
        ui.note(&format!(
            "keeping run {run}: a live runner holds it (pid {} on {})",
            holder.pid, holder.host
        ));
    }
    let would = if args.dry_run {
        "would delete"
    } else {
        "deleting"
    };
    for t in &plan.trash {
        ui.note(&format!(
            "{would} {} (set aside {})",
            t.run.trash_ref(t.entry.number),
            crate::time::format_stamp(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(t.trashed_at).unwrap_or(0))
            )
        ));
    }
    if args.dry_run {
        let loose = ctx.store.loose_objects()?;
        ui.note(&format!(
            "would repack the repository with `git gc` ({loose} loose objects now); nothing was changed"
        ));
        return Ok(Outcome::Success);
    }

    let mut moved = 0;
    for row in &plan.runs {
        let Some(id) = RunId::parse(&row.id) else {
            continue;
        };
        // A runner may have started since the plan: the lock decides.
        let lock = match ctx.store.lock(&id, &ctx.clock.stamp()) {
            Ok(lock) => lock,
            Err(StoreError::Locked { holder, .. }) => {
                ui.note(&format!(
                    "keeping run {id}: a live runner holds it (pid {} on {})",
                    holder.pid, holder.host
                ));
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        operations::remove(&ctx.store, &id, false, &ctx.clock)?;
        drop(lock);
        moved += 1;
    }
    let mut dropped = 0;
    for t in &plan.trash {
        ctx.store.drop_trash(&t.run, &t.entry)?;
        dropped += 1;
    }
    ctx.store.repack()?;
    ui.note(&format!(
        "gc: {moved} run{} moved to the trash (`wfe undo RUN` brings one back), {dropped} trash entr{} deleted, repository repacked",
        if moved == 1 { "" } else { "s" },
        if dropped == 1 { "y" } else { "ies" }
    ));
    Ok(Outcome::Success)
}

/// The policy the flags describe; bad durations or statuses are bad input.
fn policy(args: &GcArgs) -> Result<GcPolicy, CliError> {
    let seconds = |flag: &str, text: &str| -> Result<i64, CliError> {
        let spec = DurationSpec::parse(text).map_err(|e| {
            CliError::input(format!("--{flag} {text}: {e}"))
                .hint("give a duration such as `30d`, `12h` or `90m`")
        })?;
        Ok(i64::try_from(spec.0.as_secs()).unwrap_or(i64::MAX))
    };
    for status in &args.statuses {
        if !STATUSES.contains(&status.as_str()) {
            return Err(CliError::input(format!(
                "--status {status}: not a run status (expected one of {})",
                STATUSES.join(", ")
            )));
        }
    }
    Ok(GcPolicy {
        keep: args.keep,
        older_than: args
            .older_than
            .as_deref()
            .map(|t| seconds("older-than", t))
            .transpose()?,
        statuses: args.statuses.clone(),
        trash_older_than: seconds("trash-older-than", &args.trash_older_than)?,
    })
}
