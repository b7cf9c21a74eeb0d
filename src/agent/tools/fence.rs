//! The fence: every path a file tool touches must be inside the working tree.
//!
//! A path is resolved the way the OS would open it, then checked: `.` and
//! `..` are applied, symlinks are followed (the longest existing prefix is
//! canonicalized; a dangling symlink is followed by hand, since creating a
//! file through it would land at its target), and the result must lie under
//! the canonical root and outside `.git/`. Tools then use the resolved path,
//! never the one the model gave, so what was checked is what is opened.
//!
//! The fence keeps the model's file tools where the user expects them; it is
//! not a sandbox. A process changing the tree between the check and the use
//! (a `bash` call left running in the background) could still swap a
//! directory for a symlink, and `bash` itself is not fenced at all.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How many dangling symlinks one resolution may follow (as `MAXSYMLINKS`).
const MAX_HOPS: u32 = 40;

/// The working tree's canonical root.
#[derive(Debug, Clone)]
pub(super) struct Fence {
    root: PathBuf,
}

/// A path inside the fence.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    /// Where it is, absolute, with every existing part canonical.
    pub(super) abs: PathBuf,
    /// The same, relative to the root (empty for the root itself).
    pub(super) rel: PathBuf,
}

impl Target {
    /// The path as tools show it: relative, `/`-separated, `.` for the root.
    pub(super) fn shown(&self) -> String {
        shown(&self.rel)
    }
}

/// `rel` as tools show it.
pub(super) fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

impl Fence {
    /// The fence around `root`, which must be an existing directory.
    pub(super) fn new(root: &Path) -> Result<Fence, String> {
        let cannot = |e: io::Error| format!("cannot use the working tree {}: {e}", root.display());
        let root = root.canonicalize().map_err(cannot)?;
        if !root.is_dir() {
            return Err(format!(
                "cannot use the working tree {}: not a directory",
                root.display()
            ));
        }
        Ok(Fence { root })
    }

    /// The canonical root.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` as the model gave it: relative to the root, or
    /// absolute but inside it.
    pub(super) fn resolve(&self, path: &str) -> Result<Target, String> {
        if path.is_empty() {
            return Err(
                "the path is empty; give a path relative to the repository's working tree".into(),
            );
        }
        let given = Path::new(path);
        let lexical = normalize(&self.root.join(given));
        let abs = physical(&lexical).map_err(|e| format!("cannot resolve path `{path}`: {e}"))?;
        let Ok(rel) = abs.strip_prefix(&self.root) else {
            return Err(if lexical.starts_with(&self.root) {
                format!(
                    "path `{path}` leads outside the repository's working tree through a symlink"
                )
            } else {
                format!("path `{path}` is outside the repository's working tree")
            });
        };
        let rel = rel.to_path_buf();
        if rel.components().any(|c| c.as_os_str() == ".git") {
            return Err(format!(
                "path `{path}` is inside `.git/`, which tools may not touch"
            ));
        }
        Ok(Target { abs, rel })
    }

    /// `abs` relative to the root, if it is inside.
    pub(super) fn relative<'a>(&self, abs: &'a Path) -> Option<&'a Path> {
        abs.strip_prefix(&self.root).ok()
    }
}

/// Applies `.` and `..` to an absolute path without touching the disk; `..`
/// at `/` stays at `/`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
        }
    }
    out
}

