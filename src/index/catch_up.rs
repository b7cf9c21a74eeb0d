//! Bringing the index up to date with the runs' refs.
//!
//! The state records, per run, the checkpoint its documents were read
//! from. A run whose ref points elsewhere is brought to its tip: when the
//! new tip descends from the recorded one and the run's status is the same,
//! the two checkpoints are compared and only the files whose content
//! changed are replaced (the common case: a runner adding a checkpoint);
//! otherwise (rollback, undo, a rewritten ref) all of the run's documents
//! are replaced. A run whose ref is gone (`rm`) loses its documents. All of
//! it lands in one atomic commit, which also switches the state. An error
//! midway drops the writer, and with it whatever it had not committed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, OwnedValue};
use tantivy::{IndexWriter, TantivyDocument, Term};

use super::IndexError;
use super::extract::{self, RunFacts, Source};
use super::fields::{DocMeta, date, tag};
use super::search_index::{Held, SearchIndex};
use super::state::IndexState;
use crate::store::{CheckpointId, RunId, RunStore, StoreError};

/// How far back a new tip is searched for the recorded one before the run
/// is treated as rewritten.
const MAX_WALK: usize = 100_000;

/// What a catch-up did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// Runs whose documents were added or replaced.
    pub runs_indexed: usize,
    /// Runs whose ref is gone, with their documents.
    pub runs_removed: usize,
    /// Documents added.
    pub docs_added: usize,
    /// Documents removed (replaced ones included).
    pub docs_removed: usize,
    /// Another process was writing the index: nothing was done now.
    pub busy: bool,
    /// Runs that could not be read (broken refs, unreadable checkpoints),
    /// with why; they keep what the index had of them and are tried again
    /// next time.
    pub failed: Vec<(RunId, String)>,
}

