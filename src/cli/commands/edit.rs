//! `wfe edit`: change an artifact in `$VISUAL`/`$EDITOR`, validated on save.

use std::path::Path;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::operations::{self, Checked};

/// Edit an artifact in $VISUAL or $EDITOR; it is validated before it is committed
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The phase
    pub phase: String,
    /// The artifact (one of the phase's outputs)
    pub artifact: String,
    /// Commit the artifact even if it fails its schema (marked forced)
    #[arg(long)]
    pub force: bool,
}

/// Runs `wfe edit`.
pub(crate) fn run(args: EditArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = ctx.lock_waiting(&id, ui)?;
    let snap = ctx.snapshot(&id)?;
    let (phase, artifact) = (args.phase.as_str(), args.artifact.as_str());
    operations::artifact_schema(&ctx.store, &snap, phase, artifact)?;
    let original = operations::editable_artifact(&ctx.store, &snap, phase, artifact)?
        .unwrap_or_else(|| b"{}\n".to_vec());
    let dir = ctx.store.wfe_dir().join("edit");
    let file = dir.join(format!("{id}-{phase}-{artifact}.json"));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, &original))
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", file.display())))?;
    let limit = ctx.settings(None).max_artifact_bytes;
    let mut previous = original.clone();
    loop {
        open_editor(&file)?;
        // Bounded: a file over the limit is never read whole (it stands as
        // empty bytes below, so saving it twice gives up like any invalid
        // edit); a FIFO or a device left there is refused.
        let (bytes, too_large) = match crate::bounded::read(&file, limit) {
            Ok(bytes) => (bytes, None),
            Err(crate::bounded::ReadError::TooLarge { size, .. }) => (Vec::new(), Some(size)),
            Err(e) => return Err(CliError::input(e.to_string())),
        };
        if bytes == original {
            let _ = std::fs::remove_file(&file);
            ui.note("no changes; nothing committed");
            return Ok(Outcome::Success);
        }
        let problems = if let Some(size) = too_large {
            vec![format!(
                "the file is {size} bytes, over the limit of {limit} (max_artifact_bytes)"
            )]
        } else {
            let what = file.display().to_string();
            match operations::check_artifact(&ctx.store, &snap, phase, artifact, &what, &bytes)? {
                Ok(Checked::Valid(value)) => {
                    return commit(ctx, ui, &snap, &args, &value, false, &file);
                }
                Ok(Checked::Invalid(value, _)) if args.force => {
                    return commit(ctx, ui, &snap, &args, &value, true, &file);
                }
                Ok(Checked::Invalid(_, violations)) => {
                    violations.iter().map(ToString::to_string).collect()
                }
                Err(e) => vec![e.to_string()],
            }
        };
        ui.err_line(&format!(
            "{} {phase}/{artifact} is not valid:",
            ui.paint(Style::Red, "error:")
        ));
        for p in &problems {
            ui.err_line(&format!("  {p}"));
        }
        if bytes == previous {
            drop(lock);
            return Err(CliError::input(format!(
                "{phase}/{artifact} is still invalid; nothing committed"
            ))
            .hint(format!(
                "your edit is kept in {}; `--force` commits it anyway",
                file.display()
            )));
        }
        previous = bytes;
        ui.note("re-opening the editor (save it unchanged to give up)");
    }
}

fn commit(
    ctx: &Context,
    ui: &Ui,
    snap: &crate::engine::RunSnapshot,
    args: &EditArgs,
    value: &serde_json::Value,
    forced: bool,
    file: &Path,
) -> Result<Outcome, CliError> {
    // A secret never reaches git, whoever commits it.
    let mut value = value.clone();
    let id = crate::store::RunId::parse(&snap.record.id)
        .ok_or_else(|| CliError::internal(format!("bad run id {}", snap.record.id)))?;
    super::run::run_masker(ctx, &id)?.mask_json(&mut value);
    let checkpoint = operations::set_artifact(
        &ctx.store,
        snap,
        &args.phase,
        &args.artifact,
        &value,
        forced,
        &ctx.clock,
    )?;
    let _ = std::fs::remove_file(file);
    let how = if forced {
        " (forced: it does not match its schema)"
    } else {
        ""
    };
    ui.note(&format!(
        "committed {}/{}{how} as {}",
        args.phase,
        args.artifact,
        checkpoint.short()
    ));
    let stale = operations::stale_dependants(snap, &args.phase);
    if !stale.is_empty() {
        ui.note(&format!(
            "note: {} already ran with the old value",
            stale.join(", ")
        ));
    }
    Ok(Outcome::Success)
}

/// Runs `$VISUAL`, else `$EDITOR`, else `vi` on `file`; the variable may hold arguments.
fn open_editor(file: &Path) -> Result<(), CliError> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| CliError::failed(format!("cannot start the editor `{editor}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "the editor `{editor}` exited with {status}; nothing committed"
        ))
        .hint(format!("your edit is kept in {}", file.display())))
    }
}
