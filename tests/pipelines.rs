//! The built-in pipelines (`templates/`: compound-dev, feature, bugfix,
//! review, ci) run end to end offline: `wfe demo --template NAME` copies
//! `examples/sample-app` into a scratch repository and runs the pipeline
//! there, its agents answered by a `replay` provider from the exchanges
//! recorded in `examples/sample-app/.wfe/recorded/NAME/`, its scripts
//! running the sample's real lint, tests and build. A pipeline that no
//! longer validates, or whose requests drift from the recording, fails
//! here; so does a hint the demo prints that does not work as printed.
//!
//! `WFE_BLESS=1 cargo test pipelines` records the exchanges again: for each
//! pipeline it runs `wfe run` on a copy of the sample against the fake
//! Anthropic server of `wfe::testing::llm` playing the model turns
//! scripted below (one phase at a time, `--jobs 1`, so the script's order
//! is the run's), approves the gates, writes every agent phase's
//! `exchanges.jsonl` into `recorded/NAME/`, and regenerates the list of
//! files `wfe demo` compiles in (`SAMPLE_APP` in
//! `src/cli/commands/demo.rs`; run `cargo fmt` after). Record again after changing anything an
//! agent is sent: a template's prompts or tools, the sample's code, wfe's
//! tool specs or how it turns schemas into tools. Then run the tests
//! again (without `WFE_BLESS`): the binary compiles in the new recordings.

use crate::common;

use std::path::{Path, PathBuf};

use common::Repo;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

/// The sample project, relative to the crate root.
const SAMPLE: &str = "examples/sample-app";
/// The clock while recording.
const RECORDED_AT: &str = "2026-01-15T09:30:00Z";
/// Where `wfe demo` lists the sample's files.
const DEMO_RS: &str = "src/cli/commands/demo.rs";

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files under `root/dir`, relative to `root`, sorted.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = dir.join(entry.file_name());
        if entry.file_name() == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            list_files(root, &rel, out);
        } else {
            out.push(rel.to_str().unwrap().to_string());
        }
    }
}

fn sample_files() -> Vec<String> {
    let mut files = Vec::new();
    list_files(&sample_dir(), Path::new(""), &mut files);
    files
}

/// The `SAMPLE_APP` entries `wfe demo` must compile in: every sample file.
fn sample_app_block() -> String {
    sample_files()
        .iter()
        .map(|f| {
            format!(
                "    (\n        \"{f}\",\n        include_str!(\"../../../{SAMPLE}/{f}\"),\n    ),\n"
            )
        })
        .collect()
}

const BEGIN: &str = "    // BEGIN SAMPLE_APP (generated: see tests/pipelines.rs)\n";
const END: &str = "    // END SAMPLE_APP\n";

/// `demo.rs` with its `SAMPLE_APP` block as it should be.
fn demo_rs_expected() -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEMO_RS);
    let text = read(&path);
    let start = text.find(BEGIN).expect("BEGIN marker") + BEGIN.len();
    let end = text.find(END).expect("END marker");
    let expected = format!("{}{}{}", &text[..start], sample_app_block(), &text[end..]);
    (text, expected)
}

#[test]
fn the_demo_compiles_in_every_file_of_the_sample() {
    if std::env::var_os("WFE_BLESS").is_some() {
        bless_demo_rs();
    }
    // Compared as the pairs of strings it holds: rustfmt may wrap them.
    let (text, expected) = demo_rs_expected();
    assert!(
        block_strings(&text) == block_strings(&expected),
        "{DEMO_RS}: SAMPLE_APP does not list exactly the files of {SAMPLE}; run `WFE_BLESS=1 cargo test pipelines`"
    );
}

/// The string literals of `SAMPLE_APP` in `text`, in order.
fn block_strings(text: &str) -> Vec<String> {
    let start = text.find(BEGIN).expect("BEGIN marker") + BEGIN.len();
    let end = text.find(END).expect("END marker");
    text[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn bless_demo_rs() {
    let (text, expected) = demo_rs_expected();
    if block_strings(&text) != block_strings(&expected) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEMO_RS);
        std::fs::write(path, expected).unwrap();
    }
}

