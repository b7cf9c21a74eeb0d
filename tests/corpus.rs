//! The bad-input corpus: every case file in `tests/corpus/` (format in
//! `tests/corpus/README.md`) is run with the real binary in a fresh
//! repository. Each must exit as it says, print the fragments it names, not
//! panic, finish well within a generous bound (a hang is killed and fails
//! the case), and write nothing (refs under `refs/wfe/` and
//! `<git-dir>/wfe/` unchanged) unless it says `writes: allowed`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Repo;
use wfe::testing::llm::{FakeServer, Reply};

/// A case still running after this long hangs: it is killed and fails.
/// Generous on purpose (a loaded CI machine); cases take milliseconds.
const HANG: Duration = Duration::from_secs(30);

/// How many cases run at once.
const THREADS: usize = 4;

/// One parsed case file.
#[derive(Debug, Default)]
struct Case {
    file: String,
    command: Vec<String>,
    exit: Option<i32>,
    stderr: Vec<String>,
    stdout: Vec<String>,
    setup: Vec<Vec<String>>,
    env: Vec<(String, String)>,
    writes_allowed: bool,
    files: Vec<(String, Vec<u8>)>,
    links: Vec<(String, String)>,
    fifos: Vec<String>,
    dirs: Vec<String>,
    answers: Vec<Answer>,
}

/// One answer of the case's fake model server (`answer:` and the lines
/// after it).
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    content_type: String,
    /// The case file whose bytes are the body.
    body: String,
    headers: Vec<(String, String)>,
    abort: bool,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Expands `%repeat(N,TEXT)%` (long ids without 300-character lines).
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("%repeat(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "%repeat(".len()..];
        let end = after.find(")%").ok_or("unclosed %repeat(")?;
        let (n, what) = after[..end]
            .split_once(',')
            .ok_or("%repeat(N,TEXT)% needs a comma")?;
        let n: usize = n.trim().parse().map_err(|_| format!("bad count `{n}`"))?;
        out.push_str(&what.repeat(n));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a command line into words: whitespace separates, `'…'` and
/// `"…"` quote (so `''` is an empty word); no escapes, no variables.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                        None => return Err(format!("unclosed {c} in `{line}`")),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A `wfe …` or `git …` command line as its words.
fn command_words(line: &str) -> Result<Vec<String>, String> {
    let words = split_words(&expand(line)?)?;
    match words.first().map(String::as_str) {
        Some("wfe" | "git") => Ok(words),
        _ => Err(format!("a command starts with `wfe` or `git`: `{line}`")),
    }
}

fn parse_case(file: &str, text: &str) -> Result<Case, String> {
    let mut case = Case {
        file: file.to_string(),
        ..Case::default()
    };
    let mut current: Option<(String, String)> = None;
    let finish = |case: &mut Case, current: &mut Option<(String, String)>| -> Result<(), String> {
        if let Some((path, body)) = current.take() {
            case.files.push((path, expand(&body)?.into_bytes()));
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        if let Some(rest) = line.strip_prefix("--- ") {
            finish(&mut case, &mut current)?;
            current = Some((rest.trim().to_string(), String::new()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("--> ") {
            finish(&mut case, &mut current)?;
            let (path, target) = rest
                .split_once(" -> ")
                .ok_or_else(|| at("expected `--> PATH -> TARGET`".into()))?;
            case.links
                .push((path.trim().to_string(), target.trim().to_string()));
            continue;
        }
        if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("$ ") {
            if !case.command.is_empty() {
                return Err(at(
                    "only one `$` command per case; use `setup:` for others".into()
                ));
            }
            case.command = command_words(rest).map_err(at)?;
            if case.command[0] != "wfe" {
                return Err(at("the case's command is a `wfe` command".into()));
            }
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| at(format!("not a directive: `{line}`")))?;
        match key {
            "exit" => {
                case.exit = Some(
                    value
                        .parse()
                        .map_err(|_| at(format!("bad exit `{value}`")))?,
                );
            }
            "stderr" => case.stderr.push(expand(value).map_err(at)?),
            "stdout" => case.stdout.push(expand(value).map_err(at)?),
            "setup" => case.setup.push(command_words(value).map_err(at)?),
            "env" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| at("expected `env: NAME=VALUE`".into()))?;
                case.env.push((k.to_string(), expand(v).map_err(at)?));
            }
            "writes" => match value {
                "allowed" => case.writes_allowed = true,
                "none" => case.writes_allowed = false,
                other => return Err(at(format!("`writes: {other}`: expected allowed or none"))),
            },
            "fifo" => case.fifos.push(value.to_string()),
            "dir" => case.dirs.push(value.to_string()),
            "big" => {
                // `big: PATH BYTES`: a file of BYTES spaces inside a JSON string.
                let (path, size) = value
                    .rsplit_once(' ')
                    .ok_or_else(|| at("expected `big: PATH BYTES`".into()))?;
                let size: usize = size.parse().map_err(|_| at(format!("bad size `{size}`")))?;
                let mut bytes = b"\"".to_vec();
                bytes.resize(size.saturating_sub(1), b' ');
                bytes.push(b'"');
                case.files.push((path.trim().to_string(), bytes));
            }
            "answer" => {
                // `answer: STATUS CONTENT-TYPE PATH`: the fake model server's
                // next answer, its body the case file PATH.
                let words: Vec<&str> = value.split_whitespace().collect();
                let [status, content_type, body] = words[..] else {
                    return Err(at("expected `answer: STATUS CONTENT-TYPE PATH`".into()));
                };
                case.answers.push(Answer {
                    status: status
                        .parse()
                        .map_err(|_| at(format!("bad status `{status}`")))?,
                    content_type: content_type.to_string(),
                    body: body.to_string(),
                    ..Answer::default()
                });
            }
            "answer-header" => {
                let (name, v) = value
                    .split_once(':')
                    .ok_or_else(|| at("expected `answer-header: NAME: VALUE`".into()))?;
                case.answers
                    .last_mut()
                    .ok_or_else(|| at("`answer-header:` before any `answer:`".into()))?
                    .headers
                    .push((name.trim().to_string(), v.trim().to_string()));
            }
            "answer-end" => match value {
                "abort" => {
                    case.answers
                        .last_mut()
                        .ok_or_else(|| at("`answer-end:` before any `answer:`".into()))?
                        .abort = true;
                }
                other => return Err(at(format!("`answer-end: {other}`: expected abort"))),
            },
            other => return Err(at(format!("unknown directive `{other}:`"))),
        }
    }
    finish(&mut case, &mut current)?;
    if case.command.is_empty() {
        return Err("no `$ wfe …` command".into());
    }
    if case.exit.is_none() {
        return Err("no `exit:` line".into());
    }
    Ok(case)
}

/// Every case file, parsed; a file that does not parse fails the test.
fn cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).unwrap();
            parse_case(&name, &text).unwrap_or_else(|e| panic!("tests/corpus/{name}: {e}"))
        })
        .collect()
}

