//! File artifacts: the files a script phase keeps besides its JSON
//! outputs — declared ones (`{"file": GLOB}`, `{"dir": PATH}`, relative to
//! the repository root) and everything under `$WFE_OUT/files/`.
//!
//! Only regular files are kept. A symbolic link is refused and never
//! followed (neither while walking nor when opening: `O_NOFOLLOW`), and so
//! are FIFOs, sockets and devices; a path never leaves the repository. The
//! files of one phase together are capped (`max_files_bytes`); the file
//! that crosses the cap is named. Every problem is reported at once, as an
//! [`ArtifactProblem`], so one retry can fix them all. Nothing here touches
//! the store: the runner writes what this returns.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::attempt::{ArtifactProblem, OutputFile};
use crate::template::FileOutput;

/// Most directory entries one phase's file artifacts may walk through: a
/// `**` over a huge tree fails instead of taking minutes.
const MAX_ENTRIES: usize = 200_000;

/// Default cap of one phase's file artifacts together: 50 MB.
pub const DEFAULT_MAX_FILES_BYTES: u64 = 50 * 1000 * 1000;

/// What to collect after a successful attempt.
#[derive(Debug, Clone, Default)]
pub struct FilesJob {
    /// The repository root: declared paths are relative to it.
    pub root: PathBuf,
    /// Declared file outputs by name.
    pub outputs: Vec<(String, FileOutput)>,
    /// The phase's cap on all its files together, in bytes.
    pub max_bytes: u64,
}

/// Collects the declared file outputs and `out_files` (`$WFE_OUT/files`).
/// Returns the files sorted by their path under `files/`, or every problem.
pub(super) fn collect(
    job: &FilesJob,
    out_files: &Path,
) -> Result<Vec<OutputFile>, Vec<ArtifactProblem>> {
    let mut collector = Collector {
        max: job.max_bytes,
        total: 0,
        over: false,
        entries: 0,
        files: Vec::new(),
        problems: Vec::new(),
    };
    for (name, decl) in &job.outputs {
        collector.declared(&job.root, name, decl);
    }
    let declared: BTreeSet<&str> = job.outputs.iter().map(|(n, _)| n.as_str()).collect();
    collector.out_dir(out_files, &declared);
    if collector.problems.is_empty() {
        collector.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(collector.files)
    } else {
        Err(collector.problems)
    }
}

struct Collector {
    max: u64,
    total: u64,
    /// The cap was crossed: stop reading (the problem is recorded once).
    over: bool,
    entries: usize,
    files: Vec<OutputFile>,
    problems: Vec<ArtifactProblem>,
}

/// One regular file found: where it is and where it is kept.
struct Found {
    disk: PathBuf,
    /// Shown in messages: the path as the repository (or `$WFE_OUT`) spells it.
    shown: String,
    kept: String,
}

impl Collector {
    fn problem(&mut self, artifact: &str, kind: &str, message: String) {
        self.problems.push(ArtifactProblem {
            artifact: artifact.to_string(),
            schema: kind.to_string(),
            message,
            violations: Vec::new(),
        });
    }

