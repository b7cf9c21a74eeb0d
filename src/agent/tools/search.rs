//! `glob` and `grep`: finding files and lines in the working tree.
//!
//! Both walk with `ignore` (ripgrep's walker), so `.gitignore`d files are
//! skipped as the user's own tools would skip them, and neither enters
//! `.git`. The walk starts at a path the fence resolved and never follows
//! symlinks, so nothing outside the tree is listed or read.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};
use ignore::WalkBuilder;
use regex::RegexBuilder;
use serde_json::{Value, json};

use super::clip::floor_boundary;
use super::fence::{Fence, shown};
use super::input::Args;
use super::{Output, ToolResult, Toolbox, blocking, keep_items, spec};
use crate::provider::ToolSpec;

/// Files larger than this are not searched by `grep` (generated data,
/// bundles); their lines would not fit the output anyway.
const MAX_GREP_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Longest line text `grep` shows; the rest of a longer line is cut.
const MAX_GREP_LINE_BYTES: usize = 400;

/// Largest compiled regex: a pattern the model writes must not eat memory.
const REGEX_SIZE_LIMIT: usize = 10 * 1024 * 1024;

/// The characters that make a glob component a pattern rather than a name.
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

pub(super) fn glob_spec() -> ToolSpec {
    spec(
        "glob",
        "Find files in the working tree whose path (relative to the root) matches a \
         glob, e.g. `src/**/*.rs` or `*.toml`. `*` and `?` do not match `/`; `**` matches \
         any number of directories. Files ignored by .gitignore and the .git directory \
         are skipped. Returns the matching file paths, sorted.",
        json!({
            "pattern": {"type": "string", "description": "The glob, relative to the working tree's root."},
        }),
        &["pattern"],
    )
}

pub(super) fn grep_spec() -> ToolSpec {
    spec(
        "grep",
        "Search the working tree's text files for lines matching a regular expression \
         (Rust regex syntax). Returns `path:line:text` for each matching line, files in \
         path order. Files ignored by .gitignore, binary files and .git are skipped.",
        json!({
            "pattern": {"type": "string", "description": "The regular expression to look for in each line."},
            "path": {"type": "string", "description": "A file or directory to search, relative to the working tree's root. Default: the root."},
            "glob": {"type": "string", "description": "Only search files matching this glob: matched against the file name when it has no `/` (e.g. `*.rs`), else against the path from the root (e.g. `src/**/*.rs`)."},
        }),
        &["pattern"],
    )
}

/// `glob {pattern}` → `{matches, total}`, plus `note` when matches were
/// left out.
pub(super) async fn glob(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["pattern"])?;
    let pattern = args.string("pattern")?.to_string();
    let (root, cap) = (tb.root.clone(), tb.output_cap);
    blocking(move || {
        let fence = Fence::new(&root)?;
        let (base, matcher) = glob_matcher(&fence, &pattern)?;
        let mut matches = Vec::new();
        walk(&fence, &base, |rel| {
            if matcher.is_match(rel) {
                matches.push(shown(rel));
            }
        });
        matches.sort();
        let total = matches.len();
        let (matches, left_out) = keep_items(matches, cap);
        let mut value = json!({"matches": matches, "total": total});
        if left_out > 0 {
            value["note"] = json!(format!(
                "{left_out} more matches left out to fit the output cap; narrow the pattern"
            ));
        }
        Ok(Output::new(value, left_out > 0))
    })
    .await
}

/// Where to walk for `pattern` and the matcher for the paths found.
///
/// The pattern's leading literal directories (`src/agent` in
/// `src/agent/**/*.rs`) go through the fence like any path, so `../*`,
/// `/etc/*` and `symlink_to_outside/*` are refused rather than just
/// matching nothing, and the walk starts no higher than it must.
fn glob_matcher(fence: &Fence, pattern: &str) -> Result<(std::path::PathBuf, GlobMatcher), String> {
    if pattern.is_empty() {
        return Err("field `pattern` is empty".into());
    }
    let parts: Vec<&str> = pattern.split('/').collect();
    if parts.contains(&"..") {
        return Err(format!(
            "pattern `{pattern}` is outside the repository's working tree: `..` cannot be used in a glob"
        ));
    }
    let literal = parts.iter().take_while(|p| !p.contains(GLOB_META)).count();
    // A wholly literal pattern names one file: walk from its directory.
    let literal = if literal == parts.len() {
        literal - 1
    } else {
        literal
    };
    let base = match parts[..literal].join("/") {
        b if b.is_empty() && pattern.starts_with('/') => "/".to_string(),
        b if b.is_empty() => ".".to_string(),
        b => b,
    };
    let target = fence.resolve(&base).map_err(|e| {
        e.replacen(
            &format!("path `{base}`"),
            &format!("pattern `{pattern}`"),
            1,
        )
    })?;
    // The rest is matched against paths from the root, so the base is
    // spelled as the fence resolved it, escaped in case its name holds
    // glob characters.
    let rest = parts[literal..].join("/");
    let full = if target.rel.as_os_str().is_empty() {
        rest
    } else {
        format!("{}/{rest}", globset::escape(&target.rel.to_string_lossy()))
    };
    let matcher = GlobBuilder::new(&full)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("pattern `{pattern}` is not a valid glob: {}", e.kind()))?
        .compile_matcher();
    Ok((target.abs, matcher))
}

