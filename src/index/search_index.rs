//! The index on disk: opening it, and rebuilding it when it is missing,
//! corrupt, or written by another version of wfe.
//!
//! The index is derived data (`<git-dir>/wfe/index/`): anything wrong with
//! it is repaired by building it again from the runs' refs, never reported
//! as the user's problem. Tantivy allows one writer per directory; a writer
//! busy in another process is waited for briefly, then left alone.
//!
//! By default each catch-up takes the writer and lets go of it before it
//! returns, merges finished, so the index is never held between calls.
//! A runner's indexer instead keeps it ([`SearchIndex::keep_writer`]):
//! opening a writer and waiting for its merges cost more than indexing a
//! checkpoint, so it holds one writer across checkpoints, commits each
//! round (a search in another process sees every committed checkpoint),
//! and lets tantivy's merge thread merge in the background. While it is
//! held another process's catch-up is `busy` and searches what is
//! committed, so its holder lets go once quiet
//! ([`SearchIndex::release_writer`], which waits for the merges so a
//! short-lived process leaves no pile of small segments); dropping the
//! index does the same.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tantivy::directory::error::LockError;
use tantivy::directory::{INDEX_WRITER_LOCK, Lock};
use tantivy::indexer::IndexWriterOptions;
use tantivy::{
    Directory, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument,
    TantivyError,
};

use super::IndexError;
use super::directory::CacheDirectory;
use super::fields::{Fields, SCHEMA_VERSION};
use super::state::IndexState;

/// Threads and memory of a writer: this runs beside the user's work on
/// small machines, so one indexing thread, one merge thread, 32 MB.
const WORKER_THREADS: usize = 1;
const MERGE_THREADS: usize = 1;
const MEMORY_BUDGET: usize = 15_000_000;
/// How long opening waits before deciding a failure is not a race with a
/// writer in another process replacing files.
const REOPEN_PAUSE: Duration = Duration::from_millis(50);
/// How long a rebuild waits for another process's writer to finish.
const REBUILD_WAIT: Duration = Duration::from_secs(10);

/// Why an index was built from scratch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// There was no index.
    Missing,
    /// The index could not be read.
    Corrupt(String),
    /// Another version of wfe wrote it.
    Version {
        /// The version found, if it could be read.
        found: Option<u32>,
    },
    /// Someone asked for it.
    Requested,
}

impl fmt::Display for Rebuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rebuilt::Missing => f.write_str("there was no search index"),
            Rebuilt::Corrupt(why) => write!(f, "the search index was unreadable ({why})"),
            Rebuilt::Version { found: Some(v) } => write!(
                f,
                "the search index has format {v}, this wfe uses {SCHEMA_VERSION}"
            ),
            Rebuilt::Version { found: None } => {
                f.write_str("the search index was written by another version of wfe")
            }
            Rebuilt::Requested => f.write_str("rebuilding the search index as asked"),
        }
    }
}

/// An open search index.
pub struct SearchIndex {
    pub(super) dir: PathBuf,
    pub(super) index: Index,
    pub(super) reader: IndexReader,
    pub(super) fields: Fields,
    /// A commit since the reader last loaded: reload before searching (a
    /// runner's indexer never searches, so it never pays for it).
    pub(super) stale: AtomicBool,
    /// Keep the writer between catch-ups (see the module docs).
    pub(super) keep: bool,
    /// The writer kept since the last commit, when `keep`.
    pub(super) held: Option<Held>,
}

/// A writer kept between catch-ups, and the state its last commit named:
/// no other process can commit while it is held, so that state is still
/// the index's and need not be read again.
pub(super) struct Held {
    pub(super) writer: IndexWriter,
    pub(super) state: IndexState,
}

