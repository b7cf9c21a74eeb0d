//! One module per page. Each has `html` (the page) and `json` (the same
//! view under `/api`), rendering the engine's read models.
//!
//! Several repositories: `?repo=N` (0, the default, is the first
//! `--repo`, or the current repository) on every route picks one; links
//! carry it on through [`Repo::q`] and [`Repo::qa`].

pub mod diff;
pub mod phase;
pub mod providers;
pub mod run;
pub mod runs;
pub mod search;
pub mod templates;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;

use super::render::WebError;
use super::state::{AppState, RepoState};

/// The repository a request is about (`?repo=N`).
pub struct Repo {
    /// Its number in the switcher.
    pub index: usize,
    /// It.
    pub repo: Arc<RepoState>,
    /// Every repository's name, for the switcher.
    pub names: Vec<String>,
}

impl FromRequestParts<Arc<AppState>> for Repo {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let asked = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "repo")
            .map(|(_, v)| v);
        let index = match asked {
            None | Some("") => 0,
            Some(n) => n.parse::<usize>().map_err(|_| {
                WebError::BadRequest(format!("repo=`{n}`: expected a repository number"))
            })?,
        };
        let repo = state.repos.get(index).cloned().ok_or_else(|| {
            WebError::NotFound(format!(
                "repo={index}: this server shows {} repositories (0 to {})",
                state.repos.len(),
                state.repos.len().saturating_sub(1)
            ))
        })?;
        Ok(Repo {
            index,
            repo,
            names: state.repos.iter().map(|r| r.name.clone()).collect(),
        })
    }
}

impl Repo {
    /// `?repo=N` for a link without a query, empty for the first repository.
    pub fn q(&self) -> String {
        if self.index == 0 {
            String::new()
        } else {
            format!("?repo={}", self.index)
        }
    }

    /// `&repo=N` for a link that has a query already.
    pub fn qa(&self) -> String {
        if self.index == 0 {
            String::new()
        } else {
            format!("&repo={}", self.index)
        }
    }

    /// What the layout needs: the switcher and the query suffixes.
    pub fn layout(&self, title: &str, nav: &str) -> Layout {
        Layout {
            title: title.to_string(),
            nav: nav.to_string(),
            repo: self.index,
            repo_name: self.repo.name.clone(),
            repos: self.names.clone(),
            q: self.q(),
            qa: self.qa(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// Runs blocking store reads off the async workers.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RepoState) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || f(&repo))
            .await
            .map_err(|e| WebError::Internal(format!("a read failed: {e}")))?
    }
}

/// What the base layout shows around every page.
#[derive(Debug, Serialize)]
pub struct Layout {
    /// The page title.
    pub title: String,
    /// Which nav entry is current.
    pub nav: String,
    /// The repository's number.
    pub repo: usize,
    /// The repository's name.
    pub repo_name: String,
    /// Every repository's name (the switcher shows when there are several).
    pub repos: Vec<String>,
    /// `?repo=N` or empty.
    pub q: String,
    /// `&repo=N` or empty.
    pub qa: String,
    /// wfe's version: in the assets' URLs, so a new binary's assets are
    /// fetched anew despite the cache header.
    pub version: &'static str,
}

/// Resolves a run name (id, prefix or `latest`) in `repo`.
pub fn resolve(repo: &RepoState, name: &str) -> Result<crate::store::RunId, WebError> {
    use crate::store::RunStore;
    if name.trim().is_empty() {
        return Err(WebError::BadRequest("the run id is empty".into()));
    }
    Ok(repo.store.resolve(name)?)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `3s`, `5m`, `2h`, `4d`: how long ago `secs` seconds was.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_short() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(61), "1m");
        assert_eq!(age(7200), "2h");
        assert_eq!(age(200_000), "2d");
    }
}
