//! Live updates: one server-sent-events stream per tab, multiplexing what
//! the page shows, fed by a notify watch on the repository's refs, the
//! runners' locks and the live output files (no polling).
//!
//! `GET /events?run=RUN&phase=KEY` sends:
//! - `runs`: some run changed (the runs page re-fetches its list);
//! - `run`: run RUN's ref moved or its runner came or went (the page
//!   re-fetches the part it shows with `?fragment=live`);
//! - `log`: new live entries of phase KEY of RUN, a JSON array of
//!   [`crate::engine::live::LiveEntry`] (already masked by the runner).
//!
//! The browser closes the stream while the tab is hidden (six HTTP/1.1
//! connections per host are all a browser gives).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::pages::Repo;
use super::state::{Change, RepoState};
use crate::engine::live::Follower;
use crate::store::{RunId, RunStore};

/// Changes a slow stream may fall behind by before it skips to "something changed".
const BACKLOG: usize = 256;

/// A running watch on one repository.
pub struct Watch {
    /// Where changes are announced.
    pub changes: broadcast::Sender<Change>,
    /// The watcher (watching stops when it is dropped); `None` when the
    /// platform refused it: pages still work, without live updates.
    pub watcher: Option<RecommendedWatcher>,
}

/// Starts watching `common_dir`'s refs, `packed-refs`, the locks and the
/// live output files.
pub fn watch(common_dir: &Path, wfe_dir: &Path) -> Watch {
    let (changes, _) = broadcast::channel(BACKLOG);
    let live = wfe_dir.join("live");
    let locks = wfe_dir.join("locks");
    // Made here so they can be watched before a runner makes them.
    let _ = std::fs::create_dir_all(&live);
    let _ = std::fs::create_dir_all(&locks);
    let refs = common_dir.join("refs");
    let tx = changes.clone();
    let (live_c, locks_c, refs_c) = (live.clone(), locks.clone(), refs.clone());
    let packed = common_dir.join("packed-refs");
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in &event.paths {
            if let Some(change) = classify(path, &refs_c, &packed, &live_c, &locks_c) {
                let _ = tx.send(change);
            }
        }
    };
    let watcher = notify::recommended_watcher(handler).ok().map(|mut w| {
        let _ = w.watch(&refs, RecursiveMode::Recursive);
        let _ = w.watch(common_dir, RecursiveMode::NonRecursive);
        let _ = w.watch(&locks, RecursiveMode::NonRecursive);
        let _ = w.watch(&live, RecursiveMode::Recursive);
        w
    });
    Watch { changes, watcher }
}

/// What a changed path means, if anything.
fn classify(path: &Path, refs: &Path, packed: &Path, live: &Path, locks: &Path) -> Option<Change> {
    if let Ok(rest) = path.strip_prefix(live) {
        let run = rest
            .components()
            .next()?
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        return Some(Change::Live { run });
    }
    if path.starts_with(locks) {
        return Some(Change::Locks);
    }
    // A ref's lock file comes and goes before the ref itself is renamed in.
    if path.extension().is_some_and(|e| e == "lock") {
        return None;
    }
    (path.starts_with(refs) || path == packed).then_some(Change::Refs)
}

/// What a stream follows.
#[derive(Debug, Default, Deserialize)]
pub struct Follow {
    /// A run (id or prefix) whose ref moves become `run` events.
    #[serde(default)]
    pub run: Option<String>,
    /// A phase key of that run whose live output becomes `log` events.
    #[serde(default)]
    pub phase: Option<String>,
}

