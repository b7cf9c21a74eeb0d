//! The resolved context of a command: repository, config, clock, catalogs.
//! Built once from the parsed flags; commands never re-discover the repo.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::args::GlobalArgs;
use super::config::{Config, DEFAULT_MAX_ARTIFACT_BYTES, user_keys};
use super::error::CliError;
use super::seats::ConfigSeats;
use super::ui::Ui;
use crate::artifact::Registry;
use crate::engine::{DEFAULT_CHECKPOINT_INTERVAL, RunSnapshot, SeatRequest, Seats, Settings};
use crate::provider::keys::provider_key_vars;
use crate::provider::registry::Registry as Providers;
use crate::store::{GitStore, RunId, RunIds, RunLock, RunStore, StoreError};
use crate::template::{Catalog, PhaseKind, Template};
use crate::time::Clock;

/// How long a change made by hand waits for a runner to let go of a run.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything a command needs about where it runs.
pub struct Context {
    /// The repository's run store.
    pub store: GitStore,
    /// The work tree's root.
    pub root: PathBuf,
    /// `.wfe/config.json`.
    pub config: Config,
    /// The clock (pinned by `WFE_NOW` in tests).
    pub clock: Clock,
    /// Where new run ids come from (seeded by `WFE_RUN_ID_SEED` in tests).
    pub run_ids: RunIds,
    /// Schema lookup.
    pub registry: Registry,
    /// Template lookup.
    pub catalog: Catalog,
    /// Where warnings from resolving a run go (`None`: nowhere).
    warnings: Option<Ui>,
}

