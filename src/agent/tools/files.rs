//! `read_file`, `write_file`, `edit_file` and `list_dir`: text files and
//! directories inside the fence.
//!
//! Every path goes through [`Fence::resolve`] first and the resolved path
//! is what gets opened. Only UTF-8 text is read or edited: a binary file
//! would be garbage to the model and an edit would corrupt it.

use std::io;
use std::path::Path;

use serde_json::{Value, json};

use super::clip::floor_boundary;
use super::fence::{Fence, Target};
use super::input::Args;
use super::{Output, ToolResult, Toolbox, blocking, keep_items, spec};
use crate::provider::ToolSpec;

/// The largest file `read_file` and `edit_file` load.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

pub(super) fn read_file_spec() -> ToolSpec {
    spec(
        "read_file",
        "Read a UTF-8 text file of the repository's working tree. Returns the text \
         (exactly as in the file, no line numbers), the range of lines returned and the \
         file's total line count. Long files are cut at the output cap with a note \
         saying where to continue. Binary files are refused.",
        json!({
            "path": {"type": "string", "description": "Path of the file, relative to the working tree's root."},
            "start_line": {"type": "integer", "minimum": 1, "description": "First line to return, from 1. Default 1."},
            "end_line": {"type": "integer", "minimum": 1, "description": "Last line to return, inclusive. Default: the last line."},
        }),
        &["path"],
    )
}

pub(super) fn write_file_spec() -> ToolSpec {
    spec(
        "write_file",
        "Create or overwrite a file in the repository's working tree with the given \
         content; missing parent directories are created. Returns the number of bytes \
         written. To change part of a file, prefer edit_file.",
        json!({
            "path": {"type": "string", "description": "Path of the file, relative to the working tree's root."},
            "content": {"type": "string", "description": "The file's entire new content."},
        }),
        &["path", "content"],
    )
}

pub(super) fn edit_file_spec() -> ToolSpec {
    spec(
        "edit_file",
        "Replace one exact occurrence of a string in a text file of the working tree. \
         `old` must occur exactly once (whitespace and indentation included); if it \
         occurs several times, include more surrounding text to make it unique.",
        json!({
            "path": {"type": "string", "description": "Path of the file, relative to the working tree's root."},
            "old": {"type": "string", "description": "The exact text to replace; must occur exactly once."},
            "new": {"type": "string", "description": "The text to put in its place."},
        }),
        &["path", "old", "new"],
    )
}

pub(super) fn list_dir_spec() -> ToolSpec {
    spec(
        "list_dir",
        "List a directory of the working tree, sorted by name. Directories end with `/`, \
         symlinks with `@`. `.git` is not listed.",
        json!({
            "path": {"type": "string", "description": "Path of the directory, relative to the working tree's root. Default: the root."},
        }),
        &[],
    )
}

/// `read_file {path, start_line?, end_line?}` →
/// `{path, content, start_line, end_line, total_lines}`.
pub(super) async fn read_file(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["path", "start_line", "end_line"])?;
    let path = args.string("path")?.to_string();
    let start = args.opt_integer("start_line", 1)?;
    let end = args.opt_integer("end_line", 1)?;
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(format!("`end_line` ({end}) is before `start_line` ({start})").into());
    }
    let (root, cap) = (tb.root.clone(), tb.output_cap);
    blocking(move || {
        let target = Fence::new(&root)?.resolve(&path)?;
        let text = read_text(&target, "read_file")?;
        Ok(select_lines(&target, &text, start, end, cap)?)
    })
    .await
}

