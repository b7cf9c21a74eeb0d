//! What every request handler shares: the token, the bound port and the
//! repositories served. Built once by [`super::bind`]; read-only after.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::GitStore;
use crate::template::Catalog;

/// A change seen on disk in one repository, fanned out to every open
/// event stream (see [`super::sse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A ref or `packed-refs` changed (a checkpoint, a new run, a removal).
    Refs,
    /// A live output file of this run changed.
    Live {
        /// The run.
        run: String,
    },
    /// A runner took or let go of a run's lock.
    Locks,
}

/// One repository the server shows.
pub struct RepoState {
    /// Its name in the project switcher: the work tree's directory name.
    pub name: String,
    /// Its runs.
    pub store: GitStore,
    /// Its templates (for the board's columns).
    pub catalog: Catalog,
    /// `<git-dir>/wfe/live`: running attempts' output.
    pub live_root: PathBuf,
    /// Changes under its refs and live files.
    pub changes: broadcast::Sender<Change>,
    /// Keeps the watch feeding `changes` alive.
    pub _watcher: Option<notify::RecommendedWatcher>,
}

/// The server's shared state.
pub struct AppState {
    /// The port the listener is bound to (the Host header must name it).
    pub port: u16,
    /// The secret in the printed URL.
    pub token: String,
    /// Whether GET pages and `/api` answer without the token.
    pub public_read: bool,
    /// The repositories served, as the switcher numbers them (`?repo=N`).
    pub repos: Vec<Arc<RepoState>>,
}

impl AppState {
    /// The name of the cookie carrying the token. Cookies are not scoped
    /// by port, so two servers on one machine need two names.
    pub fn cookie_name(&self) -> String {
        format!("wfe_token_{}", self.port)
    }

    /// The origins this server answers as.
    pub fn origins(&self) -> [String; 2] {
        [
            format!("http://127.0.0.1:{}", self.port),
            format!("http://localhost:{}", self.port),
        ]
    }
}
