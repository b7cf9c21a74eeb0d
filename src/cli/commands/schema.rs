//! `wfe schema list|show`: the artifact schemas templates can name.

use clap::{Args, Subcommand};

use crate::artifact::builtin_schema_names;
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};

/// List and show artifact schemas
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// List the schemas: the repo's .wfe/schemas/ and the built-ins
    List,
    /// Print a schema by name (or path)
    Show(ShowArgs),
}

/// Print a schema
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A schema name or path
    pub name: String,
}

/// Runs a schema subcommand.
pub(crate) fn run(cmd: SchemaCommand, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    match cmd {
        SchemaCommand::List => {
            let mut names: Vec<String> = builtin_schema_names()
                .into_iter()
                .map(String::from)
                .collect();
            if let Ok(dir) = std::fs::read_dir(ctx.root.join(".wfe/schemas")) {
                for entry in dir.flatten() {
                    if let Some(stem) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                    {
                        names.push(stem.to_string());
                    }
                }
            }
            names.sort();
            names.dedup();
            for name in names {
                let source = ctx
                    .registry
                    .resolve(&name)
                    .map(|r| r.source.to_string())
                    .unwrap_or_else(|e| e.to_string());
                ui.out(&format!("{name:<24} {}", ui.paint(Style::Dim, &source)));
            }
            Ok(Outcome::Success)
        }
        SchemaCommand::Show(args) => {
            let resolved = ctx.registry.resolve(&args.name)?;
            ui.note(&format!("# {}", resolved.source));
            ui.json(&resolved.json);
            Ok(Outcome::Success)
        }
    }
}
