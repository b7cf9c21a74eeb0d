//! `wfe init`: `.wfe/` with a config and editable copies of the built-ins.

use std::path::Path;

use clap::Args;

use crate::artifact::{builtin_schema, builtin_schema_names};
use crate::cli::config::Config;
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::template::BUILTIN_TEMPLATES;

/// Create .wfe/ with a config, the built-in templates and schemas
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite files that already exist
    #[arg(long)]
    pub force: bool,
}

/// Runs `wfe init`.
pub(crate) fn run(args: InitArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let written = write_starter_files(&ctx.root, args.force)?;
    for (path, wrote) in &written {
        let verb = if *wrote { "created" } else { "kept   " };
        ui.note(&format!("{verb} {}", path));
    }
    ui.note("next: `wfe template list`, then `wfe run hello`");
    Ok(Outcome::Success)
}

/// Writes `.wfe/config.json`, `.wfe/templates/*`, `.wfe/schemas/*` under
/// `root`; returns each relative path and whether it was written (existing
/// files are kept unless `force`).
pub(crate) fn write_starter_files(
    root: &Path,
    force: bool,
) -> Result<Vec<(String, bool)>, CliError> {
    let mut files: Vec<(String, String)> = Vec::new();
    let config = serde_json::to_string_pretty(&Config::starter()).unwrap_or_default();
    files.push((".wfe/config.json".into(), format!("{config}\n")));
    for (name, text) in BUILTIN_TEMPLATES {
        files.push((format!(".wfe/templates/{name}.json"), text.to_string()));
    }
    for name in builtin_schema_names() {
        if let Some(text) = builtin_schema(name) {
            files.push((format!(".wfe/schemas/{name}.json"), text.to_string()));
        }
    }
    let mut out = Vec::new();
    for (rel, text) in files {
        let path = root.join(&rel);
        if path.exists() && !force {
            out.push((rel, false));
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
        out.push((rel, true));
    }
    Ok(out)
}
