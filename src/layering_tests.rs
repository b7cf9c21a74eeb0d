//! The module graph points one way: a test that fails when an import goes
//! back up.
//!
//! Every file under `src/` is read and every reference to a top-level
//! module is found: `crate::x` paths (in `use` lines, `use crate::{a, b}`
//! groups and inline paths alike) and `super::…` chains that climb out of
//! the file's top module. Each reference must point to a lower layer of
//! [`LAYERS`] (or stay inside its own module). Comments and string
//! literals are skipped, so doc links do not count.
//!
//! The same reading of the source also keeps CLI advice out of the
//! library: below `src/cli`, no string literal may name a `wfe` command
//! (messages say what happened; the CLI adds the hint).
//!
//! This file owns the layer table and these rules; the order the table
//! encodes is described in the crate doc (`lib.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every top-level module and its layer: a module may import modules of
/// lower layers only. Modules of one layer never import each other.
const LAYERS: &[(&str, u8)] = &[
    // The edge: talks to people. The CLI starts the web view.
    ("cli", 10),
    ("web", 9),
    // Read side and generated descriptions, over the engine.
    ("index", 8),
    ("schemas", 8),
    ("report", 8),
    // Runs: scheduling, checkpoints, control.
    ("engine", 7),
    // Executors of one attempt; they never import each other.
    ("exec", 6),
    ("agent", 6),
    // Models behind one trait.
    ("provider", 5),
    // The model tier: formats and storage, used by every layer above.
    ("template", 4),
    ("artifact", 3),
    ("store", 3),
    ("budget", 3),
    // Leaves.
    ("attempt", 2),
    ("process", 1),
    ("retry", 1),
    ("secret", 1),
    ("time", 1),
    ("bounded", 1),
    ("strict", 1),
    // Test support (fake model servers, process liveness, hermetic git):
    // used by every layer's tests, so it imports nothing of the crate.
    ("testing", 0),
];

/// Files that are not in a layer: the crate root and this test.
const UNLAYERED: &[&str] = &["lib.rs", "main.rs", "layering_tests.rs"];

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|&(_, rank)| rank)
}

/// One import that breaks the layering.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    text: String,
    from: String,
    to: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from.as_str(), self.to.as_str());
        write!(
            f,
            "{}:{}: `{}` makes `{from}` import `{to}`: ",
            self.file, self.line, self.text
        )?;
        match (layer(from), layer(to)) {
            (Some(a), Some(b)) => {
                let lower: Vec<&str> = LAYERS
                    .iter()
                    .filter(|(_, rank)| *rank < a)
                    .map(|(name, _)| *name)
                    .collect();
                let relation = if a == b {
                    "the same layer as"
                } else {
                    "a higher layer than"
                };
                write!(
                    f,
                    "`{to}` (layer {b}) is in {relation} `{from}` (layer {a}); \
                     `{from}` may import only {}",
                    if lower.is_empty() {
                        "nothing".to_string()
                    } else {
                        lower.join(", ")
                    }
                )
            }
            (None, _) => write!(f, "`{from}` has no layer in LAYERS (layering_tests.rs)"),
            (Some(_), None) => write!(f, "`{to}` has no layer in LAYERS (layering_tests.rs)"),
        }
    }
}