/// The lines `start..=end` of `text`, cut at the cap on a line boundary
/// when possible.
fn select_lines(
    target: &Target,
    text: &str,
    start: Option<u64>,
    end: Option<u64>,
    cap: usize,
) -> Result<Output, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let total = lines.len();
    let start = usize::try_from(start.unwrap_or(1)).unwrap_or(usize::MAX);
    if start > total.max(1) {
        return Err(format!(
            "`start_line` ({start}) is past the end of `{}`, which has {total} lines",
            target.shown()
        ));
    }
    let end = end
        .and_then(|e| usize::try_from(e).ok())
        .unwrap_or(total)
        .min(total);
    let wanted = lines.get(start - 1..end).unwrap_or_default();

    let mut content = String::new();
    let mut shown = 0;
    for line in wanted {
        if content.len() + line.len() > cap {
            break;
        }
        content.push_str(line);
        shown += 1;
    }
    let truncated = shown < wanted.len();
    let mut last = start + shown - 1;
    if truncated {
        let left: usize = wanted[shown..].iter().map(|l| l.len()).sum();
        if shown == 0 {
            // One line longer than the cap: show its start.
            let line = wanted[0];
            let cut = floor_boundary(line, cap);
            content.push_str(&line[..cut]);
            content.push_str(&format!(
                "\n[… line {start} is too long to show whole: {} more bytes of it and {} bytes after it left out; \
                 use bash (e.g. `cut -c`) to read it]",
                line.len() - cut,
                left - line.len()
            ));
            last = start;
        } else {
            content.push_str(&format!(
                "[… output cap reached: lines {}–{end} ({left} bytes) left out; \
                 call read_file with start_line={} to read on]",
                last + 1,
                last + 1
            ));
        }
    }
    Ok(Output::new(
        json!({
            "path": target.shown(),
            "content": content,
            "start_line": start,
            "end_line": last,
            "total_lines": total,
        }),
        truncated,
    ))
}

/// `write_file {path, content}` → `{path, bytes_written, created}`.
pub(super) async fn write_file(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["path", "content"])?;
    let path = args.string("path")?.to_string();
    let content = args.string("content")?.to_string();
    let root = tb.root.clone();
    blocking(move || {
        let target = Fence::new(&root)?.resolve(&path)?;
        let shown = target.shown();
        let created = match target.abs.metadata() {
            Ok(meta) if meta.is_dir() => {
                return Err(format!("`{shown}` is a directory").into());
            }
            // A FIFO or device would block the write or go somewhere else.
            Ok(meta) if !meta.is_file() => {
                return Err(format!("`{shown}` is not a regular file").into());
            }
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(format!("cannot write `{shown}`: {e}").into()),
        };
        if let Some(parent) = target.abs.parent() {
            // Every missing parent is under the fence's checked prefix.
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create the directories of `{shown}`: {e}"))?;
        }
        std::fs::write(&target.abs, &content)
            .map_err(|e| format!("cannot write `{shown}`: {e}"))?;
        Ok(Output::new(
            json!({"path": shown, "bytes_written": content.len(), "created": created}),
            false,
        ))
    })
    .await
}

/// `edit_file {path, old, new}` → `{path, line, bytes_written}`, where
/// `line` is the line the replacement starts on.
pub(super) async fn edit_file(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["path", "old", "new"])?;
    let path = args.string("path")?.to_string();
    let old = args.string("old")?.to_string();
    let new = args.string("new")?.to_string();
    if old.is_empty() {
        return Err("field `old` is empty; give the exact text to replace".into());
    }
    let root = tb.root.clone();
    blocking(move || {
        let target = Fence::new(&root)?.resolve(&path)?;
        let shown = target.shown();
        let text = read_text(&target, "edit_file")?;
        let mut found = text.match_indices(&old);
        let Some((at, _)) = found.next() else {
            return Err(format!("`old` was not found in `{shown}`; it must match the file exactly, whitespace included").into());
        };
        let count = 1 + found.count();
        if count > 1 {
            return Err(format!(
                "`old` was found {count} times in `{shown}`; include more surrounding text so it occurs exactly once"
            )
            .into());
        }
        let edited = format!("{}{new}{}", &text[..at], &text[at + old.len()..]);
        std::fs::write(&target.abs, &edited)
            .map_err(|e| format!("cannot write `{shown}`: {e}"))?;
        let line = text[..at].matches('\n').count() + 1;
        Ok(Output::new(
            json!({"path": shown, "line": line, "bytes_written": edited.len()}),
            false,
        ))
    })
    .await
}