/// What a case must not change: refs under `refs/wfe/` with their targets,
/// and every file under `<git-dir>/wfe/` with its size (but the
/// run-summary cache in `cache/`).
fn written_state(repo: &Repo) -> BTreeMap<String, String> {
    let mut state: BTreeMap<String, String> = repo
        .git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/wfe/",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect();
    fn walk(dir: &Path, root: &Path, state: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            match entry.file_type() {
                // The run-summary cache is derived data, rebuilt from the
                // refs by any read; it records nothing a case could lose.
                Ok(t) if t.is_dir() && path.ends_with(".git/wfe/cache") => {}
                Ok(t) if t.is_dir() => walk(&path, root, state),
                _ => {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    state.insert(rel, size.to_string());
                }
            }
        }
    }
    let git_wfe = repo.path().join(".git/wfe");
    walk(&git_wfe, repo.path(), &mut state);
    state
}

/// Runs `words` in `repo` with the case's env; output to files (no pipe to
/// drain), killed after [`HANG`]. `(exit, stdout, stderr)` or why not.
fn run_bounded(
    repo: &Repo,
    case: &Case,
    words: &[String],
) -> Result<(i32, String, String), String> {
    let mut cmd = if words[0] == "wfe" {
        repo.wfe_cmd()
    } else {
        repo.git_cmd(&[])
    };
    cmd.args(&words[1..]);
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{}` still running after {HANG:?}: killed",
                words.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    Ok((status.code().unwrap_or(-1), read(&stdout), read(&stderr)))
}

/// Runs one case; `Err` says what went wrong.
fn run_case(case: &Case) -> Result<(), String> {
    let repo = Repo::new();
    // The fake model server a case's provider answers come from; files and
    // env values name it as `%server%`.
    let mut replies = Vec::new();
    for answer in &case.answers {
        let body = case
            .files
            .iter()
            .find(|(path, _)| *path == answer.body)
            .map(|(_, bytes)| bytes.clone())
            .ok_or_else(|| {
                format!(
                    "`answer:` names `{}`, which no `---` line makes",
                    answer.body
                )
            })?;
        let mut reply = Reply::raw(answer.status, &answer.content_type, body);
        for (name, value) in &answer.headers {
            reply = reply.header(name, value);
        }
        if answer.abort {
            reply = reply.aborted();
        }
        replies.push(reply);
    }
    let server = (!replies.is_empty()).then(|| FakeServer::spawn(replies));
    let url = server.as_ref().map_or("", |s| s.url()).to_string();
    let with_server = |bytes: &[u8]| -> Vec<u8> {
        String::from_utf8_lossy(bytes)
            .replace("%server%", &url)
            .into_bytes()
    };
    for dir in &case.dirs {
        std::fs::create_dir_all(repo.path().join(dir)).unwrap();
    }
    for (path, bytes) in &case.files {
        let full = repo.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, with_server(bytes)).unwrap();
    }
    for (path, target) in &case.links {
        let full = repo.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &full).unwrap();
    }
    for path in &case.fifos {
        let full = repo.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        common::mkfifo(&full);
    }
    for words in &case.setup {
        let (code, _, stderr) = run_bounded(&repo, case, words)?;
        if stderr.contains("panicked") {
            return Err(format!("setup `{}` panicked:\n{stderr}", words.join(" ")));
        }
        if words[0] == "git" && code != 0 {
            return Err(format!("setup `{}` failed:\n{stderr}", words.join(" ")));
        }
    }
    let before = written_state(&repo);
    let (code, stdout, stderr) = run_bounded(&repo, case, &case.command)?;
    let shown = || format!("\n--- stdout\n{stdout}--- stderr\n{stderr}");
    if stderr.contains("panicked") || stdout.contains("panicked") {
        return Err(format!("panicked{}", shown()));
    }
    if Some(code) != case.exit {
        return Err(format!(
            "exit {code}, expected {:?}{}",
            case.exit.unwrap(),
            shown()
        ));
    }
    for fragment in &case.stderr {
        if !stderr.contains(fragment.as_str()) {
            return Err(format!("stderr lacks `{fragment}`{}", shown()));
        }
    }
    for fragment in &case.stdout {
        if !stdout.contains(fragment.as_str()) {
            return Err(format!("stdout lacks `{fragment}`{}", shown()));
        }
    }
    if !case.writes_allowed {
        let after = written_state(&repo);
        if after != before {
            let changed: Vec<&String> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k)
                .chain(before.keys().filter(|k| !after.contains_key(*k)))
                .collect();
            return Err(format!(
                "wrote {changed:?} (add `writes: allowed` if meant){}",
                shown()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_corpus_case_exits_as_expected_without_panic_hang_or_writes() {
    let cases = cases();
    assert!(
        cases.len() >= 150,
        "the corpus holds {} cases; at least 150",
        cases.len()
    );
    let chunk = cases.len().div_ceil(THREADS);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|case| {
                            run_case(case)
                                .err()
                                .map(|e| format!("tests/corpus/{}: {e}", case.file))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_case_format_refuses_what_it_does_not_know() {
    let err = parse_case("x.case", "$ wfe list\nexit: 2\nfrobnicate: yes\n").unwrap_err();
    assert!(err.contains("unknown directive `frobnicate:`"), "{err}");
    assert!(
        parse_case("x.case", "exit: 2\n")
            .unwrap_err()
            .contains("no `$ wfe")
    );
    assert!(
        parse_case("x.case", "$ wfe list\n")
            .unwrap_err()
            .contains("no `exit:`")
    );
    let case = parse_case(
        "x.case",
        "# c\n$ wfe show '' x\nexit: 2\nstderr: a b\n--- f.json\n{\"id\": \"%repeat(3,ab)%\"}\n--> l -> /dev/zero\n",
    )
    .unwrap();
    assert_eq!(case.command, ["wfe", "show", "", "x"]);
    assert_eq!(
        case.files,
        [("f.json".to_string(), b"{\"id\": \"ababab\"}\n".to_vec())]
    );
    assert_eq!(case.links, [("l".to_string(), "/dev/zero".to_string())]);
}
