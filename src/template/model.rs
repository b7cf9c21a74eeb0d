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
use serde_json::Value;

use super::outputs::Outputs;
use crate::budget::Budget;
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
    ("budget", &[PhaseKind::Agent]),
    ("phases", &[PhaseKind::Loop]),
    ("until", &[PhaseKind::Loop]),
    ("max_iters", &[PhaseKind::Loop]),
    ("on_exhausted", &[PhaseKind::Loop]),
    ("matrix", &[PhaseKind::Script, PhaseKind::Agent]),
    ("fail_fast", &[PhaseKind::Script, PhaseKind::Agent]),
    ("max_parallel", &[PhaseKind::Script, PhaseKind::Agent]),
    ("max_files_bytes", &[PhaseKind::Script]),
    ("isolation", &[PhaseKind::Script, PhaseKind::Agent]),
    ("on_conflict", &[PhaseKind::Script, PhaseKind::Agent]),
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
    /// Environment variables for every script phase (values are templates,
    /// rendered per phase; `defaults.env`, then the phase's `env`, override
    /// them; names starting with `WFE_` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": { "pattern": "^WFE_" } }))]
    pub env: BTreeMap<String, String>,
    /// The phases: a DAG through their `needs`.
    #[schemars(length(min = 1))]
    pub phases: Vec<Phase>,
}

impl Phase {
    /// The loops among this phase's children, at any depth (not itself).
    pub fn all_loops(&self) -> Vec<&Phase> {
        fn walk<'p>(phases: &'p [Phase], out: &mut Vec<&'p Phase>) {
            for p in phases {
                if p.kind == PhaseKind::Loop {
                    out.push(p);
                }
                walk(&p.phases, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.phases, &mut out);
        out
    }
}

impl Template {
    /// Every phase, loops' children (at any depth) after their loop, in
    /// template order.
    pub fn all_phases(&self) -> Vec<&Phase> {
        fn walk<'p>(phases: &'p [Phase], out: &mut Vec<&'p Phase>) {
            for p in phases {
                out.push(p);
                walk(&p.phases, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.phases, &mut out);
        out
    }
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
    /// Environment variables for every script phase: override the
    /// template's `env`, overridden by the phase's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": { "pattern": "^WFE_" } }))]
    pub env: BTreeMap<String, String>,
    /// The run's budget, summed over its agent phases: over the config's
    /// `budget`, under `wfe run --budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
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
    /// Artifacts the phase produces: artifact name to schema name (or a path
    /// to a schema file), or to `{"file": GLOB}` / `{"dir": PATH}` for file
    /// artifacts (script phases).
    #[serde(default, skip_serializing_if = "Outputs::is_none")]
    pub outputs: Outputs,
    /// script: the most bytes of file artifacts the phase may keep (default:
    /// `max_files_bytes` in `.wfe/config.json`, else 50 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_files_bytes: Option<u64>,

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
    /// agent: what one attempt may spend (tokens, cost, wall time, tool
    /// calls); the soft share pauses for approval, the limit ends the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,

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

    /// script, agent: run the phase once per combination of these values
    /// (axis name → a list of strings, numbers or booleans), as phases
    /// `id[axis=value,…]`; each sees its values as `matrix.<axis>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// script, agent with a `matrix`: a failing combination cancels the
    /// running ones and starts no more (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
    /// script, agent with a `matrix`: at most this many combinations run at
    /// once (within `--jobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
    /// script, agent: `worktree` runs each attempt in a git worktree of its
    /// own, made from the run's current code, and merges its changes back
    /// into the working tree when it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// script, agent with `isolation`: what a merge conflict does: `fail`
    /// the phase (the default) or `gate`: wait for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<OnConflict>,
    /// Set on the phases a `matrix` expands into (never written in a
    /// template): which combination this one is.
    #[serde(skip)]
    pub combination: Option<Combination>,
}

/// A phase's `matrix`: its axes in the order the template writes them,
/// each with the values it takes (kept as written, so validation can say
/// what is wrong with each at its JSON path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// (axis name, its values) in template order.
    pub axes: Vec<(String, Value)>,
}

impl Serialize for Matrix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.axes.len()))?;
        for (axis, values) in &self.axes {
            map.serialize_entry(axis, values)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor rather than a map type: the order of the axes is the
        // order of the combinations, and serde_json's map sorts its keys.
        struct Axes;
        impl<'de> serde::de::Visitor<'de> for Axes {
            type Value = Matrix;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of axis name → list of values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Matrix, A::Error> {
                let mut axes = Vec::new();
                while let Some((axis, values)) = map.next_entry::<String, Value>()? {
                    axes.push((axis, values));
                }
                Ok(Matrix { axes })
            }
        }
        deserializer.deserialize_map(Axes)
    }
}

impl JsonSchema for Matrix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Matrix".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Axis name → the values it takes, in order: combinations are made in the order the axes are written.",
            "type": "object",
            "minProperties": 1,
            "propertyNames": { "pattern": NAME_PATTERN },
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": { "type": ["string", "number", "boolean"] }
            }
        })
    }
}

/// One combination of a [`Matrix`]: what the phase it became runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Combination {
    /// The id of the phase as the template writes it (`test`).
    pub of: String,
    /// `axis=value,…` in axis order (`python=3.11,model=a`): the phase id
    /// is `of[key]`, and dependants find its artifacts under this key.
    pub key: String,
    /// Each axis with this combination's value, in axis order.
    pub values: Vec<(String, Value)>,
    /// Whether a failing combination cancels the others.
    pub fail_fast: bool,
    /// How many combinations may run at once.
    pub max_parallel: Option<u32>,
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

/// Where a phase's attempts work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A git worktree of its own under `<git-dir>/wfe/worktrees/`.
    Worktree,
}

/// What an isolated phase does when its changes conflict with the working tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// The phase fails, naming the conflicting paths (the default).
    Fail,
    /// The phase waits for a person (`wfe approve` takes it as it is,
    /// without its changes; `wfe retry` runs it again).
    Gate,
}

/// When a phase waits for `wfe approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// After the phase has completed, before dependants start.
    After,
}

/// What a loop does when `max_iters` runs out before `until` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// The loop fails (the default).
    Fail,
    /// The loop completes and the run goes on.
    Continue,
    /// `{"next": "PHASE"}`: the loop completes marked exhausted and PHASE (a
    /// phase at the loop's level, after it) starts; PHASE runs only this way.
    Next(String),
}

impl OnExhausted {
    /// The phase a loop hands over to when it runs out, if it names one.
    pub fn next(&self) -> Option<&str> {
        match self {
            OnExhausted::Next(phase) => Some(phase),
            OnExhausted::Fail | OnExhausted::Continue => None,
        }
    }
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
