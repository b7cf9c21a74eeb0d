//! The tools an agent may call, fenced into the repository's working tree.

/// Every tool a phase may allow, by name.
pub const TOOL_NAMES: &[&str] = &[
    "read_file",
    "write_file",
    "edit_file",
    "list_dir",
    "glob",
    "grep",
    "bash",
    "git",
];

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::provider::ToolSpec;

/// What a tool call gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The output (JSON; text tools give a string), or why the call failed.
    pub output: Result<Value, String>,
    /// True when the output was cut to fit.
    pub truncated: bool,
}

/// The tools one phase allows, acting inside one working tree (placeholder).
#[derive(Debug, Clone)]
pub struct Toolbox {
    root: PathBuf,
    allowed: Vec<String>,
}

impl Toolbox {
    /// The tools in `allowed` (unknown names are left out), fenced into `root`.
    pub fn new(root: &Path, allowed: &[String]) -> Toolbox {
        Toolbox {
            root: root.to_path_buf(),
            allowed: allowed
                .iter()
                .filter(|t| TOOL_NAMES.contains(&t.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Commits made through the `git` tool carry `Wfe-Run` and `Wfe-Phase`
    /// trailers naming `run` and `phase` (placeholder: no effect yet).
    pub fn with_trailers(self, _run: &str, _phase: &str) -> Toolbox {
        self
    }

    /// The specs of the allowed tools, for the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        Vec::new()
    }

    /// Runs one call. Never panics on the model's input: a bad input is an `Err` output.
    pub async fn call(&self, name: &str, _input: &Value) -> ToolOutcome {
        let why = if self.allowed.iter().any(|t| t == name) {
            "is not implemented yet"
        } else {
            "is not allowed in this phase"
        };
        ToolOutcome {
            output: Err(format!("tool `{name}` {why} (in {})", self.root.display())),
            truncated: false,
        }
    }
}