    fn declared(&mut self, root: &Path, name: &str, decl: &FileOutput) {
        let kind = if decl.dir.is_some() { "dir" } else { "file" };
        if let Some(message) = decl.problems().into_iter().next() {
            self.problem(name, kind, message);
            return;
        }
        let written = decl.path().trim_end_matches('/');
        let mut found = Vec::new();
        if decl.dir.is_some() {
            match literal_dir(root, written) {
                Ok(Some(dir)) => {
                    if let Err(message) = self.walk(&dir, written, "", None, 0, &mut found) {
                        self.problem(name, kind, message);
                        return;
                    }
                }
                Ok(None) if decl.optional => return,
                Ok(None) => {
                    let message = format!("missing: the directory `{written}` does not exist");
                    self.problem(name, kind, message);
                    return;
                }
                Err(message) => {
                    self.problem(name, kind, message);
                    return;
                }
            }
        } else {
            let Ok(glob) = GlobBuilder::new(written).literal_separator(true).build() else {
                // `problems()` above already rejected a glob that does not compile.
                return;
            };
            let matcher = glob.compile_matcher();
            let base = glob_base(written);
            match literal_dir(root, &base) {
                Ok(Some(dir)) => {
                    let below = written.split('/').count()
                        - base.split('/').filter(|c| !c.is_empty()).count();
                    let pattern = Pattern {
                        matcher: &matcher,
                        base: &base,
                        depth: (!written.contains("**")).then_some(below),
                    };
                    if let Err(message) = self.walk(&dir, &base, "", Some(&pattern), 0, &mut found)
                    {
                        self.problem(name, kind, message);
                        return;
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    self.problem(name, kind, message);
                    return;
                }
            }
            if found.is_empty() && !decl.optional {
                self.problem(name, kind, format!("missing: no file matches `{written}`"));
                return;
            }
        }
        self.read_all(name, kind, root, found);
    }

    /// `$WFE_OUT/files/`: everything in it, kept under its own path.
    fn out_dir(&mut self, dir: &Path, declared: &BTreeSet<&str>) {
        const NAME: &str = "$WFE_OUT/files";
        match fs::symlink_metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                self.problem(NAME, "files", format!("cannot read {NAME}: {e}"));
                return;
            }
            Ok(meta) if !meta.is_dir() => {
                let message =
                    format!("{NAME} is not a directory (a symbolic link is never followed)");
                self.problem(NAME, "files", message);
                return;
            }
            Ok(_) => {}
        }
        let mut found = Vec::new();
        if let Err(message) = self.walk(dir, NAME, "", None, 0, &mut found) {
            self.problem(NAME, "files", message);
            return;
        }
        for f in &found {
            let top = f.kept.split('/').next().unwrap_or_default();
            if declared.contains(top) {
                let message = format!(
                    "{} would be kept where the declared output `{top}` is; rename it",
                    f.shown
                );
                self.problem(NAME, "files", message);
                return;
            }
        }
        self.read_all(NAME, "files", dir, found);
    }

    /// Walks `dir` (shown as `shown`) without following links. Files are
    /// kept as `<prefix>/<path under dir>`, those matching `pattern` only
    /// when one is given.
    fn walk(
        &mut self,
        dir: &Path,
        shown: &str,
        prefix: &str,
        pattern: Option<&Pattern>,
        depth: usize,
        found: &mut Vec<Found>,
    ) -> Result<(), String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            names.push(entry.file_name());
        }
        names.sort();
        for os_name in names {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(format!(
                    "more than {MAX_ENTRIES} entries to look through; narrow the path"
                ));
            }
            let Some(name) = os_name.to_str() else {
                let lossy = os_name.to_string_lossy();
                return Err(format!("`{shown}/{lossy}`: file names must be UTF-8"));
            };
            // The repository's own database is never an artifact.
            if depth == 0 && name == ".git" && pattern.is_some_and(|p| p.base.is_empty()) {
                continue;
            }
            let path = dir.join(name);
            let shown_path = join(shown, name);
            let kept = join(prefix, name);
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot read `{shown_path}`: {e}"))?;
            let kind = meta.file_type();
            let matched = pattern.is_none_or(|p| p.matcher.is_match(&shown_path));
            if kind.is_symlink() {
                if matched {
                    return Err(format!(
                        "`{shown_path}` is a symbolic link; file artifacts must be regular files and links are never followed"
                    ));
                }
            } else if kind.is_dir() {
                if pattern.is_some_and(|p| p.depth.is_some_and(|d| depth + 1 >= d)) {
                    continue;
                }
                self.walk(&path, &shown_path, &kept, pattern, depth + 1, found)?;
            } else if !matched {
            } else if kind.is_file() {
                let kept = match pattern {
                    Some(p) => strip_base(&shown_path, p.base).to_string(),
                    None => kept,
                };
                found.push(Found {
                    disk: path,
                    shown: shown_path,
                    kept,
                });
            } else {
                return Err(format!(
                    "`{shown_path}` is not a regular file (a FIFO, socket or device); file artifacts must be regular files"
                ));
            }
        }
        Ok(())
    }

    /// Reads the files found for one output (under `base`), within the phase's cap.
    fn read_all(&mut self, artifact: &str, kind: &str, base: &Path, found: Vec<Found>) {
        for f in found {
            if self.over {
                return;
            }
            let kept = if artifact.starts_with('$') {
                f.kept.trim_start_matches('/').to_string()
            } else {
                format!("{artifact}/{}", f.kept.trim_start_matches('/'))
            };
            let rel = f.disk.strip_prefix(base).unwrap_or(&f.disk);
            match read_capped(base, rel, self.max - self.total.min(self.max)) {
                Ok(Ok(bytes)) => {
                    self.total += bytes.len() as u64;
                    self.files.push(OutputFile { path: kept, bytes });
                }
                Ok(Err(size)) => {
                    self.over = true;
                    let message = format!(
                        "too large: `{}` ({size} bytes) takes the phase's file artifacts over the limit of {} bytes (max_files_bytes)",
                        f.shown, self.max
                    );
                    self.problem(artifact, kind, message);
                }
                Err(e) => {
                    let message = format!("cannot read `{}`: {e}", f.shown);
                    self.problem(artifact, kind, message);
                }
            }
        }
    }
}