/// An order-independent fingerprint of `run tip` pairs: their count and
/// two sums of per-pair hashes (128 bits), equal for equal sets.
pub(super) fn fingerprint<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> (usize, u64, u64) {
    pairs.fold((0, 0, 0), |(n, a, b), (run, tip)| {
        let h1 = fnv(
            fnv(0xcbf2_9ce4_8422_2325, run.as_bytes()) ^ 0x20,
            tip.as_bytes(),
        );
        let h2 = fnv(
            fnv(0x8422_2325_cbf2_9ce4, tip.as_bytes()) ^ 0x0a,
            run.as_bytes(),
        );
        (
            n + 1,
            a.wrapping_add(h1),
            b.wrapping_add(h2.rotate_left(17)),
        )
    })
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Which runs to look at.
enum Scope<'a> {
    All,
    Run(&'a RunId),
}

impl SearchIndex {
    /// Brings every run up to its ref's tip, drops runs whose ref is gone.
    /// Waits up to `wait` for another process's writer, then gives up
    /// quietly (`busy`).
    pub fn catch_up(
        &mut self,
        store: &dyn RunStore,
        wait: Duration,
    ) -> Result<CatchUp, IndexError> {
        self.apply(store, Scope::All, wait)
    }

    /// Brings one run up to its ref's tip (or drops it if it is gone).
    pub fn catch_up_run(
        &mut self,
        store: &dyn RunStore,
        run: &RunId,
        wait: Duration,
    ) -> Result<CatchUp, IndexError> {
        self.apply(store, Scope::Run(run), wait)
    }

    fn apply(
        &mut self,
        store: &dyn RunStore,
        scope: Scope<'_>,
        wait: Duration,
    ) -> Result<CatchUp, IndexError> {
        // A broken run keeps what the index has of it (it may be repaired)
        // and is reported; the others are brought up to date.
        let mut broken: Vec<(RunId, String)> = Vec::new();
        let mut tips: BTreeMap<String, CheckpointId> = match scope {
            // The refs alone, no commit read: comparing their targets with
            // the recorded tips is all a search that finds nothing to do costs.
            Scope::All => {
                let mut tips = BTreeMap::new();
                for r in store.refs()? {
                    match r.tip {
                        Ok(tip) => {
                            tips.insert(r.run.to_string(), tip);
                        }
                        Err(e) => broken.push((r.run, e.to_string())),
                    }
                }
                tips
            }
            Scope::Run(run) => store
                .tip(run)?
                .map(|tip| (run.to_string(), tip))
                .into_iter()
                .collect(),
        };
        // A moved ref whose commit cannot be read (a ref to a missing
        // object, fetched half-way) is broken: kept as it was, not retried
        // under the writer at every search. Only moved tips are read.
        let first_state = match scope {
            Scope::All => Some(match &self.held {
                Some(held) => held.state.clone(),
                None => self.state()?,
            }),
            Scope::Run(_) => None,
        };
        // The common case, nothing moved, in one pass and no map: the
        // refs' `run tip` pairs and the recorded ones as one fingerprint each.
        if let Some(state) = &first_state
            && state.fingerprint()
                == fingerprint(tips.iter().map(|(r, t)| (r.as_str(), t.0.as_str())))
        {
            broken.sort_by(|a, b| b.0.cmp(&a.0));
            return Ok(CatchUp {
                failed: broken,
                ..CatchUp::default()
            });
        }
        if let Some(state) = &first_state {
            // One map of the recorded tips: `state.tip` scans the whole
            // state text, so asking it once per run is quadratic (seconds
            // at 10,000 runs).
            let known = state.tips();
            let unreadable: Vec<(String, String)> = tips
                .iter()
                .filter(|(run, tip)| known.get(run.as_str()) != Some(&tip.0.as_str()))
                .filter_map(|(run, tip)| Some((run.clone(), store.checkpoint(tip).err()?)))
                .map(|(run, e)| (run, e.to_string()))
                .collect();
            for (run, error) in unreadable {
                tips.remove(&run);
                if let Some(id) = RunId::parse(&run) {
                    broken.push((id, error));
                }
            }
            // Newest first, as listing names them.
            broken.sort_by(|a, b| b.0.cmp(&a.0));
        }
        let plan = |state: &IndexState| -> (Vec<(RunId, CheckpointId)>, Vec<RunId>) {
            match scope {
                Scope::All => {
                    let known = state.tips();
                    let changed = tips
                        .iter()
                        .filter(|(run, tip)| known.get(run.as_str()) != Some(&tip.0.as_str()))
                        .filter_map(|(run, tip)| Some((RunId::parse(run)?, tip.clone())))
                        .collect();
                    let gone = known
                        .keys()
                        .filter(|run| !tips.contains_key(**run))
                        .filter(|run| !broken.iter().any(|(b, _)| b.as_str() == **run))
                        .filter_map(|run| RunId::parse(run))
                        .collect();
                    (changed, gone)
                }
                // One run: a lookup, not a map of every run.
                Scope::Run(run) => match (tips.get(run.as_str()), state.tip(run.as_str())) {
                    (Some(tip), known) if known != Some(tip.0.as_str()) => {
                        (vec![(run.clone(), tip.clone())], Vec::new())
                    }
                    (None, Some(_)) => (Vec::new(), vec![run.clone()]),
                    _ => (Vec::new(), Vec::new()),
                },
            }
        };
        // Most searches find nothing to do: decide that without the writer.
        // (A runner asks about its own run only when it just moved.)
        if let Some(state) = &first_state {
            let (changed, gone) = plan(state);
            if changed.is_empty() && gone.is_empty() {
                return Ok(CatchUp {
                    failed: broken.clone(),
                    ..CatchUp::default()
                });
            }
        }
        let (mut writer, mut state) = match self.held.take() {
            // Nobody else can have committed while it was held.
            Some(held) => (held.writer, held.state),
            None => {
                let Some(writer) = self.writer(wait)? else {
                    return Ok(CatchUp {
                        busy: true,
                        failed: broken.clone(),
                        ..CatchUp::default()
                    });
                };
                // Another process may have committed before the lock was ours.
                let state = self.state()?;
                (writer, state)
            }
        };
        let (changed, gone) = plan(&state);
        if changed.is_empty() && gone.is_empty() {
            if self.keep {
                self.held = Some(Held { writer, state });
            }
            return Ok(CatchUp {
                failed: broken.clone(),
                ..CatchUp::default()
            });
        }
        // Counting a run's documents needs the latest commit; the common
        // case (a runner's new checkpoint) never counts, so never reloads.
        self.stale.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut report = CatchUp {
            failed: broken.clone(),
            ..CatchUp::default()
        };
        let mut moved = BTreeMap::new();
        for (run, tip) in changed {
            let old = state.tip(run.as_str()).map(|t| CheckpointId(t.to_string()));
            match self.update_run(&writer, store, &run, &tip, old.as_ref()) {
                Ok((added, removed)) => {
                    report.runs_indexed += 1;
                    report.docs_added += added;
                    report.docs_removed += removed;
                    moved.insert(run.to_string(), Some(tip.0));
                }
                Err(UpdateError::Store(e)) => report.failed.push((run, e.to_string())),
                Err(UpdateError::Index(e)) => return Err(e),
            }
        }
        for run in gone {
            report.docs_removed += self.indexed_count(&run)?;
            writer.delete_term(self.run_term(&run));
            moved.insert(run.to_string(), None);
            report.runs_removed += 1;
        }
        state.update(&moved);
        self.save_state(&mut state)?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(state.header());
        prepared.commit()?;
        self.drop_states_but(state.generation());
        self.stale.store(true, std::sync::atomic::Ordering::Relaxed);
        if self.keep {
            // Merges go on in the background; letting go waits for them.
            self.held = Some(Held { writer, state });
        } else {
            // Merge the small segments each commit makes now, while the
            // writer is ours: a short-lived process would otherwise leave
            // them all.
            writer.wait_merging_threads()?;
        }
        Ok(report)
    }

    /// Replaces what changed of `run` between `old` and `tip`; returns the
    /// documents added and removed. Everything is read from the store
    /// before the writer is touched, so a run that cannot be read leaves
    /// the index as it was.
    fn update_run(
        &self,
        writer: &IndexWriter,
        store: &dyn RunStore,
        run: &RunId,
        tip: &CheckpointId,
        old: Option<&CheckpointId>,
    ) -> Result<(usize, usize), UpdateError> {
        let now = extract::read_checkpoint(store, tip)?;
        // What the index holds is what `old` held: compare the two
        // checkpoints, not the index (which then needs no digests).
        let was = match old {
            Some(old) if descends(store, tip, old)? => Some(extract::read_checkpoint(store, old)?),
            _ => None,
        };
        let was = was.filter(|was| {
            was.facts.status == now.facts.status && was.facts.template == now.facts.template
        });
        let (mut added, mut removed) = (0, 0);
        let Some(was) = was else {
            // New, rolled back, rewritten, or its status changed: all of it.
            removed += self.indexed_count(run)?;
            writer.delete_term(self.run_term(run));
            for source in &now.sources {
                added += self.add_source(writer, run, &now.facts, source)?;
            }
            return Ok((added, removed));
        };
        let before: HashMap<&str, &Source> =
            was.sources.iter().map(|s| (s.path.as_str(), s)).collect();
        let after: HashMap<&str, &Source> =
            now.sources.iter().map(|s| (s.path.as_str(), s)).collect();
        for (path, source) in &before {
            if after.get(path).map(|s| s.hash) != Some(source.hash) {
                writer.delete_term(self.key_term(run, path));
                removed += source.entries().len();
            }
        }
        for source in &now.sources {
            if before.get(source.path.as_str()).map(|s| s.hash) != Some(source.hash) {
                added += self.add_source(writer, run, &now.facts, source)?;
            }
        }
        Ok((added, removed))
    }

    /// Adds the documents of one file; returns how many.
    fn add_source(
        &self,
        writer: &IndexWriter,
        run: &RunId,
        facts: &RunFacts,
        source: &Source,
    ) -> Result<usize, IndexError> {
        let f = &self.fields;
        let entries = source.entries();
        let count = entries.len();
        for entry in entries {
            let meta = DocMeta {
                run: run.to_string(),
                template: facts.template.clone(),
                phase: entry.phase.clone().or_else(|| source.phase.clone()),
                attempt: entry.attempt.or(source.attempt),
                schema: source.schema.clone(),
                status: facts.status.clone(),
                kind: source.kind.as_str().to_string(),
                path: source.path.clone(),
                line: entry.line,
                checkpoint: facts.checkpoint.0.clone(),
                time: entry.time.or(source.time).unwrap_or(facts.time),
            };
            let mut doc = TantivyDocument::new();
            doc.add_text(f.tags, tag("key", &key(run, &source.path)));
            for (name, value) in meta.tags() {
                if let Some(value) = value {
                    doc.add_text(f.tags, tag(name, &value));
                }
            }
            doc.add_date(f.time, date(meta.time));
            doc.add_text(f.meta, meta.render());
            doc.add_text(f.text, &entry.text);
            if let Some(json) = entry.json {
                doc.add_field_value(f.json, &OwnedValue::from(json));
            }
            writer.add_document(doc)?;
        }
        Ok(count)
    }

    /// How many documents the last commit holds for `run`.
    fn indexed_count(&self, run: &RunId) -> Result<usize, IndexError> {
        let query = TermQuery::new(self.run_term(run), IndexRecordOption::Basic);
        Ok(self.searcher()?.search(&query, &Count)?)
    }

    fn run_term(&self, run: &RunId) -> Term {
        Term::from_field_text(self.fields.tags, &tag("run", run.as_str()))
    }

    fn key_term(&self, run: &RunId, path: &str) -> Term {
        Term::from_field_text(self.fields.tags, &tag("key", &key(run, path)))
    }
}

enum UpdateError {
    /// The run could not be read: skip it, try again next time.
    Store(StoreError),
    /// The index failed: stop.
    Index(IndexError),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        UpdateError::Store(e)
    }
}

impl From<IndexError> for UpdateError {
    fn from(e: IndexError) -> Self {
        UpdateError::Index(e)
    }
}

/// The key shared by every document read from one file of a run.
fn key(run: &RunId, path: &str) -> String {
    format!("{run}/{path}")
}

/// True if `old` is `tip` or one of its ancestors.
fn descends(
    store: &dyn RunStore,
    tip: &CheckpointId,
    old: &CheckpointId,
) -> Result<bool, StoreError> {
    let mut next = Some(tip.clone());
    for _ in 0..MAX_WALK {
        match next {
            Some(id) if id == *old => return Ok(true),
            Some(id) => next = store.checkpoint(&id)?.parent,
            None => return Ok(false),
        }
    }
    Ok(false)
}