/// `GET /events`.
pub async fn events(repo: Repo, Query(follow): Query<Follow>) -> Response {
    let mut rx = repo.repo.changes.subscribe();
    let r = repo.repo.clone();
    let run = follow
        .run
        .as_deref()
        .and_then(|name| r.store.resolve(name).ok());
    let phase = follow
        .phase
        .filter(|p| !p.is_empty() && !p.contains(['/', '\\']) && p != "..");
    let (tx, out) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut tip = match &run {
            Some(id) => tip_of(&r, id).await,
            None => None,
        };
        let mut log = LogFollow::default();
        // What was live before this stream started is sent first.
        if let (Some(id), Some(key)) = (&run, &phase)
            && let Some(entries) = log.read(&r.live_root, id.as_str(), key)
            && tx.send(log_event(&entries)).await.is_err()
        {
            return;
        }
        loop {
            let change = tokio::select! {
                change = rx.recv() => change,
                () = tx.closed() => return,
            };
            let change = match change {
                Ok(c) => Some(c),
                // Fell behind: something changed, re-check everything.
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let mut sends = Vec::new();
            match (&change, &run) {
                (Some(Change::Live { run: which }), Some(id)) if which == id.as_str() => {
                    if let Some(key) = &phase
                        && let Some(entries) = log.read(&r.live_root, id.as_str(), key)
                    {
                        sends.push(log_event(&entries));
                    }
                }
                (Some(Change::Live { .. }), _) => {}
                (_, run) => {
                    sends.push(Event::default().event("runs").data("{}"));
                    if let Some(id) = run {
                        let now = tip_of(&r, id).await;
                        // A lock coming or going changes the shown status.
                        if now != tip || matches!(change, Some(Change::Locks) | None) {
                            tip = now;
                            let data = serde_json::json!({ "run": id.as_str(), "tip": tip });
                            sends.push(Event::default().event("run").data(data.to_string()));
                        }
                    }
                }
            }
            for event in sends {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Sse::new(receiver_stream(out))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn log_event(entries: &[crate::engine::live::LiveEntry]) -> Event {
    let data = serde_json::to_string(entries).unwrap_or_else(|_| "[]".into());
    Event::default().event("log").data(data)
}

/// The run's tip commit now.
async fn tip_of(repo: &Arc<RepoState>, run: &RunId) -> Option<String> {
    let (repo, run) = (repo.clone(), run.clone());
    tokio::task::spawn_blocking(move || repo.store.tip(&run).ok().flatten().map(|c| c.0))
        .await
        .ok()
        .flatten()
}

fn receiver_stream(rx: mpsc::Receiver<Event>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// Reading one phase's live file as it grows, moving on to the next
/// attempt's file when one appears.
#[derive(Default)]
struct LogFollow {
    current: Option<(PathBuf, Follower)>,
}

impl LogFollow {
    /// The entries written since the last call; `None` when there are none.
    fn read(
        &mut self,
        live_root: &Path,
        run: &str,
        key: &str,
    ) -> Option<Vec<crate::engine::live::LiveEntry>> {
        let newest = newest_attempt(&live_root.join(run).join(key));
        let mut entries = Vec::new();
        if let Some(path) = newest
            && self.current.as_ref().is_none_or(|(p, _)| *p != path)
        {
            // Whatever the old file still had comes first.
            if let Some((_, old)) = &mut self.current {
                entries.extend(old.read());
            }
            self.current = Follower::open(&path).map(|f| (path, f));
        }
        if let Some((_, follower)) = &mut self.current {
            entries.extend(follower.read());
        }
        (!entries.is_empty()).then_some(entries)
    }
}

/// `<dir>/<N>.jsonl` with the largest N.
fn newest_attempt(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u32 = name.strip_suffix(".jsonl")?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        let (refs, packed, live, locks) = (
            Path::new("/g/refs"),
            Path::new("/g/packed-refs"),
            Path::new("/g/wfe/live"),
            Path::new("/g/wfe/locks"),
        );
        let c = |p: &str| classify(Path::new(p), refs, packed, live, locks);
        assert_eq!(c("/g/refs/wfe/runs/01ab"), Some(Change::Refs));
        assert_eq!(c("/g/refs/wfe/runs/01ab.lock"), None);
        assert_eq!(c("/g/packed-refs"), Some(Change::Refs));
        assert_eq!(
            c("/g/wfe/live/01ab/build/1.jsonl"),
            Some(Change::Live { run: "01ab".into() })
        );
        assert_eq!(c("/g/wfe/locks/01ab"), Some(Change::Locks));
        assert_eq!(c("/g/index"), None);
    }
}
