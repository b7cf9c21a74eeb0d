//! Finding a schema by name (repo, built-in, or path), with the documents
//! its `$ref`s reach, and compiling it once per process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::ArtifactError;
use super::references::{RepoDocuments, references};
use super::schema::Schema;
use crate::bounded;

/// The built-in schemas, compiled into the binary: (name, JSON text).
///
/// Each one's `$id` is `https://wfe.local/schemas/NAME.json`, and each has
/// valid and invalid examples under `schemas/examples/NAME/`.
const BUILTIN: &[(&str, &str)] = &[
    (
        "build-report",
        include_str!("../../schemas/build-report.json"),
    ),
    ("decision", include_str!("../../schemas/decision.json")),
    (
        "decision-log",
        include_str!("../../schemas/decision-log.json"),
    ),
    ("eval", include_str!("../../schemas/eval.json")),
    ("message", include_str!("../../schemas/message.json")),
    (
        "research-notes",
        include_str!("../../schemas/research-notes.json"),
    ),
    ("retro", include_str!("../../schemas/retro.json")),
    ("review", include_str!("../../schemas/review.json")),
    ("spec", include_str!("../../schemas/spec.json")),
    ("task-list", include_str!("../../schemas/task-list.json")),
    (
        "test-report",
        include_str!("../../schemas/test-report.json"),
    ),
];

/// True when a schema name is a file path rather than a name: it has a `/`
/// or ends in `.json`.
pub(crate) fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.ends_with(".json")
}

/// The JSON text of a built-in schema.
pub fn builtin_schema(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The names of all built-in schemas, sorted.
pub fn builtin_schema_names() -> Vec<&'static str> {
    let mut names: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

/// Where a resolved schema came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// `.wfe/schemas/NAME.json` in the repository.
    Repo(PathBuf),
    /// Compiled into wfe.
    Builtin,
    /// A schema file named by path.
    Path(PathBuf),
}

impl std::fmt::Display for SchemaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaSource::Repo(p) | SchemaSource::Path(p) => write!(f, "{}", p.display()),
            SchemaSource::Builtin => f.write_str("built-in"),
        }
    }
}

/// A schema document found by name.
#[derive(Debug, Clone)]
pub struct ResolvedSchema {
    /// The name as asked for.
    pub name: String,
    /// Where it was found.
    pub source: SchemaSource,
    /// The schema document.
    pub json: Value,
}

/// Resolves schema names for one repository.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// A registry for the repository whose work tree is `root`.
    pub fn new(root: &Path) -> Self {
        Registry {
            root: root.to_path_buf(),
        }
    }

    /// Finds `name`: `.wfe/schemas/NAME.json`, then built-in, then a path.
    ///
    /// Only the schema itself; its `$ref`s are not followed (see
    /// [`resolve_with_refs`](Self::resolve_with_refs)).
    pub fn resolve(&self, name: &str) -> Result<ResolvedSchema, ArtifactError> {
        if !looks_like_path(name) {
            let repo = self.root.join(".wfe/schemas").join(format!("{name}.json"));
            if repo.is_file() {
                return read(name, repo, SchemaSource::Repo);
            }
            if let Some(text) = builtin_schema(name) {
                return parse(name, "built-in", text.as_bytes()).map(|json| ResolvedSchema {
                    name: name.to_string(),
                    source: SchemaSource::Builtin,
                    json,
                });
            }
            return Err(ArtifactError::UnknownSchema {
                name: name.to_string(),
            });
        }
        let path = self.root.join(name);
        if path.is_file() {
            return read(name, path, SchemaSource::Path);
        }
        Err(ArtifactError::UnknownSchema {
            name: name.to_string(),
        })
    }

    /// Finds `name` and every document its `$ref`s reach, transitively:
    /// (URI, document) pairs, sorted by URI. A run freezes them all, so it
    /// keeps validating the same way after the repo's schemas change.
    ///
    /// `$ref`s resolve against the schema's URI (see
    /// [`schema_uri`](super::schema_uri)): `https://wfe.local/schemas/NAME.json`
    /// is the repo's `.wfe/schemas/NAME.json` or else the built-in NAME; a
    /// path schema's relative `$ref`s reach the files beside it; a repo
    /// schema can also be reached by its own `$id`. Anything else (another
    /// host, `file:`) is refused: nothing is fetched.
    pub fn resolve_with_refs(
        &self,
        name: &str,
    ) -> Result<(ResolvedSchema, Vec<(String, Value)>), ArtifactError> {
        let resolved = self.resolve(name)?;
        let lookup = Arc::new(RepoDocuments::new(&self.root));
        let refs = references(
            &resolved.name,
            &resolved.source.to_string(),
            &resolved.json,
            lookup,
        )?;
        Ok((resolved, refs))
    }

    /// Resolves and compiles `name` with the documents it references; the
    /// validator is compiled once per process and shared.
    pub fn compile(&self, name: &str) -> Result<Arc<Schema>, ArtifactError> {
        let (resolved, refs) = self.resolve_with_refs(name)?;
        Schema::compile_with(
            &resolved.name,
            &resolved.source.to_string(),
            resolved.json,
            &refs,
        )
    }
}

