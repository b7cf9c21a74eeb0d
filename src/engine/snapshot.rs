//! A run's whole state read back from one checkpoint.
//!
//! A loop that has started has its children's states read too, for its
//! current (or last) iteration, and so on down for a loop inside a loop
//! (its instance in the enclosing loop's current iteration); earlier
//! iterations are read on demand ([`RunSnapshot::iteration`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{EngineError, PhaseState, PhaseStatus, RunRecord, layout};
use crate::artifact::{Schema, compile_frozen};
use crate::store::{CheckpointId, RunId, RunStore};
use crate::template::{Phase, PhaseKind, Template};

/// The state of a run at one checkpoint: run.json, the template, every phase.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    /// The checkpoint read.
    pub checkpoint: CheckpointId,
    /// `run.json`.
    pub record: RunRecord,
    /// `template.json`.
    pub template: Template,
    /// Each top-level phase's `state.json`, in template order.
    pub phases: Vec<PhaseState>,
    /// For each loop that has started (by loop id; ids are unique in the
    /// whole template): its children's states in its current (or last)
    /// iteration, in template order. A nested loop is here when it has
    /// started in its enclosing loop's current iteration.
    pub children: BTreeMap<String, Vec<PhaseState>>,
}

impl RunSnapshot {
    /// Reads the run's state at `at`.
    pub fn load(store: &dyn RunStore, run: &RunId, at: &CheckpointId) -> Result<Self, EngineError> {
        let run = run.as_str();
        let record: RunRecord = read_json(store, run, at, layout::RUN)?;
        // Frozen as written; run with each matrix as its combinations.
        let template =
            crate::template::expand(&read_json::<Template>(store, run, at, layout::TEMPLATE)?);
        let phases = template
            .phases
            .iter()
            .map(|p| read_state(store, run, at, &p.id, p, 0))
            .collect::<Result<Vec<PhaseState>, _>>()?;
        let mut children = BTreeMap::new();
        for (phase, state) in template.phases.iter().zip(&phases) {
            read_children(store, run, at, phase, state, &phase.id, &mut children)?;
        }
        Ok(RunSnapshot {
            checkpoint: at.clone(),
            record,
            template,
            phases,
            children,
        })
    }

    /// Reads the run's state at its tip.
    pub fn load_tip(store: &dyn RunStore, run: &RunId) -> Result<Self, EngineError> {
        let tip = store
            .tip(run)?
            .ok_or_else(|| crate::store::StoreError::NoSuchRun {
                run: run.to_string(),
            })?;
        Self::load(store, run, &tip)
    }

    /// One top-level phase's state.
    pub fn phase(&self, id: &str) -> Option<&PhaseState> {
        self.phases.iter().find(|p| p.id == id)
    }

