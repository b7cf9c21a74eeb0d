//! `wfe run --detach`: the run is created (everything validated, exit 2
//! on bad input) in the foreground, then a background `wfe resume`
//! drives it: a child process in a session of its own (so the parent's
//! terminal, process group and exit do not reach it), stdin closed, its
//! output in `<git-dir>/wfe/detached/<id>.log`.

use std::process::{Command, Stdio};

use super::commands::run::DriveArgs;
use super::context::Context;
use super::error::CliError;
use crate::store::RunId;

/// Starts the background runner of `id` with the drive flags it was asked
/// for; returns once the child has started.
pub(crate) fn spawn(ctx: &Context, id: &RunId, flags: &DriveArgs) -> Result<(), CliError> {
    let dir = ctx.store.wfe_dir().join("detached");
    let log_path = dir.join(format!("{id}.log"));
    let io = |what: &str, e: std::io::Error| {
        CliError::internal(format!("cannot {what} for the detached run {id}: {e}"))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create its log directory", e))?;
    let log = std::fs::File::create(&log_path).map_err(|e| io("create its log", e))?;
    let log_err = log.try_clone().map_err(|e| io("open its log", e))?;
    let exe = std::env::current_exe().map_err(|e| io("find the wfe executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-C")
        .arg(&ctx.root)
        .args(["resume", id.as_str(), "--detached-child"])
        .args(forwarded(flags)?)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // The child is reaped by init once this process exits; nothing waits for it.
    cmd.spawn()
        .map_err(|e| io("start the background runner", e))?;
    Ok(())
}

/// The drive flags as arguments for the background runner (`--json` has no
/// reader there; a relative `--junit` path is made absolute, since the
/// child starts elsewhere).
fn forwarded(flags: &DriveArgs) -> Result<Vec<String>, CliError> {
    let mut args = Vec::new();
    if let Some(jobs) = flags.jobs {
        args.push(format!("--jobs={jobs}"));
    }
    if flags.no_output {
        args.push("--no-output".into());
    }
    if flags.wait {
        args.push("--wait".into());
    }
    let ci = &flags.ci;
    if ci.ci {
        args.push("--ci".into());
    }
    if ci.no_ci {
        args.push("--no-ci".into());
    }
    if let Some(path) = &ci.junit {
        let abs = std::path::absolute(path)
            .map_err(|e| CliError::input(format!("--junit {}: {e}", path.display())))?;
        args.push(format!("--junit={}", abs.display()));
    }
    if let Some(d) = ci.deadline {
        args.push(format!("--deadline={}ms", d.as_millis()));
    }
    for phase in &ci.approve {
        args.push(format!("--approve={phase}"));
    }
    if ci.approve_all {
        args.push("--approve-all".into());
    }
    Ok(args)
}

/// In the background runner: leave the parent's session and process group,
/// so a hang-up or a signal to the parent's group does not stop the run.
pub(crate) fn leave_session() {
    // Fails only for a process-group leader, which a freshly spawned child
    // is not; then it keeps running in the parent's session, still detached
    // from its stdio.
    let _ = rustix::process::setsid();
}
