//! A structured diff of two JSON documents, addressed by JSON pointer.
//!
//! Objects are compared key by key. Arrays are compared index by index,
//! except arrays of objects that all carry a unique `id` (a string or a
//! number) on both sides: their elements are matched by id, so a reordered
//! task list reads as moves plus the edits inside each task instead of a
//! cascade of changes at every index.
//!
//! The walk is iterative (an explicit work stack), so a deep document cannot
//! overflow the stack here. Values put into a [`Change`] are cloned, and
//! cloning (like serialising) a `serde_json::Value` recurses; that is bounded
//! because serde_json refuses to parse documents nested deeper than 128
//! levels, and every document wfe diffs was parsed from a file.
//! This module is pure: no I/O, no printing.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One difference between two documents.
///
/// Paths are JSON pointers (RFC 6901; `""` is the whole document). A removal
/// names its place in the old document; every other change names its place
/// in the new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A value present only in the new document.
    Added {
        /// Where it is in the new document.
        path: String,
        /// The value.
        value: Value,
    },
    /// A value present only in the old document.
    Removed {
        /// Where it was in the old document.
        path: String,
        /// The value.
        value: Value,
    },
    /// A value replaced by another (a different scalar, or a different type).
    Changed {
        /// Where it is.
        path: String,
        /// The old value.
        from: Value,
        /// The new value.
        to: Value,
    },
    /// An element of an id-keyed array that changed places among the others.
    Moved {
        /// Its place in the old document.
        from_path: String,
        /// Its place in the new document.
        to_path: String,
    },
}

impl Change {
    /// The pointer the change is about: the new place for a move.
    pub fn path(&self) -> &str {
        match self {
            Change::Added { path, .. } | Change::Removed { path, .. } => path,
            Change::Changed { path, .. } => path,
            Change::Moved { to_path, .. } => to_path,
        }
    }
}

/// Escapes one reference token of a JSON pointer: `~` → `~0`, `/` → `~1`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every difference that turns `a` into `b`, in document order; empty when
/// they are equal.
pub fn diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let mut stack = vec![Task::Compare {
        path: String::new(),
        a,
        b,
    }];
    while let Some(task) = stack.pop() {
        match task {
            Task::Emit(change) => out.push(change),
            Task::Compare { path, a, b } => {
                let mut next = Vec::new();
                compare(&path, a, b, &mut next);
                // The stack is last in, first out: push in reverse to keep document order.
                stack.extend(next.into_iter().rev());
            }
        }
    }
    out
}

/// A unit of pending work: compare two values, or report a finished change.
enum Task<'a> {
    Compare {
        path: String,
        a: &'a Value,
        b: &'a Value,
    },
    Emit(Change),
}

/// The tasks comparing `a` with `b` at `path` produces, one level deep.
fn compare<'a>(path: &str, a: &'a Value, b: &'a Value, next: &mut Vec<Task<'a>>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            // Sorted explicitly: the map's own order depends on serde_json's
            // `preserve_order` feature, which any dependency may switch on.
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = child(path, key);
                next.push(match (a.get(key), b.get(key)) {
                    (Some(a), Some(b)) => Task::Compare { path, a, b },
                    (Some(value), None) => Task::Emit(Change::Removed {
                        path,
                        value: value.clone(),
                    }),
                    (None, Some(value)) => Task::Emit(Change::Added {
                        path,
                        value: value.clone(),
                    }),
                    (None, None) => continue,
                });
            }
        }
        (Value::Array(a), Value::Array(b)) => match (ids(a), ids(b)) {
            (Some(a_ids), Some(b_ids)) => by_id(path, a, b, &a_ids, &b_ids, next),
            _ => by_index(path, a, b, next),
        },
        _ if same_scalar(a, b) => {}
        _ => next.push(Task::Emit(Change::Changed {
            path: path.to_string(),
            from: a.clone(),
            to: b.clone(),
        })),
    }
}

/// Element-wise comparison: shared indices are compared, the rest added or removed.
fn by_index<'a>(path: &str, a: &'a [Value], b: &'a [Value], next: &mut Vec<Task<'a>>) {
    let shared = a.len().min(b.len());
    for i in 0..shared {
        next.push(Task::Compare {
            path: child(path, &i.to_string()),
            a: &a[i],
            b: &b[i],
        });
    }
    for (i, value) in a.iter().enumerate().skip(shared) {
        next.push(Task::Emit(Change::Removed {
            path: child(path, &i.to_string()),
            value: value.clone(),
        }));
    }
    for (i, value) in b.iter().enumerate().skip(shared) {
        next.push(Task::Emit(Change::Added {
            path: child(path, &i.to_string()),
            value: value.clone(),
        }));
    }
}