/// A token of Rust source, as far as these rules need: comments, numbers
/// and char literals are gone; strings keep their text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// The tokens of `src`, each with its line (from 1).
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Advances past `n` chars, counting lines.
    let skip = |i: &mut usize, line: &mut usize, n: usize| {
        for _ in 0..n {
            if chars.get(*i) == Some(&'\n') {
                *line += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            skip(&mut i, &mut line, 1);
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    skip(&mut i, &mut line, 2);
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    skip(&mut i, &mut line, 2);
                    if depth == 0 {
                        break;
                    }
                } else {
                    skip(&mut i, &mut line, 1);
                }
            }
        } else if c == '"' {
            let at = line;
            out.push((Tok::Str(skip_string(&chars, &mut i, &mut line)), at));
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                // The quote, the backslash and the escaped char (which may be a quote).
                skip(&mut i, &mut line, 3);
                while i < chars.len() && chars[i] != '\'' {
                    skip(&mut i, &mut line, 1);
                }
                skip(&mut i, &mut line, 1);
            } else if chars.get(i + 2) == Some(&'\'') {
                skip(&mut i, &mut line, 3);
            } else {
                skip(&mut i, &mut line, 1);
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
            out.push((Tok::Other, line));
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = chars.get(i).copied();
            if matches!(word.as_str(), "r" | "br" | "cr") && matches!(after, Some('"' | '#')) {
                if after == Some('#') && chars.get(i + 1).is_some_and(|&c| is_ident_start(c)) {
                    // A raw identifier: r#type.
                    i += 1;
                    let start = i;
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                    out.push((Tok::Ident(chars[start..i].iter().collect()), line));
                } else {
                    let at = line;
                    let text = skip_raw_string(&chars, &mut i, &mut line);
                    out.push((Tok::Str(text), at));
                }
            } else if matches!(word.as_str(), "b" | "c") && after == Some('"') {
                let at = line;
                out.push((Tok::Str(skip_string(&chars, &mut i, &mut line)), at));
            } else if word == "b" && after == Some('\'') {
                skip(&mut i, &mut line, 1);
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((
                match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    _ => Tok::Other,
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Skips a `"…"` string with escapes; `i` is at the opening quote. Returns
/// its text as written (escapes kept).
fn skip_string(chars: &[char], i: &mut usize, line: &mut usize) -> String {
    *i += 1;
    let start = *i;
    while *i < chars.len() && chars[*i] != '"' {
        if chars[*i] == '\\' {
            *i += 1;
        }
        if chars.get(*i) == Some(&'\n') {
            *line += 1;
        }
        *i += 1;
    }
    let text = chars[start..(*i).min(chars.len())].iter().collect();
    *i += 1;
    text
}

/// Skips a raw string; `i` is at the `#`s or the quote after `r`.
/// Returns its text.
fn skip_raw_string(chars: &[char], i: &mut usize, line: &mut usize) -> String {
    let mut hashes = 0;
    while chars.get(*i) == Some(&'#') {
        hashes += 1;
        *i += 1;
    }
    *i += 1;
    let start = *i;
    while *i < chars.len() {
        if chars[*i] == '"' && (1..=hashes).all(|k| chars.get(*i + k) == Some(&'#')) {
            let text = chars[start..*i].iter().collect();
            *i += 1 + hashes;
            return text;
        }
        if chars[*i] == '\n' {
            *line += 1;
        }
        *i += 1;
    }
    chars[start..].iter().collect()
}

/// The top-level modules a path names right after a point at the crate
/// root, with their lines: `x` in `…::x::…`, or each first segment of a
/// `{…}` group.
fn roots_at(tokens: &[(Tok, usize)], at: usize) -> Vec<(String, usize)> {
    match tokens.get(at) {
        Some((Tok::Ident(name), line)) => vec![(name.clone(), *line)],
        Some((Tok::Open, _)) => {
            let mut roots = Vec::new();
            let mut depth = 0;
            let mut expect_item = true;
            for (tok, line) in &tokens[at..] {
                match tok {
                    Tok::Open => {
                        depth += 1;
                        if depth == 1 {
                            expect_item = true;
                        }
                    }
                    Tok::Close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Comma if depth == 1 => expect_item = true,
                    Tok::Ident(name) if depth == 1 && expect_item => {
                        roots.push((name.clone(), *line));
                        expect_item = false;
                    }
                    _ if depth == 1 => expect_item = false,
                    _ => {}
                }
            }
            roots
        }
        _ => Vec::new(),
    }
}

/// The module path of a file under `src/`: `exec/script.rs` is
/// `[exec, script]`, `exec/mod.rs` is `[exec]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        match last.strip_suffix(".rs") {
            Some("mod") | None => {}
            Some(stem) => parts.push(stem.to_string()),
        }
    }
    parts
}

/// Every top-level module referenced from `src` (the text of the file at
/// `relative` under `src/`), with the line it is on; its own module included.
fn references(relative: &Path, src: &str) -> Vec<(String, usize)> {
    let file_depth = module_path(relative).len();
    let tokens = tokenize(src);
    let mut found = Vec::new();
    // Brace depths at which inline `mod name {` blocks opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0;
    for (k, (tok, _)) in tokens.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| &tokens[p].0);
        match tok {
            Tok::Open => {
                braces += 1;
                let is_mod = k >= 2
                    && matches!(&tokens[k - 2].0, Tok::Ident(m) if m == "mod")
                    && matches!(&tokens[k - 1].0, Tok::Ident(_));
                if is_mod {
                    inline_mods.push(braces);
                }
            }
            Tok::Close => {
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
                braces -= 1;
            }
            Tok::Ident(word)
                if word == "crate"
                    && prev != Some(&Tok::PathSep)
                    && tokens.get(k + 1).map(|t| &t.0) == Some(&Tok::PathSep) =>
            {
                found.extend(roots_at(&tokens, k + 2));
            }
            Tok::Ident(word) if word == "super" && prev != Some(&Tok::PathSep) => {
                // Count the `super::` chain.
                let mut up = 0;
                let mut at = k;
                while matches!(&tokens.get(at).map(|t| &t.0), Some(Tok::Ident(w)) if w == "super")
                    && tokens.get(at + 1).map(|t| &t.0) == Some(&Tok::PathSep)
                {
                    up += 1;
                    at += 2;
                }
                if up == file_depth + inline_mods.len() {
                    found.extend(roots_at(&tokens, at));
                }
            }
            _ => {}
        }
    }
    found
}