/// `list_dir {path?}` → `{path, entries, total}`, plus `note` when entries
/// were left out.
pub(super) async fn list_dir(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["path"])?;
    let path = args.opt_string("path")?.unwrap_or(".").to_string();
    let (root, cap) = (tb.root.clone(), tb.output_cap);
    blocking(move || {
        let target = Fence::new(&root)?.resolve(&path)?;
        let shown = target.shown();
        let entries = read_dir(&target.abs).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("`{shown}` does not exist"),
            io::ErrorKind::NotADirectory => format!("`{shown}` is not a directory; use read_file"),
            _ => format!("cannot list `{shown}`: {e}"),
        })?;
        let total = entries.len();
        let (entries, left_out) = keep_items(entries, cap);
        let mut value = json!({"path": shown, "entries": entries, "total": total});
        if left_out > 0 {
            value["note"] = json!(format!(
                "{left_out} more entries left out to fit the output cap; use glob to narrow down"
            ));
        }
        Ok(Output::new(value, left_out > 0))
    })
    .await
}

/// The entries of `dir` but `.git`, sorted, marked `ls -F` style.
fn read_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        // Not followed: a symlink is shown as one, wherever it leads.
        let kind = entry.file_type()?;
        let mark = if kind.is_dir() {
            "/"
        } else if kind.is_symlink() {
            "@"
        } else {
            ""
        };
        entries.push(format!("{name}{mark}"));
    }
    entries.sort();
    Ok(entries)
}