/// `grep {pattern, path?, glob?}` → `{matches, total}` where each match is
/// `path:line:text`, plus `note` when matches were left out.
pub(super) async fn grep(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["pattern", "path", "glob"])?;
    let pattern = args.string("pattern")?;
    let path = args.opt_string("path")?.unwrap_or(".").to_string();
    let glob = args.opt_string("glob")?;
    let regex = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("field `pattern` is not a valid regular expression: {e}"))?;
    let filter = glob
        .map(|g| {
            let matcher = GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("field `glob` is not a valid glob: {}", e.kind()))?
                .compile_matcher();
            Ok::<_, String>((matcher, g.contains('/')))
        })
        .transpose()?;
    let (root, cap) = (tb.root.clone(), tb.output_cap);
    blocking(move || {
        let fence = Fence::new(&root)?;
        let target = fence.resolve(&path)?;
        if !target.abs.exists() {
            return Err(format!("`{}` does not exist", target.shown()).into());
        }
        let mut matches = Vec::new();
        let mut total = 0;
        let mut used = 0;
        walk(&fence, &target.abs, |rel| {
            if let Some((matcher, by_path)) = &filter {
                let subject = if *by_path {
                    rel
                } else {
                    Path::new(rel.file_name().unwrap_or_default())
                };
                if !matcher.is_match(subject) {
                    return;
                }
            }
            let Some(text) = read_searchable(&fence.root().join(rel)) else {
                return;
            };
            let name = shown(rel);
            for (i, line) in text.lines().enumerate() {
                if !regex.is_match(line) {
                    continue;
                }
                total += 1;
                // Past the cap, matches are only counted, for the note.
                if used <= cap {
                    let entry = format!("{name}:{}:{}", i + 1, cut_line(line));
                    used += entry.len() + 3;
                    matches.push(entry);
                }
            }
        });
        let (matches, _) = keep_items(matches, cap);
        let left_out = total - matches.len();
        let mut value = json!({"matches": matches, "total": total});
        if left_out > 0 {
            value["note"] = json!(format!(
                "{left_out} more matching lines left out to fit the output cap; narrow the pattern, path or glob"
            ));
        }
        Ok(Output::new(value, left_out > 0))
    })
    .await
}

/// Calls `visit` with the path (relative to the root) of every file and
/// symlink under `base` that git would not ignore, skipping `.git`.
/// Unreadable directories are skipped: a search reports what it can see.
fn walk(fence: &Fence, base: &Path, mut visit: impl FnMut(&Path)) {
    let walker = WalkBuilder::new(base)
        .hidden(false)
        // Honour .gitignore even where the tree is not (yet) a repository.
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| entry.file_name() != ".git")
        .build();
    for entry in walker.flatten() {
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(rel) = fence.relative(entry.path()) {
            visit(rel);
        }
    }
}

