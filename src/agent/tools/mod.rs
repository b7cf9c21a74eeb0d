//! The tools an agent may call, fenced into the repository's working tree.
//!
//! A [`Toolbox`] holds the tools one phase allows and the working tree they
//! act in. It gives the model their specs and runs its calls. The model
//! writes every input, so a call never panics: a bad input, a refused path
//! or a failed command is an `Err` output whose message tells the model
//! what to change. File tools (`read_file`, `write_file`, `edit_file`,
//! `list_dir`, `glob`, `grep`) cannot leave the working tree or enter
//! `.git/` (see `fence.rs`); `bash` and `git` run commands in it, each in its
//! own process group, killed as a whole on timeout or when the call is
//! dropped. Outputs are cut to a cap, with a note in the text saying so.
//!
//! This module does not log or record calls: the agent loop does.

mod bash;
mod clip;
mod fence;
mod files;
mod git;
mod input;
mod process;
mod search;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::provider::ToolSpec;
use crate::template::Tool;

/// The default output cap: what one call may put into the conversation.
const DEFAULT_OUTPUT_CAP: usize = 32 * 1024;

/// The default and longest timeout of a `bash` or `git` call.
const DEFAULT_BASH_TIMEOUT: Duration = Duration::from_secs(120);

/// What a tool call gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The output (a JSON object, described in each tool's spec), or why
    /// the call failed (a message for the model).
    pub output: Result<Value, String>,
    /// True when the output was cut to fit.
    pub truncated: bool,
}

/// The tools one phase allows, acting inside one working tree.
#[derive(Debug, Clone)]
pub struct Toolbox {
    root: PathBuf,
    /// In [`Tool::ALL`] order, each once.
    allowed: Vec<Tool>,
    trailers: Option<Trailers>,
    output_cap: usize,
    bash_timeout: Duration,
    /// Variables `bash` and `git` do not inherit.
    env_remove: Vec<String>,
}

/// The provenance trailers the `git` tool adds to every commit.
#[derive(Debug, Clone, PartialEq)]
struct Trailers {
    run: String,
    phase: String,
}

impl Toolbox {
    /// The tools in `allowed` (unknown names are left out), fenced into `root`.
    pub fn new(root: &Path, allowed: &[String]) -> Toolbox {
        Toolbox {
            root: root.to_path_buf(),
            allowed: Tool::ALL
                .into_iter()
                .filter(|tool| allowed.iter().any(|a| a == tool.name()))
                .collect(),
            trailers: None,
            output_cap: DEFAULT_OUTPUT_CAP,
            bash_timeout: DEFAULT_BASH_TIMEOUT,
            env_remove: Vec::new(),
        }
    }

    /// Keeps `vars` (provider keys) out of the environment of `bash` and `git`.
    pub fn without_env(self, vars: &[String]) -> Toolbox {
        Toolbox {
            env_remove: vars.to_vec(),
            ..self
        }
    }

    /// Makes every commit of the `git` tool carry `Wfe-Run: <run>` and
    /// `Wfe-Phase: <phase>` trailers, so code can be traced to its phase.
    pub fn with_trailers(self, run: &str, phase: &str) -> Toolbox {
        Toolbox {
            trailers: Some(Trailers {
                run: run.to_string(),
                phase: phase.to_string(),
            }),
            ..self
        }
    }

    /// Sets the output cap in bytes (default 32 KiB) and the longest
    /// `bash`/`git` run (default 120 s; a call may ask for less).
    pub fn with_limits(self, output_cap_bytes: usize, bash_timeout: Duration) -> Toolbox {
        Toolbox {
            output_cap: output_cap_bytes,
            bash_timeout,
            ..self
        }
    }

