//! The template model: the one source of truth for the template format.
//!
//! `schemas/template.schema.json` is generated from these types, so a field
//! added here is a field documented there. A phase is one flat struct with a
//! `kind` rather than a tagged enum: serde then reports every error with its
//! exact JSON path (tagged and flattened enums buffer their input and lose
//! it), and validation checks which fields belong to which kind.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::retry::{DurationSpec, RetryPolicy};

/// The pattern of template names, phase ids and artifact names.
pub(crate) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";

/// The fields that belong to some kinds only, with those kinds. Validation
/// and the generated JSON Schema both follow this table.
pub(crate) const KIND_FIELDS: &[(&str, &[PhaseKind])] = &[
    ("run", &[PhaseKind::Script]),
    ("cwd", &[PhaseKind::Script]),
    ("env", &[PhaseKind::Script]),
    ("role", &[PhaseKind::Agent]),
    ("provider", &[PhaseKind::Agent]),
    ("model", &[PhaseKind::Agent]),
    ("prompt", &[PhaseKind::Agent]),
    ("system", &[PhaseKind::Agent]),
    ("tools", &[PhaseKind::Agent]),
    ("max_turns", &[PhaseKind::Agent]),
    ("max_tokens", &[PhaseKind::Agent]),
    ("max_invalid_submissions", &[PhaseKind::Agent]),
    ("review", &[PhaseKind::Agent]),
    ("phases", &[PhaseKind::Loop]),
    ("until", &[PhaseKind::Loop]),
    ("max_iters", &[PhaseKind::Loop]),
    ("on_exhausted", &[PhaseKind::Loop]),
    (
        "outputs",
        &[PhaseKind::Script, PhaseKind::Agent, PhaseKind::Gate],
    ),
];

/// The fields each kind requires.
pub(crate) const REQUIRED_FIELDS: &[(PhaseKind, &[&str])] = &[
    (PhaseKind::Script, &["run"]),
    (PhaseKind::Agent, &["prompt"]),
    (PhaseKind::Gate, &[]),
    (PhaseKind::Loop, &["phases", "max_iters"]),
];

/// A workflow template: an args schema and a DAG of phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "wfe template")]
pub struct Template {
    /// Optional `$schema` for editor help; ignored by wfe.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The template's name, as given to `wfe run NAME`.
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// One line saying what the workflow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (draft 2020-12 unless `$schema` says otherwise) for the run's arguments. A property with `"secret": true` is a secret arg: committed masked (`***`), its value kept in `<git-dir>/wfe/secrets/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// Settings every phase inherits unless it sets its own.
    #[serde(default, skip_serializing_if = "Defaults::is_empty")]
    pub defaults: Defaults,
    /// The phases: a DAG through their `needs`.
    #[schemars(length(min = 1))]
    pub phases: Vec<Phase>,
}

/// Settings every phase inherits unless it sets its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// How long one attempt may take before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// How long a stopped script phase gets between `SIGTERM` and `SIGKILL`
    /// to run its cleanup (default 10s; 0 kills at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace: Option<DurationSpec>,
    /// How often and how patiently to retry a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What a failed phase does to the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// When a phase fails with `on_failure: stop`, cancel the phases still
    /// running (`SIGTERM`, their `kill_grace`, `SIGKILL`) so the run ends
    /// at once (default true); false lets them finish first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
    /// Record the working tree as `workspace/` in the checkpoint after each
    /// phase (default: on for agent phases, off for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

impl Defaults {
    /// True when no default is set (so it is left out of the frozen copy).
    pub fn is_empty(&self) -> bool {
        self == &Defaults::default()
    }
}

/// The kind of work a phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// A shell script run with `sh -c`.
    Script,
    /// An LLM agent with tools.
    Agent,
    /// A point where a person approves before the run goes on.
    Gate,
    /// Child phases repeated until a condition holds.
    Loop,
}

impl Phase {
    /// Whether the working tree is recorded after this phase.
    pub fn snapshots(&self, defaults: &Defaults) -> bool {
        self.snapshot
            .or(defaults.snapshot)
            .unwrap_or(self.kind == PhaseKind::Agent)
    }
}

impl PhaseKind {
    /// The kind's name as written in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Script => "script",
            PhaseKind::Agent => "agent",
            PhaseKind::Gate => "gate",
            PhaseKind::Loop => "loop",
        }
    }
}

/// One node of the DAG.
///
/// Fields after `outputs` belong to one kind each; validation rejects a
/// field on the wrong kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = phase_schema_rules)]
pub struct Phase {
    /// Unique within the template: lowercase letters, digits, `-` and `_`.
    #[schemars(pattern(NAME_PATTERN))]
    pub id: String,
    /// `script`, `agent`, `gate` or `loop`.
    pub kind: PhaseKind,
    /// What the phase is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Phases that must finish before this one starts (`depends_on` is an alias).
    #[serde(default, alias = "depends_on", skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(NAME_PATTERN)))]
    pub needs: Vec<String>,
    /// An expression over `args` and `artifacts`; the phase is skipped unless it is true.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// How long one attempt may take before it is killed (`"90s"`, `"15m"`, `"1h"` or seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// How long a stopped attempt (timeout, cancel, interrupt) gets between
    /// `SIGTERM` and `SIGKILL` to clean up (default: `defaults.kill_grace`,
    /// else 10s; 0 kills at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace: Option<DurationSpec>,
    /// How often and how patiently to retry a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What a failure of this phase does to the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// `"after"`: wait for `wfe approve` once the phase has completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Record the working tree as `workspace/` in the checkpoint after this
    /// phase (default: the template's `defaults.snapshot`, else on for agent
    /// phases and off for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
    /// Artifacts the phase produces: artifact name to schema name (or a path to a schema file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": NAME_PATTERN }))]
    pub outputs: BTreeMap<String, String>,