/// Reads the schema file `path`; `source` records where it was found.
fn read(
    name: &str,
    path: PathBuf,
    source: fn(PathBuf) -> SchemaSource,
) -> Result<ResolvedSchema, ArtifactError> {
    let bytes =
        bounded::read(&path, bounded::TEXT_LIMIT).map_err(|e| ArtifactError::ReadSchema {
            path: path.clone(),
            source: e,
        })?;
    let json = parse(name, &path.display().to_string(), &bytes)?;
    Ok(ResolvedSchema {
        name: name.to_string(),
        source: source(path),
        json,
    })
}

fn parse(name: &str, origin: &str, bytes: &[u8]) -> Result<Value, ArtifactError> {
    serde_json::from_slice(bytes).map_err(|e| ArtifactError::InvalidSchema {
        name: name.to_string(),
        origin: origin.to_string(),
        message: format!("not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tempfile::TempDir;

    use super::*;

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn resolves_repo_then_builtin_then_path() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());

        let builtin = registry.resolve("message").unwrap();
        assert_eq!(builtin.source, SchemaSource::Builtin);

        // A repo schema shadows the built-in of the same name.
        let repo = write(
            dir.path(),
            ".wfe/schemas/message.json",
            r#"{"type": "string"}"#,
        );
        let shadowed = registry.resolve("message").unwrap();
        assert_eq!(shadowed.source, SchemaSource::Repo(repo));
        assert_eq!(shadowed.json, json!({"type": "string"}));

        let path = write(dir.path(), "schemas/custom.json", r#"{"type": "integer"}"#);
        let by_path = registry.resolve("schemas/custom.json").unwrap();
        assert_eq!(by_path.name, "schemas/custom.json");
        assert_eq!(by_path.source, SchemaSource::Path(path));
        assert_eq!(by_path.json, json!({"type": "integer"}));
    }

    #[test]
    fn unknown_and_broken_schemas_are_errors() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        for name in ["nope", "missing/file.json"] {
            let err = registry.resolve(name).unwrap_err();
            assert!(
                matches!(err, ArtifactError::UnknownSchema { .. }),
                "{name}: {err}"
            );
        }
        write(dir.path(), ".wfe/schemas/broken.json", "{ not json");
        let err = registry.resolve("broken").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("schema `broken` ("), "{text}");
        assert!(text.contains("not JSON"), "{text}");
    }

    fn uris(refs: &[(String, Value)]) -> Vec<&str> {
        refs.iter().map(|(u, _)| u.as_str()).collect()
    }

    fn decision() -> Value {
        json!({
            "id": "D1", "category": "technical", "stage": "plan", "decision": "Use git.",
            "alternatives": [], "rationale": "History for free.", "trade_offs": "None."
        })
    }

    #[test]
    fn builtin_refs_resolve_to_builtins() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        let (resolved, refs) = registry.resolve_with_refs("decision-log").unwrap();
        assert_eq!(resolved.source, SchemaSource::Builtin);
        assert_eq!(uris(&refs), ["https://wfe.local/schemas/decision.json"]);
        assert_eq!(
            refs[0].1,
            serde_json::from_str::<Value>(builtin_schema("decision").unwrap()).unwrap()
        );

        let schema = registry.compile("decision-log").unwrap();
        assert_eq!(schema.validate(&json!({ "decisions": [decision()] })), []);
        let violations = schema.validate(&json!({ "decisions": [{ "id": "D1" }] }));
        assert!(!violations.is_empty());
        assert!(violations.iter().all(|v| v.instance_path == "/decisions/0"));

        // Plain `Schema::compile` reaches the built-ins too.
        let json = resolved.json.clone();
        let standalone = Schema::compile("decision-log", "built-in", json).unwrap();
        assert_eq!(
            standalone.validate(&json!({ "decisions": [decision()] })),
            []
        );
        // A schema without references has none to freeze.
        assert_eq!(registry.resolve_with_refs("message").unwrap().1, []);
    }

    #[test]
    fn a_repo_schema_shadows_the_builtin_it_is_referenced_as() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        // The built-in decision-log refers to `decision.json`: the repo's one wins.
        write(
            dir.path(),
            ".wfe/schemas/decision.json",
            r#"{"type": "object", "required": ["owner"]}"#,
        );
        let (_, refs) = registry.resolve_with_refs("decision-log").unwrap();
        assert_eq!(refs[0].1, json!({"type": "object", "required": ["owner"]}));
        let schema = registry.compile("decision-log").unwrap();
        assert!(
            !schema
                .validate(&json!({ "decisions": [decision()] }))
                .is_empty()
        );
        assert_eq!(
            schema.validate(&json!({ "decisions": [{ "owner": "ada" }] })),
            []
        );
    }

    #[test]
    fn repo_schemas_refer_to_siblings_relatively_and_by_id() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        write(
            dir.path(),
            ".wfe/schemas/release.json",
            r#"{"type": "object", "properties": {
                "notes": {"$ref": "note.json"},
                "owner": {"$ref": "https://example.com/person.json"},
                "review": {"$ref": "review.json#/$defs/location"}
            }}"#,
        );
        write(
            dir.path(),
            ".wfe/schemas/note.json",
            r#"{"type": "string", "minLength": 3}"#,
        );
        // Reached by its own `$id`, whatever its file is called.
        write(
            dir.path(),
            ".wfe/schemas/people.json",
            r#"{"$id": "https://example.com/person.json", "type": "object", "required": ["name"]}"#,
        );
        let (_, refs) = registry.resolve_with_refs("release").unwrap();
        assert_eq!(
            uris(&refs),
            [
                "https://example.com/person.json",
                "https://wfe.local/schemas/note.json",
                "https://wfe.local/schemas/review.json",
            ]
        );
        let schema = registry.compile("release").unwrap();
        let good = json!({"notes": "fine", "owner": {"name": "ada"}, "review": {"file": "a.rs"}});
        assert_eq!(schema.validate(&good), []);
        let bad = json!({"notes": "x", "owner": {}, "review": {"line": 1}});
        let mut paths: Vec<String> = schema
            .validate(&bad)
            .into_iter()
            .map(|v| v.instance_path)
            .collect();
        paths.sort();
        assert_eq!(paths, ["/notes", "/owner", "/review"]);
    }

    #[test]
    fn path_schemas_refer_to_files_beside_them() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        write(
            dir.path(),
            "docs/schemas/report.json",
            r#"{"type": "object", "properties": {"part": {"$ref": "part.json"}, "up": {"$ref": "../shared.json"}}}"#,
        );
        write(
            dir.path(),
            "docs/schemas/part.json",
            r#"{"type": "integer"}"#,
        );
        write(dir.path(), "docs/shared.json", r#"{"type": "boolean"}"#);
        let (_, refs) = registry
            .resolve_with_refs("docs/schemas/report.json")
            .unwrap();
        assert_eq!(
            uris(&refs),
            [
                "https://wfe.local/path/docs/schemas/part.json",
                "https://wfe.local/path/docs/shared.json",
            ]
        );
        let schema = registry.compile("docs/schemas/report.json").unwrap();
        assert_eq!(schema.validate(&json!({"part": 1, "up": true})), []);
        assert_eq!(schema.validate(&json!({"part": "1", "up": 1})).len(), 2);

        // Climbing out of the repository is refused.
        write(
            dir.path(),
            "docs/escape.json",
            r#"{"$ref": "../../../../../../etc/passwd"}"#,
        );
        let err = registry.compile("docs/escape.json").unwrap_err();
        assert!(
            matches!(err, ArtifactError::UnresolvedReference { .. }),
            "{err}"
        );
    }

    #[test]
    fn remote_and_file_references_are_never_fetched() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        write(dir.path(), "secret.json", r#"{"type": "string"}"#);
        let secret = dir.path().join("secret.json");
        let cases = [
            (
                "remote",
                json!({"$ref": "https://example.com/schema.json"}),
                "https://example.com/schema.json",
            ),
            (
                "nested-remote",
                json!({"properties": {"a": {"items": {"$ref": "http://127.0.0.1:9/x.json#/a"}}}}),
                "http://127.0.0.1:9/x.json",
            ),
            (
                "file",
                json!({"$ref": format!("file://{}", secret.display())}),
                "file://",
            ),
        ];
        for (name, schema, uri) in cases {
            write(
                dir.path(),
                &format!(".wfe/schemas/{name}.json"),
                &schema.to_string(),
            );
            for err in [
                registry.compile(name).unwrap_err(),
                registry.resolve_with_refs(name).unwrap_err(),
            ] {
                let text = err.to_string();
                assert!(
                    text.starts_with(&format!("schema `{name}` (")),
                    "{name}: {text}"
                );
                assert!(text.contains(uri), "{name}: {text}");
                assert!(
                    text.contains("remote references are not fetched"),
                    "{name}: {text}"
                );
            }
        }
    }

    #[test]
    fn unknown_local_references_say_so() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        write(
            dir.path(),
            ".wfe/schemas/a.json",
            r#"{"$ref": "missing.json"}"#,
        );
        let text = registry.compile("a").unwrap_err().to_string();
        assert_eq!(
            text,
            "schema `a` (.wfe/schemas/a.json) refers to https://wfe.local/schemas/missing.json, \
             which cannot be used: no schema of that name is built in or in .wfe/schemas/"
                .replace(
                    ".wfe/schemas/a.json",
                    &dir.path().join(".wfe/schemas/a.json").display().to_string()
                )
        );
        write(dir.path(), ".wfe/schemas/broken.json", "{ nope");
        write(
            dir.path(),
            ".wfe/schemas/b.json",
            r#"{"$ref": "broken.json"}"#,
        );
        let text = registry.compile("b").unwrap_err().to_string();
        assert!(text.contains("broken.json is not valid JSON"), "{text}");
    }

    #[test]
    fn cyclic_references_resolve() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        write(
            dir.path(),
            ".wfe/schemas/tree.json",
            r#"{"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "node.json"}}}}"#,
        );
        write(
            dir.path(),
            ".wfe/schemas/node.json",
            r#"{"type": "object", "required": ["name"], "properties": {"sub": {"$ref": "tree.json"}}}"#,
        );
        let (_, refs) = registry.resolve_with_refs("tree").unwrap();
        assert_eq!(
            uris(&refs),
            ["https://wfe.local/schemas/node.json"],
            "the root itself is not a reference"
        );
        let schema = registry.compile("tree").unwrap();
        let doc = json!({"children": [{"name": "a", "sub": {"children": [{}]}}]});
        let violations = schema.validate(&doc);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].instance_path, "/children/0/sub/children/0");
    }

    #[test]
    fn compiled_schemas_are_shared() {
        let dir = TempDir::new().unwrap();
        let registry = Registry::new(dir.path());
        let a = registry.compile("task-list").unwrap();
        let b = registry.compile("task-list").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // A changed document is a different schema.
        write(
            dir.path(),
            ".wfe/schemas/task-list.json",
            r#"{"type": "object"}"#,
        );
        let c = registry.compile("task-list").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
