//! `wfe export RUN PHASE DIR`: write everything a phase produced — its
//! JSON artifacts as `DIR/artifacts/<name>.json` and its file artifacts as
//! `DIR/files/<path>` — byte for byte.
//!
//! Every target is checked before anything is written: a path that would
//! leave DIR is refused, an existing file is refused unless `--force`, and
//! a symbolic link on the way (DIR's subdirectories, a target) is refused
//! and never written through, `--force` or not.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::to_file_bytes;
use crate::engine::view;

/// Write a phase's artifacts (JSON and files) into a directory
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// A phase of the run; a loop's child as CHILD (its latest iteration) or CHILD@N
    pub phase: String,
    /// Where to write: DIR/artifacts/NAME.json and DIR/files/PATH (made if missing)
    // Not `dir`: that id is the global `-C DIR`'s.
    #[arg(value_name = "DIR")]
    pub target: PathBuf,
    /// Replace files that already exist (a symbolic link is still refused)
    #[arg(long)]
    pub force: bool,
}

/// Runs `wfe export`.
pub(crate) fn run(args: ExportArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let export = view::phase_export(&ctx.store, &id, &args.phase)?;
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in &export.artifacts {
        writes.push((format!("artifacts/{name}.json"), to_file_bytes(value)));
    }
    for (path, bytes) in export.files {
        writes.push((format!("files/{path}"), bytes));
    }
    if writes.is_empty() {
        ui.note(&format!(
            "phase `{}` of run {id} has no artifacts; nothing written",
            export.phase
        ));
        return Ok(Outcome::Success);
    }
    // Everything is checked before the first write: bad input writes nothing.
    let mut targets = Vec::new();
    for (rel, _) in &writes {
        targets.push(target(&args.target, rel, args.force)?);
    }
    for ((rel, bytes), path) in writes.iter().zip(&targets) {
        write(&args.target, rel, path, bytes, args.force)
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    ui.note(&format!(
        "wrote {} file{} of phase `{}` to {}",
        writes.len(),
        if writes.len() == 1 { "" } else { "s" },
        export.phase,
        args.target.display()
    ));
    Ok(Outcome::Success)
}

/// `dir/rel`, once `rel` is known to stay inside `dir` and nothing in the
/// way is a link (or, without `force`, an existing file).
fn target(dir: &Path, rel: &str, force: bool) -> Result<PathBuf, CliError> {
    let rel_path = Path::new(rel);
    if !rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(CliError::input(format!(
            "refusing to write `{rel}`: the path would leave {}",
            dir.display()
        )));
    }
    let mut path = dir.to_path_buf();
    let count = rel_path.components().count();
    for (k, component) in rel_path.components().enumerate() {
        path.push(component);
        let meta = match fs::symlink_metadata(&path) {
            // Nothing there: nothing below it can be in the way either.
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => {
                return Err(CliError::input(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
            Ok(meta) => meta,
        };
        let last = k + 1 == count;
        if meta.file_type().is_symlink() {
            return Err(CliError::input(format!(
                "refusing to write through {}: it is a symbolic link",
                path.display()
            )));
        }
        if !last && !meta.is_dir() {
            return Err(CliError::input(format!(
                "cannot write {rel}: {} is not a directory",
                path.display()
            )));
        }
        if last && meta.is_dir() {
            return Err(CliError::input(format!(
                "cannot write {}: it is a directory",
                path.display()
            )));
        }
        if last && !force {
            return Err(
                CliError::input(format!("{} already exists", path.display())).hint(
                    "pass --force to replace existing files, or export into an empty directory",
                ),
            );
        }
    }
    Ok(dir.join(rel_path))
}

/// Writes one file: directories made one by one without following links,
/// the file created new (an existing one is removed first with `force`).
fn write(dir: &Path, rel: &str, path: &Path, bytes: &[u8], force: bool) -> io::Result<()> {
    let mut at = dir.to_path_buf();
    fs::create_dir_all(&at)?;
    let parts: Vec<Component> = Path::new(rel).components().collect();
    for component in &parts[..parts.len().saturating_sub(1)] {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(io::Error::other("not a directory (or a symbolic link)")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    if force {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::other("it is a symbolic link"));
            }
            Ok(_) => fs::remove_file(path)?,
            Err(_) => {}
        }
    }
    // `create_new` (O_EXCL) never follows a link nor reuses a file that
    // appeared since the check.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
