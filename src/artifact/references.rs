//! Where `$ref`s between schemas lead: always to a local document, never
//! to the network.
//!
//! Every schema has a URI. A schema named NAME (built in or in
//! `.wfe/schemas/`) lives at `https://wfe.local/schemas/NAME.json`, its
//! `$id` in the built-in library; a schema named by path lives at
//! `https://wfe.local/path/PATH`. A schema without `$id` is compiled with
//! that URI as its base, so a relative `$ref: "other.json"` means the
//! sibling schema `other`, exactly as for the built-ins. The host
//! `wfe.local` is a name, never looked up.
//!
//! jsonschema asks a [`Retrieve`] for every document a schema refers to
//! that it has not been given. [`LocalRetriever`] answers from a
//! [`Lookup`] (the repo and the built-ins, or the documents frozen in a
//! run) and refuses everything else with [`Unavailable`], whose reason
//! ends up in the error the user sees. It also records what it served:
//! those are the documents a run must freeze beside the schema.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::{ReferencingError, Retrieve, Uri};
use serde_json::Value;

use super::ArtifactError;
use super::registry::{builtin_schema, looks_like_path};

/// The URI prefix of schemas found by name: `https://wfe.local/schemas/NAME.json`.
pub const SCHEMAS_BASE: &str = "https://wfe.local/schemas/";

/// The URI prefix of schemas found by path: `https://wfe.local/path/PATH`.
pub const PATH_BASE: &str = "https://wfe.local/path/";

/// The URI a schema of this name is compiled at (the base of its relative
/// `$ref`s when it has no `$id`).
///
/// A name that is already an absolute URI (a referenced document frozen in
/// a run under its URI) is its own URI.
pub fn schema_uri(name: &str) -> String {
    if is_reference_name(name) {
        name.to_string()
    } else if looks_like_path(name) {
        let path = name.trim_start_matches("./");
        format!("{PATH_BASE}{}", encode(path))
    } else {
        format!("{SCHEMAS_BASE}{}.json", encode(name))
    }
}

/// True for the names a run freezes referenced documents under: their
/// absolute URIs (`https://…`), which no template output can name.
pub fn is_reference_name(name: &str) -> bool {
    name.contains("://")
}

/// Why a `$ref` was not followed.
#[derive(Debug)]
pub(crate) struct Unavailable {
    /// The reason, for the user.
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// The reason given for any `$ref` outside `wfe.local`.
pub(crate) const REMOTE: &str = "remote references are not fetched; a schema can refer only to \
     wfe's built-in schemas and the repository's own (.wfe/schemas/, or files beside a schema named by path)";

/// What a document's `$ref`s can reach, without a network.
pub(crate) trait Lookup: Send + Sync {
    /// The document at `uri` (absolute, without fragment); `Unavailable`
    /// when there is none, another error when it exists but is broken.
    fn find(&self, uri: &str) -> Result<Value, Box<dyn std::error::Error + Send + Sync>>;
}

/// A [`Retrieve`] that serves only what its [`Lookup`] has, and remembers it.
pub(crate) struct LocalRetriever {
    lookup: Arc<dyn Lookup>,
    served: Arc<Mutex<Vec<(String, Value)>>>,
}

impl LocalRetriever {
    pub(crate) fn new(lookup: Arc<dyn Lookup>) -> Self {
        LocalRetriever {
            lookup,
            served: Arc::default(),
        }
    }

    /// A handle on the documents served so far, in the order they were asked for.
    pub(crate) fn served(&self) -> Arc<Mutex<Vec<(String, Value)>>> {
        Arc::clone(&self.served)
    }
}

impl Retrieve for LocalRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let value = self.lookup.find(uri.as_str())?;
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((uri.as_str().to_string(), value.clone()));
        Ok(value)
    }
}

/// A fixed set of documents by URI, optionally with the built-in library.
pub(crate) struct Documents {
    docs: Vec<(String, Value)>,
    builtins: bool,
}

impl Documents {
    /// Exactly `docs`: what a frozen run holds.
    pub(crate) fn only(docs: &[(String, Value)]) -> Self {
        Documents {
            docs: docs.to_vec(),
            builtins: false,
        }
    }

    /// The built-in schemas, by their `https://wfe.local/schemas/NAME.json` ids.
    pub(crate) fn builtins() -> Self {
        Documents {
            docs: Vec::new(),
            builtins: true,
        }
    }
}

impl Lookup for Documents {
    fn find(&self, uri: &str) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if let Some((_, doc)) = self.docs.iter().find(|(u, _)| u == uri) {
            return Ok(doc.clone());
        }
        if self.builtins
            && let Some(doc) = builtin_at(uri)
        {
            return doc;
        }
        let reason = if !uri.starts_with("https://wfe.local/") {
            REMOTE
        } else if self.builtins {
            "no built-in schema has that id"
        } else {
            "it is not among the schemas frozen with it"
        };
        Err(unavailable(reason))
    }
}

/// The repository's schemas, then the built-ins: what `.wfe/schemas/` and
/// path schemas can reach while a template is checked or a run starts.
pub(crate) struct RepoDocuments {
    root: PathBuf,
}

impl RepoDocuments {
    pub(crate) fn new(root: &Path) -> Self {
        RepoDocuments {
            root: root.to_path_buf(),
        }
    }

    fn schemas_dir(&self) -> PathBuf {
        self.root.join(".wfe/schemas")
    }

