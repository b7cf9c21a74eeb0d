//! The index on disk: opening it, and rebuilding it when it is missing,
//! corrupt, or written by another version of wfe.
//!
//! The index is derived data (`<git-dir>/wfe/index/`): anything wrong with
//! it is repaired by building it again from the runs' refs, never reported
//! as the user's problem. Tantivy allows one writer per directory; a writer
//! busy in another process is waited for briefly, then left alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tantivy::directory::error::LockError;
use tantivy::directory::{INDEX_WRITER_LOCK, Lock, MmapDirectory};
use tantivy::indexer::IndexWriterOptions;
use tantivy::{
    Directory, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError,
};

use super::IndexError;
use super::fields::{Fields, SCHEMA_VERSION, TOKENIZER};
use super::state::IndexState;

/// Threads and memory of a writer: this runs beside the user's work on
/// small machines, so one indexing thread, one merge thread, 32 MB.
const WORKER_THREADS: usize = 1;
const MERGE_THREADS: usize = 1;
const MEMORY_BUDGET: usize = 32_000_000;
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
            return Ok((Self::create(dir)?, Some(Rebuilt::Missing)));
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
        Ok((Self::create(dir)?, Some(why)))
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
        let directory = MmapDirectory::open(dir)?;
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
        let index = Index::create(directory, fields.schema.clone(), Default::default())?;
        drop(lock);
        Self::wrap(dir, index, fields)
    }

    /// Opens and checks the index: readable, this schema, this version.
    fn open_checked(dir: &Path) -> Result<SearchIndex, Rebuilt> {
        let corrupt = |e: TantivyError| Rebuilt::Corrupt(damage(&e));
        let directory = MmapDirectory::open(dir).map_err(|e| Rebuilt::Corrupt(e.to_string()))?;
        let index = Index::open(directory).map_err(corrupt)?;
        let fields = Fields::new();
        if index.schema() != fields.schema {
            return Err(Rebuilt::Version { found: None });
        }
        let meta = index.load_metas().map_err(corrupt)?;
        let opened = Self::wrap(dir, index, fields).map_err(|e| Rebuilt::Corrupt(e.to_string()))?;
        match meta.payload.as_deref().map(IndexState::parse) {
            Some(Some(state)) if state.version == SCHEMA_VERSION => {}
            Some(Some(state)) => {
                return Err(Rebuilt::Version {
                    found: Some(state.version),
                });
            }
            Some(None) => return Err(Rebuilt::Version { found: None }),
            // Created but never committed to: empty is fine, anything else is not ours.
            None if opened.reader.searcher().num_docs() == 0 => {}
            None => return Err(Rebuilt::Version { found: None }),
        }
        Ok(opened)
    }

    fn wrap(dir: &Path, index: Index, fields: Fields) -> Result<SearchIndex, IndexError> {
        index.tokenizers().register(TOKENIZER, Fields::analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
        })
    }

    /// The payload of the last commit: what the index holds.
    pub fn state(&self) -> Result<IndexState, IndexError> {
        let meta = self.index.load_metas()?;
        Ok(meta
            .payload
            .as_deref()
            .and_then(IndexState::parse)
            .unwrap_or_default())
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

    /// How many documents it holds (after the last reload).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
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

/// Takes the writer's lock of `directory`, waiting up to `wait`.
fn wait_for_lock(
    directory: &MmapDirectory,
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

/// What is wrong with the index, in a few words for a one-line notice.
pub fn damage(error: &TantivyError) -> String {
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