/// The content of the text file at `target`, refusing directories, files
/// over [`MAX_FILE_BYTES`] and anything that is not UTF-8 text.
fn read_text(target: &Target, tool: &str) -> Result<String, String> {
    let shown = target.shown();
    let meta = target.abs.metadata().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("`{shown}` does not exist"),
        _ => format!("cannot read `{shown}`: {e}"),
    })?;
    if meta.is_dir() {
        return Err(format!("`{shown}` is a directory; use list_dir"));
    }
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "`{shown}` has {} bytes; {tool} handles files up to {MAX_FILE_BYTES} bytes, use bash for larger ones",
            meta.len()
        ));
    }
    let bytes = std::fs::read(&target.abs).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if bytes.contains(&0) {
        return Err(format!(
            "`{shown}` looks binary (it contains NUL bytes); {tool} handles text files only"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "`{shown}` is not UTF-8 text (invalid byte at offset {}); {tool} handles text files only",
            e.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use serde_json::json;

    use super::super::test_support::{Repo, err, ok};
    use super::*;

    fn toolbox(repo: &Repo) -> Toolbox {
        let tools = ["read_file", "write_file", "edit_file", "list_dir"].map(String::from);
        Toolbox::new(repo.root(), &tools)
    }

    #[tokio::test]
    async fn read_file_reads_text_and_line_ranges() {
        let repo = Repo::new();
        repo.write("src/a.txt", "one\ntwo\r\nthree\nfour");
        let tb = toolbox(&repo);
        let whole = ok(tb.call("read_file", &json!({"path": "src/a.txt"})).await);
        assert_eq!(
            whole,
            json!({"path": "src/a.txt", "content": "one\ntwo\r\nthree\nfour",
                   "start_line": 1, "end_line": 4, "total_lines": 4})
        );
        let part = ok(tb
            .call(
                "read_file",
                &json!({"path": "./src/a.txt", "start_line": 2, "end_line": 3}),
            )
            .await);
        assert_eq!(part["content"], "two\r\nthree\n");
        assert_eq!(
            (part["start_line"].as_u64(), part["end_line"].as_u64()),
            (Some(2), Some(3))
        );
        let tail = ok(tb
            .call(
                "read_file",
                &json!({"path": "src/a.txt", "start_line": 4, "end_line": 99}),
            )
            .await);
        assert_eq!(tail["content"], "four");
        assert_eq!(tail["end_line"], 4);
        // An absolute path inside the tree is fine.
        let abs = repo.path("src/a.txt");
        let out = ok(tb
            .call("read_file", &json!({"path": abs.to_str().unwrap()}))
            .await);
        assert_eq!(out["path"], "src/a.txt");

        repo.write("empty", "");
        let empty = ok(tb.call("read_file", &json!({"path": "empty"})).await);
        assert_eq!(
            (empty["content"].as_str(), empty["total_lines"].as_u64()),
            (Some(""), Some(0))
        );
    }

    #[tokio::test]
    async fn read_file_refuses_what_it_cannot_show() {
        let repo = Repo::new();
        repo.write("a.txt", "one\ntwo\n");
        std::fs::write(repo.path("bin"), b"\x7fELF\x00\x01").unwrap();
        std::fs::write(repo.path("latin1"), b"caf\xe9\n").unwrap();
        let tb = toolbox(&repo);
        let cases = [
            (
                json!({"path": "a.txt", "start_line": 3}),
                "`start_line` (3) is past the end of `a.txt`, which has 2 lines",
            ),
            (
                json!({"path": "a.txt", "start_line": 2, "end_line": 1}),
                "`end_line` (1) is before `start_line` (2)",
            ),
            (
                json!({"path": "bin"}),
                "`bin` looks binary (it contains NUL bytes); read_file handles text files only",
            ),
            (
                json!({"path": "latin1"}),
                "`latin1` is not UTF-8 text (invalid byte at offset 3); read_file handles text files only",
            ),
            (json!({"path": "missing"}), "`missing` does not exist"),
            (json!({"path": "."}), "`.` is a directory; use list_dir"),
        ];
        for (input, expected) in cases {
            assert_eq!(err(tb.call("read_file", &input).await), expected, "{input}");
        }
    }

    #[tokio::test]
    async fn read_file_cuts_long_output_on_a_line_boundary() {
        let repo = Repo::new();
        let text: String = (1..=100).map(|i| format!("line {i:03}\n")).collect();
        repo.write("long.txt", &text);
        let tb = toolbox(&repo).with_limits(100, Duration::from_secs(5));
        let out = tb.call("read_file", &json!({"path": "long.txt"})).await;
        assert!(out.truncated);
        let value = ok(out);
        // Each line is 9 bytes: 11 fit in 100.
        let content = value["content"].as_str().unwrap();
        assert!(content.starts_with("line 001\n"), "{content}");
        assert!(content.contains("line 011\n[… output cap reached: lines 12–100 (801 bytes) left out; call read_file with start_line=12 to read on]"), "{content}");
        assert_eq!(value["end_line"], 11);

        repo.write("wide.txt", &format!("{}\nnext\n", "é".repeat(100)));
        let out = tb.call("read_file", &json!({"path": "wide.txt"})).await;
        assert!(out.truncated);
        let content = ok(out)["content"].as_str().unwrap().to_string();
        assert!(content.starts_with(&"é".repeat(50)), "{content}");
        assert!(content.contains("line 1 is too long to show whole: 101 more bytes of it and 5 bytes after it left out"), "{content}");
    }

    #[tokio::test]
    async fn write_file_creates_parents_and_overwrites() {
        let repo = Repo::new();
        let tb = toolbox(&repo);
        let out = ok(tb
            .call(
                "write_file",
                &json!({"path": "new/dir/f.txt", "content": "héllo\n"}),
            )
            .await);
        assert_eq!(
            out,
            json!({"path": "new/dir/f.txt", "bytes_written": 7, "created": true})
        );
        assert_eq!(
            std::fs::read_to_string(repo.path("new/dir/f.txt")).unwrap(),
            "héllo\n"
        );
        let out = ok(tb
            .call(
                "write_file",
                &json!({"path": "new/dir/f.txt", "content": ""}),
            )
            .await);
        assert_eq!(out["created"], false);
        assert_eq!(
            std::fs::read_to_string(repo.path("new/dir/f.txt")).unwrap(),
            ""
        );
        assert_eq!(
            err(tb
                .call("write_file", &json!({"path": "new", "content": "x"}))
                .await),
            "`new` is a directory"
        );
        // A FIFO would block the write until a reader came.
        let made = std::process::Command::new("mkfifo")
            .arg(repo.path("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        for tool in ["write_file", "read_file", "edit_file"] {
            let input = json!({"path": "fifo", "content": "x", "old": "a", "new": "b"});
            let mut input = input.as_object().unwrap().clone();
            if tool != "write_file" {
                input.remove("content");
            }
            if tool != "edit_file" {
                input.remove("old");
                input.remove("new");
            }
            assert_eq!(
                err(tb.call(tool, &Value::Object(input)).await),
                "`fifo` is not a regular file",
                "{tool}"
            );
        }
        // A symlink inside the tree is written through, to its target.
        symlink("new/dir/f.txt", repo.path("link")).unwrap();
        let out = ok(tb
            .call("write_file", &json!({"path": "link", "content": "via"}))
            .await);
        assert_eq!(out["path"], "new/dir/f.txt");
        assert_eq!(
            std::fs::read_to_string(repo.path("new/dir/f.txt")).unwrap(),
            "via"
        );
    }

    #[tokio::test]
    async fn edit_file_replaces_exactly_one_occurrence() {
        let repo = Repo::new();
        repo.write("a.rs", "fn a() {}\nfn b() {}\nfn b() {}\n");
        let tb = toolbox(&repo);
        let out = ok(tb
            .call(
                "edit_file",
                &json!({"path": "a.rs", "old": "fn a() {}", "new": "fn a() { b() }"}),
            )
            .await);
        assert_eq!(out, json!({"path": "a.rs", "line": 1, "bytes_written": 35}));
        assert_eq!(
            std::fs::read_to_string(repo.path("a.rs")).unwrap(),
            "fn a() { b() }\nfn b() {}\nfn b() {}\n"
        );
        let before = std::fs::read_to_string(repo.path("a.rs")).unwrap();
        let cases = [
            (
                json!({"path": "a.rs", "old": "fn c", "new": "x"}),
                "`old` was not found in `a.rs`; it must match the file exactly, whitespace included",
            ),
            (
                json!({"path": "a.rs", "old": "fn b() {}", "new": "x"}),
                "`old` was found 2 times in `a.rs`; include more surrounding text so it occurs exactly once",
            ),
            (
                json!({"path": "a.rs", "old": "", "new": "x"}),
                "field `old` is empty; give the exact text to replace",
            ),
            (
                json!({"path": "nope.rs", "old": "a", "new": "x"}),
                "`nope.rs` does not exist",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(err(tb.call("edit_file", &input).await), expected, "{input}");
        }
        assert_eq!(std::fs::read_to_string(repo.path("a.rs")).unwrap(), before);
        let out = ok(tb
            .call(
                "edit_file",
                &json!({"path": "a.rs", "old": "}\nfn b() {}\nfn b", "new": "}\nfn c"}),
            )
            .await);
        assert_eq!(out["line"], 1);
        assert_eq!(
            std::fs::read_to_string(repo.path("a.rs")).unwrap(),
            "fn a() { b() }\nfn c() {}\n"
        );
    }

    #[tokio::test]
    async fn list_dir_lists_sorted_and_marks_kinds() {
        let repo = Repo::new();
        repo.write("b.txt", "");
        repo.write("a/x.txt", "");
        repo.write(".git/config", "");
        repo.write(".github/ci.yml", "");
        symlink("b.txt", repo.path("c")).unwrap();
        let tb = toolbox(&repo);
        let out = ok(tb.call("list_dir", &json!({})).await);
        assert_eq!(
            out,
            json!({"path": ".", "entries": [".github/", "a/", "b.txt", "c@"], "total": 4})
        );
        let out = ok(tb.call("list_dir", &json!({"path": "a"})).await);
        assert_eq!(out["entries"], json!(["x.txt"]));
        assert_eq!(
            err(tb.call("list_dir", &json!({"path": "b.txt"})).await),
            "`b.txt` is not a directory; use read_file"
        );
        let small = toolbox(&repo).with_limits(12, Duration::from_secs(5));
        let out = small.call("list_dir", &json!({})).await;
        assert!(out.truncated);
        let out = ok(out);
        assert_eq!(out["entries"], json!([".github/"]));
        assert_eq!(out["total"], 4);
        assert_eq!(
            out["note"],
            "3 more entries left out to fit the output cap; use glob to narrow down"
        );
    }

    /// Every file tool, every way out: `..`, an absolute path outside, a
    /// symlinked file and a symlinked directory leading outside, a dangling
    /// symlink whose target is outside. All refused, nothing written outside.
    #[tokio::test]
    async fn no_file_tool_leaves_the_tree() {
        let repo = Repo::new();
        repo.write("a.txt", "a");
        symlink(repo.outside("secret"), repo.path("file_link")).unwrap();
        symlink(repo.outside(""), repo.path("dir_link")).unwrap();
        symlink(repo.outside("created"), repo.path("dangling")).unwrap();
        let tb = toolbox(&repo);
        let abs_secret = repo.outside("secret").to_str().unwrap().to_string();
        let abs_new = repo.outside("new").to_str().unwrap().to_string();
        let escapes = [
            "../outside/secret".to_string(),
            "../outside/new".to_string(),
            "src/../../outside/new".to_string(),
            abs_secret,
            abs_new,
            "file_link".to_string(),
            "dir_link/secret".to_string(),
            "dir_link/new".to_string(),
            "dir_link/sub/new".to_string(),
            "dangling".to_string(),
        ];
        for path in &escapes {
            let calls = [
                ("read_file", json!({"path": path})),
                ("write_file", json!({"path": path, "content": "pwned"})),
                (
                    "edit_file",
                    json!({"path": path, "old": "secret", "new": "pwned"}),
                ),
                ("list_dir", json!({"path": path})),
            ];
            for (tool, input) in calls {
                let message = err(tb.call(tool, &input).await);
                assert!(
                    message.ends_with("is outside the repository's working tree")
                        || message.ends_with(
                            "leads outside the repository's working tree through a symlink"
                        ),
                    "{tool} {path}: {message}"
                );
            }
        }
        assert_eq!(
            err(tb.call("list_dir", &json!({"path": "dir_link"})).await),
            "path `dir_link` leads outside the repository's working tree through a symlink"
        );
        assert_eq!(
            err(tb.call("list_dir", &json!({"path": ".."})).await),
            "path `..` is outside the repository's working tree"
        );
        assert_eq!(repo.outside_names(), ["secret"]);
        assert_eq!(
            std::fs::read_to_string(repo.outside("secret")).unwrap(),
            "secret\n"
        );
    }

    #[tokio::test]
    async fn dot_git_is_off_limits() {
        let repo = Repo::new();
        repo.write(".git/config", "[core]\n");
        let tb = toolbox(&repo);
        let calls = [
            ("read_file", json!({"path": ".git/config"})),
            ("write_file", json!({"path": ".git/config", "content": "x"})),
            (
                "write_file",
                json!({"path": ".git/hooks/pre-commit", "content": "x"}),
            ),
            (
                "edit_file",
                json!({"path": ".git/config", "old": "core", "new": "x"}),
            ),
            ("list_dir", json!({"path": ".git"})),
        ];
        for (tool, input) in calls {
            let message = err(tb.call(tool, &input).await);
            assert!(
                message.ends_with("is inside `.git/`, which tools may not touch"),
                "{tool}: {message}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(repo.path(".git/config")).unwrap(),
            "[core]\n"
        );
        assert!(!repo.path(".git/hooks").exists());
    }
}
