//! File artifacts as readers see them: a phase's files under
//! `phases/<p>/files/` with their sizes and hashes (what `wfe show` lists
//! and `wfe diff` compares), one file's bytes (`wfe show --file`), and
//! everything a phase produced (`wfe export`).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::super::{RunSnapshot, layout};
use super::ViewError;
use super::phase::locate;
use crate::attempt::is_text;
use crate::store::{CheckpointId, RunId, RunStore};

/// One file artifact: its path under `files/`, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Its path under the phase's `files/` (`wheel/pkg.whl`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its content, in hex.
    pub sha256: String,
    /// Whether it reads as text (UTF-8 without NUL): what search indexes.
    pub text: bool,
}

impl FileEntry {
    /// The entry of a file at `path` holding `bytes`.
    pub fn of(path: String, bytes: &[u8]) -> Self {
        FileEntry {
            path,
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
            text: is_text(bytes),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files under `dir` in checkpoint `at`, with sizes and hashes.
pub(crate) fn entries(
    store: &dyn RunStore,
    at: &CheckpointId,
    dir: &str,
) -> Result<Vec<FileEntry>, crate::store::StoreError> {
    let mut entries = Vec::new();
    for rel in store.list_files(at, dir)? {
        if let Some(bytes) = store.read(at, &format!("{dir}/{rel}"))? {
            entries.push(FileEntry::of(rel, &bytes));
        }
    }
    Ok(entries)
}

/// The bytes of file artifact `name` of phase `asked` (as
/// [`super::PhaseView::load`] names phases): `name` is its path under
/// `files/`, or an output's name when that output kept exactly one file.
pub fn phase_file(
    store: &dyn RunStore,
    run: &RunId,
    asked: &str,
    name: &str,
) -> Result<Vec<u8>, ViewError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let found = locate(store, &snap, asked)?;
    let dir = layout::files(&found.key);
    let have = store.list_files(&snap.checkpoint, &dir)?;
    let name = name.trim_matches('/');
    let under: Vec<&String> = have
        .iter()
        .filter(|p| {
            p.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .collect();
    let path = if have.iter().any(|p| p == name) {
        name.to_string()
    } else if let [only] = under.as_slice() {
        (*only).clone()
    } else {
        return Err(ViewError::NoSuchFile {
            run: run.to_string(),
            phase: found.phase,
            name: name.to_string(),
            have: if under.is_empty() {
                have
            } else {
                under.into_iter().cloned().collect()
            },
        });
    };
    store
        .read(&snap.checkpoint, &layout::file(&found.key, &path))?
        .ok_or_else(|| ViewError::NoSuchFile {
            run: run.to_string(),
            phase: asked.to_string(),
            name: path,
            have: Vec::new(),
        })
}

/// Everything a phase produced, ready to be written out.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseExport {
    /// The phase's id.
    pub phase: String,
    /// Its JSON artifacts by name.
    pub artifacts: Vec<(String, Value)>,
    /// Its file artifacts: path under `files/` and bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The JSON and file artifacts of phase `asked` at the run's tip.
pub fn phase_export(
    store: &dyn RunStore,
    run: &RunId,
    asked: &str,
) -> Result<PhaseExport, ViewError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let found = locate(store, &snap, asked)?;
    let mut artifacts = Vec::new();
    for name in &found.state.artifacts {
        if let Some(value) = snap.artifact(store, &found.key, name)? {
            artifacts.push((name.clone(), value));
        }
    }
    let dir = layout::files(&found.key);
    let mut files = Vec::new();
    for rel in store.list_files(&snap.checkpoint, &dir)? {
        if let Some(bytes) = store.read(&snap.checkpoint, &layout::file(&found.key, &rel))? {
            files.push((rel, bytes));
        }
    }
    Ok(PhaseExport {
        phase: found.phase,
        artifacts,
        files,
    })
}