/// A glob and the literal directory it starts in.
struct Pattern<'a> {
    matcher: &'a GlobMatcher,
    base: &'a str,
    /// How many directory levels below `base` can match (none: `**`, any).
    depth: Option<usize>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn strip_base<'a>(path: &'a str, base: &str) -> &'a str {
    if base.is_empty() {
        path
    } else {
        path.strip_prefix(base)
            .map_or(path, |rest| rest.trim_start_matches('/'))
    }
}

/// The leading components of a glob that hold no pattern characters: the
/// directory its matches are under (`dist/*.whl` → `dist`; `a.txt` → ``).
fn glob_base(glob: &str) -> String {
    let components: Vec<&str> = glob.split('/').collect();
    let literal = components
        .iter()
        .take(components.len().saturating_sub(1))
        .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']))
        .copied()
        .collect::<Vec<_>>();
    literal.join("/")
}

/// `root/rel` when every component is a real directory; none when a
/// component is missing; an error when one is a link or not a directory.
fn literal_dir(root: &Path, rel: &str) -> Result<Option<PathBuf>, String> {
    let mut path = root.to_path_buf();
    let mut shown = String::new();
    for component in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        path.push(component);
        shown = join(&shown, component);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read `{shown}`: {e}")),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "`{shown}` is a symbolic link; file artifacts must be regular files and links are never followed"
                ));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("`{shown}` is not a directory"));
            }
            Ok(_) => {}
        }
    }
    Ok(Some(path))
}

