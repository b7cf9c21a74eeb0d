//! Documents read from one checkpoint: every artifact, log (one document
//! per phase attempt), comment, tool call and attempt error of a run.
//!
//! Reads only through [`RunStore`] and never fails on a file it cannot
//! parse: a broken file is indexed as text, or skipped. The same functions
//! give a document's text back at query time, for snippets, so the index
//! need not store it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::flatten::flatten;
use crate::attempt::is_text;
use crate::engine::layout;
use crate::engine::layout::COMMENTS;
use crate::store::{CheckpointId, EntryKind, RunStore, StoreError, Trailer};

/// Largest text file artifact indexed: beyond it a file is kept but not searchable.
const MAX_INDEXED_FILE_BYTES: usize = 4 * 1024 * 1024;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A phase's artifact.
    Artifact,
    /// The log of one attempt of a phase.
    Log,
    /// A comment on the run or a phase.
    Comment,
    /// One tool call of an agent.
    ToolCall,
    /// Why an attempt failed.
    Error,
}

impl Kind {
    /// Every kind, in the order help text lists them.
    pub const ALL: [Kind; 5] = [
        Kind::Artifact,
        Kind::Log,
        Kind::Comment,
        Kind::ToolCall,
        Kind::Error,
    ];

    /// The kind as indexed and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Artifact => "artifact",
            Kind::Log => "log",
            Kind::Comment => "comment",
            Kind::ToolCall => "tool_call",
            Kind::Error => "error",
        }
    }

    /// The kind named `text`, if any.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Facts of the run at the checkpoint read, carried by all its documents.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RunFacts {
    /// The checkpoint read.
    pub checkpoint: CheckpointId,
    /// The template's name.
    pub template: String,
    /// The run's status.
    pub status: String,
    /// The checkpoint's commit time (seconds since the epoch).
    pub time: i64,
}

/// One file of a checkpoint that yields documents.
#[derive(Debug, Clone)]
pub(super) struct Source {
    /// Where it is in the checkpoint's tree.
    pub path: String,
    /// What its documents are.
    pub kind: Kind,
    /// The phase it belongs to.
    pub phase: Option<String>,
    /// The attempt that wrote it, when the path or the phase says.
    pub attempt: Option<u32>,
    /// The artifact's schema, as the template names it.
    pub schema: Option<String>,
    /// When it was written, when the phase's state says.
    pub time: Option<i64>,
    /// The file's content.
    pub bytes: Vec<u8>,
    /// A digest of the content and of everything above: an unchanged digest
    /// means unchanged documents.
    pub hash: u64,
}

/// One document's content.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Entry {
    /// Which entry of a per-line file (from 0).
    pub line: Option<u64>,
    /// The phase, when the entry names it (comments).
    pub phase: Option<String>,
    /// The attempt, when the entry names it.
    pub attempt: Option<u32>,
    /// When the entry says it was written.
    pub time: Option<i64>,
    /// The searchable text.
    pub text: String,
    /// The JSON object, for `field:value` queries.
    pub json: Option<Map<String, Value>>,
}

impl Source {
    /// The documents of this file.
    pub(super) fn entries(&self) -> Vec<Entry> {
        entries(self.kind, &self.bytes)
    }
}

/// The documents a file of `kind` holds.
pub(super) fn entries(kind: Kind, bytes: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(bytes);
    match kind {
        Kind::Artifact | Kind::Error => {
            let entry = match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => Entry {
                    text: flatten(&value),
                    json: match value {
                        Value::Object(map) => Some(map),
                        _ => None,
                    },
                    ..Entry::default()
                },
                // Kept searchable as it is: a forced artifact need not be JSON.
                Err(_) => Entry {
                    text: text.into_owned(),
                    ..Entry::default()
                },
            };
            vec![entry]
        }
        Kind::Log => {
            let mut lines = Vec::new();
            let (mut attempt, mut time) = (None, None);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line) {
                    Ok(value) => {
                        attempt = attempt.or_else(|| as_u32(&value["attempt"]));
                        time = time.or_else(|| value["time"].as_str().and_then(parse_time));
                        lines.push(value["line"].as_str().unwrap_or_default().to_string());
                    }
                    Err(_) => lines.push(line.to_string()),
                }
            }
            if lines.is_empty() {
                return Vec::new();
            }
            vec![Entry {
                attempt,
                time,
                text: lines.join("\n"),
                ..Entry::default()
            }]
        }
        Kind::Comment | Kind::ToolCall => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => {
                    let value = Value::Object(map);
                    let text = match (kind, value["text"].as_str()) {
                        (Kind::Comment, Some(text)) => text.to_string(),
                        _ => flatten(&value),
                    };
                    Entry {
                        line: Some(i as u64),
                        phase: value["phase"].as_str().map(String::from),
                        attempt: as_u32(&value["attempt"]),
                        time: value["time"].as_str().and_then(parse_time),
                        text,
                        json: match value {
                            Value::Object(map) => Some(map),
                            _ => None,
                        },
                    }
                }
                _ => Entry {
                    line: Some(i as u64),
                    text: line.to_string(),
                    ..Entry::default()
                },
            })
            .collect(),
    }
}

