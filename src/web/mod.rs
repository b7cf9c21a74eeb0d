//! The web view (`wfe serve`): an axum server on 127.0.0.1 that renders
//! the engine's read models as HTML pages and as JSON under `/api/…`,
//! with one server-sent-events stream per tab for live updates.
//!
//! Like `cli`, this is an edge: it talks to people (over HTTP). It reads
//! runs only through the engine's views and the store; it does not print
//! (the CLI prints the URL [`Server::url`] gives) and does not read the
//! environment.
//!
//! Layout: [`routes`] lists every route; one module per page under
//! `pages/`; [`security`] guards every route; [`sse`] is the event
//! stream; [`assets`] the embedded script and style sheet.

pub mod artifact_view;
pub mod assets;
pub mod controls;
pub mod forms;
pub mod pages;
pub mod render;
pub mod security;
pub mod sse;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use render::WebError;
use state::{AppState, RepoState};

use crate::store::GitStore;
use crate::template::Catalog;

/// What `wfe serve` was asked for.
pub struct Options {
    /// The port to bind on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The repositories to serve, in switcher order (`?repo=N`); at least one.
    pub repos: Vec<GitStore>,
    /// Whether GET pages and `/api` answer without the token.
    pub public_read: bool,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// A repository to serve has no work tree.
    #[error("{0} is a bare repository; wfe serve needs a work tree")]
    Bare(String),
    /// Serving failed.
    #[error("the web server failed: {0}")]
    Serve(std::io::Error),
}

/// A bound server, not yet answering.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

/// Binds 127.0.0.1:`port` (never another address) and prepares the state:
/// a fresh random token, one change watcher per repository.
pub async fn bind(options: Options) -> Result<Server, ServeError> {
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|source| ServeError::Bind {
            port: options.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        port: options.port,
        source,
    })?;
    let mut repos = Vec::new();
    for store in options.repos {
        let Some(root) = store.info().work_dir.clone() else {
            return Err(ServeError::Bare(
                store.info().common_dir.display().to_string(),
            ));
        };
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| root.display().to_string());
        let live_root = store.wfe_dir().join("live");
        let watch = sse::watch(&store.info().common_dir, &store.wfe_dir());
        repos.push(Arc::new(RepoState {
            name,
            catalog: Catalog::new(&root),
            store,
            live_root,
            changes: watch.changes,
            _watcher: watch.watcher,
        }));
    }
    let state = Arc::new(AppState {
        port: addr.port(),
        token: new_token(),
        public_read: options.public_read,
        repos,
    });
    Ok(Server {
        listener,
        addr,
        state,
    })
}

impl Server {
    /// The URL to open: `http://127.0.0.1:PORT/?token=TOKEN`.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.state.token)
    }

    /// The address bound (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests until `shutdown` completes. Open event streams are
    /// dropped then, not waited for (they never end by themselves).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let app = routes(self.state);
        tokio::select! {
            served = axum::serve(self.listener, app) => served.map_err(ServeError::Serve),
            () = shutdown => Ok(()),
        }
    }
}

/// Every route of the server, behind the security guard. Pages answer
/// HTML; the same views answer JSON under `/api`.
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        // Pages.
        .route("/", get(pages::runs::html))
        .route("/runs/{run}", get(pages::run::html))
        .route("/runs/{run}/phases/{phase}", get(pages::phase::html))
        .route(
            "/runs/{run}/phases/{phase}/files/{*name}",
            get(pages::phase::file),
        )
        .route("/diff", get(pages::diff::html))
        .route("/search", get(pages::search::html))
        // The same views as JSON.
        .route("/api/runs", get(pages::runs::json))
        .route("/api/runs/{run}", get(pages::run::json))
        .route("/api/runs/{run}/phases/{phase}", get(pages::phase::json))
        .route("/api/runs/{run}/phases/{phase}/log", get(pages::phase::log))
        .route("/api/diff", get(pages::diff::json))
        .route("/api/search", get(pages::search::json))
        // Controls (every one the CLI verb it stands for), templates, providers.
        .route("/runs/new", get(controls::new_run_page))
        .route("/runs", post(controls::start))
        .route("/runs/{run}/controls", get(controls::controls_page))
        .route("/runs/{run}/{verb}", post(controls::control))
        .route("/templates", get(pages::templates::list))
        .route("/templates/{name}", get(pages::templates::show))
        .route(
            "/templates/{name}/validate",
            post(pages::templates::validate),
        )
        .route("/templates/{name}/clone", post(pages::templates::clone))
        .route(
            "/templates/{name}/edit",
            get(pages::templates::edit_page).post(pages::templates::save),
        )
        .route("/providers", get(pages::providers::html))
        .route("/providers/{name}/test", post(pages::providers::test))
        .route("/providers/{name}/key", post(pages::providers::set_key))
        .route("/providers/add", post(pages::providers::add))
        .route("/roles/{role}", post(pages::providers::set_role))
        .route("/assets/controls.js", get(assets::controls_script))
        // Live updates and assets.
        .route("/events", get(sse::events))
        .route("/assets/app.js", get(assets::script))
        .route("/assets/app.css", get(assets::style))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        .with_state(state)
}

/// A fresh secret: 160 random bits (two ULIDs' random parts) as hex.
fn new_token() -> String {
    let a = ulid::Ulid::generate().random();
    let b = ulid::Ulid::generate().random();
    format!("{a:020x}{b:020x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
