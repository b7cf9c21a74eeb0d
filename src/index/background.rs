//! Indexing beside a runner: each checkpoint wakes a thread that brings the
//! run's documents up to date, so `wfe search` finds them without waiting.
//!
//! It must never slow or fail the run: it works on its own thread and its
//! own store, coalesces checkpoints that come faster than it indexes, only
//! updates an index that already exists (building one for every run of a
//! repository is `wfe search`'s job), and skips a round when another
//! process holds the writer. Whatever it misses, the next catch-up does.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use super::search_index::SearchIndex;
use crate::engine::{Event, Observer};
use crate::exec::{LogLine, LogSink};
use crate::store::{RunId, RunStore};

/// How long one round waits for another process's writer.
const WRITER_WAIT: Duration = Duration::from_millis(500);

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
    /// Starts indexing `run` into the index in `dir`, reading through `store`.
    pub fn start<S: RunStore + 'static>(store: S, dir: PathBuf, run: RunId) -> Background {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let work = move || {
            let mut index: Option<SearchIndex> = None;
            let mut failure = None;
            while let Ok(message) = rx.recv() {
                let mut finish = matches!(message, Message::Finish);
                // Checkpoints that came while indexing the last one: one round covers them all.
                while let Ok(message) = rx.try_recv() {
                    finish |= matches!(message, Message::Finish);
                }
                if index.is_none() {
                    index = SearchIndex::open_existing(&dir);
                }
                if let Some(open) = index.as_mut()
                    && let Err(e) = open.catch_up_run(&store, &run, WRITER_WAIT)
                {
                    failure.get_or_insert_with(|| e.to_string());
                    // Reopen next round: the files may have been replaced.
                    index = None;
                }
                if finish {
                    break;
                }
            }
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
