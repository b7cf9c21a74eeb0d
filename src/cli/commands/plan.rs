//! `wfe plan RUN --ready`: the phases that can start now and are not held
//! by a worker, for a CI planner job to fan out (`--json` prints a GitHub
//! Actions `strategy.matrix`: `{"include":[{"phase":"build"},…]}`).

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::RunSnapshot;
use crate::engine::worker::claim::{claims, ready};
use crate::engine::worker::now_ms;

/// List the phases of a run that can start now (for `wfe worker` and CI matrices)
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// Only the phases that can start now: needs met, not done, not held by a live worker claim
    #[arg(long)]
    pub ready: bool,
    /// Print `{"run":…,"include":[{"phase":…},…]}`, which a GitHub Actions `strategy.matrix` takes as it is
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe plan`.
pub(crate) fn run(args: PlanArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    if !args.ready {
        return Err(CliError::input(
            "wfe plan needs --ready (the only plan there is so far)",
        ));
    }
    let id = ctx.resolve_run(&args.run)?;
    let snapshot = RunSnapshot::load_tip(&ctx.store, &id)?;
    let held = claims(&ctx.store, &id, &snapshot.checkpoint)?;
    let now = now_ms();
    // As workers see it: a run paused on request holds them back; one
    // paused after an approval (no runner held it) does not.
    let stopped =
        snapshot.record.status.is_final() || crate::engine::worker::held_back(&snapshot.record);
    let phases: Vec<_> = if stopped {
        Vec::new()
    } else {
        ready(&snapshot, &held)
    };
    if args.json {
        let include: Vec<_> = phases
            .iter()
            .filter(|p| p.free(now))
            .map(|p| json!({ "phase": p.phase }))
            .collect();
        let doc = json!({ "run": id.as_str(), "include": include });
        ui.out(&doc.to_string());
        return Ok(Outcome::Success);
    }
    if phases.is_empty() {
        ui.out(&format!(
            "no phase of {} can start now (run {})",
            id.as_str(),
            snapshot.record.status.as_str()
        ));
    }
    for p in &phases {
        match &p.claim {
            Some(c) if c.live(now) => ui.out(&format!(
                "{}  held by {} ({}s left on its lease)",
                p.phase,
                c.label(),
                (c.expires_ms - now).div_ceil(1000)
            )),
            Some(c) => ui.out(&format!(
                "{}  ready (the claim of {} lapsed)",
                p.phase,
                c.label()
            )),
            None => ui.out(&format!("{}  ready", p.phase)),
        }
    }
    Ok(Outcome::Success)
}