/// A repository holding the sample, committed, whose roles all play the
/// fake server at `url`; then the change `template`'s recording starts from.
fn recording_repo(template: &str, url: &str) -> Repo {
    let repo = Repo::empty();
    for file in sample_files() {
        repo.write(&file, &read(&sample_dir().join(&file)));
    }
    let seat = |model: &str| json!({ "provider": "fake", "model": model });
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "fake": { "kind": "anthropic", "base_url": url } },
            "roles": {
                "primary": seat("scripted-author"),
                "reviewer": seat("scripted-reviewer"),
                "second_opinion": seat("scripted-second-opinion")
            }
        }))
        .unwrap(),
    );
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "the sample app"]);
    let changes = format!(".wfe/recorded/{template}/changes/");
    for file in sample_files() {
        if let Some(target) = file.strip_prefix(&changes) {
            repo.write(target, &read(&sample_dir().join(&file)));
        }
    }
    repo
}

/// Records `template`'s exchanges from [`script`] into the sample.
fn record(template: &str) {
    let replies = script(template);
    let server = Server::spawn(replies.clone());
    let repo = recording_repo(template, server.url());
    let wfe = |args: &[&str]| {
        let out = repo
            .wfe_cmd()
            .env("ANTHROPIC_API_KEY", "sk-ant-fake-for-recording")
            .env("WFE_NOW", RECORDED_AT)
            .args(args)
            .output()
            .unwrap();
        common::Run::from(out)
    };
    let args_file = format!(".wfe/recorded/{template}/args.json");
    let mut run = wfe(&["run", template, "--args-file", &args_file, "--jobs", "1"]);
    while run.code == 3 {
        let show = wfe(&["show", "latest", "--json"]);
        let doc = show.json();
        let gate = doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["status"] == "waiting")
            .unwrap_or_else(|| panic!("stopped, but no gate waits:\n{}", run.stderr));
        wfe(&["approve", "latest", gate["id"].as_str().unwrap()]).code(0);
        run = wfe(&["resume", "latest", "--jobs", "1"]);
    }
    run.code(0);
    assert_eq!(
        server.request_count(),
        replies.len(),
        "{template}: every scripted turn was asked for"
    );
    let id = repo.run_id();
    let dir = sample_dir().join(".wfe/recorded").join(template);
    let mut old = Vec::new();
    list_files(&dir, Path::new(""), &mut old);
    for file in old.iter().filter(|f| f.ends_with(".exchanges.jsonl")) {
        std::fs::remove_file(dir.join(file)).unwrap();
    }
    let tree = repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("refs/wfe/runs/{id}"),
        "phases",
    ]);
    for path in tree.lines() {
        let Some(key) = path
            .strip_prefix("phases/")
            .and_then(|p| p.strip_suffix("/exchanges.jsonl"))
        else {
            continue;
        };
        if key.contains("/attempts/") {
            continue;
        }
        let text = repo.git(&["show", &format!("refs/wfe/runs/{id}:{path}")]);
        let target = dir.join(format!("{key}.exchanges.jsonl"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
}

/// `wfe demo --template NAME` in a fresh directory: it must end completed
/// (exit 0) or waiting at a gate (exit 3); then every command it prints is
/// run as printed (`wfe` on PATH), the run ends completed, and what the
/// pipeline must have done is checked by `check`.
fn demo(template: &str, check: impl Fn(&Path, &Value)) {
    if std::env::var_os("WFE_BLESS").is_some() {
        record(template);
        // The binary holds the recordings it was built with: the next
        // `cargo test` replays the new ones.
        return;
    }
    let host = Repo::empty();
    let dir = host.home.path().join("demo");
    let dir_arg = dir.display().to_string();
    let run = host.wfe(&["demo", "--template", template, "--dir", &dir_arg]);
    assert!(
        run.code == 0 || run.code == 3,
        "demo --template {template}: exit {}\n{}",
        run.code,
        run.stderr
    );
    // The demo's own hints follow its last heading (the run's summary
    // before it has lines of its own).
    let tail = ["Look at what the run did", "The run waits for you"]
        .iter()
        .find_map(|h| run.stderr.find(h))
        .map_or("", |at| &run.stderr[at..]);
    let hints: Vec<String> = tail
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| l.starts_with("cd ") || l.starts_with("wfe "))
        .map(String::from)
        .collect();
    assert!(
        hints.iter().any(|h| h.starts_with("wfe demo --template ")),
        "the demo says what to try next:\n{}",
        run.stderr
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_wfe")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp = host.home.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // `wfe serve` serves until stopped (and wants port 7420): tests/web.rs
    // covers it; running it here would hang the test and hold the port.
    for hint in hints.iter().filter(|h| !h.contains("wfe serve")) {
        let mut cmd = std::process::Command::new("sh");
        host.hermetic(&mut cmd);
        let out = cmd
            .args(["-c", hint])
            .current_dir(host.home.path())
            .env("PATH", &path)
            .env("TMPDIR", &tmp)
            .env("WFE_NOW", common::NOW)
            .output()
            .unwrap();
        // Another pipeline's demo may stop at its gate (exit 3), saying so.
        let ok =
            out.status.success() || (hint.starts_with("wfe demo ") && out.status.code() == Some(3));
        assert!(
            ok,
            "the demo's hint `{hint}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = host.wfe(&["-C", &dir_arg, "show", "latest", "--json"]);
    let doc = list.json();
    assert_eq!(doc["status"], "completed", "{}", list.stdout);
    check(&dir, &doc);
}

fn artifact(dir: &Path, doc: &Value, path: &str) -> Value {
    let out = wfe::testing::git::git(
        dir,
        &[
            "show",
            &format!(
                "refs/wfe/runs/{}:phases/{path}.json",
                doc["id"].as_str().unwrap()
            ),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn compound_dev_plans_with_specialists_then_implements_each_task_offline() {
    demo("compound-dev", |dir, doc| {
        let tasks = artifact(dir, doc, "synthesize/artifacts/tasks");
        assert_eq!(tasks["tasks"].as_array().unwrap().len(), 2);
        let log = artifact(dir, doc, "synthesize/artifacts/decisions");
        assert!(!log["decisions"].as_array().unwrap().is_empty());
        let done = artifact(
            dir,
            doc,
            "execute/iterations/2/implement/artifacts/progress",
        );
        assert!(
            done["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["status"] == "done")
        );
        assert_eq!(
            artifact(dir, doc, "execute/iterations/2/test/artifacts/result")["passed"],
            true
        );
        let cli = read(&dir.join("src/cli.py"));
        assert!(cli.contains("titlecase"), "{cli}");
        assert!(artifact(dir, doc, "retro/artifacts/retro")["summary"].is_string());
    });
}

#[test]
fn feature_researches_specs_implements_tests_and_reviews_offline() {
    demo("feature", |dir, doc| {
        let spec = artifact(dir, doc, "spec/artifacts/spec");
        assert!(spec["requirements"].is_array());
        let second = artifact(dir, doc, "spec/reviews/1-1");
        assert_eq!(second["verdict"], "approve");
        assert_eq!(artifact(dir, doc, "test/artifacts/result")["passed"], true);
        assert_eq!(
            artifact(dir, doc, "review/artifacts/review")["verdict"],
            "approve"
        );
        assert!(read(&dir.join("src/textkit.py")).contains("isalnum"));
    });
}

#[test]
fn bugfix_reproduces_then_loops_until_the_test_passes_offline() {
    demo("bugfix", |dir, doc| {
        // The first patch was not enough: the loop went round twice.
        assert_eq!(
            artifact(dir, doc, "fix/iterations/1/test/artifacts/result")["passed"],
            false
        );
        assert_eq!(
            artifact(dir, doc, "fix/iterations/2/test/artifacts/result")["passed"],
            true
        );
        assert!(read(&dir.join("tests/test_textkit.py")).contains("Hello,  World!"));
        assert!(read(&dir.join("src/textkit.py")).contains(".strip(\"-\")"));
        assert_eq!(
            artifact(dir, doc, "review/artifacts/review")["verdict"],
            "approve"
        );
    });
}

#[test]
fn review_merges_three_parallel_reviews_offline() {
    demo("review", |dir, doc| {
        let change = artifact(dir, doc, "diff/artifacts/change");
        assert!(change["text"].as_str().unwrap().contains("def truncate"));
        let merged = artifact(dir, doc, "synthesize/artifacts/findings");
        assert_eq!(merged["verdict"], "changes_requested");
        assert!(merged["findings"].as_array().unwrap().len() >= 2);
    });
}

#[test]
fn ci_lints_tests_and_builds_the_sample_in_parallel() {
    demo("ci", |dir, doc| {
        let report = artifact(dir, doc, "report/artifacts/report");
        assert_eq!(report["passed"], true, "{report:#}");
        assert_eq!(report["criteria"].as_array().unwrap().len(), 3);
    });
}

#[test]
fn the_plain_demo_points_at_the_pipelines() {
    let host = Repo::empty();
    let dir = host.home.path().join("demo");
    let run = host.wfe(&["demo", "--dir", &dir.display().to_string()]);
    run.code(0);
    assert!(
        run.stderr.contains("wfe demo --template compound-dev"),
        "{}",
        run.stderr
    );
}

#[test]
fn demo_refuses_an_unknown_pipeline_and_writes_nothing() {
    let host = Repo::empty();
    let dir = host.home.path().join("demo");
    let run = host.wfe(&[
        "demo",
        "--template",
        "nope",
        "--dir",
        &dir.display().to_string(),
    ]);
    run.code(2);
    assert!(
        run.stderr
            .contains("compound-dev, feature, bugfix, review, ci"),
        "{}",
        run.stderr
    );
    assert!(!dir.exists());
}

fn say(text: &str) -> Part {
    Part::Text(text.into())
}

fn tool(name: &'static str, input: Value) -> Reply {
    Reply::anthropic(vec![Part::Tool(name, input)])
}

fn said(text: &str, name: &'static str, input: Value) -> Reply {
    Reply::anthropic(vec![say(text), Part::Tool(name, input)])
}

/// The model's turns for `template`, in the order a `--jobs 1` run asks.
fn script(template: &str) -> Vec<Reply> {
    match template {
        "compound-dev" => compound_dev(),
        "feature" => feature(),
        "bugfix" => bugfix(),
        "review" => review(),
        _ => Vec::new(),
    }
}

/// The sample's code, as the edits below find it.
const SLUG_BUGGY: &str = r#"    return re.sub(r"[^a-z0-9]", "-", title.lower())"#;
const SLUG_HALF: &str = r#"    return re.sub(r"[^a-z0-9]+", "-", title.lower())"#;
const SLUG_FIXED: &str = r#"    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")"#;
const WORDS_TEST: &str = "    assert word_count(\"one two  three\") == 3\n";
const SLUG_TEST: &str =
    "    assert slugify(\"Hello World\") == \"hello-world\", slugify(\"Hello World\")\n";

fn compound_dev() -> Vec<Reply> {
    let decision = |id: &str,
                    category: &str,
                    decision: &str,
                    alternatives: &[&str],
                    rationale: &str,
                    trade_offs: &str| {
        json!({ "id": id, "category": category, "stage": 1, "decision": decision,
                "alternatives": alternatives, "rationale": rationale, "trade_offs": trade_offs })
    };
    let task = |id: &str,
                title: &str,
                description: &str,
                status: &str,
                files: &[&str],
                criteria: &[&str]| {
        json!({ "id": id, "title": title, "description": description, "status": status,
                "files": files, "acceptance_criteria": criteria })
    };
    let tasks = |first: &str, second: &str| {
        json!({
            "summary": "Add titlecase() to textkit, then a `title` command to the CLI.",
            "tasks": [
                task("T1", "Add titlecase() to src/textkit.py",
                     "A function that capitalises each whitespace-separated word and joins them with single spaces, with a test.",
                     first, &["src/textkit.py", "tests/test_textkit.py"],
                     &["titlecase(\"hello wide world\") returns \"Hello Wide World\"", "sh scripts/test.sh passes"]),
                task("T2", "Add the `title` command to src/cli.py",
                     "`cli.py title TEXT` prints titlecase(TEXT); the usage line names it. A test calls main() and checks what it prints.",
                     second, &["src/cli.py", "tests/test_cli.py"],
                     &["`python3 src/cli.py title \"hello world\"` prints Hello World", "sh scripts/test.sh passes"]),
            ]
        })
    };
    let cli_before = "    if len(argv) != 3 or argv[1] not in (\"slug\", \"words\"):\n        print(\"usage: cli.py slug|words TEXT\", file=sys.stderr)\n        return 2\n    if argv[1] == \"slug\":\n        print(slugify(argv[2]))\n    else:\n";
    let cli_after = "    if len(argv) != 3 or argv[1] not in (\"slug\", \"title\", \"words\"):\n        print(\"usage: cli.py slug|title|words TEXT\", file=sys.stderr)\n        return 2\n    if argv[1] == \"slug\":\n        print(slugify(argv[2]))\n    elif argv[1] == \"title\":\n        print(titlecase(argv[2]))\n    else:\n";
    let test_cli = "\"\"\"Tests of src/cli.py.\"\"\"\n\nimport contextlib\nimport io\n\nfrom cli import main\n\n\ndef test_title_command():\n    out = io.StringIO()\n    with contextlib.redirect_stdout(out):\n        assert main([\"cli.py\", \"title\", \"hello world\"]) == 0\n    assert out.getvalue() == \"Hello World\\n\", out.getvalue()\n";
    vec![
        // plan
        said(
            "I'll start with the layout of the code.",
            "list_dir",
            json!({ "path": "src" }),
        ),
        said(
            "The command line is in cli.py; let me see how it dispatches.",
            "read_file",
            json!({ "path": "src/cli.py" }),
        ),
        tool(
            "submit_brief",
            json!({
                "topic": "A `title` command for textkit",
                "summary": "cli.py dispatches on its first argument to functions of textkit.py; a new command needs a function in textkit.py and a branch (and usage text) in cli.py.",
                "findings": [
                    { "finding": "cli.py accepts exactly `slug` or `words` plus one TEXT argument and prints the result.", "sources": ["src/cli.py"], "confidence": "high" },
                    { "finding": "The helpers live in textkit.py and are pure functions of a string.", "sources": ["src/textkit.py"], "confidence": "high" }
                ],
                "open_questions": ["Should title case keep the original spacing?"],
                "recommendations": ["Add titlecase() to textkit.py first, then the command."]
            }),
        ),
        // architecture
        tool(
            "submit_decisions",
            json!({ "decisions": [decision("ARCH-01", "architecture",
            "Put the logic in textkit.titlecase(); cli.py only dispatches to it.",
            &["Format the text inside cli.py"],
            "Keeps cli.py a thin dispatcher, as it is for slug and words, and the function testable on its own.",
            "One more public function in textkit.")] }),
        ),
        // backend
        said(
            "Checking the existing helpers' style.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_decisions",
            json!({ "decisions": [decision("BACK-01", "backend",
            "titlecase() splits on whitespace, capitalises each word and joins with single spaces.",
            &["str.title(), which also capitalises after apostrophes (\"don't\" -> \"Don'T\")"],
            "Matches word_count's idea of a word and avoids str.title()'s apostrophe surprise.",
            "Runs of spaces collapse to one.")] }),
        ),
        // frontend
        tool(
            "submit_decisions",
            json!({ "decisions": [decision("UI-01", "frontend",
            "The command is `title TEXT`, listed in the usage line beside slug and words.",
            &["A --title flag on slug"],
            "Same shape as the existing commands.",
            "None.")] }),
        ),
        // testing
        said(
            "How are tests found and run?",
            "read_file",
            json!({ "path": "tests/run.py" }),
        ),
        tool(
            "submit_decisions",
            json!({ "decisions": [decision("TEST-01", "testing",
            "One unit test of titlecase() in tests/test_textkit.py and one test of the command through main() in tests/test_cli.py.",
            &["Run cli.py as a subprocess"],
            "tests/run.py runs plain test_* functions; calling main() needs no subprocess.",
            "The test does not cover argument parsing by the shell.")] }),
        ),
        // synthesize
        tool(
            "submit_decisions",
            json!({
                "summary": "A textkit function and a thin command, each with a test.",
                "decisions": [
                    { "id": "PLAN-01", "category": "architecture", "stage": 2, "decision": "titlecase() in textkit.py; cli.py dispatches `title` to it.", "alternatives": ["Logic in cli.py"], "rationale": "The architecture and frontend specialists agree; it keeps cli.py thin.", "trade_offs": "None worth noting." },
                    { "id": "PLAN-02", "category": "testing", "stage": 2, "decision": "Test the function and the command through main().", "alternatives": ["Subprocess tests"], "rationale": "Fast and matches tests/run.py.", "trade_offs": "Shell quoting is not covered." }
                ]
            }),
        ),
        tool("submit_tasks", tasks("todo", "todo")),
        // execute, iteration 1: T1
        said(
            "T1 first: the function, then its test.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "edit_file",
            json!({ "path": "src/textkit.py", "old": "    return len(text.split())\n",
            "new": "    return len(text.split())\n\n\ndef titlecase(text):\n    \"\"\"`text` with each word capitalised: \"hello world\" -> \"Hello World\".\"\"\"\n    return \" \".join(word.capitalize() for word in text.split())\n" }),
        ),
        tool(
            "edit_file",
            json!({ "path": "tests/test_textkit.py", "old": "from textkit import slugify, word_count\n", "new": "from textkit import slugify, titlecase, word_count\n" }),
        ),
        tool(
            "edit_file",
            json!({ "path": "tests/test_textkit.py", "old": WORDS_TEST,
            "new": format!("{WORDS_TEST}\n\ndef test_titlecase():\n    assert titlecase(\"hello wide world\") == \"Hello Wide World\"\n") }),
        ),
        tool("submit_progress", tasks("done", "todo")),
        // execute, iteration 2: T2
        said(
            "T1 is done and tested; now T2, the command.",
            "read_file",
            json!({ "path": "src/cli.py" }),
        ),
        tool(
            "edit_file",
            json!({ "path": "src/cli.py", "old": "from textkit import slugify, word_count\n", "new": "from textkit import slugify, titlecase, word_count\n" }),
        ),
        tool(
            "edit_file",
            json!({ "path": "src/cli.py", "old": cli_before, "new": cli_after }),
        ),
        tool(
            "write_file",
            json!({ "path": "tests/test_cli.py", "content": test_cli }),
        ),
        tool("submit_progress", tasks("done", "done")),
        // retro
        tool(
            "submit_retro",
            json!({
                "summary": "Two small tasks, each implemented and tested in one iteration; the plan held.",
                "went_well": ["The specialists agreed on keeping cli.py a thin dispatcher", "Each task came with its test"],
                "went_badly": ["Nobody settled the open question about keeping the original spacing"],
                "actions": [{ "action": "Answer open questions in the synthesis step, not later.", "target": "compound-dev synthesize prompt", "priority": "low" }]
            }),
        ),
    ]
}

fn feature() -> Vec<Reply> {
    let words_before = "    \"\"\"How many whitespace-separated words `text` holds.\"\"\"\n    return len(text.split())\n";
    let words_after = "    \"\"\"How many words of `text` hold a letter or a digit (\"a - b\" has 2).\"\"\"\n    return len([word for word in text.split() if any(c.isalnum() for c in word)])\n";
    vec![
        // research
        said(
            "word_count should be in textkit.py.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_notes",
            json!({
                "topic": "Counting only real words in word_count",
                "summary": "word_count() counts every whitespace-separated token, punctuation-only tokens included.",
                "findings": [{ "finding": "word_count(text) returns len(text.split()), so \"a - b\" counts 3.", "sources": ["src/textkit.py"], "confidence": "high" }],
                "recommendations": ["Filter the tokens on str.isalnum() of any character."]
            }),
        ),
        // spec
        tool(
            "submit_spec",
            json!({
                "title": "word_count counts only words with a letter or digit",
                "summary": "Tokens made only of punctuation stop counting as words.",
                "requirements": [
                    { "id": "R1", "text": "word_count(\"a - b\") returns 2.", "priority": "must" },
                    { "id": "R2", "text": "word_count(\"one two  three\") still returns 3.", "priority": "must" }
                ],
                "non_goals": ["Unicode word segmentation"],
                "design": "Keep splitting on whitespace; count a token if any of its characters is alphanumeric.",
                "acceptance_criteria": ["A test of word_count(\"a - b\") == 2 passes", "The existing tests still pass"]
            }),
        ),
        // spec, second opinion
        said(
            "Checking that the spec matches the code it changes.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_review",
            json!({ "verdict": "approve", "summary": "Small, testable, and the non-goal is the right one.", "findings": [] }),
        ),
        // implement
        tool(
            "edit_file",
            json!({ "path": "src/textkit.py", "old": words_before, "new": words_after }),
        ),
        tool(
            "edit_file",
            json!({ "path": "tests/test_textkit.py", "old": WORDS_TEST,
            "new": format!("{WORDS_TEST}\n\ndef test_word_count_skips_punctuation():\n    assert word_count(\"a - b\") == 2\n") }),
        ),
        tool(
            "submit_summary",
            json!({ "text": "word_count() now counts only tokens holding a letter or digit; tests/test_textkit.py checks \"a - b\" gives 2.", "tags": ["feature"] }),
        ),
        // review
        said(
            "Reading the changed function.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_review",
            json!({ "verdict": "approve", "summary": "Meets R1 and R2; the test covers the new case.", "findings": [] }),
        ),
    ]
}

fn bugfix() -> Vec<Reply> {
    let new_test = format!(
        "{SLUG_TEST}\n\ndef test_slugify_collapses_punctuation_and_trims_dashes():\n    assert slugify(\"Hello,  World!\") == \"hello-world\", slugify(\"Hello,  World!\")\n"
    );
    vec![
        // reproduce
        said(
            "Reading slugify first.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        said(
            "Each non-alphanumeric character becomes its own dash. A test of the reported case:",
            "edit_file",
            json!({ "path": "tests/test_textkit.py", "old": SLUG_TEST, "new": new_test }),
        ),
        tool(
            "submit_test",
            json!({ "text": "tests/test_textkit.py: test_slugify_collapses_punctuation_and_trims_dashes checks slugify(\"Hello,  World!\") == \"hello-world\"." }),
        ),
        // fix, iteration 1: only half of it
        said(
            "A run of separators should give one dash.",
            "edit_file",
            json!({ "path": "src/textkit.py", "old": SLUG_BUGGY, "new": SLUG_HALF }),
        ),
        tool(
            "submit_summary",
            json!({ "text": "slugify() now replaces each run of non-alphanumeric characters with one dash." }),
        ),
        // fix, iteration 2: the trailing dash
        said(
            "The test still fails: the `!` leaves a trailing dash. Trimming dashes at both ends.",
            "edit_file",
            json!({ "path": "src/textkit.py", "old": SLUG_HALF, "new": SLUG_FIXED }),
        ),
        tool(
            "submit_summary",
            json!({ "text": "slugify() replaces each run of non-alphanumeric characters with one dash and trims dashes at both ends." }),
        ),
        // review
        said(
            "Checking the fix.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_review",
            json!({ "verdict": "approve", "summary": "The fix addresses the cause and the new test would catch a regression.", "findings": [] }),
        ),
    ]
}

fn review() -> Vec<Reply> {
    let at = |line: u32| json!({ "file": "src/textkit.py", "line": line });
    let over = json!({ "severity": "major", "message": "truncate() returns up to limit + 3 characters: the \"...\" is added after cutting at `limit`.", "location": at(24), "suggestion": "Cut at limit - 3 before adding \"...\"." });
    let equal = json!({ "severity": "minor", "message": "A text of exactly `limit` characters is cut although it fits: the check should be `<=`.", "location": at(22) });
    let untested = json!({ "severity": "major", "message": "truncate() has no test.", "suggestion": "Test a short text, a text of exactly `limit` characters and a long one." });
    vec![
        // correctness
        said(
            "Reading the new function in context.",
            "read_file",
            json!({ "path": "src/textkit.py" }),
        ),
        tool(
            "submit_review",
            json!({ "verdict": "changes_requested", "summary": "The result can exceed the limit.", "findings": [over, equal] }),
        ),
        // design
        tool(
            "submit_review",
            json!({ "verdict": "approve", "summary": "Fits the module: a pure function of a string, documented.", "findings": [] }),
        ),
        // tests
        said(
            "Is truncate tested anywhere?",
            "grep",
            json!({ "pattern": "truncate", "path": "tests" }),
        ),
        tool(
            "submit_review",
            json!({ "verdict": "changes_requested", "summary": "No test covers truncate().", "findings": [untested] }),
        ),
        // synthesize
        tool(
            "submit_findings",
            json!({ "verdict": "changes_requested", "summary": "truncate() can return more than `limit` characters, cuts texts that fit, and is untested.", "findings": [over, equal, untested] }),
        ),
    ]
}

#[test]
fn a_changed_prompt_makes_the_replay_stop_with_what_differs() {
    if std::env::var_os("WFE_BLESS").is_some() {
        return;
    }
    let host = Repo::empty();
    let dir = host.home.path().join("demo");
    let dir_arg = dir.display().to_string();
    host.wfe(&["demo", "--template", "bugfix", "--dir", &dir_arg])
        .code(0);
    // Again, on the fixed code and with another report: the first request
    // differs from the recorded one, and the run says where.
    let run = host.wfe(&[
        "-C",
        &dir_arg,
        "run",
        "bugfix",
        "--arg",
        "issue=slugify is slow",
        "--arg",
        "test_command=sh scripts/test.sh",
    ]);
    run.code(1);
    assert!(run.stderr.contains("differs"), "{}", run.stderr);
    assert!(run.stderr.contains("slugify is slow"), "{}", run.stderr);
}

#[test]
fn template_new_writes_a_minimal_or_cloned_template_that_runs() {
    let repo = Repo::new();
    let run = repo.wfe(&["template", "new", "my-flow"]);
    run.code(0);
    let text = read(&repo.path().join(".wfe/templates/my-flow.json"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["$schema"], "../template.schema.json");
    assert_eq!(doc["name"], "my-flow");
    // The schema it names is there, for editors, and is the template format's.
    let schema = read(&repo.path().join(".wfe/template.schema.json"));
    assert_eq!(
        serde_json::from_str::<Value>(&schema).unwrap(),
        serde_json::from_str::<Value>(&read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/template.schema.json")
        ))
        .unwrap()
    );
    repo.wfe(&["template", "validate", "my-flow"]).code(0);
    repo.wfe(&["run", "my-flow"]).code(0);

    // A copy of a built-in: the same phases under the new name.
    repo.wfe(&["template", "new", "my-bugfix", "--from", "bugfix"])
        .code(0);
    let copy: Value =
        serde_json::from_str(&read(&repo.path().join(".wfe/templates/my-bugfix.json"))).unwrap();
    let builtin: Value = serde_json::from_str(&read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/bugfix.json"),
    ))
    .unwrap();
    assert_eq!(copy["name"], "my-bugfix");
    assert_eq!(copy["phases"], builtin["phases"]);
    assert_eq!(copy["args"], builtin["args"]);
    let list = repo.wfe(&["template", "list"]);
    assert!(list.stdout.contains("my-bugfix"), "{}", list.stdout);
}

#[test]
fn template_new_refuses_bad_names_existing_files_and_unknown_sources() {
    let repo = Repo::new();
    repo.write(".wfe/templates/taken.yaml", "name: taken\nphases: []\n");
    for (args, says) in [
        (
            &["template", "new", "Bad Name"][..],
            "cannot name a template",
        ),
        (
            &["template", "new", "../escape"][..],
            "cannot name a template",
        ),
        (&["template", "new", "taken"][..], "exists"),
        (&["template", "new", "x", "--from", "nope"][..], "nope"),
    ] {
        let run = repo.wfe(args);
        run.code(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    // Nothing was written.
    let mut files = Vec::new();
    list_files(&repo.path().join(".wfe"), Path::new(""), &mut files);
    assert_eq!(files, ["templates/taken.yaml"]);
}

#[test]
fn template_list_describes_every_built_in_pipeline() {
    let repo = Repo::new();
    let run = repo.wfe(&["template", "list"]);
    run.code(0);
    for name in ["bugfix", "ci", "compound-dev", "feature", "hello", "review"] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{}", run.stdout));
        assert!(line.contains("built-in"), "{line}");
        assert!(
            line.len() > name.len() + 40,
            "a one-line description: {line}"
        );
    }
}
