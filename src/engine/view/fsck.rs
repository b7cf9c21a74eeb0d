//! `wfe fsck`: whether each run can be read back whole, and where not.
//!
//! Read-only. Per run: its ref resolves to a commit; every checkpoint of
//! its chain is present, carries the run's `Wfe-Run` trailer and has a
//! tree with `run.json`; at the tip, every file (but the workspace
//! snapshot, which is the user's code) can be read, `run.json`,
//! `template.json` and each phase's `state.json` parse, the frozen schemas
//! compile, each artifact validates against its frozen schema, and the
//! tip's trailers agree with `run.json`. Every problem names the
//! checkpoint and the path where it was found, so one broken run is
//! described without reading any other.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::artifact::Schema;
use crate::engine::{CheckpointMessage, EngineError, PhaseState, RunRecord, RunSnapshot, layout};
use crate::store::{CheckpointId, EntryKind, RunId, RunStore, StoreError, WORKSPACE};
use crate::template::{Phase, Template};

/// One thing wrong with a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The checkpoint where it was found; `None` when the ref itself is wrong.
    pub checkpoint: Option<String>,
    /// The file (or, for the ref or a commit, the ref's name) involved.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What checking one run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunCheck {
    /// The run.
    pub run: String,
    /// What its ref points at, if it could be read.
    pub tip: Option<String>,
    /// Checkpoints found on its chain.
    pub checkpoints: usize,
    /// No problem found.
    pub ok: bool,
    /// What is wrong, in the order found.
    pub problems: Vec<Problem>,
}

/// What checking the runs found; serialises as `wfe fsck --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Every run checked is fine.
    pub ok: bool,
    /// Each run checked, newest run id first.
    pub runs: Vec<RunCheck>,
}

/// Checks every run (readable or broken), or only `only`. Fails only when
/// the runs cannot be listed at all.
pub fn check_runs(store: &dyn RunStore, only: Option<&RunId>) -> Result<FsckReport, StoreError> {
    let runs: Vec<RunId> = match only {
        Some(run) => vec![run.clone()],
        None => {
            let list = store.scan()?;
            let mut runs: Vec<RunId> = list
                .heads
                .into_iter()
                .map(|h| h.run)
                .chain(list.broken.into_iter().map(|b| b.run))
                .collect();
            runs.sort_by(|a, b| b.cmp(a));
            runs
        }
    };
    let runs: Vec<RunCheck> = runs.iter().map(|run| check_run(store, run)).collect();
    Ok(FsckReport {
        ok: runs.iter().all(|r| r.ok),
        runs,
    })
}

/// Checks one run.
pub fn check_run(store: &dyn RunStore, run: &RunId) -> RunCheck {
    let mut checker = Checker {
        store,
        run,
        problems: Vec::new(),
    };
    let (tip, checkpoints) = checker.chain();
    if let Some(tip) = &tip
        && checkpoints > 0
    {
        checker.tip(tip);
    }
    RunCheck {
        run: run.to_string(),
        tip: tip.map(|t| t.0),
        checkpoints,
        ok: checker.problems.is_empty(),
        problems: checker.problems,
    }
}