/// Matches elements by id: removals first (old order), then the new array
/// in order, each element either added, or moved and/or compared field by field.
fn by_id<'a>(
    path: &str,
    a: &'a [Value],
    b: &'a [Value],
    a_ids: &[String],
    b_ids: &[String],
    next: &mut Vec<Task<'a>>,
) {
    let b_index: HashMap<&str, usize> = b_ids
        .iter()
        .enumerate()
        .map(|(j, id)| (id.as_str(), j))
        .collect();
    // (old index, new index) of every element on both sides, in old order.
    let mut pairs = Vec::new();
    for (i, id) in a_ids.iter().enumerate() {
        match b_index.get(id.as_str()) {
            Some(&j) => pairs.push((i, j)),
            None => next.push(Task::Emit(Change::Removed {
                path: child(path, &i.to_string()),
                value: a[i].clone(),
            })),
        }
    }
    // The elements that kept their order relative to each other are the
    // longest run of increasing new indices; only the others moved. So an
    // insertion that shifts every later index is not reported as moves.
    let new_indices: Vec<usize> = pairs.iter().map(|&(_, j)| j).collect();
    let kept: HashSet<usize> = longest_increasing(&new_indices)
        .into_iter()
        .map(|k| new_indices[k])
        .collect();
    let mut old_index = vec![None; b.len()];
    for &(i, j) in &pairs {
        old_index[j] = Some(i);
    }
    for (j, value) in b.iter().enumerate() {
        let to = child(path, &j.to_string());
        match old_index[j] {
            Some(i) => {
                if !kept.contains(&j) {
                    next.push(Task::Emit(Change::Moved {
                        from_path: child(path, &i.to_string()),
                        to_path: to.clone(),
                    }));
                }
                next.push(Task::Compare {
                    path: to,
                    a: &a[i],
                    b: value,
                });
            }
            None => next.push(Task::Emit(Change::Added {
                path: to,
                value: value.clone(),
            })),
        }
    }
}

/// The ids of an array whose elements are all objects with a unique string
/// or number `id`, as their JSON text (so `"1"` and `1` differ); `None` otherwise.
fn ids(items: &[Value]) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = match item.as_object()?.get("id")? {
            id @ (Value::String(_) | Value::Number(_)) => id.to_string(),
            _ => return None,
        };
        if !seen.insert(id.clone()) {
            return None;
        }
        out.push(id);
    }
    Some(out)
}

/// Positions in `seq` of one longest strictly increasing subsequence
/// (patience sorting, O(n log n)); ties resolve the same way every time.
fn longest_increasing(seq: &[usize]) -> Vec<usize> {
    // tails[k]: position of the smallest last element of an increasing run of length k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; seq.len()];
    for (pos, &value) in seq.iter().enumerate() {
        let k = tails.partition_point(|&t| seq[t] < value);
        prev[pos] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(pos);
        } else {
            tails[k] = pos;
        }
    }
    let mut out = Vec::with_capacity(tails.len());
    let mut at = tails.last().copied();
    while let Some(pos) = at {
        out.push(pos);
        at = prev[pos];
    }
    out.reverse();
    out
}

