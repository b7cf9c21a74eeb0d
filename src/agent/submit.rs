//! Structured output: one `submit_<artifact>` tool per declared output, and
//! the validation of what the model submits through it.
//!
//! This file owns the submit tools' specs and an attempt's submission state
//! (accepted artifacts, the last invalid submission of each, how many were
//! invalid in all). It never talks to a provider or the engine: validation
//! is deterministic, so a resumed attempt gets the same state back by
//! replaying the submissions recorded in its exchanges.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::run::clip;
use crate::artifact::{OutputSpec, Schema, Violation};
use crate::attempt::{ArtifactProblem, AttemptError};
use crate::provider::ToolSpec;

/// What a submit tool's name starts with.
const PREFIX: &str = "submit_";

/// The key a non-object artifact is wrapped under, since tool inputs must be objects.
const WRAP_KEY: &str = "value";

/// Longest violation message shown to the model: some messages quote the
/// whole offending value, which can be the whole submission.
const MAX_MESSAGE_CHARS: usize = 300;

/// Longest schema excerpt shown as what a violated keyword expects.
const MAX_EXPECTED_CHARS: usize = 200;

/// The submit tool of one declared output.
#[derive(Debug, Clone)]
struct SubmitTool {
    /// The artifact's name.
    artifact: String,
    /// `submit_<artifact>`.
    tool: String,
    /// The schema the artifact must match.
    schema: Arc<Schema>,
    /// True when the schema is not an object schema and the model submits
    /// `{"value": <artifact>}`.
    wrapped: bool,
}

impl SubmitTool {
    fn new(spec: &OutputSpec) -> SubmitTool {
        let object = spec.schema.json().get("type") == Some(&Value::from("object"));
        SubmitTool {
            artifact: spec.name.clone(),
            tool: format!("{PREFIX}{}", spec.name),
            schema: Arc::clone(&spec.schema),
            wrapped: !object,
        }
    }