    /// The specs of the allowed tools, for the model, in [`Tool::ALL`] order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.allowed.iter().map(|&tool| self.spec(tool)).collect()
    }

    fn spec(&self, tool: Tool) -> ToolSpec {
        match tool {
            Tool::ReadFile => files::read_file_spec(),
            Tool::WriteFile => files::write_file_spec(),
            Tool::EditFile => files::edit_file_spec(),
            Tool::ListDir => files::list_dir_spec(),
            Tool::Glob => search::glob_spec(),
            Tool::Grep => search::grep_spec(),
            Tool::Bash => bash::spec(self),
            Tool::Git => git::spec(self),
        }
    }

    /// Runs one call. Never panics on the model's input: a bad input is an `Err` output.
    pub async fn call(&self, name: &str, input: &Value) -> ToolOutcome {
        let tool = Tool::from_name(name).filter(|tool| self.allowed.contains(tool));
        let result = match tool {
            Some(Tool::ReadFile) => files::read_file(self, input).await,
            Some(Tool::WriteFile) => files::write_file(self, input).await,
            Some(Tool::EditFile) => files::edit_file(self, input).await,
            Some(Tool::ListDir) => files::list_dir(self, input).await,
            Some(Tool::Glob) => search::glob(self, input).await,
            Some(Tool::Grep) => search::grep(self, input).await,
            Some(Tool::Bash) => bash::bash(self, input).await,
            Some(Tool::Git) => git::git(self, input).await,
            None => Err(self.not_allowed(name).into()),
        };
        match result {
            Ok(Output { value, truncated }) => ToolOutcome {
                output: Ok(value),
                truncated,
            },
            Err(Failure { message, truncated }) => {
                let (message, cut) = clip::keep_head(&message, self.output_cap);
                ToolOutcome {
                    output: Err(message),
                    truncated: truncated || cut,
                }
            }
        }
    }

    fn not_allowed(&self, name: &str) -> String {
        let allowed = if self.allowed.is_empty() {
            "none".to_string()
        } else {
            let names: Vec<&str> = self.allowed.iter().map(|t| t.name()).collect();
            names.join(", ")
        };
        format!("tool `{name}` is not allowed in this phase; allowed: {allowed}")
    }
}

/// A tool's output before it becomes a [`ToolOutcome`].
#[derive(Debug)]
struct Output {
    value: Value,
    truncated: bool,
}

impl Output {
    fn new(value: Value, truncated: bool) -> Output {
        Output { value, truncated }
    }
}

/// Why a tool call failed; the message may carry partial output, cut.
#[derive(Debug)]
struct Failure {
    message: String,
    truncated: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            truncated: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_string())
    }
}

type ToolResult = Result<Output, Failure>;

/// Runs file-system work off the async threads. The work is not stopped if
/// the call is dropped; file tools are short.
async fn blocking<F>(work: F) -> ToolResult
where
    F: FnOnce() -> ToolResult + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(format!("the tool failed unexpectedly: {e}").into()),
    }
}

/// A tool spec whose input is an object of exactly `properties`.
fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        }),
    }
}

