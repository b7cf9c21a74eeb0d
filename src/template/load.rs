//! Parsing template text (JSON or YAML) into the model, with exact paths.
//!
//! Text becomes a `serde_json::Value` first (syntax errors carry line and
//! column), then the model, through `serde_path_to_error` so a problem names
//! the key it is about. Serde stops at the first error of a struct, so each
//! phase (and each loop child) is read on its own: one bad phase does not
//! hide the problems of the next.

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::path;
use super::{Phase, Problem, Template, TemplateError};
use crate::strict::StrictError;

/// Parses a template; `file` names it in errors; `yaml` picks the syntax.
/// Reports syntax errors with line and column and model errors with their
/// JSON path (e.g. `phases[2].timeout`).
pub fn parse_template(text: &str, file: &str, yaml: bool) -> Result<Template, TemplateError> {
    let fail = |problems| TemplateError {
        file: file.to_string(),
        problems,
    };
    let value = parse_document(text, yaml).map_err(|problem| fail(vec![problem]))?;
    let mut template = template_from_value(value).map_err(fail)?;
    super::matrix::keep_written_order(&mut template, text, yaml);
    Ok(template)
}

/// `sha256:<hex>` over the template's canonical JSON (sorted keys, no
/// whitespace), so reformatting a template does not change its digest.
pub fn digest(template: &Template) -> String {
    // The model serialises to JSON without fail (string keys, no floats);
    // Null would still give a stable, if useless, digest.
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let hash = Sha256::digest(canonical.as_bytes());
    format!("sha256:{hash:x}")
}

/// Compact JSON with object keys sorted at every level, whether or not
/// serde_json keeps insertion order (its `preserve_order` feature may be
/// switched on by any crate in the build).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The document as a JSON value; a key given twice in one object is an
/// error at that object's path (parsers would silently keep the last one).
fn parse_document(text: &str, yaml: bool) -> Result<Value, Problem> {
    let whole = |message: String| Problem {
        path: String::new(),
        message,
    };
    if text.trim().is_empty() {
        return Err(whole(
            "the file is empty; expected a template object with `name` and `phases`".into(),
        ));
    }
    let parsed = if yaml {
        crate::strict::parse_yaml(text)
    } else {
        crate::strict::parse_json(text)
    };
    parsed.map_err(|e| match e {
        StrictError::Duplicate { key, path, where_ } => Problem {
            path,
            message: format!("duplicate key `{key}`{where_}; each key may appear once"),
        },
        StrictError::Syntax(message) => whole(format!(
            "not valid {}: {message}",
            if yaml { "YAML" } else { "JSON" }
        )),
    })
}

/// Reads the model out of a parsed document, reporting every problem it can.
pub(crate) fn template_from_value(mut value: Value) -> Result<Template, Vec<Problem>> {
    let Value::Object(map) = &mut value else {
        let message = format!(
            "expected a template object with `name` and `phases`, found {}",
            describe_value(&value)
        );
        return Err(vec![Problem {
            path: String::new(),
            message,
        }]);
    };
    let raw_phases = take_array(map, "phases");
    let mut problems = Vec::new();
    let template = read::<Template>(value, "", &mut problems);
    let phases = raw_phases.map(|items| read_phases(items, "phases", &mut problems));
    match template {
        Some(mut template) if problems.is_empty() => {
            if let Some(phases) = phases {
                template.phases = phases;
            }
            Ok(template)
        }
        _ => Err(problems),
    }
}

/// Takes an array-valued `key` out of `map`, leaving `[]` in its place so
/// the rest still deserialises; anything else is left for serde to report.
fn take_array(map: &mut serde_json::Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    match map.get_mut(key) {
        Some(Value::Array(items)) => Some(std::mem::take(items)),
        _ => None,
    }
}

fn read_phases(items: Vec<Value>, parent: &str, problems: &mut Vec<Problem>) -> Vec<Phase> {
    let mut phases = Vec::with_capacity(items.len());
    for (i, mut item) in items.into_iter().enumerate() {
        let at = path::index(parent, i);
        let children = match &mut item {
            Value::Object(map) => take_array(map, "phases"),
            _ => None,
        };
        let phase = read::<Phase>(item, &at, problems);
        let children =
            children.map(|items| read_phases(items, &path::key(&at, "phases"), problems));
        if let Some(mut phase) = phase {
            if let Some(children) = children {
                phase.phases = children;
            }
            phases.push(phase);
        }
    }
    phases
}