    fn spec(&self) -> ToolSpec {
        let about = self
            .schema
            .json()
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!(" It is: {d}"))
            .unwrap_or_default();
        let shape = if self.wrapped {
            format!(" Put the artifact under `{WRAP_KEY}`.")
        } else {
            " The input is the artifact itself.".to_string()
        };
        ToolSpec {
            name: self.tool.clone(),
            description: format!(
                "Submit the `{}` artifact (schema `{}`) once your work is done.{about}{shape} \
                 The input is validated against the schema: if it is invalid, this tool's \
                 result lists every error and you call it again with a corrected input.",
                self.artifact,
                self.schema.name(),
            ),
            input_schema: self.input_schema(),
        }
    }

    /// The artifact's schema, or for a non-object one a wrapper object
    /// holding it under `value`.
    fn input_schema(&self) -> Value {
        // The model sees only this document: whatever the schema `$ref`s
        // (`decision.json`) must be inside it.
        let schema = self.schema.bundled();
        if !self.wrapped {
            return schema;
        }
        let mut inner = schema;
        let mut wrapper = json!({
            "type": "object",
            "properties": {},
            "required": [WRAP_KEY],
            "additionalProperties": false,
        });
        if let Value::Object(inner) = &mut inner {
            // Local `$ref`s (`#/$defs/x`) resolve against the document root,
            // which is now the wrapper: the definitions must move up with it.
            // `$id` would make the inner schema its own resource, which few
            // providers understand; `$schema` is only allowed at the root.
            for key in ["$defs", "definitions", "$schema"] {
                if let Some(defs) = inner.remove(key) {
                    wrapper[key] = defs;
                }
            }
            inner.remove("$id");
        }
        wrapper["properties"][WRAP_KEY] = inner;
        wrapper
    }

    /// The artifact in `input` if it matches the schema.
    fn check(&self, input: &Value) -> Result<Value, Invalid> {
        let candidate = if self.wrapped {
            match input.get(WRAP_KEY) {
                Some(value) => value.clone(),
                None => {
                    return Err(Invalid {
                        candidate: input.clone(),
                        violations: vec![Violation {
                            instance_path: String::new(),
                            schema_path: "/required".into(),
                            message: format!("\"{WRAP_KEY}\" is a required property"),
                        }],
                        unwrapped: false,
                    });
                }
            }
        } else {
            input.clone()
        };
        let violations = self.schema.validate(&candidate);
        if violations.is_empty() {
            Ok(candidate)
        } else {
            Err(Invalid {
                candidate,
                violations,
                unwrapped: self.wrapped,
            })
        }
    }

    /// The tool result for an invalid submission: every violation where the
    /// model put it, and what the schema expects there.
    fn explain(&self, invalid: &Invalid, count: u32, max: u32) -> String {
        let n = invalid.violations.len();
        let mut text = format!(
            "rejected: the submission does not match schema `{}` ({n} violation{}):\n",
            self.schema.name(),
            if n == 1 { "" } else { "s" }
        );
        for v in &invalid.violations {
            // Paths are the artifact's; the model's input has it under `value`.
            let at = if invalid.unwrapped {
                format!("/{WRAP_KEY}{}", v.instance_path)
            } else {
                v.instance_path.clone()
            };
            let at = if at.is_empty() { "the root".into() } else { at };
            text.push_str(&format!(
                "- at {at}: {}",
                clip(&v.message, MAX_MESSAGE_CHARS)
            ));
            match self.expected(&v.schema_path) {
                Some(expected) => text.push_str(&format!(
                    " (the schema expects {expected} at {})\n",
                    v.schema_path
                )),
                None => text.push_str(&format!(" (schema keyword {})\n", v.schema_path)),
            }
        }
        text.push_str(&format!(
            "Fix every violation and call {} again. Invalid submissions so far: {count} \
             of {max} allowed; one more than that ends the attempt.",
            self.tool
        ));
        text
    }

    /// The violated keyword and its value, e.g. `minLength: 1`, when the
    /// schema path can be followed in the document (not through a `$ref`).
    fn expected(&self, schema_path: &str) -> Option<String> {
        let value = self.schema.json().pointer(schema_path)?;
        let keyword = schema_path.rsplit('/').next()?;
        let value = serde_json::to_string(value).ok()?;
        Some(format!("`{keyword}: {}`", clip(&value, MAX_EXPECTED_CHARS)))
    }
}

/// A submission that failed its schema.
#[derive(Debug, Clone)]
struct Invalid {
    /// What would have been the artifact.
    candidate: Value,
    violations: Vec<Violation>,
    /// True when the violations' paths are inside `value` of the input.
    unwrapped: bool,
}

/// What one submit call gave.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Submitted {
    /// The tool result's text.
    pub content: String,
    /// True when the submission was invalid.
    pub is_error: bool,
    /// A short line for the log.
    pub summary: String,
    /// True when this invalid submission was one too many: the attempt ends.
    pub exhausted: bool,
}

/// The submissions of one conversation: its submit tools and what came
/// through them.
#[derive(Debug, Clone)]
pub(super) struct Submissions {
    tools: Vec<SubmitTool>,
    accepted: BTreeMap<String, Value>,
    /// The last invalid submission of each artifact, kept for inspection.
    last_invalid: BTreeMap<String, Invalid>,
    invalid: u32,
    max_invalid: u32,
}

impl Submissions {
    /// Submit tools for `outputs`; more than `max_invalid` invalid
    /// submissions in all end the attempt.
    pub(super) fn new(outputs: &[OutputSpec], max_invalid: u32) -> Submissions {
        Submissions {
            tools: outputs.iter().map(SubmitTool::new).collect(),
            accepted: BTreeMap::new(),
            last_invalid: BTreeMap::new(),
            invalid: 0,
            max_invalid,
        }
    }