    /// A repo schema whose own `$id` is `uri`, for `$ref`s by foreign ids.
    fn by_id(&self, uri: &str) -> Option<Value> {
        let entries = std::fs::read_dir(self.schemas_dir()).ok()?;
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths.into_iter().find_map(|path| {
            let bytes = crate::bounded::read(&path, crate::bounded::TEXT_LIMIT).ok()?;
            let doc: Value = serde_json::from_slice(&bytes).ok()?;
            let id = doc.get("$id")?.as_str()?;
            (id.trim_end_matches('#') == uri).then_some(doc)
        })
    }
}

impl Lookup for RepoDocuments {
    fn find(&self, uri: &str) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(rel) = uri.strip_prefix(SCHEMAS_BASE) {
            let rel = decode(rel).ok_or_else(|| unavailable("the URI is not a schema name"))?;
            let file = self.schemas_dir().join(&rel);
            if is_plain_relative(&rel) && file.is_file() {
                return read_json(&file);
            }
            if let Some(doc) = builtin_at(uri) {
                return doc;
            }
            return Err(unavailable(
                "no schema of that name is built in or in .wfe/schemas/",
            ));
        }
        if let Some(rel) = uri.strip_prefix(PATH_BASE) {
            let rel = decode(rel).ok_or_else(|| unavailable("the URI is not a file path"))?;
            let file = self.root.join(&rel);
            if is_plain_relative(&rel) && file.is_file() && is_inside(&self.root, &file) {
                return read_json(&file);
            }
            return Err(unavailable("no such file in the repository"));
        }
        if let Some(doc) = self.by_id(uri) {
            return Ok(doc);
        }
        if uri.starts_with("https://wfe.local/") {
            return Err(unavailable("no schema has that id"));
        }
        Err(unavailable(REMOTE))
    }
}

fn unavailable(reason: &str) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(Unavailable {
        reason: reason.to_string(),
    })
}

/// The built-in schema at `https://wfe.local/schemas/NAME.json`, if any.
fn builtin_at(uri: &str) -> Option<Result<Value, Box<dyn std::error::Error + Send + Sync>>> {
    let name = uri.strip_prefix(SCHEMAS_BASE)?.strip_suffix(".json")?;
    let text = builtin_schema(name)?;
    Some(serde_json::from_str(text).map_err(|e| format!("built-in schema {name}: {e}").into()))
}

fn read_json(path: &Path) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let bytes =
        crate::bounded::read(path, crate::bounded::TEXT_LIMIT).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()).into())
}

/// A path with no root, no `..` and no empty segments: URIs come normalised,
/// this keeps a crafted one from climbing out of its directory anyway.
fn is_plain_relative(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// True when `file` (after following symlinks) is under `root`.
fn is_inside(root: &Path, file: &Path) -> bool {
    match (root.canonicalize(), file.canonicalize()) {
        (Ok(root), Ok(file)) => file.starts_with(root),
        _ => false,
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes [`encode`] (any `%XX`); `None` if the result is not UTF-8 or an escape is cut.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every document `json` (named `name`) `$ref`s, transitively, as served by `lookup`.
pub(crate) fn references(
    name: &str,
    origin: &str,
    json: &Value,
    lookup: Arc<dyn Lookup>,
) -> Result<Vec<(String, Value)>, ArtifactError> {
    let retriever = LocalRetriever::new(lookup);
    let served = retriever.served();
    // Preparing a registry crawls the document and retrieves every external
    // `$ref` target (and theirs); no validator is compiled.
    jsonschema::Registry::new()
        .retriever(retriever)
        .add(schema_uri(name), json)
        .and_then(|builder| builder.prepare())
        .map_err(|e| reference_error(name, origin, &e))?;
    let mut served = std::mem::take(&mut *served.lock().unwrap_or_else(PoisonError::into_inner));
    served.sort_by(|a, b| a.0.cmp(&b.0));
    served.dedup_by(|a, b| a.0 == b.0);
    Ok(served)
}

/// Turns a failed `$ref` into an error that names the schema and the reference.
pub(crate) fn reference_error(name: &str, origin: &str, error: &ReferencingError) -> ArtifactError {
    if let ReferencingError::Unretrievable { uri, source } = error
        && let Some(unavailable) = source.downcast_ref::<Unavailable>()
    {
        return ArtifactError::UnresolvedReference {
            name: name.to_string(),
            origin: origin.to_string(),
            uri: uri.clone(),
            reason: unavailable.reason.clone(),
        };
    }
    ArtifactError::InvalidSchema {
        name: name.to_string(),
        origin: origin.to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_uris_have_uris() {
        assert_eq!(
            schema_uri("decision"),
            "https://wfe.local/schemas/decision.json"
        );
        assert_eq!(
            schema_uri("docs/spec.json"),
            "https://wfe.local/path/docs/spec.json"
        );
        assert_eq!(
            schema_uri("./my schemas/x.json"),
            "https://wfe.local/path/my%20schemas/x.json"
        );
        assert_eq!(
            schema_uri("https://wfe.local/schemas/decision.json"),
            "https://wfe.local/schemas/decision.json"
        );
    }

    #[test]
    fn encoding_round_trips() {
        for text in ["plain", "a b/ü%", "x/../y", ""] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None);
    }

    #[test]
    fn only_plain_relative_paths_pass() {
        for ok in ["a.json", "sub/a.json"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x.json", "a/../../x", "a//b", "./a"] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