fn read<T: DeserializeOwned>(value: Value, at: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut where_ = at.to_string();
            for segment in e.path() {
                where_ = match segment {
                    serde_path_to_error::Segment::Seq { index } => path::index(&where_, *index),
                    serde_path_to_error::Segment::Map { key } => path::key(&where_, key),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => where_,
                };
            }
            let message = explain(&e.inner().to_string(), &where_);
            problems.push(Problem {
                path: where_,
                message,
            });
            None
        }
    }
}

/// Rewords serde's messages in the template's terms.
fn explain(message: &str, at: &str) -> String {
    if let Some((name, expected)) = backticked_pair(message, "unknown field `") {
        let mut text = format!("unknown key `{name}`");
        if let Some(suggestion) = closest(&name, &expected) {
            text.push_str(&format!(" (did you mean `{suggestion}`?)"));
        }
        if expected.is_empty() {
            text.push_str("; no keys are allowed here");
        } else {
            text.push_str(&format!("; expected one of {}", quoted(&expected)));
        }
        return text;
    }
    if let Some((name, expected)) = backticked_pair(message, "unknown variant `") {
        let what = if at == "kind" || at.ends_with(".kind") {
            "phase kind"
        } else {
            "value"
        };
        return format!(
            "unknown {what} `{name}`; expected one of {}",
            quoted(&expected)
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return format!("missing key `{name}`");
    }
    let mut text = message.to_string();
    for (serde_words, ours) in [
        ("struct Template", "a template object"),
        ("struct Phase", "a phase object (with `id` and `kind`)"),
        ("struct Defaults", "an object of defaults"),
        ("struct RetryPolicy", "an object with `max_attempts`"),
        ("struct Review", "an object with `role`"),
        ("enum PhaseKind", "a phase kind"),
        ("a sequence", "an array"),
        ("a map", "an object"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
    ] {
        text = text.replace(serde_words, ours);
    }
    text
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`", or "there are no fields") into `x` and `[a, b]`.
fn backticked_pair(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), expected))
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate a typo most likely meant: within two edits, or the only one
/// sharing its first three letters.
pub(crate) fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let best = candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .min_by_key(|(d, _)| *d)?;
    if best.0 <= 2.min(name.chars().count().saturating_sub(1)) {
        return Some(best.1);
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A short description of a JSON value's type, for messages.
pub(crate) fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::from(s.as_str())),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        r#"{"name": "t", "phases": [{"id": "a", "kind": "script", "run": "true"}]}"#;

    fn problems(text: &str) -> Vec<(String, String)> {
        match parse_template(text, "t.json", false) {
            Ok(t) => panic!("parsed: {t:?}"),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn parses_json_and_yaml_alike() {
        let yaml = "name: t\nphases:\n  - id: a\n    kind: script\n    run: 'true'\n";
        let from_json = parse_template(MINIMAL, "t.json", false).unwrap();
        let from_yaml = parse_template(yaml, "t.yaml", true).unwrap();
        assert_eq!(from_json, from_yaml);
    }

    #[test]
    fn loop_children_are_read() {
        let text = r#"{"name": "t", "phases": [{"id": "l", "kind": "loop", "max_iters": 2,
            "phases": [{"id": "c", "kind": "script", "run": "true", "depends_on": []}]}]}"#;
        let t = parse_template(text, "t.json", false).unwrap();
        assert_eq!(t.phases[0].phases[0].id, "c");
    }

    #[test]
    fn each_problem_has_its_path() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"name": "t", "phases": [], "nmae": 1}"#,
                "nmae",
                "unknown key `nmae` (did you mean `name`?); expected one of `$schema`, `name`",
            ),
            (r#"{"phases": []}"#, "", "missing key `name`"),
            (
                r#"{"name": "t", "phases": {}}"#,
                "phases",
                "invalid type: object, expected an array",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "shell"}]}"#,
                "phases[0].kind",
                "unknown phase kind `shell`; expected one of `script`, `agent`, `gate`, `loop`",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "script", "rnu": "x"}]}"#,
                "phases[0].rnu",
                "unknown key `rnu` (did you mean `run`?)",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "script", "rnu": "x"}]}"#,
                "phases[0].rnu",
                "expected one of `id`, `kind`",
            ),
            (
                r#"{"name": "t", "phases": ["a"]}"#,
                "phases[0]",
                "expected a phase object",
            ),
            (
                r#"{"name": "t", "phases": [{"kind": "gate"}]}"#,
                "phases[0]",
                "missing key `id`",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "timeout": "soon"}]}"#,
                "phases[0].timeout",
                r#"expected e.g. "90s""#,
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "timeout": true}]}"#,
                "phases[0].timeout",
                "expected a duration",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "retry": {"max_attempts": -1}}]}"#,
                "phases[0].retry.max_attempts",
                "expected a whole number",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "on_failure": "explode"}]}"#,
                "phases[0].on_failure",
                "unknown value `explode`; expected one of `stop`, `continue`",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "needs": "b"}]}"#,
                "phases[0].needs",
                "expected an array",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "a", "kind": "gate", "outputs": {"x": 1}}]}"#,
                "phases[0].outputs.x",
                "expected a schema name, or {\"file\": GLOB} or {\"dir\": PATH}",
            ),
            (
                r#"{"name": "t", "phases": [{"id": "l", "kind": "loop", "phases": [{"id": "c", "kind": "nope"}]}]}"#,
                "phases[0].phases[0].kind",
                "unknown phase kind `nope`",
            ),
            (
                r#"{"name": "t", "defaults": {"retry": {"max_attempts": 1, "jitter": 1}}, "phases": []}"#,
                "defaults.retry.jitter",
                "unknown key `jitter`",
            ),
            (
                r#"[1, 2]"#,
                "",
                "expected a template object with `name` and `phases`, found an array",
            ),
            ("", "", "the file is empty"),
            (
                "{\n  \"name\": \"t\",\n}",
                "",
                "not valid JSON: trailing comma at line 3 column 1",
            ),
        ];
        for (text, path, fragment) in cases {
            let found = problems(text);
            assert!(
                found.iter().any(|(p, m)| p == path && m.contains(fragment)),
                "{text}\nwanted {path}: {fragment}\nfound {found:?}"
            );
        }
    }

    #[test]
    fn problems_in_several_phases_are_all_reported() {
        let text = r#"{"name": "t", "bad": 1, "phases": [
            {"id": "a", "kind": "shell"},
            {"id": "b", "kind": "script", "timeout": "x"},
            {"id": "c", "kind": "loop", "phases": [{"id": "d", "kind": "gate", "x": 1}]}
        ]}"#;
        let paths: Vec<String> = problems(text).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "bad",
                "phases[0].kind",
                "phases[1].timeout",
                "phases[2].phases[0].x"
            ]
        );
    }

    #[test]
    fn yaml_syntax_errors_have_a_position() {
        let err = parse_template("name: t\nphases: [\n", "t.yaml", true).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].message.contains("not valid YAML"), "{err}");
        assert!(err.problems[0].message.contains("line"), "{err}");
    }

    #[test]
    fn digest_ignores_formatting_and_aliases() {
        let spaced = r#"{
            "phases": [ { "kind": "script", "id": "a", "run": "true" },
                        { "id": "b", "kind": "gate", "depends_on": ["a"] } ],
            "name": "t"
        }"#;
        let compact = r#"{"name":"t","phases":[{"id":"a","kind":"script","run":"true"},{"id":"b","kind":"gate","needs":["a"]}]}"#;
        let a = digest(&parse_template(spaced, "a", false).unwrap());
        let b = digest(&parse_template(compact, "b", false).unwrap());
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        let other = digest(&parse_template(MINIMAL, "c", false).unwrap());
        assert_ne!(a, other);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut out = String::new();
        write_canonical(
            &serde_json::json!({"b": [1, {"d": null, "c": "x"}], "a": true}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":true,"b":[1,{"c":"x","d":null}]}"#);
    }

    #[test]
    fn suggestions_are_close() {
        let names: Vec<String> = ["needs", "name", "run"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(closest("neds", &names), Some("needs"));
        assert_eq!(closest("rnu", &names), Some("run"));
        assert_eq!(closest("zzzzzz", &names), None);
    }
}