/// The imports of the file at `relative` (under `src/`) that break the layering.
fn check_source(relative: &Path, src: &str) -> Vec<Violation> {
    let Some(from) = module_path(relative).into_iter().next() else {
        return Vec::new();
    };
    let lines: Vec<&str> = src.lines().collect();
    let mut violations = Vec::new();
    for (to, line) in references(relative, src) {
        if to == from || matches!(to.as_str(), "self" | "super" | "crate") {
            continue;
        }
        let allowed = matches!((layer(&from), layer(&to)), (Some(a), Some(b)) if b < a);
        if !allowed {
            violations.push(Violation {
                file: Path::new("src").join(relative).display().to_string(),
                line,
                text: lines
                    .get(line - 1)
                    .map_or(String::new(), |l| l.trim().to_string()),
                from: from.clone(),
                to,
            });
        }
    }
    violations
}

/// Every `.rs` file under `dir`, relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_crate_imports_only_downward() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut violations = Vec::new();
    for file in files {
        if UNLAYERED.contains(&file.to_string_lossy().as_ref()) {
            continue;
        }
        let text = std::fs::read_to_string(src.join(&file)).unwrap();
        violations.extend(check_source(&file, &text));
    }
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{} import(s) against the layering:\n{}",
        violations.len(),
        report.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if UNLAYERED.contains(&name.as_str()) {
            continue;
        }
        if path.is_dir() {
            modules.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            modules.insert(stem.to_string());
        }
    }
    let layered: BTreeSet<String> = LAYERS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(modules, layered, "LAYERS must list every top-level module");
}

#[test]
fn an_exec_import_of_agent_is_caught() {
    let violations = check_source(
        Path::new("exec/script.rs"),
        "use std::io;\nuse crate::agent::tools::Toolbox;\n",
    );
    assert_eq!(violations.len(), 1, "{violations:?}");
    let message = violations[0].to_string();
    assert_eq!(
        message,
        "src/exec/script.rs:2: `use crate::agent::tools::Toolbox;` makes `exec` import `agent`: \
         `agent` (layer 6) is in the same layer as `exec` (layer 6); `exec` may import only \
         provider, template, artifact, store, budget, attempt, process, retry, secret, time, bounded, strict, testing"
    );
}