    /// The submit tools' specs, in the outputs' order.
    pub(super) fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(SubmitTool::spec).collect()
    }

    /// True when `tool` is one of these submit tools.
    pub(super) fn is_submit(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t.tool == tool)
    }

    /// True when there is anything to submit.
    pub(super) fn has_outputs(&self) -> bool {
        !self.tools.is_empty()
    }

    /// True when every output has a valid submission.
    pub(super) fn complete(&self) -> bool {
        self.tools
            .iter()
            .all(|t| self.accepted.contains_key(&t.artifact))
    }

    /// The submit tools still waiting for a valid submission.
    pub(super) fn missing(&self) -> Vec<&str> {
        self.tools
            .iter()
            .filter(|t| !self.accepted.contains_key(&t.artifact))
            .map(|t| t.tool.as_str())
            .collect()
    }

    /// Every submit tool's name.
    pub(super) fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.tool.as_str()).collect()
    }

    /// The accepted artifacts by name.
    pub(super) fn accepted(&self) -> &BTreeMap<String, Value> {
        &self.accepted
    }

    /// Forgets the accepted artifacts, so all are submitted again (after a
    /// reviewer asked for changes). Invalid submissions stay counted: the
    /// bound is for the whole attempt.
    pub(super) fn clear(&mut self) {
        self.accepted.clear();
        self.last_invalid.clear();
    }

    /// Validates one call of `tool` (which must be a submit tool).
    pub(super) fn submit(&mut self, tool: &str, input: &Value) -> Submitted {
        let Some(submit) = self.tools.iter().find(|t| t.tool == tool) else {
            return Submitted {
                content: format!("no submit tool named `{tool}`"),
                is_error: true,
                summary: format!("{tool} → unknown"),
                exhausted: false,
            };
        };
        match submit.check(input) {
            Ok(artifact) => {
                self.last_invalid.remove(&submit.artifact);
                self.accepted.insert(submit.artifact.clone(), artifact);
                let missing = self.missing();
                let content = if missing.is_empty() {
                    "accepted".to_string()
                } else {
                    format!("accepted; still to submit: {}", missing.join(", "))
                };
                Submitted {
                    content,
                    is_error: false,
                    summary: format!("{tool} → accepted"),
                    exhausted: false,
                }
            }
            Err(invalid) => {
                self.invalid += 1;
                let content = submit.explain(&invalid, self.invalid, self.max_invalid);
                let n = invalid.violations.len();
                let summary = format!(
                    "{tool} → rejected: {n} violation{} (invalid submission {} of at most {})",
                    if n == 1 { "" } else { "s" },
                    self.invalid,
                    self.max_invalid
                );
                // A later valid submission of the same artifact supersedes it.
                self.accepted.remove(&submit.artifact);
                self.last_invalid.insert(submit.artifact.clone(), invalid);
                Submitted {
                    content,
                    is_error: true,
                    summary,
                    exhausted: self.invalid > self.max_invalid,
                }
            }
        }
    }

    /// The error an attempt ends with once invalid submissions ran out: a
    /// problem per output without a valid submission, and the last invalid
    /// submission of each as pretty JSON.
    pub(super) fn failure(&self) -> (AttemptError, Vec<(String, Vec<u8>)>) {
        let mut problems = Vec::new();
        let mut rejected = Vec::new();
        for tool in &self.tools {
            if self.accepted.contains_key(&tool.artifact) {
                continue;
            }
            let schema = tool.schema.name().to_string();
            match self.last_invalid.get(&tool.artifact) {
                Some(invalid) => {
                    let n = invalid.violations.len();
                    problems.push(ArtifactProblem {
                        artifact: tool.artifact.clone(),
                        message: format!(
                            "does not match schema `{schema}`: {n} violation{} \
                             ({} invalid submissions, at most {} allowed)",
                            if n == 1 { "" } else { "s" },
                            self.invalid,
                            self.max_invalid
                        ),
                        schema,
                        violations: invalid.violations.clone(),
                    });
                    // Pretty so a person inspecting the attempt can read it;
                    // a `Value` always serialises.
                    let bytes = serde_json::to_vec_pretty(&invalid.candidate).unwrap_or_default();
                    rejected.push((tool.artifact.clone(), bytes));
                }
                None => problems.push(ArtifactProblem {
                    artifact: tool.artifact.clone(),
                    message: format!("missing: {} was never called with a valid input", tool.tool),
                    schema,
                    violations: Vec::new(),
                }),
            }
        }
        (AttemptError::InvalidOutputs { problems }, rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(name: &str, schema: Value) -> OutputSpec {
        OutputSpec {
            name: name.into(),
            schema: Arc::new(Schema::compile(name, "test", schema).expect("a valid schema")),
        }
    }

    fn plan() -> OutputSpec {
        output(
            "plan",
            json!({
                "type": "object",
                "properties": {"title": {"type": "string", "minLength": 1}},
                "required": ["title"],
                "additionalProperties": false
            }),
        )
    }

    #[test]
    fn an_object_schema_is_the_input_schema() {
        let subs = Submissions::new(&[plan()], 3);
        let specs = subs.specs();
        assert_eq!(specs[0].name, "submit_plan");
        assert_eq!(specs[0].input_schema, *plan().schema.json());
        assert!(specs[0].description.contains("validated"));
    }

    #[test]
    fn a_non_object_schema_is_wrapped_with_its_definitions_hoisted() {
        let tags = output(
            "tags",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "array",
                "items": {"$ref": "#/$defs/tag"},
                "$defs": {"tag": {"type": "string", "minLength": 1}}
            }),
        );
        let mut subs = Submissions::new(&[tags], 3);
        let schema = &subs.specs()[0].input_schema;
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["value"]));
        assert_eq!(schema["properties"]["value"]["type"], "array");
        assert_eq!(schema["$defs"]["tag"]["type"], "string");
        assert!(schema["properties"]["value"].get("$defs").is_none());

        let bad = subs.submit("submit_tags", &json!({"value": ["a", ""]}));
        assert!(bad.is_error);
        assert!(bad.content.contains("/value/1"), "{}", bad.content);
        let missing = subs.submit("submit_tags", &json!(["a"]));
        assert!(missing.content.contains("\"value\" is a required property"));
        let good = subs.submit("submit_tags", &json!({"value": ["a", "b"]}));
        assert_eq!(good.content, "accepted");
        assert_eq!(subs.accepted()["tags"], json!(["a", "b"]));
    }

    #[test]
    fn an_invalid_submission_lists_each_violation_and_what_is_expected() {
        let mut subs = Submissions::new(&[plan()], 3);
        let result = subs.submit("submit_plan", &json!({"title": "", "extra": 1}));
        assert!(result.is_error);
        assert!(!result.exhausted);
        assert!(
            result.content.contains("2 violations"),
            "{}",
            result.content
        );
        assert!(result.content.contains("at /title"), "{}", result.content);
        assert!(
            result.content.contains("`minLength: 1`"),
            "{}",
            result.content
        );
        assert!(
            result.content.contains("`additionalProperties: false`"),
            "{}",
            result.content
        );
        assert!(result.content.contains("call submit_plan again"));
        assert!(!subs.complete());
    }

    #[test]
    fn one_invalid_submission_too_many_exhausts_and_explains() {
        let mut subs = Submissions::new(&[plan(), output("notes", json!({"type": "object"}))], 1);
        assert!(!subs.submit("submit_plan", &json!({})).exhausted);
        let last = subs.submit("submit_plan", &json!({"title": ""}));
        assert!(last.exhausted);
        let (error, rejected) = subs.failure();
        let AttemptError::InvalidOutputs { problems } = error else {
            panic!("{error:?}");
        };
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].artifact, "plan");
        assert_eq!(problems[0].violations[0].instance_path, "/title");
        assert!(problems[1].message.contains("never called"));
        assert_eq!(
            rejected,
            vec![("plan".to_string(), b"{\n  \"title\": \"\"\n}".to_vec())]
        );
    }

    #[test]
    fn clearing_forgets_artifacts_but_not_the_count() {
        let mut subs = Submissions::new(&[plan()], 1);
        subs.submit("submit_plan", &json!({}));
        subs.submit("submit_plan", &json!({"title": "a"}));
        assert!(subs.complete());
        subs.clear();
        assert_eq!(subs.missing(), vec!["submit_plan"]);
        assert!(subs.submit("submit_plan", &json!({})).exhausted);
    }
}