struct Checker<'a> {
    store: &'a dyn RunStore,
    run: &'a RunId,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, at: Option<&CheckpointId>, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            checkpoint: at.map(|c| c.0.clone()),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn engine_problem(&mut self, at: &CheckpointId, fallback: &str, err: EngineError) {
        match err {
            EngineError::Corrupt { path, message, .. } => self.problem(Some(at), &path, message),
            other => self.problem(Some(at), fallback, other.to_string()),
        }
    }

    /// Walks the checkpoint chain from the ref; returns the tip (if the
    /// ref could be read) and how many checkpoints were read.
    fn chain(&mut self) -> (Option<CheckpointId>, usize) {
        let ref_name = self.run.ref_name();
        let tip = match self.store.tip(self.run) {
            Ok(Some(tip)) => tip,
            Ok(None) => {
                self.problem(None, &ref_name, "the ref does not exist");
                return (None, 0);
            }
            Err(err) => {
                self.problem(None, &ref_name, err.to_string());
                return (None, 0);
            }
        };
        let mut count = 0;
        let mut next = Some(tip.clone());
        while let Some(id) = next {
            let cp = match self.store.checkpoint(&id) {
                Ok(cp) => cp,
                Err(err) => {
                    let what = if count == 0 {
                        "the ref's tip is not a readable checkpoint"
                    } else {
                        "a checkpoint of the run's history cannot be read"
                    };
                    self.problem(Some(&id), &ref_name, format!("{what}: {err}"));
                    break;
                }
            };
            count += 1;
            let trailers = CheckpointMessage::parse(&cp.message);
            if trailers.run != self.run.as_str() {
                let found = if trailers.run.is_empty() {
                    "no Wfe-Run trailer".to_string()
                } else {
                    format!("Wfe-Run `{}`", trailers.run)
                };
                self.problem(
                    Some(&id),
                    "(commit message)",
                    format!("the commit has {found}, expected Wfe-Run `{}`", self.run),
                );
            }
            // The tip's tree is read whole below; older ones just have to be there.
            if count > 1 {
                match self.store.read(&id, layout::RUN) {
                    Ok(Some(_)) => {}
                    Ok(None) => self.problem(Some(&id), layout::RUN, "the file is missing"),
                    Err(err) => self.problem(Some(&id), layout::RUN, err.to_string()),
                }
            }
            next = cp.parent;
        }
        (Some(tip), count)
    }

    /// Everything at the tip.
    fn tip(&mut self, tip: &CheckpointId) {
        self.objects(tip, "");
        let before = self.problems.len();
        let record: Option<RunRecord> = self.json(tip, layout::RUN);
        let template: Option<Template> = self.json(tip, layout::TEMPLATE);
        if let Some(record) = &record {
            self.trailers(tip, record);
        }
        if let Some(template) = &template {
            // A phase that never started may have no state file (it is pending).
            for phase in &crate::template::expand(template).phases {
                let path = layout::state(&phase.id);
                if let Ok(Some(_)) = self.store.read(tip, &path) {
                    let _: Option<PhaseState> = self.json(tip, &path);
                }
            }
        }
        if self.problems.len() > before || record.is_none() || template.is_none() {
            return;
        }
        let snap = match RunSnapshot::load(self.store, self.run, tip) {
            Ok(snap) => snap,
            Err(err) => return self.engine_problem(tip, layout::RUN, err),
        };
        let schemas = match snap.schemas(self.store) {
            Ok(schemas) => schemas,
            Err(err) => return self.engine_problem(tip, layout::SCHEMAS, err),
        };
        // Every phase, a loop's children (at any depth) in the current
        // iteration of each loop around them; a child of a loop with no
        // iteration yet has no files.
        for phase in snap.template.all_phases() {
            let state = snap.state_of(&phase.id);
            let nested = snap.parent_of(&phase.id).is_some();
            if nested && state.is_none() {
                continue;
            }
            let forced = state.map_or(&[][..], |s| s.forced.as_slice());
            let key = snap.key_at(&phase.id, &snap.current_iterations(&phase.id));
            self.artifacts(tip, &schemas, &key, phase, forced);
        }
    }

    /// Reads every file under `dir` but the workspace snapshot, so a missing
    /// blob or tree is found wherever it is.
    fn objects(&mut self, at: &CheckpointId, dir: &str) {
        let entries = match self.store.list_dir(at, dir) {
            Ok(entries) => entries,
            Err(err) => {
                let shown = if dir.is_empty() { "(tree)" } else { dir };
                return self.problem(Some(at), shown, err.to_string());
            }
        };
        for (name, kind) in entries {
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            match kind {
                EntryKind::Dir if path == WORKSPACE => {}
                EntryKind::Dir => self.objects(at, &path),
                EntryKind::File => {
                    if let Err(err) = self.store.read(at, &path) {
                        self.problem(Some(at), &path, err.to_string());
                    }
                }
            }
        }
    }

    /// Parses the file at `path`; a problem (and `None`) if it is missing or invalid.
    fn json<T: DeserializeOwned>(&mut self, at: &CheckpointId, path: &str) -> Option<T> {
        let bytes = match self.store.read(at, path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                self.problem(Some(at), path, "the file is missing");
                return None;
            }
            // Already reported by the object walk.
            Err(_) => return None,
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(err) => {
                self.problem(Some(at), path, format!("not what wfe writes here: {err}"));
                None
            }
        }
    }

    /// The tip's trailers against `run.json`.
    fn trailers(&mut self, tip: &CheckpointId, record: &RunRecord) {
        let Ok(cp) = self.store.checkpoint(tip) else {
            return;
        };
        let trailers = CheckpointMessage::parse(&cp.message);
        if record.id != self.run.as_str() {
            self.problem(
                Some(tip),
                layout::RUN,
                format!("`id` is `{}`, not the run's id {}", record.id, self.run),
            );
        }
        if trailers.template != record.template {
            self.problem(
                Some(tip),
                "(commit message)",
                format!(
                    "Wfe-Template `{}` disagrees with run.json's template `{}`",
                    trailers.template, record.template
                ),
            );
        }
        match trailers.status {
            Some(status) if status == record.status => {}
            Some(status) => self.problem(
                Some(tip),
                "(commit message)",
                format!(
                    "Wfe-Status `{}` disagrees with run.json's status `{}`",
                    status.as_str(),
                    record.status.as_str()
                ),
            ),
            None => self.problem(
                Some(tip),
                "(commit message)",
                format!(
                    "no readable Wfe-Status trailer (run.json says `{}`)",
                    record.status.as_str()
                ),
            ),
        }
    }

    /// Each artifact `phase` (at `key`) has, against its frozen schema.
    /// One a person accepted despite its schema (`forced`: `wfe accept
    /// --force`, an invalid `wfe edit`) is still reported when it does not
    /// match, saying so: the run goes on with it, but it is not valid.
    fn artifacts(
        &mut self,
        at: &CheckpointId,
        schemas: &BTreeMap<String, Arc<Schema>>,
        key: &str,
        phase: &Phase,
        forced: &[String],
    ) {
        for (name, schema_name) in &phase.outputs {
            let path = layout::artifact(key, name);
            let Ok(Some(bytes)) = self.store.read(at, &path) else {
                continue;
            };
            let value: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(err) => {
                    self.problem(Some(at), &path, format!("not JSON: {err}"));
                    continue;
                }
            };
            let Some(schema) = schemas.get(schema_name) else {
                self.problem(
                    Some(at),
                    &path,
                    format!("its schema `{schema_name}` is not frozen in the run"),
                );
                continue;
            };
            let how = if forced.contains(name) {
                "was force-accepted and "
            } else {
                ""
            };
            for violation in schema.validate(&value) {
                self.problem(
                    Some(at),
                    &path,
                    format!(
                        "{how}does not match schema `{schema_name}`: at {}: {}",
                        violation.at(),
                        violation.message
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;
    use crate::store::{Change, Message};

    #[test]
    fn healthy_runs_are_ok() {
        let f = Fixture::new();
        let failed = f.failed_run();
        let looped = f.loop_run();
        let report = check_runs(&f.store, None).unwrap();
        assert!(report.ok, "{report:#?}");
        let runs: Vec<&str> = report.runs.iter().map(|r| r.run.as_str()).collect();
        assert_eq!(runs, [looped.as_str(), failed.as_str()]);
        assert!(report.runs.iter().all(|r| r.checkpoints >= 1));
    }

    #[test]
    fn bad_files_and_trailers_are_named_with_their_path() {
        let f = Fixture::new();
        let run = f.failed_run();
        let tip = f.store.tip(&run).unwrap().unwrap();
        let cp = f.store.checkpoint(&tip).unwrap();
        let mut trailers = CheckpointMessage::parse(&cp.message);
        trailers.status = Some(crate::engine::RunStatus::Completed);
        f.store
            .commit(
                &run,
                Some(&tip),
                &[Change::write(layout::TEMPLATE, "{not json")],
                &trailers.to_message(),
                1,
            )
            .unwrap();
        let check = check_run(&f.store, &run);
        assert!(!check.ok);
        let paths: Vec<&str> = check.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, [layout::TEMPLATE, "(commit message)"], "{check:#?}");
        assert!(check.problems[1].message.contains("Wfe-Status `completed`"));

        let tip = f.store.tip(&run).unwrap().unwrap();
        f.store
            .commit(&run, Some(&tip), &[], &Message::new("hand-made"), 2)
            .unwrap();
        let check = check_run(&f.store, &run);
        assert!(
            check.problems[0]
                .message
                .contains("the commit has no Wfe-Run trailer"),
            "{check:#?}"
        );
    }

    #[test]
    fn artifacts_are_checked_against_the_frozen_schemas() {
        let f = Fixture::new();
        let run = f.failed_run();
        let commit = |changes: &[Change]| {
            let tip = f.store.tip(&run).unwrap().unwrap();
            let message = f.store.checkpoint(&tip).unwrap().message;
            f.store
                .commit(&run, Some(&tip), changes, &message, 1)
                .unwrap();
        };
        let note = layout::artifact("boom", "note");
        commit(&[Change::write(note.as_str(), "{\"nottext\": 1}")]);
        let check = check_run(&f.store, &run);
        assert_eq!(check.problems.len(), 1, "{check:#?}");
        assert_eq!(check.problems[0].path, note);
        assert!(
            check.problems[0]
                .message
                .starts_with("does not match schema `message`: at (root): "),
            "{check:#?}"
        );

        commit(&[Change::Remove {
            path: "schemas/message.json".into(),
        }]);
        let check = check_run(&f.store, &run);
        assert_eq!(check.problems.len(), 1, "{check:#?}");
        assert_eq!(check.problems[0].path, "schemas/message.json");
        assert_eq!(check.problems[0].message, "the frozen schema is missing");
    }
}