/// Reads the regular file `base/rel` of at most `room` bytes; `Err(size)`
/// when it has more. Every component below `base` is opened without
/// following a link (`openat` with `O_NOFOLLOW`), so a link swapped in
/// since the walk, even for a directory on the way, is refused; the last
/// one without blocking on a FIFO, and its type is checked on the handle.
fn read_capped(base: &Path, rel: &Path, room: u64) -> io::Result<Result<Vec<u8>, u64>> {
    use rustix::fs::{Mode, OFlags, openat};
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(io::Error::other("not a regular file"));
    };
    let mut dir = rustix::fs::open(
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for part in dirs {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = openat(&dir, *part, flags, Mode::empty())?;
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = fs::File::from(openat(&dir, *last, flags, Mode::empty())?);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > room {
        return Ok(Err(meta.len()));
    }
    // It may still be growing: the read is capped as well.
    let mut bytes = Vec::new();
    file.take(room.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > room {
        return Ok(Err(bytes.len() as u64));
    }
    Ok(Ok(bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use tempfile::TempDir;

    use super::*;

    fn decl(file: Option<&str>, dir: Option<&str>) -> FileOutput {
        FileOutput {
            file: file.map(Into::into),
            dir: dir.map(Into::into),
            optional: false,
        }
    }

    fn job(root: &Path, outputs: Vec<(&str, FileOutput)>, max: u64) -> FilesJob {
        FilesJob {
            root: root.to_path_buf(),
            outputs: outputs
                .into_iter()
                .map(|(n, d)| (n.to_string(), d))
                .collect(),
            max_bytes: max,
        }
    }

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn paths(files: &[OutputFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn globs_dirs_and_wfe_out_files_are_kept_under_their_names() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("repo");
        write(&root, "dist/a.whl", b"A");
        write(&root, "dist/b.txt", b"no");
        write(&root, "dist/sub/c.whl", b"deeper: * stays in one directory");
        write(&root, "htmlcov/index.html", b"<html>");
        write(&root, "htmlcov/css/x.css", b"x");
        write(&root, "shots/1/s.png", b"\x89PNG");
        let out = tmp.path().join("out/files");
        write(&out, "notes/n.md", b"# n");
        let job = job(
            &root,
            vec![
                ("wheel", decl(Some("dist/*.whl"), None)),
                ("cov", decl(None, Some("htmlcov"))),
                ("shots", decl(Some("**/*.png"), None)),
            ],
            1000,
        );
        let files = collect(&job, &out).unwrap();
        assert_eq!(
            paths(&files),
            [
                "cov/css/x.css",
                "cov/index.html",
                "notes/n.md",
                "shots/shots/1/s.png",
                "wheel/a.whl"
            ]
        );
        assert_eq!(files[4].bytes, b"A");
    }

    #[test]
    fn nothing_matching_fails_unless_optional() {
        let tmp = TempDir::new().unwrap();
        let missing = collect(
            &job(tmp.path(), vec![("w", decl(Some("dist/*.whl"), None))], 10),
            &tmp.path().join("none"),
        )
        .unwrap_err();
        assert_eq!(missing[0].message, "missing: no file matches `dist/*.whl`");
        let mut optional = decl(None, Some("htmlcov"));
        optional.optional = true;
        let none = collect(&job(tmp.path(), vec![("c", optional)], 10), tmp.path()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn links_and_fifos_are_refused_and_never_followed() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("repo");
        write(&tmp.path().join("outside"), "secret.txt", b"s");
        write(&root, "dist/ok.txt", b"ok");
        symlink(
            tmp.path().join("outside/secret.txt"),
            root.join("dist/leak.txt"),
        )
        .unwrap();
        symlink(tmp.path().join("outside"), root.join("linked")).unwrap();
        let none = tmp.path().join("none");
        let err = collect(
            &job(&root, vec![("d", decl(Some("dist/*.txt"), None))], 99),
            &none,
        )
        .unwrap_err();
        assert!(
            err[0]
                .message
                .contains("`dist/leak.txt` is a symbolic link"),
            "{err:?}"
        );
        let err = collect(
            &job(&root, vec![("d", decl(None, Some("linked")))], 99),
            &none,
        )
        .unwrap_err();
        assert!(
            err[0].message.contains("`linked` is a symbolic link"),
            "{err:?}"
        );
        let err = collect(
            &job(&root, vec![("d", decl(Some("linked/*"), None))], 99),
            &none,
        )
        .unwrap_err();
        assert!(
            err[0].message.contains("`linked` is a symbolic link"),
            "{err:?}"
        );
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("dist/pipe.txt"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        fs::remove_file(root.join("dist/leak.txt")).unwrap();
        let err = collect(
            &job(&root, vec![("d", decl(Some("dist/*.txt"), None))], 99),
            &none,
        )
        .unwrap_err();
        assert!(err[0].message.contains("not a regular file"), "{err:?}");
    }

    #[test]
    fn reading_never_follows_a_link_swapped_in_on_the_way() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "outside/d/f.txt", b"secret");
        write(tmp.path(), "root/real/f.txt", b"ok");
        let root = tmp.path().join("root");
        let read = |rel: &str| read_capped(&root, Path::new(rel), 100);
        assert_eq!(read("real/f.txt").unwrap().unwrap(), b"ok");
        symlink(tmp.path().join("outside/d"), root.join("swapped")).unwrap();
        assert!(
            read("swapped/f.txt").is_err(),
            "a linked directory on the way"
        );
        symlink(tmp.path().join("outside/d/f.txt"), root.join("real/l.txt")).unwrap();
        assert!(read("real/l.txt").is_err(), "a linked file");
        assert_eq!(read("real/f.txt").unwrap(), Ok(b"ok".to_vec()));
        assert_eq!(
            read_capped(&root, Path::new("real/f.txt"), 1).unwrap(),
            Err(2)
        );
    }

    #[test]
    fn the_file_that_crosses_the_cap_is_named_with_the_limit() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "d/a", &[1; 6]);
        write(tmp.path(), "d/b", &[2; 6]);
        let err = collect(
            &job(tmp.path(), vec![("d", decl(None, Some("d")))], 10),
            &tmp.path().join("x"),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].message,
            "too large: `d/b` (6 bytes) takes the phase's file artifacts over the limit of 10 bytes (max_files_bytes)"
        );
    }

    #[test]
    fn wfe_out_files_may_not_shadow_a_declared_output() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "d/a", b"a");
        let out = tmp.path().join("out");
        write(&out, "d/b", b"b");
        let err = collect(
            &job(tmp.path(), vec![("d", decl(None, Some("d")))], 10),
            &out,
        )
        .unwrap_err();
        assert!(err[0].message.contains("declared output `d`"), "{err:?}");
    }

    #[test]
    fn the_base_of_a_glob_is_its_literal_directories() {
        assert_eq!(glob_base("dist/*.whl"), "dist");
        assert_eq!(glob_base("a/b/c.txt"), "a/b");
        assert_eq!(glob_base("a.txt"), "");
        assert_eq!(glob_base("**/*.png"), "");
        assert_eq!(glob_base("x/{a,b}/y"), "x");
    }
}