/// Everything a checkpoint holds to index.
#[derive(Debug, Clone)]
pub(super) struct Checkpointed {
    /// Facts of the run.
    pub facts: RunFacts,
    /// Every file that yields documents, by path.
    pub sources: Vec<Source>,
}

/// Reads the documents' files of the checkpoint `at`.
pub(super) fn read_checkpoint(
    store: &dyn RunStore,
    at: &CheckpointId,
) -> Result<Checkpointed, StoreError> {
    let meta = store.checkpoint(at)?;
    let record = read_json(store, at, layout::RUN)?.unwrap_or(Value::Null);
    let facts = RunFacts {
        checkpoint: at.clone(),
        template: record["template"]
            .as_str()
            .or_else(|| meta.message.get(Trailer::Template))
            .unwrap_or_default()
            .to_string(),
        status: record["status"]
            .as_str()
            .or_else(|| meta.message.get(Trailer::Status))
            .unwrap_or_default()
            .to_string(),
        time: meta.time,
    };
    let template = read_json(store, at, layout::TEMPLATE)?.unwrap_or(Value::Null);
    let mut schemas = BTreeMap::new();
    collect_outputs(&template["phases"], &mut schemas);

    let mut sources = Vec::new();
    for (phase, kind) in store.list_dir(at, layout::PHASES)? {
        if kind != EntryKind::Dir {
            continue;
        }
        read_phase(store, at, &phase, &schemas, &mut sources)?;
    }
    if let Some(bytes) = store.read(at, COMMENTS)? {
        sources.push(source(
            COMMENTS,
            Kind::Comment,
            None,
            None,
            None,
            None,
            bytes,
        ));
    }
    Ok(Checkpointed { facts, sources })
}

