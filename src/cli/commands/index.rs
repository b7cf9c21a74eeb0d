//! `wfe index`: bring the search index up to date, or rebuild it; and the
//! index plumbing every command shares (opening with repair, notices, the
//! runner's background indexing).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Ui, human_duration};
use crate::index::{Background, CatchUp, IndexError, Rebuilt, SearchIndex};
use crate::store::{GitStore, RunId};

/// How long `wfe search` waits for another process's index writer before
/// answering from the index as it is.
pub(crate) const SEARCH_WAIT: Duration = Duration::from_millis(500);
/// How long `wfe index` waits for it.
const INDEX_WAIT: Duration = Duration::from_secs(30);
/// How long a finished run waits for its last checkpoint to be indexed.
const RUN_END_WAIT: Duration = Duration::from_secs(2);

/// Update the search index, or rebuild it from the runs' refs
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Throw the index away and build it again from refs/wfe/runs/
    #[arg(long)]
    pub rebuild: bool,
}

/// Runs `wfe index`.
pub(crate) fn run(args: IndexArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let start = Instant::now();
    let (index, report) = if args.rebuild {
        let dir = index_dir(ctx);
        let mut index = SearchIndex::create(&dir)?;
        let report = index.catch_up(&ctx.store, INDEX_WAIT)?;
        (index, report)
    } else {
        open_current(ctx, ui, INDEX_WAIT)?
    };
    if report.busy {
        return Err(CliError::conflict(
            "another wfe process kept the search index busy; try again when it is done",
        ));
    }
    let state = index.state()?;
    ui.note(&format!(
        "indexed {} run{} ({} document{} added, {} removed{}) in {}; the index holds {} documents of {} runs, {:.1} MB at {}",
        report.runs_indexed,
        plural(report.runs_indexed),
        report.docs_added,
        plural(report.docs_added),
        report.docs_removed,
        if report.runs_removed > 0 {
            format!(", {} deleted run{} dropped", report.runs_removed, plural(report.runs_removed))
        } else {
            String::new()
        },
        human_duration(start.elapsed()),
        index.num_docs()?,
        state.len(),
        index.size_bytes() as f64 / 1e6,
        ctx.relative(index.dir()).display(),
    ));
    Ok(Outcome::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `<git-dir>/wfe/index/`.
pub(crate) fn index_dir(ctx: &Context) -> PathBuf {
    ctx.store.wfe_dir().join("index")
}

/// Opens the index (repairing it, with a notice, if it must), then brings
/// it up to date with every run's ref.
pub(crate) fn open_current(
    ctx: &Context,
    ui: &Ui,
    wait: Duration,
) -> Result<(SearchIndex, CatchUp), CliError> {
    let dir = index_dir(ctx);
    let (mut index, rebuilt) = SearchIndex::open(&dir)?;
    if let Some(why) = &rebuilt {
        notice(ui, why);
    }
    let report = match index.catch_up(&ctx.store, wait) {
        Err(e) if e.is_index_failure() => {
            index = rebuild(ui, &dir, &e)?;
            index.catch_up(&ctx.store, wait)?
        }
        other => other?,
    };
    for (run, why) in &report.failed {
        ui.skipped_run(run, why);
    }
    Ok((index, report))
}

/// Builds an empty index in place of one that failed with `error`.
pub(crate) fn rebuild(
    ui: &Ui,
    dir: &std::path::Path,
    error: &IndexError,
) -> Result<SearchIndex, CliError> {
    notice(ui, &Rebuilt::Corrupt(error.brief()));
    Ok(SearchIndex::create(dir)?)
}

/// The one-line notice of a rebuild.
fn notice(ui: &Ui, why: &Rebuilt) {
    ui.note(&format!("note: {why}; building it from refs/wfe/runs/"));
}

/// Starts indexing run `id` beside its runner, when the repository has a
/// search index (with none, nothing runs beside the run at all). The
/// indexer opens the repository a second time: the runner keeps its store.
pub(crate) fn start_background(ctx: &Context, id: &RunId) -> Option<Background> {
    let dir = index_dir(ctx);
    if !dir.join("meta.json").is_file() {
        return None;
    }
    let root = ctx.root.clone();
    Some(Background::start(
        move || GitStore::discover(&root).ok(),
        dir,
        id.clone(),
    ))
}

/// Lets the background indexer finish the run's last checkpoint (briefly);
/// a failure is one quiet note, never an error: `wfe search` catches up.
pub(crate) fn finish_background(indexer: Option<Background>, ui: &Ui) {
    if let Some(why) = indexer.and_then(|b| b.finish(RUN_END_WAIT)) {
        ui.note(&format!(
            "note: the search index was not updated ({why}); `wfe search` will catch up"
        ));
    }
}
