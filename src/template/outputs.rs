//! A phase's `outputs`: JSON artifacts (name → schema) and file artifacts
//! (name → `{"file": GLOB}` or `{"dir": PATH}`), written in one map.
//!
//! They are kept apart in [`Outputs`] because almost every reader wants only
//! the JSON ones (inputs, `artifacts.<phase>.<name>`, edit, accept, fsck):
//! `Outputs` dereferences to that map, and the file ones are asked for by
//! name ([`Outputs::files`]). Parsing keeps serde's JSON paths (no untagged
//! enum, which would buffer its input and lose them).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::NAME_PATTERN;

/// A phase's declared outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// JSON artifacts: name → schema name (or a path to a schema file).
    pub schemas: BTreeMap<String, String>,
    /// File artifacts: name → where the files are.
    pub files: BTreeMap<String, FileOutput>,
}

impl Outputs {
    /// True when the phase declares no output of either kind.
    pub fn is_none(&self) -> bool {
        self.schemas.is_empty() && self.files.is_empty()
    }
}

impl Deref for Outputs {
    type Target = BTreeMap<String, String>;

    /// The JSON outputs: what inputs, `artifacts.*` and schemas are about.
    fn deref(&self) -> &Self::Target {
        &self.schemas
    }
}

impl<'a> IntoIterator for &'a Outputs {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.schemas.iter()
    }
}

impl FromIterator<(String, String)> for Outputs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Outputs {
            schemas: iter.into_iter().collect(),
            files: BTreeMap::new(),
        }
    }
}

/// A file artifact: files matching a glob, or a whole directory, relative
/// to the repository root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    /// A glob (`dist/*.whl`, `shots/**/*.png`) relative to the repository
    /// root; `*` stays within one directory, `**` crosses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A directory relative to the repository root, kept with everything in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// No match (or no directory) is fine; otherwise the phase fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl FileOutput {
    /// The glob or directory as written.
    pub fn path(&self) -> &str {
        self.file
            .as_deref()
            .or(self.dir.as_deref())
            .unwrap_or_default()
    }

    /// What is wrong with the declaration, in words (empty when nothing is).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.file, &self.dir) {
            (Some(_), Some(_)) => problems.push(
                "give either `file` (a glob) or `dir` (a directory), not both".to_string(),
            ),
            (None, None) => problems.push(
                "a file artifact needs `file` (a glob such as \"dist/*.whl\") or `dir` (a directory such as \"htmlcov\")".to_string(),
            ),
            _ => {}
        }
        let written = self.path();
        if let Err(message) = check_relative(written) {
            problems.push(message);
        } else if self.file.is_some()
            && let Err(e) = globset::GlobBuilder::new(written)
                .literal_separator(true)
                .build()
        {
            problems.push(format!("`{written}` is not a valid glob: {e}"));
        }
        problems
    }
}

/// Checks that `path` stays inside the repository: relative, non-empty,
/// no `..` component. Returns why not.
pub(crate) fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty; expected a path relative to the repository root".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute; file artifacts are paths relative to the repository root"
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!(
            "`{path}` leaves the repository (`..`); file artifacts are paths inside it"
        ));
    }
    if path.contains('\0') {
        return Err(format!("`{}` contains a NUL byte", path.escape_debug()));
    }
    Ok(())
}

/// One output: a schema name (a JSON artifact) or a file artifact.
// Only for the JSON Schema; parsing goes through `Outputs`' own visitor.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OutputDecl {
    /// A JSON artifact: its schema's name, or a path to a schema file.
    Schema(String),
    /// A file artifact.
    File(FileOutput),
}

impl JsonSchema for Outputs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Outputs".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let entry = generator.subschema_for::<OutputDecl>();
        schemars::json_schema!({
            "description": "Artifacts the phase produces: name → schema name (a JSON artifact in `$WFE_OUT/<name>.json`), or name → `{\"file\": GLOB}` / `{\"dir\": PATH}` (file artifacts, script phases only).",
            "type": "object",
            "propertyNames": { "pattern": NAME_PATTERN },
            "additionalProperties": entry,
        })
    }
}

impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Sorted by name across both kinds, as the frozen template was written.
        let mut names: Vec<&String> = self.schemas.keys().chain(self.files.keys()).collect();
        names.sort();
        let mut map = serializer.serialize_map(Some(names.len()))?;
        for name in names {
            if let Some(schema) = self.schemas.get(name) {
                map.serialize_entry(name, schema)?;
            } else if let Some(file) = self.files.get(name) {
                map.serialize_entry(name, file)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OutputsVisitor)
    }
}

struct OutputsVisitor;

impl<'de> Visitor<'de> for OutputsVisitor {
    type Value = Outputs;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of artifact names to schema names or {\"file\": …} / {\"dir\": …}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outputs, A::Error> {
        let mut outputs = Outputs::default();
        while let Some(name) = map.next_key::<String>()? {
            match map.next_value::<Entry>()? {
                Entry::Schema(schema) => {
                    outputs.schemas.insert(name, schema);
                }
                Entry::File(file) => {
                    outputs.files.insert(name, file);
                }
            }
        }
        Ok(outputs)
    }
}

/// One value of `outputs`, parsed by its JSON type.
enum Entry {
    Schema(String),
    File(FileOutput),
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a schema name, or {\"file\": GLOB} or {\"dir\": PATH}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
        Ok(Entry::Schema(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Entry, E> {
        Ok(Entry::Schema(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
        FileOutput::deserialize(de::value::MapAccessDeserializer::new(map)).map(Entry::File)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_and_files_share_one_map_and_round_trip() {
        let text = r#"{"report": "message", "wheel": {"file": "dist/*.whl"}, "cov": {"dir": "htmlcov", "optional": true}}"#;
        let outputs: Outputs = serde_json::from_str(text).unwrap();
        assert_eq!(outputs.get("report").map(String::as_str), Some("message"));
        assert_eq!(outputs.len(), 1, "deref is the JSON outputs only");
        assert_eq!(outputs.files["wheel"].file.as_deref(), Some("dist/*.whl"));
        assert!(outputs.files["cov"].optional);
        let back: Outputs =
            serde_json::from_str(&serde_json::to_string(&outputs).unwrap()).unwrap();
        assert_eq!(back, outputs);
    }

    #[test]
    fn a_declaration_must_stay_inside_the_repository() {
        let file = |f: &str| FileOutput {
            file: Some(f.into()),
            dir: None,
            optional: false,
        };
        assert!(file("dist/*.whl").problems().is_empty());
        assert!(file("/etc/passwd").problems()[0].contains("absolute"));
        assert!(file("dist/../../x").problems()[0].contains("leaves the repository"));
        assert!(file("dist/[").problems()[0].contains("not a valid glob"));
        let both = FileOutput {
            file: Some("a".into()),
            dir: Some("b".into()),
            optional: false,
        };
        assert!(both.problems()[0].contains("not both"));
        let neither = FileOutput {
            file: None,
            dir: None,
            optional: false,
        };
        assert!(neither.problems()[0].contains("needs `file`"));
    }

    #[test]
    fn a_bad_entry_is_named_by_its_path() {
        let text = r#"{"outputs": {"wheel": {"fiel": "x"}}}"#;
        #[derive(Deserialize)]
        struct Holder {
            #[allow(dead_code)]
            outputs: Outputs,
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let err = serde_path_to_error::deserialize::<_, Holder>(de)
            .err()
            .expect("an unknown key is an error");
        assert_eq!(err.path().to_string(), "outputs.wheel.fiel");
        let err = serde_json::from_str::<Outputs>(r#"{"x": 3}"#).unwrap_err();
        assert!(err.to_string().contains("a schema name"), "{err}");
    }
}