impl Context {
    /// Finds the repository from `-C` or the current directory.
    pub fn discover(global: &GlobalArgs) -> Result<Context, CliError> {
        let start = match &global.dir {
            // A mistyped `-C` is bad input (exit 2), not a git failure.
            Some(dir) if !dir.is_dir() => {
                let what = if dir.exists() {
                    "is not a directory"
                } else {
                    "does not exist"
                };
                return Err(CliError::input(format!("-C {}: {what}", dir.display())));
            }
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|e| {
                CliError::internal(format!("cannot read the current directory: {e}"))
            })?,
        };
        let store = GitStore::discover(&start)?;
        let mut ctx = Self::for_store(store)?;
        ctx.warnings = Some(Ui::new(global));
        Ok(ctx)
    }

    /// The context of an already opened repository.
    pub fn for_store(store: GitStore) -> Result<Context, CliError> {
        let root = store.info().work_dir.clone().ok_or_else(|| {
            CliError::input(format!(
                "{} is a bare repository; wfe needs a work tree",
                store.info().common_dir.display()
            ))
        })?;
        let config = Config::load(&root)?;
        Ok(Context {
            registry: Registry::new(&root),
            catalog: Catalog::new(&root),
            config,
            clock: clock_from_env()?,
            run_ids: run_ids_from_env()?,
            root,
            store,
            warnings: None,
        })
    }

    /// The commit HEAD points at, or a clear error in a repository without commits.
    pub fn head_commit(&self) -> Result<String, CliError> {
        self.store.info().head_commit.clone().ok_or_else(|| {
            StoreError::NoCommits {
                path: self.root.clone(),
            }
            .into()
        })
    }

    /// Resolves `latest`, an id or a unique prefix.
    /// `latest` passes over broken runs, each named in a warning.
    pub fn resolve_run(&self, name: &str) -> Result<RunId, CliError> {
        // An empty prefix would match every run; say so instead of "no run".
        if name.trim().is_empty() {
            return Err(CliError::input(
                "the run id is empty; expected a run id, a unique prefix of one, or `latest`",
            )
            .hint("`wfe list` shows the runs of this repository"));
        }
        let (run, skipped) = self.store.resolve_skipping(name)?;
        if let Some(ui) = &self.warnings {
            for broken in &skipped {
                ui.skipped_run(&broken.run, &broken.error);
            }
        }
        Ok(run)
    }

    /// [`Context::resolve_run`], or else a run `wfe rm` removed (its
    /// trash is all that is left of it): what `undo` and `rm --purge` act on.
    pub fn resolve_run_or_removed(&self, name: &str) -> Result<RunId, CliError> {
        let missing = match self.resolve_run(name) {
            Err(err) if name != "latest" && !name.is_empty() => err,
            other => return other,
        };
        let lower = name.to_ascii_lowercase();
        let mut hits: Vec<RunId> = self
            .store
            .removed()?
            .into_iter()
            .filter(|r| r.as_str().starts_with(&lower))
            .collect();
        match hits.len() {
            1 => Ok(hits.remove(0)),
            0 => Err(missing),
            _ => Err(StoreError::AmbiguousRun {
                prefix: name.to_string(),
                candidates: hits.iter().take(5).map(|r| r.to_string()).collect(),
            }
            .into()),
        }
    }

    /// A run's state at its tip.
    pub fn snapshot(&self, run: &RunId) -> Result<RunSnapshot, CliError> {
        Ok(RunSnapshot::load_tip(&self.store, run)?)
    }

    /// Who plays `template`'s agent phases: config and keys, or run
    /// `replay`'s recorded exchanges. None when it has no agent phase.
    /// Without `replay`, every seat of `requests` must be fillable first
    /// (see [`Context::check_agent_setup`]).
    pub fn seats(
        &self,
        template: &Template,
        replay: Option<&RunId>,
        requests: &[SeatRequest],
    ) -> Result<Option<Arc<dyn Seats>>, CliError> {
        let agents = template
            .all_phases()
            .into_iter()
            .any(|p| p.kind == PhaseKind::Agent);
        if !agents {
            return Ok(None);
        }
        if replay.is_none() {
            self.check_agent_setup(template, requests)?;
        }
        let seats = ConfigSeats::new(self.providers(), &self.root, &self.store, template, replay)
            .map_err(|e| CliError::input(e.message))?;
        Ok(Some(Arc::new(seats)))
    }

    /// Checks that the config and the user's keys can fill every seat of
    /// `requests` (made for `template`): one error listing every problem.
    pub fn check_agent_setup(
        &self,
        template: &Template,
        requests: &[SeatRequest],
    ) -> Result<(), CliError> {
        super::seats::check(&self.providers(), &template.name, requests)
    }

    /// The providers of the config, with the user's keys.
    fn providers(&self) -> Providers {
        let key_vars = provider_key_vars(&self.config.provider_config());
        Providers::new(self.config.provider_config(), user_keys())
            .in_dir(self.root.clone())
            .without_env(key_vars)
    }

    /// Takes the run's lock for a change made by hand, waiting a bounded
    /// time (saying so) while a runner holds it.
    pub fn lock_waiting(&self, run: &RunId, ui: &Ui) -> Result<RunLock, CliError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut told = false;
        loop {
            match self.store.lock(run, &self.clock.stamp()) {
                Err(StoreError::Locked { holder, .. }) if std::time::Instant::now() < deadline => {
                    if !told {
                        ui.note(&format!(
                            "waiting up to {}s for pid {} on {} to release run {run}…",
                            LOCK_WAIT.as_secs(),
                            holder.pid,
                            holder.host
                        ));
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return Ok(other?),
            }
        }
    }

    /// How runners of this repository work; `jobs` overrides the config.
    pub fn settings(&self, jobs: Option<usize>) -> Settings {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            jobs: jobs.or(self.config.jobs).unwrap_or(cpus).max(1),
            clock: self.clock,
            work_dir: self.root.clone(),
            scratch: self.store.wfe_dir().join("work"),
            live: Some(self.store.wfe_dir().join("live")),
            control: None,
            wait: false,
            seats: None,
            processes: None,
            masker: Default::default(),
            provider_key_vars: Vec::new(),
            worktrees: self.store.worktrees(),
            secret_args: Default::default(),
            deadline: None,
            only: None,
            worker: None,
            checkpoint_interval: self
                .config
                .checkpoint_interval_ms
                .map_or(DEFAULT_CHECKPOINT_INTERVAL, Duration::from_millis),
            max_artifact_bytes: self
                .config
                .max_artifact_bytes
                .unwrap_or(DEFAULT_MAX_ARTIFACT_BYTES),
            max_log_bytes: self
                .config
                .max_log_bytes
                .unwrap_or(crate::attempt::DEFAULT_MAX_LOG_BYTES),
            max_files_bytes: self
                .config
                .max_files_bytes
                .unwrap_or(crate::exec::DEFAULT_MAX_FILES_BYTES),
        }
    }

    /// A path relative to the work tree, for messages.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

/// `WFE_NOW` pins the clock (RFC 3339) so tests get stable timestamps.
fn clock_from_env() -> Result<Clock, CliError> {
    match std::env::var("WFE_NOW") {
        Ok(text) => Clock::parse_fixed(&text)
            .map_err(|e| CliError::input(format!("WFE_NOW=`{text}` is not an RFC 3339 time: {e}"))),
        Err(_) => Ok(Clock::system()),
    }
}

/// `WFE_RUN_ID_SEED` (an unsigned integer) makes run ids deterministic so
/// tests get stable ids: the seed and a counter, at the clock's time.
fn run_ids_from_env() -> Result<RunIds, CliError> {
    match std::env::var("WFE_RUN_ID_SEED") {
        Ok(text) => text.trim().parse().map(RunIds::seeded).map_err(|e| {
            CliError::input(format!(
                "WFE_RUN_ID_SEED=`{text}` is not an unsigned integer: {e}"
            ))
        }),
        Err(_) => Ok(RunIds::random()),
    }
}
