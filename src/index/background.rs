//! Indexing beside a runner: each checkpoint wakes a thread that brings the
//! run's documents up to date, so `wfe search` finds them without waiting.
//!
//! It must never slow or fail the run: it works on its own thread and its
//! own store, waits for a burst of checkpoints to end and indexes them in
//! one round, only updates an index that already exists (building one for
//! every run of a repository is `wfe search`'s job), and skips a round
//! when another process holds the writer. Whatever it misses, the next
//! catch-up does.
//!
//! It keeps the index's writer from one round to the next (opening one
//! and waiting for its merges cost more than a round), committing each
//! round so other processes search every checkpoint. While held, another
//! process's catch-up is `busy`, so it lets go after [`HOLD`] without a
//! checkpoint and when the run finishes, merges done: a `wfe search` in
//! another terminal waits at most one quiet spell, not the whole run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use super::search_index::SearchIndex;
use crate::attempt::{LogLine, LogSink};
use crate::engine::{Event, Observer};
use crate::store::{RunId, RunStore};

/// How long one round waits for another process's writer.
const WRITER_WAIT: Duration = Duration::from_millis(500);
/// How long without a checkpoint ends a burst.
const QUIET: Duration = Duration::from_millis(100);
/// How long without a checkpoint before the writer is let go: long enough
/// to span the gaps between a busy phase's checkpoints, short enough that
/// another process rarely finds it held (`wfe search` waits 500 ms for it,
/// then searches what is committed).
pub(super) const HOLD: Duration = Duration::from_secs(1);

enum Message {
    Checkpoint,
    Finish,
}

/// The indexing thread of one run.
pub struct Background {
    tx: Sender<Message>,
    done: Receiver<Option<String>>,
}

impl Background {
    /// Starts indexing `run` into the index in `dir`, reading through the
    /// store `open` returns (opened on the indexing thread, so the run's
    /// start does not wait for it).
    pub fn start<S, F>(open: F, dir: PathBuf, run: RunId) -> Background
    where
        S: RunStore + 'static,
        F: FnOnce() -> Option<S> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let work = move || {
            let failure = index_until_finished(open, &dir, &run, &rx);
            let _ = done_tx.send(failure);
        };
        if std::thread::Builder::new()
            .name("wfe-index".into())
            .spawn(work)
            .is_err()
        {
            // No thread, no background indexing: `wfe search` catches up.
        }
        Background { tx, done }
    }

    /// `inner`, plus a wake-up of the indexing thread after each checkpoint.
    pub fn observer(&self, inner: Arc<dyn Observer>) -> Arc<dyn Observer> {
        Arc::new(Wake {
            inner,
            tx: self.tx.clone(),
        })
    }

    /// Indexes the run's last checkpoint and stops, waiting at most `wait`.
    /// Returns why indexing failed, if it did; a thread still busy after
    /// `wait` is left to finish or die with the process.
    pub fn finish(self, wait: Duration) -> Option<String> {
        let _ = self.tx.send(Message::Finish);
        // Timed out or gone: either way nothing more to report.
        self.done.recv_timeout(wait).unwrap_or_default()
    }
}

/// The indexing thread: one round per burst of checkpoints, a last one at
/// the end; returns the first failure.
fn index_until_finished<S, F>(
    open: F,
    dir: &Path,
    run: &RunId,
    rx: &Receiver<Message>,
) -> Option<String>
where
    S: RunStore,
    F: FnOnce() -> Option<S>,
{
    let store = open()?;
    let mut index: Option<SearchIndex> = None;
    let mut failure = None;
    loop {
        let held = index.as_ref().is_some_and(SearchIndex::holds_writer);
        let message = if held {
            match rx.recv_timeout(HOLD) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    release(&mut index, &mut failure);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(message) => message,
                Err(_) => break,
            }
        };
        let mut finish = matches!(message, Message::Finish);
        // Checkpoints come in bursts (a phase ends, the next starts): one
        // round after the burst covers them all.
        while !finish {
            match rx.recv_timeout(QUIET) {
                Ok(message) => finish = matches!(message, Message::Finish),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => finish = true,
            }
        }
        if index.is_none() {
            index = SearchIndex::open_existing(dir);
            if let Some(open) = index.as_mut() {
                open.keep_writer(true);
            }
        }
        if let Some(open) = index.as_mut()
            && let Err(e) = open.catch_up_run(&store, run, WRITER_WAIT)
        {
            failure.get_or_insert_with(|| e.to_string());
            // Reopen next round: the files may have been replaced.
            index = None;
        }
        if finish {
            break;
        }
    }
    release(&mut index, &mut failure);
    failure
}

/// Lets go of the writer, merges done; records a failure like a round's.
fn release(index: &mut Option<SearchIndex>, failure: &mut Option<String>) {
    if let Some(open) = index.as_mut()
        && let Err(e) = open.release_writer()
    {
        failure.get_or_insert_with(|| e.to_string());
        *index = None;
    }
}

/// Forwards everything to the inner observer and wakes the indexer.
struct Wake {
    inner: Arc<dyn Observer>,
    tx: Sender<Message>,
}

impl LogSink for Wake {
    fn line(&self, phase: &str, line: &LogLine) {
        self.inner.line(phase, line);
    }
}

impl Observer for Wake {
    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
        if matches!(event, Event::Checkpoint { .. }) {
            let _ = self.tx.send(Message::Checkpoint);
        }
    }
}