    /// A phase's template entry, top-level or inside a loop (at any depth).
    pub fn spec(&self, id: &str) -> Option<&Phase> {
        fn find<'p>(phases: &'p [Phase], id: &str) -> Option<&'p Phase> {
            phases.iter().find_map(|p| {
                if p.id == id {
                    Some(p)
                } else {
                    find(&p.phases, id)
                }
            })
        }
        find(&self.template.phases, id)
    }

    /// The loop whose child `id` is, if it is one (the innermost).
    pub fn parent_of(&self, id: &str) -> Option<&Phase> {
        self.enclosing(id).pop()
    }

    /// The loops `id` is inside, outermost first (empty for a top-level
    /// phase or an unknown id).
    pub fn enclosing(&self, id: &str) -> Vec<&Phase> {
        fn walk<'p>(phases: &'p [Phase], id: &str, path: &mut Vec<&'p Phase>) -> bool {
            for p in phases {
                if p.id == id {
                    return true;
                }
                path.push(p);
                if walk(&p.phases, id, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        let mut path = Vec::new();
        walk(&self.template.phases, id, &mut path);
        path
    }

    /// The state of phase `id` as it stands: a top-level phase's, or a
    /// loop child's in its loop's current (or last) iteration.
    pub fn state_of(&self, id: &str) -> Option<&PhaseState> {
        match self.parent_of(id) {
            None => self.phase(id),
            Some(parent) => self
                .children
                .get(&parent.id)
                .and_then(|states| states.iter().find(|c| c.id == id)),
        }
    }

    /// The states of loop `id`'s children in its current (or last)
    /// iteration, each followed by its own children's when it is a loop
    /// that started there (empty for any other phase).
    pub fn descendants(&self, id: &str) -> Vec<&PhaseState> {
        let mut out = Vec::new();
        for child in self.children.get(id).into_iter().flatten() {
            out.push(child);
            out.extend(self.descendants(&child.id));
        }
        out
    }

    /// The iterations each loop enclosing `id` is in, outermost first
    /// (none known: 0).
    pub fn current_iterations(&self, id: &str) -> Vec<u32> {
        self.enclosing(id)
            .iter()
            .map(|l| self.state_of(&l.id).map_or(0, |s| s.iteration))
            .collect()
    }

    /// Where the files of phase `id` are in `at`: one iteration per
    /// enclosing loop, outermost first (a top-level phase: none).
    pub fn key_at(&self, id: &str, at: &[u32]) -> String {
        let loops = self.enclosing(id);
        let mut key: Option<String> = None;
        for (i, l) in loops.iter().enumerate() {
            let next = loops.get(i + 1).map_or(id, |n| n.id.as_str());
            let base = key.take().unwrap_or_else(|| l.id.clone());
            key = Some(layout::child_key(
                &base,
                at.get(i).copied().unwrap_or(0),
                next,
            ));
        }
        key.unwrap_or_else(|| id.to_string())
    }

    /// The children's states of loop `id` in iteration `k` (from 1), in
    /// template order; a nested loop's in its instance in its enclosing
    /// loops' current iterations.
    pub fn iteration(
        &self,
        store: &dyn RunStore,
        id: &str,
        k: u32,
    ) -> Result<Vec<PhaseState>, EngineError> {
        let at = self.current_iterations(id);
        self.iteration_in(store, id, &at, k)
    }

    /// The children's states of loop `id` in iteration `k`, its enclosing
    /// loops in iterations `at` (outermost first).
    pub fn iteration_in(
        &self,
        store: &dyn RunStore,
        id: &str,
        at: &[u32],
        k: u32,
    ) -> Result<Vec<PhaseState>, EngineError> {
        let phase = self
            .spec(id)
            .filter(|p| p.kind == PhaseKind::Loop)
            .ok_or_else(|| EngineError::NoSuchPhase {
                run: self.record.id.clone(),
                phase: id.to_string(),
                known: self.loop_ids(),
            })?;
        let key = self.key_at(id, at);
        read_iteration(store, &self.record.id, &self.checkpoint, phase, &key, k)
    }

    /// The children's states of loop `phase` in iteration `k`, its files
    /// under `key`.
    pub fn iteration_at(
        &self,
        store: &dyn RunStore,
        phase: &Phase,
        key: &str,
        k: u32,
    ) -> Result<Vec<PhaseState>, EngineError> {
        read_iteration(store, &self.record.id, &self.checkpoint, phase, key, k)
    }

    /// Every loop's id, nested ones too, in template order.
    fn loop_ids(&self) -> Vec<String> {
        fn walk(phases: &[Phase], out: &mut Vec<String>) {
            for p in phases.iter().filter(|p| p.kind == PhaseKind::Loop) {
                out.push(p.id.clone());
                walk(&p.phases, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.template.phases, &mut out);
        out
    }

    /// The run's frozen schemas, compiled, by name as the template wrote
    /// them; each `$ref` reaches only the run's own frozen documents, so an
    /// old run validates the same way whatever the repo's schemas are now.
    pub fn schemas(
        &self,
        store: &dyn RunStore,
    ) -> Result<BTreeMap<String, Arc<Schema>>, EngineError> {
        let mut frozen = Vec::new();
        for (name, path) in &self.record.schemas {
            let bytes =
                store
                    .read(&self.checkpoint, path)?
                    .ok_or_else(|| EngineError::Corrupt {
                        run: self.record.id.clone(),
                        checkpoint: self.checkpoint.0.clone(),
                        path: path.clone(),
                        message: "the frozen schema is missing".into(),
                    })?;
            let json: Value = parse(&self.record.id, &self.checkpoint, path, &bytes)?;
            frozen.push((name.clone(), path.clone(), json));
        }
        compile_frozen(&frozen).map_err(|source| EngineError::Schema {
            run: self.record.id.clone(),
            source,
        })
    }

    /// An artifact's JSON, if the phase has it; `phase` is a phase key
    /// (a top-level id, or a child's [`layout::child_key`]).
    pub fn artifact(
        &self,
        store: &dyn RunStore,
        phase: &str,
        name: &str,
    ) -> Result<Option<Value>, EngineError> {
        let path = layout::artifact(phase, name);
        match store.read(&self.checkpoint, &path)? {
            None => Ok(None),
            Some(bytes) => parse(&self.record.id, &self.checkpoint, &path, &bytes).map(Some),
        }
    }

    /// The run as `--json` prints it: id, template, status, and each phase's
    /// id, status, attempts and artifact names; a loop adds its `iteration`
    /// and its current iteration's `children` (the same fields each).
    pub fn to_json(&self) -> Value {
        let phase_json = |p: &PhaseState| {
            let mut doc = json!({
                "id": p.id,
                "kind": p.kind,
                "status": p.status,
                "attempts": p.attempt,
                "artifacts": p.artifacts,
                "duration_ms": p.duration_ms,
                "error": p.error.as_ref().map(|e| e.to_string()),
            });
            if p.kind == PhaseKind::Loop {
                doc["iteration"] = json!(p.iteration);
                doc["exhausted"] = json!(p.exhausted);
            }
            if let Some(usage) = &p.usage {
                doc["usage"] = json!(usage);
            }
            doc
        };
        // A loop's current children, and theirs for a loop among them.
        fn with_children(
            p: &PhaseState,
            all: &BTreeMap<String, Vec<PhaseState>>,
            phase_json: &dyn Fn(&PhaseState) -> Value,
        ) -> Value {
            let mut doc = phase_json(p);
            if p.kind == PhaseKind::Loop {
                doc["children"] = all
                    .get(&p.id)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| with_children(c, all, phase_json))
                    .collect();
            }
            doc
        }
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| with_children(p, &self.children, &phase_json))
            .collect();
        json!({
            "id": self.record.id,
            "template": self.record.template,
            "status": self.record.status,
            "checkpoint": self.checkpoint.0,
            "base_commit": self.record.base_commit,
            "created_at": self.record.created_at,
            "finished_at": self.record.finished_at,
            // A sentence, as it always was: scripts read a string here.
            "reason": self.record.reason.as_ref().map(ToString::to_string),
            "args": self.record.args,
            "phases": phases,
        })
    }
}

/// The children's states of `phase` (a loop, its files under `key`) in
/// iteration `k`.
fn read_iteration(
    store: &dyn RunStore,
    run: &str,
    at: &CheckpointId,
    phase: &Phase,
    key: &str,
    k: u32,
) -> Result<Vec<PhaseState>, EngineError> {
    phase
        .phases
        .iter()
        .map(|c| {
            let key = layout::child_key(key, k, &c.id);
            read_state(store, run, at, &key, c, k)
        })
        .collect()
}

/// Reads the current iteration of `phase` (in `state`, its files under
/// `key`) into `children` when it is a loop that has started, then that
/// of each loop among those children.
fn read_children(
    store: &dyn RunStore,
    run: &str,
    at: &CheckpointId,
    phase: &Phase,
    state: &PhaseState,
    key: &str,
    children: &mut BTreeMap<String, Vec<PhaseState>>,
) -> Result<(), EngineError> {
    // A pending loop has no current iteration, even when an earlier
    // attempt's iterations are still in the tree (`wfe retry`).
    if phase.kind != PhaseKind::Loop || state.iteration == 0 || state.status == PhaseStatus::Pending
    {
        return Ok(());
    }
    let k = state.iteration;
    let states = read_iteration(store, run, at, phase, key, k)?;
    for (spec, child) in phase.phases.iter().zip(&states) {
        let child_key = layout::child_key(key, k, &spec.id);
        read_children(store, run, at, spec, child, &child_key, children)?;
    }
    children.insert(phase.id.clone(), states);
    Ok(())
}

/// The state of the phase `spec` whose files are under `key`: its
/// `state.json`, or, when it has none, pending (in iteration `k` for a
/// loop's child). A phase that never started need not have a state file:
/// a run's first checkpoint writes none, so creating a 1000-phase run does
/// not write 1000 identical files.
pub(crate) fn read_state(
    store: &dyn RunStore,
    run: &str,
    at: &CheckpointId,
    key: &str,
    spec: &Phase,
    k: u32,
) -> Result<PhaseState, EngineError> {
    let path = layout::state(key);
    match store.read(at, &path)? {
        Some(bytes) => parse(run, at, &path, &bytes),
        None => Ok(PhaseState {
            iteration: k,
            ..PhaseState::pending(&spec.id, spec.kind)
        }),
    }
}

fn read_json<T: DeserializeOwned>(
    store: &dyn RunStore,
    run: &str,
    at: &CheckpointId,
    path: &str,
) -> Result<T, EngineError> {
    let bytes = store.read(at, path)?.ok_or_else(|| EngineError::Corrupt {
        run: run.to_string(),
        checkpoint: at.0.clone(),
        path: path.to_string(),
        message: "the file is missing".into(),
    })?;
    parse(run, at, path, &bytes)
}

/// Parses a checkpoint file, naming it on error.
pub(super) fn parse<T: DeserializeOwned>(
    run: &str,
    at: &CheckpointId,
    path: &str,
    bytes: &[u8],
) -> Result<T, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| EngineError::Corrupt {
        run: run.to_string(),
        checkpoint: at.0.clone(),
        path: path.to_string(),
        message: e.to_string(),
    })
}