/// The text of a regular file worth searching: not too large, not binary
/// (a NUL byte); invalid UTF-8 is replaced rather than skipped, as ripgrep
/// does. `None` for anything else, symlinks included (never followed).
fn read_searchable(path: &Path) -> Option<String> {
    let meta = path.symlink_metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_GREP_FILE_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `line` cut to [`MAX_GREP_LINE_BYTES`], saying so.
fn cut_line(line: &str) -> String {
    if line.len() <= MAX_GREP_LINE_BYTES {
        return line.to_string();
    }
    let end = floor_boundary(line, MAX_GREP_LINE_BYTES);
    format!("{}[… {} more bytes]", &line[..end], line.len() - end)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use serde_json::json;

    use super::super::test_support::{Repo, err, ok};
    use super::*;

    fn toolbox(repo: &Repo) -> Toolbox {
        Toolbox::new(repo.root(), &["glob".into(), "grep".into()])
    }

    /// `src/{a.rs,b.rs,sub/c.rs}`, `README.md`, an ignored `target/` and
    /// `notes.log`, a `.github/` dir and a `.git/` with a `.rs` file in it.
    fn sample() -> Repo {
        let repo = Repo::new();
        repo.write(".gitignore", "target/\n*.log\n");
        repo.write("src/a.rs", "fn main() {\n    helper();\n}\n");
        repo.write("src/b.rs", "fn helper() {}\n// TODO: more\n");
        repo.write("src/sub/c.rs", "// TODO: c\n");
        repo.write("README.md", "# TODO list\n");
        repo.write("target/gen.rs", "// TODO: generated\n");
        repo.write("notes.log", "TODO log\n");
        repo.write(".github/ci.yml", "# TODO ci\n");
        repo.write(".git/hooks/x.rs", "// TODO: git\n");
        std::fs::write(repo.path("src/blob.bin"), b"TODO\x00binary").unwrap();
        repo
    }

    async fn glob_matches(tb: &Toolbox, pattern: &str) -> Value {
        ok(tb.call("glob", &json!({ "pattern": pattern })).await)["matches"].clone()
    }

    #[tokio::test]
    async fn glob_matches_paths_from_the_root() {
        let repo = sample();
        let tb = toolbox(&repo);
        let cases = [
            ("**/*.rs", json!(["src/a.rs", "src/b.rs", "src/sub/c.rs"])),
            ("src/*.rs", json!(["src/a.rs", "src/b.rs"])),
            (
                "src/**",
                json!(["src/a.rs", "src/b.rs", "src/blob.bin", "src/sub/c.rs"]),
            ),
            ("*.md", json!(["README.md"])),
            ("./src/sub/*", json!(["src/sub/c.rs"])),
            ("src/a.rs", json!(["src/a.rs"])),
            ("**/*.yml", json!([".github/ci.yml"])),
            // Ignored unless named: walking from `target` searches it, as
            // `rg PATTERN target` would.
            ("target/**/*.rs", json!(["target/gen.rs"])),
            ("*.log", json!([])),
            ("nowhere/*", json!([])),
        ];
        for (pattern, expected) in cases {
            assert_eq!(glob_matches(&tb, pattern).await, expected, "{pattern}");
        }
        let abs = format!("{}/src/*.rs", repo.root().display());
        assert_eq!(
            glob_matches(&tb, &abs).await,
            json!(["src/a.rs", "src/b.rs"])
        );
        let out = ok(tb.call("glob", &json!({"pattern": "**/*.rs"})).await);
        assert_eq!(out["total"], 3);
        assert_eq!(
            err(tb.call("glob", &json!({"pattern": "src/[a"})).await),
            "pattern `src/[a` is not a valid glob: unclosed character class; missing ']'"
        );
    }

    #[tokio::test]
    async fn glob_caps_its_output() {
        let repo = sample();
        let tb = toolbox(&repo).with_limits(20, Duration::from_secs(5));
        let out = tb.call("glob", &json!({"pattern": "**/*.rs"})).await;
        assert!(out.truncated);
        let out = ok(out);
        assert_eq!(out["matches"], json!(["src/a.rs"]));
        assert_eq!(out["total"], 3);
        assert_eq!(
            out["note"],
            "2 more matches left out to fit the output cap; narrow the pattern"
        );
    }

    #[tokio::test]
    async fn grep_finds_lines_in_text_files() {
        let repo = sample();
        let tb = toolbox(&repo);
        let out = ok(tb.call("grep", &json!({"pattern": "TODO"})).await);
        assert_eq!(
            out,
            json!({"matches": [
                ".github/ci.yml:1:# TODO ci",
                "README.md:1:# TODO list",
                "src/b.rs:2:// TODO: more",
                "src/sub/c.rs:1:// TODO: c",
            ], "total": 4})
        );
        let out = ok(tb
            .call("grep", &json!({"pattern": r"^\s+help", "path": "src"}))
            .await);
        assert_eq!(out["matches"], json!(["src/a.rs:2:    helper();"]));
        let out = ok(tb
            .call("grep", &json!({"pattern": "TODO", "glob": "*.rs"}))
            .await);
        assert_eq!(
            out["matches"],
            json!(["src/b.rs:2:// TODO: more", "src/sub/c.rs:1:// TODO: c"])
        );
        let out = ok(tb
            .call("grep", &json!({"pattern": "TODO", "glob": "src/*.rs"}))
            .await);
        assert_eq!(out["matches"], json!(["src/b.rs:2:// TODO: more"]));
        // An explicit file is searched even when ignored.
        let out = ok(tb
            .call("grep", &json!({"pattern": "TODO", "path": "notes.log"}))
            .await);
        assert_eq!(out["matches"], json!(["notes.log:1:TODO log"]));
        assert_eq!(
            err(tb.call("grep", &json!({"pattern": "("})).await)
                .lines()
                .next(),
            Some("field `pattern` is not a valid regular expression: regex parse error:")
        );
        assert_eq!(
            err(tb
                .call("grep", &json!({"pattern": "x", "path": "nope"}))
                .await),
            "`nope` does not exist"
        );
    }

    #[tokio::test]
    async fn grep_caps_its_output_and_long_lines() {
        let repo = Repo::new();
        let text: String = (1..=50).map(|i| format!("match {i}\n")).collect();
        repo.write("many.txt", &text);
        repo.write("wide.txt", &format!("match {}\n", "x".repeat(1000)));
        let tb = toolbox(&repo).with_limits(60, Duration::from_secs(5));
        let out = tb.call("grep", &json!({"pattern": "match"})).await;
        assert!(out.truncated);
        let out = ok(out);
        assert_eq!(
            out["matches"],
            json!(["many.txt:1:match 1", "many.txt:2:match 2"])
        );
        assert_eq!(out["total"], 51);
        assert_eq!(
            out["note"],
            "49 more matching lines left out to fit the output cap; narrow the pattern, path or glob"
        );

        let out = ok(toolbox(&repo)
            .call("grep", &json!({"pattern": "match", "path": "wide.txt"}))
            .await);
        let line = out["matches"][0].as_str().unwrap();
        assert!(line.ends_with("xxx[… 606 more bytes]"), "{line}");
    }

    /// `..`, absolute paths and symlinks out of the tree are refused as
    /// `path`, as a pattern's base, and are never followed by a walk.
    #[tokio::test]
    async fn search_does_not_leave_the_tree() {
        let repo = sample();
        symlink(repo.outside(""), repo.path("dir_link")).unwrap();
        symlink(repo.outside("secret"), repo.path("src/file_link")).unwrap();
        let tb = toolbox(&repo);
        let outside = repo.outside("").display().to_string();
        let outside = outside.trim_end_matches('/');
        let refused_globs = [
            (
                "../outside/*",
                "is outside the repository's working tree: `..` cannot be used in a glob",
            ),
            (
                "src/../../*",
                "is outside the repository's working tree: `..` cannot be used in a glob",
            ),
            (
                &format!("{outside}/*"),
                "is outside the repository's working tree",
            ),
            ("/*", "is outside the repository's working tree"),
            (
                "dir_link/*",
                "leads outside the repository's working tree through a symlink",
            ),
            (
                "dir_link/**/*",
                "leads outside the repository's working tree through a symlink",
            ),
            (".git/**", "is inside `.git/`, which tools may not touch"),
        ];
        for (pattern, expected) in refused_globs {
            let message = err(tb.call("glob", &json!({ "pattern": pattern })).await);
            assert_eq!(
                message,
                format!("pattern `{pattern}` {expected}"),
                "{pattern}"
            );
        }
        let refused_paths = [
            ("..", "is outside the repository's working tree"),
            ("../outside", "is outside the repository's working tree"),
            (outside, "is outside the repository's working tree"),
            (
                "dir_link",
                "leads outside the repository's working tree through a symlink",
            ),
            (
                "src/file_link",
                "leads outside the repository's working tree through a symlink",
            ),
            (".git", "is inside `.git/`, which tools may not touch"),
        ];
        for (path, expected) in refused_paths {
            let message = err(tb
                .call("grep", &json!({"pattern": "secret", "path": path}))
                .await);
            assert_eq!(message, format!("path `{path}` {expected}"), "{path}");
        }
        // Walking the whole tree lists the symlinks but reads nothing through them.
        let out = ok(tb.call("grep", &json!({"pattern": "secret"})).await);
        assert_eq!(out["total"], 0);
        assert_eq!(
            glob_matches(&tb, "**/*link*").await,
            json!(["dir_link", "src/file_link"])
        );
        assert_eq!(glob_matches(&tb, "**/secret").await, json!([]));
    }
}
