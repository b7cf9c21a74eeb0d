//! A run's whole state read back from one checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{EngineError, PhaseState, RunRecord, layout};
use crate::artifact::{Schema, compile_frozen};
use crate::store::{CheckpointId, RunId, RunStore};
use crate::template::Template;

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
}

impl RunSnapshot {
    /// Reads the run's state at `at`.
    pub fn load(store: &dyn RunStore, run: &RunId, at: &CheckpointId) -> Result<Self, EngineError> {
        let record: RunRecord = read_json(store, run, at, layout::RUN)?;
        let template: Template = read_json(store, run, at, layout::TEMPLATE)?;
        let phases = template
            .phases
            .iter()
            .map(|p| read_json(store, run, at, &layout::state(&p.id)))
            .collect::<Result<Vec<PhaseState>, _>>()?;
        Ok(RunSnapshot {
            checkpoint: at.clone(),
            record,
            template,
            phases,
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

    /// One phase's state.
    pub fn phase(&self, id: &str) -> Option<&PhaseState> {
        self.phases.iter().find(|p| p.id == id)
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

    /// An artifact's JSON, if the phase has it.
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
    /// id, status, attempts and artifact names.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.record.id,
            "template": self.record.template,
            "status": self.record.status,
            "checkpoint": self.checkpoint.0,
            "base_commit": self.record.base_commit,
            "created_at": self.record.created_at,
            "finished_at": self.record.finished_at,
            "reason": self.record.reason,
            "args": self.record.args,
            "phases": self.phases.iter().map(|p| json!({
                "id": p.id,
                "kind": p.kind,
                "status": p.status,
                "attempts": p.attempt,
                "artifacts": p.artifacts,
                "duration_ms": p.duration_ms,
                "error": p.error.as_ref().map(|e| e.to_string()),
            })).collect::<Vec<_>>(),
        })
    }
}

fn read_json<T: DeserializeOwned>(
    store: &dyn RunStore,
    run: &RunId,
    at: &CheckpointId,
    path: &str,
) -> Result<T, EngineError> {
    let bytes = store.read(at, path)?.ok_or_else(|| EngineError::Corrupt {
        run: run.to_string(),
        checkpoint: at.0.clone(),
        path: path.to_string(),
        message: "the file is missing".into(),
    })?;
    parse(run.as_str(), at, path, &bytes)
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
