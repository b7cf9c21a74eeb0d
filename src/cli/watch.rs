//! Waking a command that follows a run (`wfe log --follow`, `wfe status
//! --watch`) when something it shows may have changed: the run's ref (a
//! new checkpoint), the runner's lock (it started or stopped), or a live
//! output file. Driven by notify; a slow fallback tick only covers what no
//! file event announces (a runner killed with SIGKILL leaves its lock).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// The longest a follower sleeps without an event before looking again.
const FALLBACK: Duration = Duration::from_secs(1);

/// A watch on the files that say a run changed.
pub(crate) struct Changes {
    rx: mpsc::Receiver<()>,
    _watcher: Option<RecommendedWatcher>,
}

impl Changes {
    /// Watches the refs, locks and live output under `wfe_dir`
    /// (`<common-dir>/wfe`).
    pub(crate) fn new(wfe_dir: &Path) -> Changes {
        let (tx, rx) = mpsc::channel();
        let common = wfe_dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let live = wfe_dir.join("live");
        let locks = wfe_dir.join("locks");
        // Made here so they can be watched before the runner makes them.
        let _ = std::fs::create_dir_all(&live);
        let _ = std::fs::create_dir_all(&locks);
        let watched: [(PathBuf, RecursiveMode); 4] = [
            (common.join("refs/wfe/runs"), RecursiveMode::Recursive),
            // `packed-refs` and ref lock files.
            (common, RecursiveMode::NonRecursive),
            (locks, RecursiveMode::NonRecursive),
            (live, RecursiveMode::Recursive),
        ];
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .ok()
        .map(|mut w| {
            for (path, mode) in &watched {
                let _ = w.watch(path, *mode);
            }
            w
        });
        Changes {
            rx,
            _watcher: watcher,
        }
    }

    /// Blocks until something changed (or the fallback tick), then
    /// swallows the burst of events that came with it.
    pub(crate) fn wait(&self) {
        let _ = self.rx.recv_timeout(FALLBACK);
        while self.rx.try_recv().is_ok() {}
    }
}
