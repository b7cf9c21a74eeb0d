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
                return self.read(name, SchemaSource::Repo(repo));
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
            return self.read(name, SchemaSource::Path(path));
        }
        Err(ArtifactError::UnknownSchema {
            name: name.to_string(),
        })
    }

    fn read(&self, name: &str, source: SchemaSource) -> Result<ResolvedSchema, ArtifactError> {
        let path = match &source {
            SchemaSource::Repo(p) | SchemaSource::Path(p) => p.clone(),
            SchemaSource::Builtin => unreachable!("built-ins are not files"),
        };
        let bytes = std::fs::read(&path).map_err(|source| ArtifactError::ReadSchema {
            path: path.clone(),
            source,
        })?;
        let json = parse(name, &path.display().to_string(), &bytes)?;
        Ok(ResolvedSchema {
            name: name.to_string(),
            source,
            json,
        })
    }
}

fn parse(name: &str, origin: &str, bytes: &[u8]) -> Result<Value, ArtifactError> {
    serde_json::from_slice(bytes).map_err(|e| ArtifactError::InvalidSchema {
        name: name.to_string(),
        origin: origin.to_string(),
        message: format!("not JSON: {e}"),
    })
}
