//! What the index holds, recorded in its commit payload: the schema version
//! and, per run, the checkpoint its documents were last read from.
//!
//! The payload is written in the same atomic commit as the documents, so
//! the two can never disagree; another process's commit replaces both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fields::SCHEMA_VERSION;

/// The commit payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    /// [`SCHEMA_VERSION`] of the wfe that wrote the index.
    pub version: u32,
    /// Run id → the checkpoint (commit id) its documents were read from.
    pub runs: BTreeMap<String, String>,
}

impl Default for IndexState {
    fn default() -> Self {
        IndexState {
            version: SCHEMA_VERSION,
            runs: BTreeMap::new(),
        }
    }
}

impl IndexState {
    /// Reads a payload; `None` if it is not one this wfe wrote.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    /// The payload text.
    pub fn render(&self) -> String {
        // Plain strings in a map: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_foreign_text() {
        let mut state = IndexState::default();
        state.runs.insert("01run".into(), "abc".into());
        assert_eq!(IndexState::parse(&state.render()), Some(state));
        assert_eq!(IndexState::parse("not json"), None);
        assert_eq!(IndexState::parse("{\"runs\": {}}"), None);
    }
}