/// Items kept in order while their total length stays within `cap`, and
/// how many were left out.
fn keep_items(items: Vec<String>, cap: usize) -> (Vec<String>, usize) {
    let mut used = 0;
    let fit = items
        .iter()
        .take_while(|item| {
            // Each item costs its text plus JSON quotes and a comma.
            used += item.len() + 3;
            used <= cap
        })
        .count();
    let left_out = items.len() - fit;
    let mut items = items;
    items.truncate(fit);
    (items, left_out)
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_support::{Repo, err, ok};
    use super::*;

    #[tokio::test]
    async fn keeps_only_known_tools_in_order() {
        let tb = Toolbox::new(
            Path::new("/nowhere"),
            &[
                "git".into(),
                "nope".into(),
                "read_file".into(),
                "git".into(),
            ],
        );
        let names: Vec<String> = tb.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["read_file", "git"]);
        let all: Vec<String> = Tool::ALL.iter().map(|t| t.name().to_string()).collect();
        let names: Vec<String> = Toolbox::new(Path::new("/x"), &all)
            .specs()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, Tool::ALL.map(Tool::name));
    }

    #[tokio::test]
    async fn a_tool_not_allowed_is_refused() {
        let repo = Repo::new();
        std::fs::write(repo.path("a.txt"), "a").unwrap();
        let tb = Toolbox::new(repo.root(), &["read_file".into(), "glob".into()]);
        let out = tb
            .call("write_file", &json!({"path": "a.txt", "content": "b"}))
            .await;
        assert_eq!(
            err(out),
            "tool `write_file` is not allowed in this phase; allowed: read_file, glob"
        );
        assert_eq!(std::fs::read_to_string(repo.path("a.txt")).unwrap(), "a");
        let none = Toolbox::new(repo.root(), &[]);
        assert_eq!(
            err(none.call("made_up", &json!({})).await),
            "tool `made_up` is not allowed in this phase; allowed: none"
        );
    }

    #[test]
    fn every_spec_is_a_closed_object_schema() {
        let all: Vec<String> = Tool::ALL.iter().map(|t| t.name().to_string()).collect();
        for spec in Toolbox::new(Path::new("/x"), &all).specs() {
            let schema = &spec.input_schema;
            assert_eq!(schema["type"], "object", "{}", spec.name);
            assert_eq!(schema["additionalProperties"], false, "{}", spec.name);
            let props = schema["properties"].as_object().unwrap();
            assert!(!spec.description.is_empty(), "{}", spec.name);
            for (field, prop) in props {
                assert!(
                    prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{}.{field}",
                    spec.name
                );
            }
            for required in schema["required"].as_array().unwrap() {
                assert!(
                    props.contains_key(required.as_str().unwrap()),
                    "{}",
                    spec.name
                );
            }
        }
    }

    /// Every tool rejects a missing required field, a wrong type and an
    /// unknown field by name; and every field of its schema is accepted.
    #[tokio::test]
    async fn bad_input_names_the_field() {
        let repo = Repo::new();
        let all: Vec<String> = Tool::ALL.iter().map(|t| t.name().to_string()).collect();
        let tb = Toolbox::new(repo.root(), &all);
        for spec in tb.specs() {
            let schema = &spec.input_schema;
            let props = schema["properties"].as_object().unwrap();
            // A valid value for every field; nothing runs, since every
            // input is checked before a tool acts.
            let valid: serde_json::Map<String, Value> = props
                .iter()
                .map(|(field, prop)| {
                    let value = match prop["type"].as_str() {
                        Some("array") => json!(["status"]),
                        Some("integer") => json!(1),
                        _ => json!("x"),
                    };
                    (field.clone(), value)
                })
                .collect();
            for required in schema["required"].as_array().unwrap() {
                let field = required.as_str().unwrap();
                let mut missing = valid.clone();
                missing.remove(field);
                let message = err(tb.call(&spec.name, &Value::Object(missing)).await);
                assert!(
                    message.starts_with(&format!("missing field `{field}` (")),
                    "{}: {message}",
                    spec.name
                );
            }
            for field in props.keys() {
                let mut wrong = valid.clone();
                wrong.insert(field.clone(), json!(true));
                let message = err(tb.call(&spec.name, &Value::Object(wrong)).await);
                assert!(
                    message.contains(&format!("field `{field}` must be")),
                    "{}: {message}",
                    spec.name
                );
            }
            let mut extra = serde_json::Map::new();
            extra.insert("bogus".into(), json!(1));
            let message = err(tb.call(&spec.name, &Value::Object(extra)).await);
            let fields: Vec<&str> = props.keys().map(String::as_str).collect();
            assert!(message.starts_with("unknown field `bogus`"), "{message}");
            for field in &fields {
                assert!(
                    message.contains(field),
                    "{}: {message} lacks {field}",
                    spec.name
                );
            }
            let message = err(tb.call(&spec.name, &json!("read it")).await);
            assert_eq!(message, "the input must be a JSON object, got a string");
        }
    }

    #[tokio::test]
    async fn odd_paths_are_errors_not_panics() {
        let repo = Repo::new();
        let tb = Toolbox::new(repo.root(), &["read_file".into(), "write_file".into()]);
        for path in ["a\0b", "\u{1F600}/x", "////", "./", "a//b/./"] {
            let out = tb.call("read_file", &json!({ "path": path })).await;
            assert!(out.output.is_err(), "{path}: {out:?}");
        }
        let out = tb
            .call("write_file", &json!({"path": "a\0b", "content": "x"}))
            .await;
        assert!(err(out).contains("NUL"));
        let missing = Toolbox::new(&repo.path("nowhere"), &["read_file".into()]);
        let message = err(missing.call("read_file", &json!({"path": "a"})).await);
        assert!(
            message.starts_with("cannot use the working tree "),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_error_longer_than_the_cap_is_cut() {
        let repo = Repo::new();
        let tb = Toolbox::new(repo.root(), &["read_file".into()])
            .with_limits(40, Duration::from_secs(5));
        let long = "x".repeat(100);
        let out = tb.call("read_file", &json!({ "path": long })).await;
        assert!(out.truncated);
        let message = out.output.unwrap_err();
        assert!(message.contains("more bytes left out"), "{message}");
        // A short success is untouched.
        std::fs::write(repo.path("a"), "hi").unwrap();
        let value = ok(tb.call("read_file", &json!({"path": "a"})).await);
        assert_eq!(value["content"], "hi");
    }

    #[test]
    fn keep_items_stops_at_the_cap() {
        let items: Vec<String> = ["aa", "bb", "cc"].map(String::from).to_vec();
        assert_eq!(keep_items(items.clone(), 100), (items.clone(), 0));
        assert_eq!(keep_items(items.clone(), 10), (items[..2].to_vec(), 1));
        assert_eq!(keep_items(items, 0), (Vec::new(), 3));
    }
}