    /// script: the shell command, run with `sh -c` (a template over `args` and `artifacts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// script: the working directory, relative to the repository root (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// script: extra environment variables (values are templates; names starting with `WFE_` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": { "pattern": "^WFE_" } }))]
    pub env: BTreeMap<String, String>,
    /// script, agent: provider key variables (e.g. `ANTHROPIC_API_KEY`) this phase keeps; wfe removes every other provider key from scripts, the `bash` and `git` tools and CLI agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" }))]
    pub pass_env: Vec<String>,
    /// Names of environment variables whose values are secret: masked as `***` in everything wfe writes or shows (values shorter than 8 characters only where they are a whole line or string).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" }))]
    pub secrets: Vec<String>,

    /// agent: the role (from `.wfe/config.json`) that picks provider and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// agent: a provider named in `.wfe/config.json`, overriding the role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// agent: the model, overriding the role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// agent: the prompt (a template over `args` and `artifacts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// agent: the system prompt (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// agent: the tools the agent may call.
    //
    // Kept as names so that an unknown one is reported by validation along
    // with every other problem, not as the first parse error; the schema
    // lists the `Tool`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<Tool>")]
    pub tools: Vec<String>,
    /// agent: how many model turns the agent loop may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_turns: Option<u32>,
    /// agent: the most tokens one answer may have (default: the role's, else the provider's `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// agent: invalid `submit_<artifact>` calls answered with their errors before the attempt fails (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_invalid_submissions: Option<u32>,
    /// agent: a second model reviews the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,

    /// loop: the child phases run in each iteration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// loop: an expression; the loop ends once it is true after an iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// loop: the most iterations to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_iters: Option<u32>,
    /// loop: what happens when `max_iters` runs out before `until` holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exhausted: Option<OnExhausted>,
}

/// A tool an agent phase may allow.
// The template format owns the list; the agent's toolbox implements each
// one, so `template` never needs to ask `agent` which tools exist.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// Read a file of the working tree.
    ReadFile,
    /// Write a file of the working tree.
    WriteFile,
    /// Replace text in a file of the working tree.
    EditFile,
    /// List a directory of the working tree.
    ListDir,
    /// Find files by glob pattern.
    Glob,
    /// Search file contents by regular expression.
    Grep,
    /// Run a shell command in the working tree.
    Bash,
    /// Run git in the working tree.
    Git,
}

impl Tool {
    /// Every tool, in the order specs are given to a model.
    pub const ALL: [Tool; 8] = [
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::EditFile,
        Tool::ListDir,
        Tool::Glob,
        Tool::Grep,
        Tool::Bash,
        Tool::Git,
    ];

    /// The tool's name, as templates and models write it.
    pub fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::WriteFile => "write_file",
            Tool::EditFile => "edit_file",
            Tool::ListDir => "list_dir",
            Tool::Glob => "glob",
            Tool::Grep => "grep",
            Tool::Bash => "bash",
            Tool::Git => "git",
        }
    }

    /// The tool named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// True for the tools that only read: what a reviewer may have.
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            Tool::ReadFile | Tool::ListDir | Tool::Glob | Tool::Grep
        )
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a failed phase does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Start nothing new; the run fails once running phases end (the default).
    Stop,
    /// Go on: dependants run as if the phase had been skipped; the run can still complete.
    Continue,
}

/// When a phase waits for `wfe approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// After the phase has completed, before dependants start.
    After,
}

/// What a loop does when `max_iters` runs out before `until` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// The loop fails (the default).
    Fail,
    /// The loop completes and the run goes on.
    Continue,
}

/// A second-opinion review of an agent's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// The role (from `.wfe/config.json`) that reviews (default `reviewer` unless `provider` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A provider named in `.wfe/config.json`, overriding the role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The reviewer's model, overriding the role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Review rounds at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rounds: Option<u32>,
}

/// Says in [`Phase`]'s generated schema what its derive cannot, so editors
/// can help: `depends_on` (a serde alias, unknown to schemars) and, per
/// kind, the fields it requires and the fields it does not allow.
fn phase_schema_rules(schema: &mut schemars::Schema) {
    let needs = schema
        .get("properties")
        .and_then(|p| p.get("needs"))
        .cloned();
    if let (Some(serde_json::Value::Object(properties)), Some(needs)) =
        (schema.get_mut("properties"), needs)
    {
        let mut alias = needs;
        if let Some(object) = alias.as_object_mut() {
            object.insert("description".into(), "An alias of `needs`.".into());
        }
        properties.insert("depends_on".into(), alias);
    }
    let rules: Vec<serde_json::Value> = REQUIRED_FIELDS
        .iter()
        .map(|(kind, required)| {
            let not_allowed: serde_json::Map<String, serde_json::Value> = KIND_FIELDS
                .iter()
                .filter(|(_, kinds)| !kinds.contains(kind))
                .map(|(field, _)| (field.to_string(), serde_json::Value::Bool(false)))
                .collect();
            serde_json::json!({
                "if": { "properties": { "kind": { "const": kind.as_str() } }, "required": ["kind"] },
                "then": { "required": required, "properties": not_allowed }
            })
        })
        .collect();
    schema.insert("allOf".into(), rules.into());
}