#[test]
fn upward_imports_are_caught_in_every_form() {
    let src = r##"
//! Docs may name crate::engine freely.
use crate::{
    attempt::{AttemptError, LogLine},
    engine::Event, // crate::cli in a comment
};
use super::super::cli::Ui;
const TEXT: &str = "crate::engine::x";
const RAW: &str = r#"crate::index"#;
fn f<'a>(x: &'a str) -> char {
    let _ = crate::index::Search::new();
    let _ = '{';
    '}'
}
"##;
    let found: Vec<(String, usize)> = check_source(Path::new("provider/cli.rs"), src)
        .into_iter()
        .map(|v| (v.to, v.line))
        .collect();
    assert_eq!(
        found,
        [
            ("engine".to_string(), 5),
            ("cli".to_string(), 7),
            ("index".to_string(), 11)
        ]
    );
}

#[test]
fn super_paths_count_inline_modules() {
    // `agent/tools/bash.rs` is `agent::tools::bash`: inside its `mod tests`,
    // `super::super` is `agent::tools` (no escape) and four `super`s reach
    // the crate root; outside it, three do.
    let src = "mod tests {\n    use super::super::test_support::Repo;\n    \
               use super::super::super::super::engine::Event;\n}\n\
               use super::super::super::exec::run_script;\n\
               use super::super::Toolbox;\n";
    let found: Vec<(String, usize)> = check_source(Path::new("agent/tools/bash.rs"), src)
        .into_iter()
        .map(|v| (v.to, v.line))
        .collect();
    assert_eq!(found, [("engine".to_string(), 3), ("exec".to_string(), 5)]);
}

#[test]
fn downward_and_internal_imports_pass() {
    let src = "use crate::engine::Event;\nuse crate::cli::ui::Ui;\n\
               use crate::{store::RunId, time::Clock};\nuse super::commands;\n";
    assert_eq!(check_source(Path::new("cli/ui.rs"), src), []);
    assert_eq!(
        check_source(Path::new("time.rs"), "use std::time::Duration;\n"),
        []
    );
}

/// The string literals of `src` outside comments, with the line each starts on.
fn string_literals(src: &str) -> Vec<(usize, String)> {
    tokenize(src)
        .into_iter()
        .filter_map(|(tok, line)| match tok {
            Tok::Str(text) => Some((line, text)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_lexer_finds_strings_and_skips_comments() {
    let src = "/// `wfe a` in a doc\n// `wfe b`\nlet x = \"one\"; /* \"no\" */ let c = '\"';\nlet r = r#\"two \"q\"\"#; fn f<'a>(s: &'a str) {}\nlet y = \"th\\\"ree\n\";";
    assert_eq!(
        string_literals(src),
        [
            (3, "one".to_string()),
            (4, "two \"q\"".to_string()),
            (5, "th\\\"ree\n".to_string()),
        ]
    );
}

/// Below the CLI, messages say what happened; which command to run is
/// the CLI's hint. Doc comments may name commands; strings may not.
#[test]
fn no_string_below_the_cli_names_a_wfe_command() {
    let src = src_dir();
    let needle = ["`", "wfe "].concat();
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    let mut found = Vec::new();
    for relative in files {
        // The CLI and the web view (the edges) add the hints; this file
        // holds the rule's own samples.
        if relative.starts_with("cli")
            || relative.starts_with("web")
            || relative == Path::new("layering_tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(src.join(&relative)).unwrap();
        for (line, literal) in string_literals(&text) {
            if literal.contains(&needle) {
                found.push(format!("src/{}:{line}: \"{literal}\"", relative.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "strings below the CLI that name a wfe command (make the reason typed and let the CLI add the hint):\n{}",
        found.join("\n")
    );
}
