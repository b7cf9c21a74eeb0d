//! Paths inside a checkpoint's tree, checked the same way by every store.
//!
//! A path that git would refuse (or that `git fsck --strict` would flag) is
//! rejected before anything is written, so [`super::MemoryStore`] and
//! [`super::GitStore`] agree on what a valid checkpoint looks like.

use super::{Result, StoreError};

/// Checks a path a [`super::Change`] writes or removes: relative,
/// `/`-separated, no empty, `.`, `..` or `.git` components, no NUL byte.
pub(crate) fn validate(path: &str) -> Result<()> {
    let invalid = |reason: &'static str| {
        Err(StoreError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return invalid("the path is empty");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return invalid("the path has an empty component (leading, trailing or doubled `/`)");
        }
        if component == "." || component == ".." {
            return invalid("`.` and `..` are not allowed");
        }
        if component.eq_ignore_ascii_case(".git") {
            return invalid("git refuses a `.git` entry in a tree");
        }
        if component.contains('\0') {
            return invalid("the path contains a NUL byte");
        }
    }
    Ok(())
}

/// Splits a path to look up into its components; `""` (or `/`) is the root.
///
/// Reads are lenient: a leading or trailing `/` is ignored, and a path that
/// could never have been written simply finds nothing.
pub(crate) fn components(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|c| !c.is_empty())
        .collect()
}

/// Checks the path of every change before anything is written.
pub(super) fn validate_changes(changes: &[super::Change]) -> super::Result<()> {
    for change in changes {
        match change {
            super::Change::Write { path, .. }
            | super::Change::Remove { path }
            | super::Change::Snapshot { path, .. } => validate(path)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_relative_paths() {
        for ok in [
            "run.json",
            "phases/build/state.json",
            "phases/a/attempts/1/error.json",
            ".wfe",
            "a.git",
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_git_would_refuse() {
        for bad in [
            "",
            "/abs",
            "trailing/",
            "a//b",
            "./a",
            "a/../b",
            ".git/config",
            "a/.GIT",
            "nul\0byte",
        ] {
            assert!(
                matches!(validate(bad), Err(StoreError::InvalidPath { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn components_ignore_outer_slashes() {
        assert_eq!(components(""), Vec::<&str>::new());
        assert_eq!(components("/"), Vec::<&str>::new());
        assert_eq!(components("/phases/x/"), vec!["phases", "x"]);
    }
}