/// The files of one phase: artifacts, its latest log, tool calls, and the
/// logs and errors of earlier attempts.
fn read_phase(
    store: &dyn RunStore,
    at: &CheckpointId,
    phase: &str,
    schemas: &BTreeMap<(String, String), String>,
    out: &mut Vec<Source>,
) -> Result<(), StoreError> {
    let dir = format!("{}/{phase}", layout::PHASES);
    let entries: BTreeMap<String, EntryKind> = store.list_dir(at, &dir)?.into_iter().collect();
    let state = read_json(store, at, &layout::state(phase))?.unwrap_or(Value::Null);
    let finished = state["finished_at"].as_str().and_then(parse_time);
    let attempt = as_u32(&state["attempt"]).filter(|&n| n > 0);
    let p = Some(phase.to_string());

    if entries.get("artifacts") == Some(&EntryKind::Dir) {
        for (file, kind) in store.list_dir(at, &layout::artifacts(phase))? {
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            if kind != EntryKind::File {
                continue;
            }
            let path = layout::artifact(phase, name);
            if let Some(bytes) = store.read(at, &path)? {
                let schema = schemas.get(&(phase.to_string(), name.to_string())).cloned();
                out.push(source(
                    &path,
                    Kind::Artifact,
                    p.clone(),
                    attempt,
                    schema,
                    finished,
                    bytes,
                ));
            }
        }
    }
    // Text file artifacts are searchable like artifacts; binary ones (a
    // NUL byte or invalid UTF-8) and very large ones are not indexed.
    if entries.get("files") == Some(&EntryKind::Dir) {
        for rel in store.list_files(at, &layout::files(phase))? {
            let path = layout::file(phase, &rel);
            if let Some(bytes) = store.read(at, &path)?
                && bytes.len() <= MAX_INDEXED_FILE_BYTES
                && is_text(&bytes)
            {
                out.push(source(
                    &path,
                    Kind::Artifact,
                    p.clone(),
                    attempt,
                    None,
                    finished,
                    bytes,
                ));
            }
        }
    }
    // The latest attempt's log; when that attempt failed, its log is also
    // archived under attempts/<n>/, and is indexed once, from here.
    let mut latest = None;
    if entries.get("log.jsonl") == Some(&EntryKind::File) {
        let path = layout::log(phase);
        if let Some(bytes) = store.read(at, &path)? {
            latest = entries_attempt(&bytes).or(attempt);
            out.push(source(
                &path,
                Kind::Log,
                p.clone(),
                latest,
                None,
                None,
                bytes,
            ));
        }
    }
    if entries.get("attempts") == Some(&EntryKind::Dir) {
        for (n, kind) in store.list_dir(at, &format!("{dir}/attempts"))? {
            let Ok(n) = n.parse::<u32>() else { continue };
            if kind != EntryKind::Dir {
                continue;
            }
            let base = layout::attempt(phase, n);
            let log = format!("{base}/log.jsonl");
            if latest != Some(n)
                && let Some(bytes) = store.read(at, &log)?
            {
                out.push(source(
                    &log,
                    Kind::Log,
                    p.clone(),
                    Some(n),
                    None,
                    None,
                    bytes,
                ));
            }
            let error = format!("{base}/error.json");
            if let Some(bytes) = store.read(at, &error)? {
                out.push(source(
                    &error,
                    Kind::Error,
                    p.clone(),
                    Some(n),
                    None,
                    None,
                    bytes,
                ));
            }
        }
    }
    // Second opinions are `review` artifacts of their own, one per attempt and round.
    if entries.get("reviews") == Some(&EntryKind::Dir) {
        for (file, kind) in store.list_dir(at, &layout::reviews(phase))? {
            let Some((n, _round)) = file
                .strip_suffix(".json")
                .and_then(|name| name.split_once('-'))
            else {
                continue;
            };
            if kind != EntryKind::File {
                continue;
            }
            let path = format!("{}/{file}", layout::reviews(phase));
            if let Some(bytes) = store.read(at, &path)? {
                out.push(source(
                    &path,
                    Kind::Artifact,
                    p.clone(),
                    n.parse().ok(),
                    Some(crate::engine::REVIEW_SCHEMA.to_string()),
                    finished,
                    bytes,
                ));
            }
        }
    }
    if entries.get("tool-calls.jsonl") == Some(&EntryKind::File) {
        let path = format!("{dir}/tool-calls.jsonl");
        if let Some(bytes) = store.read(at, &path)? {
            out.push(source(&path, Kind::ToolCall, p, None, None, None, bytes));
        }
    }
    Ok(())
}

/// The attempt named by a log's first line.
fn entries_attempt(bytes: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(bytes);
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    as_u32(&serde_json::from_str::<Value>(first).ok()?["attempt"])
}

/// `(phase, artifact) → schema` from a template's phases, nested ones included.
fn collect_outputs(phases: &Value, out: &mut BTreeMap<(String, String), String>) {
    for phase in phases.as_array().into_iter().flatten() {
        let Some(id) = phase["id"].as_str() else {
            continue;
        };
        for (name, schema) in phase["outputs"].as_object().into_iter().flatten() {
            if let Some(schema) = schema.as_str() {
                out.insert((id.to_string(), name.clone()), schema.to_string());
            }
        }
        collect_outputs(&phase["phases"], out);
    }
}

fn source(
    path: &str,
    kind: Kind,
    phase: Option<String>,
    attempt: Option<u32>,
    schema: Option<String>,
    time: Option<i64>,
    bytes: Vec<u8>,
) -> Source {
    let mut hash = Fnv::default();
    hash.write(&bytes);
    // Everything a document takes from outside its file is part of its digest.
    hash.write(format!("\0{phase:?}\0{attempt:?}\0{schema:?}\0{time:?}").as_bytes());
    Source {
        path: path.to_string(),
        kind,
        phase,
        attempt,
        schema,
        time,
        bytes,
        hash: hash.0,
    }
}

/// A JSON file of the checkpoint; `None` if absent or not JSON.
fn read_json(
    store: &dyn RunStore,
    at: &CheckpointId,
    path: &str,
) -> Result<Option<Value>, StoreError> {
    Ok(store
        .read(at, path)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

fn as_u32(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Seconds since the epoch of an RFC 3339 time.
pub(super) fn parse_time(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// FNV-1a, 64 bits: a stable digest for change detection, not for security.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