/// Where opening the normalized absolute `path` would really go: its longest
/// existing prefix canonicalized, followed by the parts that do not exist.
/// None of those parts is a symlink: a dangling one is followed here.
fn physical(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    let mut hops = 0;
    'restart: loop {
        // The parts below `existing` that do not exist, innermost first.
        let mut missing: Vec<OsString> = Vec::new();
        let mut existing = path.as_path();
        loop {
            if let Ok(canonical) = existing.canonicalize() {
                let mut out = canonical;
                out.extend(missing.iter().rev());
                return Ok(out);
            }
            if existing.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = existing.read_link()?;
                let parent = existing.parent().unwrap_or(Path::new("/"));
                let mut next = normalize(&parent.join(target));
                next.extend(missing.iter().rev());
                path = next;
                continue 'restart;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name.to_os_string());
                    existing = parent;
                }
                // `/` always canonicalizes; nothing is left to resolve.
                _ => return Ok(path),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use tempfile::TempDir;

    use super::*;

    /// A tree `repo/` with `src/a.rs` and `.git/config`, beside `outside/`
    /// with `secret`.
    fn setup() -> (TempDir, Fence) {
        let dir = TempDir::new().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("src")).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::write(repo.join("src/a.rs"), "a").unwrap();
        std::fs::write(repo.join(".git/config"), "[core]").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret"), "s").unwrap();
        let fence = Fence::new(&repo).unwrap();
        (dir, fence)
    }

    fn rel(fence: &Fence, path: &str) -> Result<String, String> {
        fence.resolve(path).map(|t| t.shown())
    }

    #[test]
    fn resolves_paths_inside() {
        let (_dir, fence) = setup();
        let root = fence.root().to_path_buf();
        symlink("src", root.join("code")).unwrap();
        symlink("src/new.rs", root.join("dangling")).unwrap();
        let cases = [
            ("src/a.rs", "src/a.rs"),
            ("./src/../src/a.rs", "src/a.rs"),
            (".", "."),
            ("src/", "src"),
            ("new/dir/file", "new/dir/file"),
            ("code/a.rs", "src/a.rs"),
            ("code/sub/new", "src/sub/new"),
            ("dangling", "src/new.rs"),
        ];
        for (path, expected) in cases {
            assert_eq!(rel(&fence, path), Ok(expected.to_string()), "{path}");
        }
        let abs = root.join("src/a.rs");
        assert_eq!(
            rel(&fence, abs.to_str().unwrap()),
            Ok("src/a.rs".to_string())
        );
        assert_eq!(fence.resolve("src/a.rs").unwrap().abs, abs);
    }

    #[test]
    fn refuses_paths_outside() {
        let (dir, fence) = setup();
        let root = fence.root().to_path_buf();
        let outside = dir.path().join("outside");
        symlink(&outside, root.join("out_dir")).unwrap();
        symlink(outside.join("secret"), root.join("out_file")).unwrap();
        symlink(outside.join("new"), root.join("out_dangling")).unwrap();
        symlink("../../outside", root.join("src/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let secret = outside.join("secret");
        let secret = secret.to_str().unwrap();
        let outside_msg = |p: &str| {
            Err(format!(
                "path `{p}` is outside the repository's working tree"
            ))
        };
        let symlink_msg = |p: &str| {
            Err(format!(
                "path `{p}` leads outside the repository's working tree through a symlink"
            ))
        };
        assert_eq!(
            rel(&fence, "../outside/secret"),
            outside_msg("../outside/secret")
        );
        assert_eq!(rel(&fence, ".."), outside_msg(".."));
        assert_eq!(rel(&fence, "src/../../x"), outside_msg("src/../../x"));
        assert_eq!(rel(&fence, secret), outside_msg(secret));
        assert_eq!(rel(&fence, "/"), outside_msg("/"));
        for path in [
            "out_dir",
            "out_dir/secret",
            "out_dir/new/file",
            "out_file",
            "out_dangling",
            "src/up/x",
        ] {
            assert_eq!(rel(&fence, path), symlink_msg(path), "{path}");
        }
        assert_eq!(
            rel(&fence, "loop"),
            Err("cannot resolve path `loop`: too many levels of symbolic links".into())
        );
        assert!(rel(&fence, "").unwrap_err().contains("empty"));
    }

    #[test]
    fn refuses_dot_git() {
        let (_dir, fence) = setup();
        let root = fence.root().to_path_buf();
        symlink(".git/config", root.join("cfg")).unwrap();
        for path in [
            ".git",
            ".git/config",
            "./.git/hooks/new",
            "src/../.git/config",
            "cfg",
            "sub/.git/x",
        ] {
            assert_eq!(
                rel(&fence, path),
                Err(format!(
                    "path `{path}` is inside `.git/`, which tools may not touch"
                )),
                "{path}"
            );
        }
    }

    #[test]
    fn the_root_must_be_a_directory() {
        let (dir, _fence) = setup();
        assert!(Fence::new(&dir.path().join("nowhere")).is_err());
        let err = Fence::new(&dir.path().join("outside/secret")).unwrap_err();
        assert!(err.ends_with("not a directory"), "{err}");
    }
}
