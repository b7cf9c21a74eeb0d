//! Finding a schema by name: repo, built-in, or path.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ArtifactError;

/// The built-in schemas, compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[("message", include_str!("../../schemas/message.json"))];

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
    pub fn resolve(&self, name: &str) -> Result<ResolvedSchema, ArtifactError> {
        let looks_like_path = name.contains('/') || name.ends_with(".json");
        if !looks_like_path {
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
}

/// Reads the schema file `path`; `source` records where it was found.
fn read(
    name: &str,
    path: PathBuf,
    source: fn(PathBuf) -> SchemaSource,
) -> Result<ResolvedSchema, ArtifactError> {
    let bytes = std::fs::read(&path).map_err(|e| ArtifactError::ReadSchema {
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
}
