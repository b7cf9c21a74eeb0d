//! `wfe __guard` (hidden): the guardian a runner or worker starts beside
//! itself, so its phases die with it even when it is killed with SIGKILL
//! (see [`crate::process::guard`]). Also the drivers' side: [`start`].

use std::time::Duration;

use clap::Args;

use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::process::Guardian;
use crate::store::ProcessRegistry;

/// Internal: end the driver's phases once standard input closes
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The variable every process of the driver's phases carries
    #[arg(long, value_name = "NAME")]
    pub var: String,
    /// Its value
    #[arg(long, value_name = "VALUE")]
    pub value: String,
    /// How long the phases get between SIGTERM and SIGKILL, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub grace_ms: u64,
}

/// Runs the guardian: deaf to the signals that stop its driver (it leads
/// its own process group, so they reach it only when sent to it by pid),
/// it waits for its stdin to close, ends what carries the tag, and exits.
/// It reads and writes nothing else.
pub(crate) async fn run(args: GuardArgs) -> Result<Outcome, CliError> {
    if args.var.is_empty() || args.value.is_empty() {
        return Err(CliError::input("--var and --value must not be empty"));
    }
    // Listening replaces the default action (die at once) for good; the
    // listeners are never read.
    let _deaf = crate::cli::signals::stop_signals()?;
    let grace = Duration::from_millis(args.grace_ms);
    crate::process::guard(std::io::stdin(), &args.var, &args.value, grace)
        .await
        .map_err(|e| CliError::internal(format!("cannot end the driver's processes: {e}")))?;
    Ok(Outcome::Success)
}

/// Gives `registry` this process's driver token and starts the guardian
/// that ends what carries it once this process is gone, with `grace`
/// between SIGTERM and SIGKILL. A guardian that cannot be started is
/// warned about, and the driver goes on without it (`wfe resume` and the
/// lease still end or fence what a killed driver leaves).
pub(crate) fn start(
    ui: &Ui,
    registry: ProcessRegistry,
    grace: Duration,
) -> (ProcessRegistry, Option<Guardian>) {
    let registry = registry.with_driver(crate::process::own_token());
    let Some((var, value)) = registry.driver_tag() else {
        return (registry, None);
    };
    let spawned = std::env::current_exe().and_then(|exe| {
        let mut command = std::process::Command::new(exe);
        command
            .args(["__guard", "--var", var, "--value", &value, "--grace-ms"])
            .arg(grace.as_millis().to_string())
            // Holds no directory of the driver's (a temporary repository) busy.
            .current_dir("/");
        Guardian::spawn(command)
    });
    match spawned {
        Ok(guardian) => (registry, Some(guardian)),
        Err(e) => {
            ui.warn(&format!(
                "cannot start the guardian of this runner's phases ({e}): if this process is killed with SIGKILL, its phases go on running until `wfe resume` (or, for a worker, the phase's lease lapses)"
            ));
            (registry, None)
        }
    }
}

/// The driver ends normally: its guardian sweeps once (nothing, the
/// phases have ended) and exits on its own.
pub(crate) fn finish(guardian: Option<Guardian>) {
    if let Some(guardian) = guardian {
        guardian.finish();
    }
}