impl fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, building an empty one first if it is
    /// missing, unreadable or of another version; says why it did.
    pub fn open(dir: &Path) -> Result<(SearchIndex, Option<Rebuilt>), IndexError> {
        if !dir.join("meta.json").is_file() {
            return Self::replace(dir, Rebuilt::Missing);
        }
        let mut why = match Self::open_checked(dir) {
            Ok(index) => return Ok((index, None)),
            Err(why) => why,
        };
        // A writer in another process may have been swapping files.
        if matches!(why, Rebuilt::Corrupt(_)) {
            std::thread::sleep(REOPEN_PAUSE);
            why = match Self::open_checked(dir) {
                Ok(index) => return Ok((index, None)),
                Err(why) => why,
            };
        }
        Self::replace(dir, why)
    }

    /// A new empty index in place of whatever is in `dir`, and why.
    fn replace(dir: &Path, why: Rebuilt) -> Result<(SearchIndex, Option<Rebuilt>), IndexError> {
        match Self::create(dir) {
            Ok(index) => Ok((index, Some(why))),
            // Another process holds the writer: it is most likely building
            // this very index; use what it made if it can be read.
            Err(IndexError::Tantivy(TantivyError::LockFailure(..))) => {
                match Self::open_checked(dir) {
                    Ok(index) => Ok((index, None)),
                    Err(_) => Err(damaged("another process is rebuilding the search index")),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the index in `dir` if there is a healthy one of this version;
    /// never builds one (a runner leaves that to `wfe search`).
    pub fn open_existing(dir: &Path) -> Option<SearchIndex> {
        if !dir.join("meta.json").is_file() {
            return None;
        }
        Self::open_checked(dir).ok()
    }

    /// Replaces whatever is in `dir` with an empty index.
    pub fn create(dir: &Path) -> Result<SearchIndex, IndexError> {
        let io = |action: &'static str| {
            let path = dir.to_path_buf();
            move |source| IndexError::Io {
                action,
                path,
                source,
            }
        };
        if dir.exists() && !dir.is_dir() {
            std::fs::remove_file(dir).map_err(io("removing"))?;
        }
        std::fs::create_dir_all(dir).map_err(io("creating"))?;
        let directory = CacheDirectory::open(dir)?;
        // Hold the writer's lock while the old files go, so no other
        // process writes into the index being replaced. Lock files stay:
        // another process may hold a lock on them.
        let lock = wait_for_lock(&directory, REBUILD_WAIT)?;
        for entry in std::fs::read_dir(dir).map_err(io("reading"))? {
            let entry = entry.map_err(io("reading"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tantivy-") && name.ends_with(".lock") {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io("removing a file of"))?;
        }
        let fields = Fields::new();
        let settings = tantivy::IndexSettings {
            // Fewer threads to hand a small segment between; bigger blocks
            // compress the similar metadata of neighbouring documents better.
            docstore_compress_dedicated_thread: false,
            docstore_blocksize: 65_536,
            ..Default::default()
        };
        let index = Index::create(directory, fields.schema.clone(), settings)?;
        drop(lock);
        Self::wrap(dir, index, fields)
    }

    /// Opens and checks the index: readable, this schema, this version.
    fn open_checked(dir: &Path) -> Result<SearchIndex, Rebuilt> {
        let corrupt = |e: TantivyError| Rebuilt::Corrupt(damage(&e));
        let directory = CacheDirectory::open(dir).map_err(|e| Rebuilt::Corrupt(e.to_string()))?;
        let index = Index::open(directory).map_err(corrupt)?;
        let fields = Fields::new();
        if index.schema() != fields.schema {
            return Err(Rebuilt::Version { found: None });
        }
        let meta = index.load_metas().map_err(corrupt)?;
        let opened = Self::wrap(dir, index, fields).map_err(|e| Rebuilt::Corrupt(e.to_string()))?;
        match meta.payload.as_deref().map(IndexState::parse_header) {
            Some(Some((version, _))) if version == SCHEMA_VERSION => {}
            Some(Some((version, _))) => {
                return Err(Rebuilt::Version {
                    found: Some(version),
                });
            }
            Some(None) => return Err(Rebuilt::Version { found: None }),
            // Created but never committed to: empty is fine, anything else is not ours.
            None if opened.reader.searcher().num_docs() == 0 => {}
            None => return Err(Rebuilt::Version { found: None }),
        }
        opened.state().map_err(|e| Rebuilt::Corrupt(e.brief()))?;
        Ok(opened)
    }

    fn wrap(dir: &Path, index: Index, fields: Fields) -> Result<SearchIndex, IndexError> {
        Fields::register(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            stale: AtomicBool::new(false),
            keep: false,
            held: None,
        })
    }

    /// Whether catch-ups keep the writer from one to the next, merging in
    /// the background, until [`release_writer`](Self::release_writer) or
    /// drop; off by default (a writer held only while a catch-up runs).
    pub fn keep_writer(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// True while a kept writer is held.
    pub fn holds_writer(&self) -> bool {
        self.held.is_some()
    }

    /// Lets go of a kept writer once its merges are done, so another
    /// process can write; the next catch-up takes it again.
    pub fn release_writer(&mut self) -> Result<(), IndexError> {
        match self.held.take() {
            Some(held) => {
                held.writer.wait_merging_threads()?;
                // Merges replaced segments: searching needs a reload.
                self.stale.store(true, Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The payload of the last commit: what the index holds.
    pub fn state(&self) -> Result<IndexState, IndexError> {
        // A writer in another process may commit and delete the file just
        // named between the two reads: then the payload names a newer one.
        let mut tries = 0;
        loop {
            let meta = self.index.load_metas()?;
            let Some(payload) = meta.payload else {
                return Ok(IndexState::default());
            };
            let Some((_, generation)) = IndexState::parse_header(&payload) else {
                return Err(damaged("the commit payload is not wfe's"));
            };
            let name = IndexState::file_name(generation);
            match std::fs::read_to_string(self.dir.join(&name)) {
                Ok(text) => {
                    return match IndexState::parse(&text) {
                        Some(state) if state.header() == payload.trim_end() => Ok(state),
                        _ => Err(damaged(&format!("{name} is damaged"))),
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => {
                    tries += 1;
                    std::thread::sleep(REOPEN_PAUSE);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(damaged(&format!("{name} is missing")));
                }
                Err(source) => {
                    return Err(IndexError::Io {
                        action: "reading",
                        path: self.dir.join(name),
                        source,
                    });
                }
            }
        }
    }

    /// Writes `state` as a new generation's file, for the commit about to
    /// name it (the writer's lock is held).
    pub(super) fn save_state(&self, state: &mut IndexState) -> Result<(), IndexError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut generation = nanos ^ (u64::from(std::process::id()) << 40);
        if generation == state.generation() {
            generation = generation.wrapping_add(1);
        }
        state.set_generation(generation);
        let path = self.dir.join(IndexState::file_name(generation));
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, state.render())
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|source| IndexError::Io {
                action: "writing",
                path,
                source,
            })
    }

    /// Removes every state file but generation `keep`'s.
    pub(super) fn drop_states_but(&self, keep: u64) {
        let keep = IndexState::file_name(keep);
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("tips-") && name != keep {
                // A leftover is harmless: the next commit tries again.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The writer, waiting up to `wait` for another process to let go of
    /// it; `None` if it is still busy then.
    pub(super) fn writer(&self, wait: Duration) -> Result<Option<IndexWriter>, IndexError> {
        let deadline = Instant::now() + wait;
        let options = IndexWriterOptions::builder()
            .num_worker_threads(WORKER_THREADS)
            .num_merge_threads(MERGE_THREADS)
            .memory_budget_per_thread(MEMORY_BUDGET)
            .build();
        loop {
            match self
                .index
                .writer_with_options::<TantivyDocument>(options.clone())
            {
                Ok(writer) => return Ok(Some(writer)),
                Err(TantivyError::LockFailure(LockError::LockBusy, _)) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Where the index lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A searcher over the last commit.
    pub(super) fn searcher(&self) -> Result<Searcher, IndexError> {
        if self.stale.swap(false, Ordering::Relaxed) {
            self.reader.reload()?;
        }
        Ok(self.reader.searcher())
    }

    /// How many documents it holds.
    pub fn num_docs(&self) -> Result<u64, IndexError> {
        Ok(self.searcher()?.num_docs())
    }

    /// The size of its files in bytes.
    pub fn size_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        // Nobody to tell: a merge that fails leaves the segments as they were.
        let _ = self.release_writer();
    }
}

impl SearchIndex {
    /// Bytes used by part of the index, largest first: `postings text`,
    /// `positions json`, `store`, … (for benchmarks and `wfe index`).
    pub fn space_usage(&self) -> Result<Vec<(String, u64)>, IndexError> {
        let usage = self
            .searcher()?
            .space_usage()
            .map_err(|source| IndexError::Io {
                action: "measuring",
                path: self.dir.clone(),
                source,
            })?;
        let mut parts: std::collections::BTreeMap<String, u64> = Default::default();
        for segment in usage.segments() {
            let per_field = [
                ("terms", segment.termdict()),
                ("postings", segment.postings()),
                ("positions", segment.positions()),
                ("fast", segment.fast_fields()),
                ("fieldnorms", segment.fieldnorms()),
            ];
            for (what, fields) in per_field {
                for field in fields.fields() {
                    *parts
                        .entry(format!("{what} {}", field.field_name()))
                        .or_default() += field.total().get_bytes();
                }
            }
            *parts.entry("store".into()).or_default() += segment.store().total().get_bytes();
            *parts.entry("deletes".into()).or_default() += segment.deletes().get_bytes();
        }
        let mut parts: Vec<(String, u64)> = parts.into_iter().filter(|p| p.1 > 0).collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.1));
        Ok(parts)
    }
}

/// Takes the writer's lock of `directory`, waiting up to `wait`.
fn wait_for_lock(
    directory: &CacheDirectory,
    wait: Duration,
) -> Result<tantivy::directory::DirectoryLock, IndexError> {
    let deadline = Instant::now() + wait;
    let lock = Lock {
        filepath: INDEX_WRITER_LOCK.filepath.clone(),
        is_blocking: false,
    };
    loop {
        match directory.acquire_lock(&lock) {
            Ok(guard) => return Ok(guard),
            Err(LockError::LockBusy) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(TantivyError::LockFailure(e, None).into()),
        }
    }
}

fn damaged(what: &str) -> IndexError {
    IndexError::Damaged {
        what: what.to_string(),
    }
}

/// What is wrong with the index, in a few words for a one-line notice.
pub(super) fn damage(error: &TantivyError) -> String {
    use tantivy::directory::error::OpenReadError;
    let file = |path: &Path| {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    match error {
        TantivyError::DataCorruption(corruption) => {
            // Its Display holds the file's whole content: name the file only.
            let text = format!("{corruption:?}");
            match text.split('`').nth(1) {
                Some(name) => format!("{} is damaged", name.trim_matches('"')),
                None => "a file is damaged".to_string(),
            }
        }
        TantivyError::OpenReadError(OpenReadError::FileDoesNotExist(path)) => {
            format!("{} is missing", file(path))
        }
        TantivyError::OpenReadError(OpenReadError::IoError { filepath, .. }) => {
            format!("{} is damaged", file(filepath))
        }
        TantivyError::OpenReadError(OpenReadError::IncompatibleIndex(_)) => {
            "written by an incompatible tantivy".to_string()
        }
        other => {
            let text = other.to_string();
            let line = text.lines().next().unwrap_or_default();
            match line.char_indices().nth(100) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line.to_string(),
            }
        }
    }
}