/// Equality of two values that are not both objects or both arrays. Numbers
/// compare by value when either is a float, so `1` and `1.0` are the same.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64() == y.as_f64()
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => a == b,
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", pointer_token(key))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diffs_read_as_expected() {
        let cases = [
            (
                "equal documents",
                json!({"a": [1, {"b": null}]}),
                json!({"a": [1, {"b": null}]}),
                json!([]),
            ),
            (
                "root scalar",
                json!(1),
                json!(2),
                json!([{"kind": "changed", "path": "", "from": 1, "to": 2}]),
            ),
            (
                "root type",
                json!("x"),
                json!(["x"]),
                json!([{"kind": "changed", "path": "", "from": "x", "to": ["x"]}]),
            ),
            (
                "nested objects",
                json!({"a": {"b": 1, "c": 2}, "d": true}),
                json!({"a": {"b": 1, "c": 3, "e": null}}),
                json!([
                    {"kind": "changed", "path": "/a/c", "from": 2, "to": 3},
                    {"kind": "added", "path": "/a/e", "value": null},
                    {"kind": "removed", "path": "/d", "value": true}
                ]),
            ),
            (
                "type change inside",
                json!({"x": [1], "y": {"z": 1}}),
                json!({"x": {"0": 1}, "y": {"z": "1"}}),
                json!([
                    {"kind": "changed", "path": "/x", "from": [1], "to": {"0": 1}},
                    {"kind": "changed", "path": "/y/z", "from": 1, "to": "1"}
                ]),
            ),
            (
                "array by index",
                json!([1, 2, 3]),
                json!([1, 5]),
                json!([
                    {"kind": "changed", "path": "/1", "from": 2, "to": 5},
                    {"kind": "removed", "path": "/2", "value": 3}
                ]),
            ),
            (
                "array by index grows",
                json!({"l": [{"a": 1}]}),
                json!({"l": [{"a": 2}, {"a": 3}]}),
                json!([
                    {"kind": "changed", "path": "/l/0/a", "from": 1, "to": 2},
                    {"kind": "added", "path": "/l/1", "value": {"a": 3}}
                ]),
            ),
            (
                "ids: a move and an edit",
                json!({"tasks": [
                    {"id": 1, "title": "a", "status": "todo"},
                    {"id": 2, "title": "b", "status": "todo"},
                    {"id": 3, "title": "c", "status": "todo"}
                ]}),
                json!({"tasks": [
                    {"id": 3, "title": "c", "status": "todo"},
                    {"id": 1, "title": "a", "status": "done"},
                    {"id": 2, "title": "b", "status": "todo"}
                ]}),
                json!([
                    {"kind": "moved", "from_path": "/tasks/2", "to_path": "/tasks/0"},
                    {"kind": "changed", "path": "/tasks/1/status", "from": "todo", "to": "done"}
                ]),
            ),
            (
                "ids: added and removed, shifts are not moves",
                json!([{"id": "a"}, {"id": "b"}, {"id": "c"}]),
                json!([{"id": "z"}, {"id": "a"}, {"id": "c", "x": 1}]),
                json!([
                    {"kind": "removed", "path": "/1", "value": {"id": "b"}},
                    {"kind": "added", "path": "/0", "value": {"id": "z"}},
                    {"kind": "added", "path": "/2/x", "value": 1}
                ]),
            ),
            (
                "ids: a swap is one move",
                json!([{"id": 1}, {"id": 2}]),
                json!([{"id": 2}, {"id": 1}]),
                json!([{"kind": "moved", "from_path": "/0", "to_path": "/1"}]),
            ),
            (
                "duplicate ids fall back to indices",
                json!([{"id": 1, "v": 1}, {"id": 1, "v": 2}]),
                json!([{"id": 1, "v": 2}, {"id": 1, "v": 1}]),
                json!([
                    {"kind": "changed", "path": "/0/v", "from": 1, "to": 2},
                    {"kind": "changed", "path": "/1/v", "from": 2, "to": 1}
                ]),
            ),
            (
                "a string id is not a number id",
                json!([{"id": "1"}, {"id": 2}]),
                json!([{"id": 1}, {"id": 2}]),
                json!([
                    {"kind": "removed", "path": "/0", "value": {"id": "1"}},
                    {"kind": "added", "path": "/0", "value": {"id": 1}}
                ]),
            ),
            (
                "elements without ids compare by index",
                json!([{"id": 1}, 2]),
                json!([2, {"id": 1}]),
                json!([
                    {"kind": "changed", "path": "/0", "from": {"id": 1}, "to": 2},
                    {"kind": "changed", "path": "/1", "from": 2, "to": {"id": 1}}
                ]),
            ),
            (
                "pointer escaping",
                json!({"a/b": {"m~n": 1}}),
                json!({"a/b": {"m~n": 2}}),
                json!([{"kind": "changed", "path": "/a~1b/m~0n", "from": 1, "to": 2}]),
            ),
            (
                "1 and 1.0 are the same number",
                json!([1, 2.5]),
                json!([1.0, 2.5]),
                json!([]),
            ),
        ];
        for (name, a, b, expected) in cases {
            let got = serde_json::to_value(diff(&a, &b)).unwrap();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_change_round_trips_through_json() {
        let change = Change::Moved {
            from_path: "/a/0".into(),
            to_path: "/a/1".into(),
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"moved","from_path":"/a/0","to_path":"/a/1"}"#
        );
        assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), change);
        assert_eq!(change.path(), "/a/1");
    }

    #[test]
    fn longest_increasing_keeps_the_most_elements_in_place() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[], &[]),
            (&[0, 1, 2], &[0, 1, 2]),
            (&[2, 0, 1], &[1, 2]),
            (&[1, 0], &[1]),
            (&[3, 0, 1, 4, 2], &[1, 2, 4]),
        ];
        for (seq, expected) in cases {
            assert_eq!(longest_increasing(seq), expected, "{seq:?}");
        }
    }

    #[test]
    fn deep_documents_do_not_overflow_the_stack() {
        // Deeper than serde_json would ever parse, built by hand.
        let depth = 5_000;
        let (mut a, mut b) = (json!(1), json!(2));
        for _ in 0..depth {
            // Not `json!([a])`: that serialises `a`, recursively.
            a = Value::Array(vec![a]);
            b = Value::Array(vec![b]);
        }
        let changes = diff(&a, &b);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path().len(), depth * 2);
        // Dropping such a value recurses in serde_json; take it apart by hand.
        for mut v in [a, b] {
            while let Value::Array(items) = &mut v {
                let Some(inner) = items.pop() else { break };
                v = inner;
            }
        }
    }
}
