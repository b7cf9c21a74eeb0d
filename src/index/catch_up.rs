//! Bringing the index up to date with the runs' refs.
//!
//! The payload records, per run, the checkpoint its documents were read
//! from. A run whose ref points elsewhere is brought to its tip: when the
//! new tip descends from the recorded one and the run's status is the same,
//! only files whose content changed are replaced (the common case: a runner
//! adding a checkpoint); otherwise (rollback, undo, a rewritten ref) all of
//! the run's documents are replaced. A run whose ref is gone (`rm`) loses
//! its documents. All of it lands in one atomic commit with the payload.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, OwnedValue, Value};
use tantivy::{IndexWriter, Searcher, TantivyDocument, Term};

use super::IndexError;
use super::extract::{self, RunFacts, Source};
use super::fields::date;
use super::search_index::SearchIndex;
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
    /// Runs that could not be read, with why; they are tried again next time.
    pub failed: Vec<(RunId, String)>,
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
        let tips: BTreeMap<String, CheckpointId> = match scope {
            Scope::All => store
                .runs()?
                .into_iter()
                .map(|h| (h.run.to_string(), h.tip.id))
                .collect(),
            Scope::Run(run) => store
                .tip(run)?
                .map(|tip| (run.to_string(), tip))
                .into_iter()
                .collect(),
        };
        let plan = |state: &IndexState| -> (Vec<(RunId, CheckpointId)>, Vec<RunId>) {
            let changed = tips
                .iter()
                .filter(|(run, tip)| state.runs.get(*run) != Some(&tip.0))
                .filter_map(|(run, tip)| Some((RunId::parse(run)?, tip.clone())))
                .collect();
            let gone = match scope {
                Scope::All => state
                    .runs
                    .keys()
                    .filter(|run| !tips.contains_key(*run))
                    .filter_map(|run| RunId::parse(run))
                    .collect(),
                Scope::Run(run)
                    if !tips.contains_key(run.as_str())
                        && state.runs.contains_key(run.as_str()) =>
                {
                    vec![run.clone()]
                }
                Scope::Run(_) => Vec::new(),
            };
            (changed, gone)
        };
        // Most searches find nothing to do: decide that without the writer.
        let (changed, gone) = plan(&self.state()?);
        if changed.is_empty() && gone.is_empty() {
            return Ok(CatchUp::default());
        }
        let Some(mut writer) = self.writer(wait)? else {
            return Ok(CatchUp {
                busy: true,
                ..CatchUp::default()
            });
        };
        // Another process may have committed before the lock was ours.
        let mut state = self.state()?;
        let (changed, gone) = plan(&state);
        self.reader.reload()?;
        let searcher = self.reader.searcher();
        let mut report = CatchUp::default();
        for (run, tip) in changed {
            let old = state
                .runs
                .get(run.as_str())
                .map(|t| CheckpointId(t.clone()));
            match self.update_run(&writer, &searcher, store, &run, &tip, old.as_ref()) {
                Ok((added, removed)) => {
                    report.runs_indexed += 1;
                    report.docs_added += added;
                    report.docs_removed += removed;
                    state.runs.insert(run.to_string(), tip.0);
                }
                Err(UpdateError::Store(e)) => report.failed.push((run, e.to_string())),
                Err(UpdateError::Index(e)) => return Err(e),
            }
        }
        for run in gone {
            report.docs_removed += self.indexed_docs(&searcher, &run)?.len();
            writer.delete_term(self.run_term(&run));
            state.runs.remove(run.as_str());
            report.runs_removed += 1;
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&state.render());
        prepared.commit()?;
        // Merge the small segments each commit makes now, while the writer
        // is ours: a short-lived process would otherwise leave them all.
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(report)
    }

    /// Replaces what changed of `run` between `old` and `tip`; returns the
    /// documents added and removed.
    fn update_run(
        &self,
        writer: &IndexWriter,
        searcher: &Searcher,
        store: &dyn RunStore,
        run: &RunId,
        tip: &CheckpointId,
        old: Option<&CheckpointId>,
    ) -> Result<(usize, usize), UpdateError> {
        let read = extract::read_checkpoint(store, run, tip)?;
        let indexed = match old {
            Some(_) => self.indexed_docs(searcher, run)?,
            None => Vec::new(),
        };
        let same_facts = indexed
            .iter()
            .all(|d| d.status == read.facts.status && d.template == read.facts.template);
        let incremental = match old {
            Some(old) => same_facts && descends(store, tip, old)?,
            None => false,
        };
        let (mut added, mut removed) = (0, 0);
        if !incremental {
            writer.delete_term(self.run_term(run));
            removed += indexed.len();
            for source in &read.sources {
                added += self.add_source(writer, run, &read.facts, source)?;
            }
            return Ok((added, removed));
        }
        let mut was: HashMap<&str, (u64, usize)> = HashMap::new();
        for doc in &indexed {
            let slot = was.entry(doc.path.as_str()).or_insert((doc.hash, 0));
            slot.1 += 1;
        }
        let now: HashMap<&str, &Source> =
            read.sources.iter().map(|s| (s.path.as_str(), s)).collect();
        for (path, (hash, count)) in &was {
            if now.get(path).map(|s| s.hash) != Some(*hash) {
                writer.delete_term(self.key_term(run, path));
                removed += count;
            }
        }
        for source in &read.sources {
            if was.get(source.path.as_str()).map(|w| w.0) != Some(source.hash) {
                added += self.add_source(writer, run, &read.facts, source)?;
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
            let mut doc = TantivyDocument::new();
            doc.add_text(f.key, key(run, &source.path));
            doc.add_text(f.run, run.as_str());
            doc.add_text(f.template, &facts.template);
            if let Some(phase) = entry.phase.as_ref().or(source.phase.as_ref()) {
                doc.add_text(f.phase, phase);
            }
            if let Some(attempt) = entry.attempt.or(source.attempt) {
                doc.add_u64(f.attempt, u64::from(attempt));
            }
            if let Some(schema) = &source.schema {
                doc.add_text(f.schema_name, schema);
            }
            doc.add_text(f.status, &facts.status);
            doc.add_text(f.kind, source.kind.as_str());
            let time = entry.time.or(source.time).unwrap_or(facts.time);
            doc.add_date(f.time, date(time));
            doc.add_text(f.path, &source.path);
            if let Some(line) = entry.line {
                doc.add_u64(f.line, line);
            }
            doc.add_text(f.checkpoint, &facts.checkpoint.0);
            doc.add_u64(f.hash, source.hash);
            doc.add_text(f.text, &entry.text);
            if let Some(json) = entry.json {
                doc.add_field_value(f.json, &OwnedValue::from(json));
            }
            writer.add_document(doc)?;
        }
        Ok(count)
    }

    /// The documents the index holds for `run`.
    fn indexed_docs(&self, searcher: &Searcher, run: &RunId) -> Result<Vec<Indexed>, IndexError> {
        let query = TermQuery::new(self.run_term(run), IndexRecordOption::Basic);
        let f = &self.fields;
        let mut out = Vec::new();
        for address in searcher.search(&query, &DocSetCollector)? {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(Indexed {
                path: text(f.path),
                status: text(f.status),
                template: text(f.template),
                hash: doc
                    .get_first(f.hash)
                    .and_then(|v| v.as_u64())
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    fn run_term(&self, run: &RunId) -> Term {
        Term::from_field_text(self.fields.run, run.as_str())
    }

    fn key_term(&self, run: &RunId, path: &str) -> Term {
        Term::from_field_text(self.fields.key, &key(run, path))
    }
}

/// A document as the index holds it, for deciding what changed.
struct Indexed {
    path: String,
    status: String,
    template: String,
    hash: u64,
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
