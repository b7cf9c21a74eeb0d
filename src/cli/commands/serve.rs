//! `wfe serve`: the web view on 127.0.0.1, until Ctrl-C or SIGTERM. This
//! command finds the repositories, prints the URL and waits; the server
//! itself is [`crate::web`].

use std::path::PathBuf;

use clap::Args;

use crate::cli::args::GlobalArgs;
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::store::GitStore;
use crate::web;

/// Serve the web view of the runs on 127.0.0.1 (prints the URL with its token)
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The port on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 7420)]
    pub port: u16,
    /// A repository to show (repeat for a project switcher; default: the current one)
    #[arg(long = "repo", value_name = "PATH")]
    pub repos: Vec<PathBuf>,
    /// Open the URL in a browser (`xdg-open`, when there is one)
    #[arg(long)]
    pub open: bool,
    /// Let pages and /api be read without the token (changes still need it)
    #[arg(long)]
    pub public_read: bool,
}

/// Runs `wfe serve`.
pub(crate) async fn run(
    args: ServeArgs,
    global: &GlobalArgs,
    ui: &Ui,
) -> Result<Outcome, CliError> {
    let mut repos = Vec::new();
    if args.repos.is_empty() {
        repos.push(Context::discover(global)?.store);
    }
    for path in &args.repos {
        if !path.is_dir() {
            return Err(CliError::input(format!(
                "--repo {}: not a directory",
                path.display()
            )));
        }
        // The same checks as any command's repository (a work tree is needed).
        let ctx = Context::for_store(GitStore::discover(path)?)?;
        repos.push(ctx.store);
    }
    let server = web::bind(web::Options {
        port: args.port,
        repos,
        public_read: args.public_read,
    })
    .await
    .map_err(|e| match e {
        web::ServeError::Bind { .. } => CliError::input(e.to_string())
            .hint("another port: `wfe serve --port 0` picks a free one"),
        other => CliError::internal(other.to_string()),
    })?;
    let url = server.url();
    ui.out(&url);
    if args.open {
        open_browser(&url);
    }
    server
        .serve(stop_signal())
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    Ok(Outcome::Success)
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Best effort: a missing `xdg-open` or a failing one changes nothing.
fn open_browser(url: &str) {
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
