//! Matrix phases: one phase per combination of a `matrix`'s values.
//!
//! A run freezes the template as written; [`expand`] turns each matrix
//! phase into its combinations whenever the engine reads it, so the frozen
//! copy stays what the author wrote and everything downstream (the DAG,
//! states, retry, status) sees ordinary phases with ids `id[axis=value,…]`.
//! [`problems`] is the part of validation that makes expansion safe: every
//! value is a scalar whose text can stand in a phase id (and so in a path
//! of the checkpoint tree), and no two combinations are the same.

use serde_json::Value;

use super::model::{Combination, Matrix, Phase, Template};
use super::path;
use super::validate::is_valid_name;

/// The most combinations one matrix may expand into.
pub const MAX_COMBINATIONS: usize = 256;

/// The longest text a value may have once in a phase id.
const MAX_VALUE_CHARS: usize = 64;

/// Axis names kept for GitHub-style `include`/`exclude`.
const RESERVED_AXES: &[&str] = &["include", "exclude"];

/// A value's text in a phase id: strings as they are, numbers and booleans
/// as JSON writes them; `None` for anything else.
pub(super) fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// True for value texts that can stand in a phase id and a tree path:
/// letters, digits, `.`, `_`, `+` and `-`, not `.` or `..` alone.
fn is_id_safe(text: &str) -> bool {
    !text.is_empty()
        && text.chars().count() <= MAX_VALUE_CHARS
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// The id of the phase `of` runs as for `key` (`test[python=3.11]`).
pub fn combination_id(of: &str, key: &str) -> String {
    format!("{of}[{key}]")
}

/// Every combination of `matrix`, the last axis varying fastest; empty
/// when an axis is not a non-empty list.
fn combinations(matrix: &Matrix) -> Vec<Vec<(String, Value)>> {
    let mut out: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (axis, values) in &matrix.axes {
        let Value::Array(values) = values else {
            return Vec::new();
        };
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((axis.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    out
}

/// `axis=value,…` for one combination.
fn key_of(values: &[(String, Value)]) -> String {
    values
        .iter()
        .map(|(axis, v)| format!("{axis}={}", value_text(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// How many combinations `matrix` has (saturating), without making them.
fn count(matrix: &Matrix) -> usize {
    matrix.axes.iter().fold(1usize, |n, (_, values)| {
        n.saturating_mul(values.as_array().map_or(0, Vec::len))
    })
}

/// What is wrong with the matrix at `at` (`phases[1].matrix`), each with
/// its path: no axes, an axis that is not a non-empty list of id-safe
/// scalars, an axis or a value given twice, too many combinations.
pub(crate) fn problems(matrix: &Matrix, at: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if matrix.axes.is_empty() {
        out.push((
            at.to_string(),
            "a matrix needs at least one axis, e.g. {\"python\": [\"3.11\", \"3.12\"]}".into(),
        ));
        return out;
    }
    let mut seen_axes: Vec<&str> = Vec::new();
    for (axis, values) in &matrix.axes {
        let axis_at = path::key(at, axis);
        if seen_axes.contains(&axis.as_str()) {
            out.push((axis_at.clone(), format!("axis `{axis}` is given twice")));
        }
        seen_axes.push(axis);
        if RESERVED_AXES.contains(&axis.as_str()) {
            out.push((
                axis_at.clone(),
                format!(
                    "`{axis}` is reserved (GitHub-style include/exclude); name the axis otherwise"
                ),
            ));
        } else if !is_valid_name(axis) {
            out.push((
                axis_at.clone(),
                format!("`{axis}` is not a valid axis name; expected lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
            ));
        }
        let Value::Array(list) = values else {
            out.push((
                axis_at,
                format!(
                    "expected a list of values, e.g. [\"a\", \"b\"]; found {}",
                    super::load::describe_value(values)
                ),
            ));
            continue;
        };
        if list.is_empty() {
            out.push((
                axis_at,
                "an axis needs at least one value; expected e.g. [\"a\", \"b\"]".into(),
            ));
            continue;
        }
        let mut texts: Vec<String> = Vec::new();
        for (i, value) in list.iter().enumerate() {
            let value_at = path::index(&axis_at, i);
            let Some(text) = value_text(value) else {
                out.push((
                    value_at,
                    format!(
                        "expected a string, number or boolean; found {}",
                        super::load::describe_value(value)
                    ),
                ));
                continue;
            };
            if !is_id_safe(&text) {
                out.push((
                    value_at,
                    format!("`{text}` cannot stand in a phase id; expected 1 to {MAX_VALUE_CHARS} letters, digits, `.`, `_`, `+` or `-`"),
                ));
            } else if texts.contains(&text) {
                out.push((
                    value_at,
                    format!("`{text}` is given twice, which would make duplicate combinations"),
                ));
            }
            texts.push(text);
        }
    }
    let n = count(matrix);
    if n > MAX_COMBINATIONS {
        out.push((
            at.to_string(),
            format!("{n} combinations; a matrix may have at most {MAX_COMBINATIONS}"),
        ));
    }
    out
}

/// Puts each top-level matrix's axes back in the order `text` writes them:
/// the document was read through `serde_json::Value`, whose maps sort
/// their keys, and the order of the axes is the order of the combinations.
/// A second, lenient pass reads only the matrices' keys, straight from the
/// text; when it cannot (the document has other problems), the order
/// stays sorted.
pub(crate) fn keep_written_order(template: &mut Template, text: &str, yaml: bool) {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(default)]
        phases: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        matrix: Option<Matrix>,
    }
    if template.phases.iter().all(|p| p.matrix.is_none()) {
        return;
    }
    let doc: Option<Doc> = if yaml {
        yaml_serde::from_str(text).ok()
    } else {
        serde_json::from_str(text).ok()
    };
    let Some(doc) = doc else { return };
    for (phase, entry) in template.phases.iter_mut().zip(doc.phases) {
        let (Some(matrix), Some(written)) = (&mut phase.matrix, entry.matrix) else {
            continue;
        };
        let order: Vec<&String> = written.axes.iter().map(|(axis, _)| axis).collect();
        matrix
            .axes
            .sort_by_key(|(axis, _)| order.iter().position(|a| *a == axis).unwrap_or(usize::MAX));
    }
}

/// The template as the engine runs it: each top-level matrix phase
/// replaced, in place, by one phase per combination, and `needs` naming a
/// matrix phase naming all its combinations.
///
/// Expanding a template without matrices returns it unchanged. Values are
/// not checked here: a template that passed validation expands cleanly.
pub fn expand(template: &Template) -> Template {
    if template.phases.iter().all(|p| p.matrix.is_none()) {
        return template.clone();
    }
    let mut ids: Vec<(String, Vec<String>)> = Vec::new();
    let mut phases = Vec::new();
    for phase in &template.phases {
        let Some(matrix) = &phase.matrix else {
            phases.push(phase.clone());
            continue;
        };
        let mut made = Vec::new();
        for values in combinations(matrix) {
            let key = key_of(&values);
            let mut one: Phase = phase.clone();
            one.id = combination_id(&phase.id, &key);
            one.matrix = None;
            one.combination = Some(Combination {
                of: phase.id.clone(),
                key,
                values,
                fail_fast: phase.fail_fast.unwrap_or(true),
                max_parallel: phase.max_parallel,
            });
            made.push(one.id.clone());
            phases.push(one);
        }
        ids.push((phase.id.clone(), made));
    }
    for phase in &mut phases {
        phase.needs = phase
            .needs
            .iter()
            .flat_map(|need| match ids.iter().find(|(of, _)| of == need) {
                Some((_, all)) => all.clone(),
                None => vec![need.clone()],
            })
            .collect();
    }
    Template {
        phases,
        ..template.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parsed from text: `json!` would sort the axes.
    fn template(doc: &str) -> Template {
        serde_json::from_str(doc).unwrap()
    }

    fn matrix(doc: &str) -> Matrix {
        serde_json::from_str(doc).unwrap()
    }

    #[test]
    fn expands_in_axis_order_and_rewires_needs() {
        let t = template(
            r#"{"name": "t", "phases": [
            {"id": "test", "kind": "script", "run": "x",
             "matrix": {"python": ["3.11", "3.12"], "model": ["a", "b"]}, "max_parallel": 2},
            {"id": "report", "kind": "script", "run": "y", "needs": ["test"]}
        ]}"#,
        );
        let e = expand(&t);
        let ids: Vec<&str> = e.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "test[python=3.11,model=a]",
                "test[python=3.11,model=b]",
                "test[python=3.12,model=a]",
                "test[python=3.12,model=b]",
                "report"
            ]
        );
        assert_eq!(e.phases[4].needs, ids[..4]);
        let c = e.phases[2].combination.as_ref().unwrap();
        assert_eq!(c.of, "test");
        assert_eq!(c.key, "python=3.12,model=a");
        assert!(c.fail_fast);
        assert_eq!(c.max_parallel, Some(2));
        assert!(e.phases.iter().all(|p| p.matrix.is_none()));
    }

    #[test]
    fn the_written_order_survives_a_round_trip() {
        let m = matrix(r#"{"zeta": [1], "alpha": [true, false]}"#);
        assert_eq!(m.axes[0].0, "zeta");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"zeta":[1],"alpha":[true,false]}"#
        );
        let keys: Vec<String> = combinations(&m).iter().map(|c| key_of(c)).collect();
        assert_eq!(keys, ["zeta=1,alpha=true", "zeta=1,alpha=false"]);
    }

    #[test]
    fn parsing_keeps_the_written_order_in_json_and_yaml() {
        let json = r#"{"name": "t", "phases": [{"id": "a", "kind": "script", "run": "x",
            "matrix": {"zeta": [1], "alpha": [2], "mid": [3]}}]}"#;
        let yaml = "name: t\nphases:\n  - id: a\n    kind: script\n    run: x\n    matrix:\n      zeta: [1]\n      alpha: [2]\n      mid: [3]\n";
        for (text, is_yaml) in [(json, false), (yaml, true)] {
            let t = super::super::parse_template(text, "t", is_yaml).unwrap();
            let axes: Vec<&str> = t.phases[0]
                .matrix
                .as_ref()
                .unwrap()
                .axes
                .iter()
                .map(|(a, _)| a.as_str())
                .collect();
            assert_eq!(axes, ["zeta", "alpha", "mid"], "yaml: {is_yaml}");
            assert_eq!(expand(&t).phases[0].id, "a[zeta=1,alpha=2,mid=3]");
        }
    }

    #[test]
    fn problems_name_their_paths() {
        let at = "phases[0].matrix";
        let found = |doc: &str| problems(&matrix(doc), at);
        assert_eq!(found("{}")[0].0, at);
        assert_eq!(found(r#"{"a": "x"}"#)[0].0, "phases[0].matrix.a");
        assert_eq!(found(r#"{"a": []}"#)[0].0, "phases[0].matrix.a");
        assert_eq!(found(r#"{"a": [{"b": 1}]}"#)[0].0, "phases[0].matrix.a[0]");
        assert_eq!(found(r#"{"a": ["x", "x"]}"#)[0].0, "phases[0].matrix.a[1]");
        assert_eq!(found(r#"{"a": [1, "1"]}"#)[0].0, "phases[0].matrix.a[1]");
        assert_eq!(found(r#"{"a": ["x/y"]}"#)[0].0, "phases[0].matrix.a[0]");
        assert_eq!(found(r#"{"a": [".."]}"#)[0].0, "phases[0].matrix.a[0]");
        assert_eq!(found(r#"{"A": [1]}"#)[0].0, "phases[0].matrix.A");
        assert_eq!(
            found(r#"{"include": [1]}"#)[0].0,
            "phases[0].matrix.include"
        );
        let many: Vec<u32> = (0..17).collect();
        let big = json!({"a": many, "b": many}).to_string();
        let p = found(&big);
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("289 combinations"), "{p:?}");
        assert!(found(r#"{"a": ["3.11", 3, true, "x_y+z-1"]}"#).is_empty());
    }
}
