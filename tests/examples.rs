//! The bundled `examples/agent-replay` keeps working: copied into a fresh
//! git repository, it runs offline from its recorded exchanges, and its
//! agents' edits and second opinions land in the run as they were recorded.
//!
//! `WFE_BLESS=1 cargo test --test examples` records the exchanges again: it
//! runs the example against the fake Anthropic server of `common/llm.rs`
//! playing the model turns scripted in [`script`], and writes each agent
//! phase's `exchanges.jsonl` into `examples/agent-replay/recorded/`. Do it
//! after changing anything an agent is sent (the template's prompts or
//! tools, the example's code, wfe's tool specs or review wording): the
//! replay is strict and says which request changed.
//!
//! `wfe demo --agent` runs the same example from the copy compiled into
//! the binary; a test here checks that the copy is the whole example.

use crate::common;

use std::path::{Path, PathBuf};

use common::Repo;
use common::snapshot::assert_run;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

/// The example, relative to the crate root.
const EXAMPLE: &str = "examples/agent-replay";
/// Its template, as `wfe run` names it.
const TEMPLATE: &str = "review-fix";
/// Its agent phases, each answered from `recorded/<phase>.exchanges.jsonl`.
const AGENT_PHASES: &[&str] = &["plan", "fix"];
/// The models the recording names (the replay seat reuses them).
const AUTHOR_MODEL: &str = "scripted-author";
const REVIEWER_MODEL: &str = "scripted-reviewer";
/// The clock while recording, so re-recording changes only durations.
const RECORDED_AT: &str = "2026-01-15T09:30:00Z";

/// The bug, as `src/calc.py` ships it.
const MEDIAN_BUGGY: &str = "    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n";
/// The fix agent's edit of it.
const MEDIAN_FIXED: &str = "    ordered = sorted(values)\n    middle = len(ordered) // 2\n    if len(ordered) % 2 == 1:\n        return ordered[middle]\n    return (ordered[middle - 1] + ordered[middle]) / 2\n";
/// The last check of `test_calc.sh` as shipped, and after the reviewer's
/// request for a regression check.
const CHECKS_BEFORE: &str = "    (\"median([3, 1, 2])\", 2),\n";
const CHECKS_AFTER: &str =
    "    (\"median([3, 1, 2])\", 2),\n    (\"median([4, 1, 3, 2])\", 2.5),\n";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE)
}

/// A git repository holding a copy of the example, committed.
fn example_repo() -> Repo {
    let repo = Repo::empty();
    copy_dir(&example_dir(), repo.path());
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "the agent-replay example"]);
    repo
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // Left behind by running the example's Python by hand.
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn show(repo: &Repo, run: &str, path: &str) -> String {
    repo.git(&["show", &format!("refs/wfe/runs/{run}:{path}")])
}

fn show_json(repo: &Repo, run: &str, path: &str) -> Value {
    serde_json::from_str(&show(repo, run, path)).unwrap()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the recorded author last submitted for `artifact` in `phase`: the
/// artifact a faithful replay must produce.
fn recorded_submission(phase: &str, artifact: &str) -> Value {
    let path = example_dir()
        .join("recorded")
        .join(format!("{phase}.exchanges.jsonl"));
    let tool = format!("submit_{artifact}");
    jsonl(&read(&path))
        .iter()
        .filter(|e| e["conversation"] == "primary")
        .flat_map(|e| {
            e["response"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|block| block["type"] == "tool_use" && block["name"] == tool.as_str())
        .map(|block| block["input"].clone())
        .next_back()
        .unwrap_or_else(|| panic!("{}: no {tool} call", path.display()))
}

#[test]
fn agent_replay_runs_offline_from_its_recording() {
    if std::env::var_os("WFE_BLESS").is_some() {
        record();
    }
    let repo = example_repo();
    let original_calc = read(&repo.path().join("src/calc.py"));
    let original_checks = read(&repo.path().join("test_calc.sh"));
    assert!(original_calc.contains(MEDIAN_BUGGY), "{original_calc}");

    let run = repo.wfe(&["run", TEMPLATE, "--json"]);
    run.code(0);
    assert_eq!(run.json()["status"], "completed", "{}", run.stdout);
    let id = repo.run_id();

    // The artifacts are the ones the recorded author submitted last.
    for (phase, artifact) in [("plan", "tasks"), ("fix", "summary")] {
        assert_eq!(
            show_json(
                &repo,
                &id,
                &format!("phases/{phase}/artifacts/{artifact}.json")
            ),
            recorded_submission(phase, artifact),
            "{phase}/{artifact}"
        );
    }
    let tasks = show_json(&repo, &id, "phases/plan/artifacts/tasks.json");
    assert_eq!(tasks["tasks"][0]["files"], json!(["src/calc.py"]));

    // The code was fixed by the agent's edits, run again by this run's tools:
    // the working tree and the snapshot after `fix` both have them.
    let calc = read(&repo.path().join("src/calc.py"));
    assert_eq!(calc, original_calc.replace(MEDIAN_BUGGY, MEDIAN_FIXED));
    let checks = read(&repo.path().join("test_calc.sh"));
    assert_eq!(checks, original_checks.replace(CHECKS_BEFORE, CHECKS_AFTER));
    assert_eq!(show(&repo, &id, "workspace/src/calc.py"), calc);
    let edits: Vec<Value> = jsonl(&show(&repo, &id, "phases/fix/tool-calls.jsonl"))
        .into_iter()
        .filter(|c| c["tool"] == "edit_file")
        .collect();
    let edited: Vec<&Value> = edits.iter().map(|c| &c["input"]["path"]).collect();
    assert_eq!(edited, [&json!("src/calc.py"), &json!("test_calc.sh")]);
    assert!(edits.iter().all(|c| c["error"].is_null()), "{edits:?}");

    // Two review rounds: changes requested (a missing regression check), then approval.
    let first = show_json(&repo, &id, "phases/fix/reviews/1-1.json");
    let second = show_json(&repo, &id, "phases/fix/reviews/1-2.json");
    assert_eq!(first["verdict"], "changes_requested");
    assert_eq!(first["findings"][0]["location"]["file"], "test_calc.sh");
    assert_eq!(second["verdict"], "approve");
    let exchanges = jsonl(&show(&repo, &id, "phases/fix/exchanges.jsonl"));
    let conversations: Vec<&str> = exchanges
        .iter()
        .map(|e| e["conversation"].as_str().unwrap())
        .collect();
    assert!(conversations.contains(&"review-2"), "{conversations:?}");
    assert!(exchanges.iter().all(|e| e["provider"] == "replay"));

    // The check ran the fixed code, the new regression check included.
    let log = show(&repo, &id, "phases/check/log.jsonl");
    for line in [
        "ok   median([4, 1, 3, 2]) == 2.5",
        "n=4 mean=2.5 median=2.5",
        "--- fix: summary (message)",
    ] {
        assert!(
            log.contains(line),
            "`{line}` not in the check's log:\n{log}"
        );
    }
}

#[test]
fn agent_replay_diverges_when_the_prompt_changes() {
    let repo = example_repo();
    let run = repo.wfe(&[
        "run",
        TEMPLATE,
        "--arg",
        "issue=median() is slow on long lists",
    ]);
    run.code(1);
    // Which provider diverged (`recorded`) and where: the request's
    // `/messages/0/content/0/text` now says `slow on long lists`.
    assert_run!(&repo, "agent_replay_diverges", &run);
    // Nothing was edited: the model never answered.
    assert!(read(&repo.path().join("src/calc.py")).contains(MEDIAN_BUGGY));
}

#[test]
fn demo_agent_replays_the_bundled_example_in_a_scratch_repository() {
    // The binary holds the recordings it was built with, older than the
    // ones being written: the next `cargo test` checks the new ones.
    if std::env::var_os("WFE_BLESS").is_some() {
        return;
    }
    // A repository only for its hermetic HOME and config; the demo makes its own.
    let host = Repo::empty();
    let dir = host.home.path().join("demo");
    let run = host.wfe(&["demo", "--agent", "--dir", &dir.display().to_string()]);
    run.code(0);
    // The demo's progress, `plan completed` among it.
    let demo_dir = dir.display().to_string();
    assert_run!(&host, "demo_agent", &run, [(demo_dir, "[DEMO]")]);

    // The bundle is the whole example: every file, the same bytes but the
    // two the agent edited.
    let mut files = Vec::new();
    list_files(&example_dir(), Path::new(""), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for file in &files {
        let shipped = read(&example_dir().join(file));
        let demo = read(&dir.join(file));
        let expected = match file.to_str().unwrap() {
            "src/calc.py" => shipped.replace(MEDIAN_BUGGY, MEDIAN_FIXED),
            "test_calc.sh" => shipped.replace(CHECKS_BEFORE, CHECKS_AFTER),
            _ => shipped,
        };
        assert_eq!(demo, expected, "{} in the demo", file.display());
    }
    let dir_arg = dir.to_str().unwrap();
    let git = |args: &[&str]| host.git(&[&["-C", dir_arg], args].concat());
    let runs = git(&["for-each-ref", "--format=%(refname)", "refs/wfe/runs/"]);
    let run_ref = runs.trim();
    let review = git(&["show", &format!("{run_ref}:phases/fix/reviews/1-2.json")]);
    assert!(review.contains("\"approve\""), "{review}");
}

/// The files under `dir`, relative to `root`, but `__pycache__`.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root.join(dir)).unwrap() {
        let entry = entry.unwrap();
        let rel = dir.join(entry.file_name());
        if entry.file_name() == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            list_files(root, &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// Runs the example against the fake server playing [`script`] and writes
/// what the run recorded into the example's `recorded/`.
fn record() {
    let server = Server::spawn(script());
    let repo = example_repo();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "fake-anthropic": { "kind": "anthropic", "base_url": server.url() } },
            "roles": {
                "primary": { "provider": "fake-anthropic", "model": AUTHOR_MODEL },
                "reviewer": { "provider": "fake-anthropic", "model": REVIEWER_MODEL }
            }
        }))
        .unwrap(),
    );
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-fake-for-recording")
        .env("WFE_NOW", RECORDED_AT)
        .args(["run", TEMPLATE])
        .output()
        .unwrap();
    common::Run::from(out).code(0);
    let id = repo.run_id();
    let dir = example_dir().join("recorded");
    std::fs::create_dir_all(&dir).unwrap();
    for phase in AGENT_PHASES {
        let text = show(&repo, &id, &format!("phases/{phase}/exchanges.jsonl"));
        let path = dir.join(format!("{phase}.exchanges.jsonl"));
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if without_durations(&old) == without_durations(&text) {
            continue;
        }
        // Renamed into place, so a test reading it meanwhile sees a whole file.
        let partial = dir.join(format!(".{phase}.exchanges.jsonl.tmp"));
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, &path).unwrap();
    }
    let asked = server.requests().len();
    assert_eq!(asked, script().len(), "every scripted turn was asked for");
}

/// Exchanges with their timings left out: what a recording means, so
/// recording again with nothing changed leaves the files alone.
fn without_durations(text: &str) -> Vec<Value> {
    let mut exchanges = jsonl(text);
    for exchange in &mut exchanges {
        if let Some(exchange) = exchange.as_object_mut() {
            exchange.remove("duration_ms");
        }
    }
    exchanges
}

fn say(text: &str) -> Part {
    Part::Text(text.into())
}

/// The model's turns, in the order the run asks for them: `plan`, then
/// `fix` with its two review rounds.
fn script() -> Vec<Reply> {
    let fix_summary = "median() in src/calc.py now returns the mean of the two middle values \
                       when the count is even ([1, 2, 3, 4] gives 2.5, was 3); odd counts still \
                       return the middle value. report.py needed no change: it only formats the \
                       result.";
    vec![
        // plan (scripted-author)
        Reply::anthropic(vec![
            say("I'll start with what is under src/."),
            Part::Tool("list_dir", json!({ "path": "src" })),
        ]),
        Reply::anthropic(vec![
            say(
                "`report.py` prints the summary and `calc.py` presumably computes it, so `median` should be there.",
            ),
            Part::Tool("read_file", json!({ "path": "src/calc.py" })),
        ]),
        Reply::anthropic(vec![
            say(
                "Found the cause. The docstring of `median` says that for an even count the median is the \
                 mean of the two middle values, but the code always returns `ordered[len(ordered) // 2]`: \
                 for [1, 2, 3, 4] that is index 2, the value 3, the upper of the two middle values. Odd \
                 counts are right. Before planning, let me see who else calls `median`.",
            ),
            Part::Tool("grep", json!({ "pattern": "median", "glob": "*.py" })),
        ]),
        Reply::anthropic(vec![
            say(
                "Only `report.py` calls it, and it formats the result with `:.1f`, so a float median for \
                 even counts needs no change there. The fix is local to `median`.",
            ),
            Part::Tool(
                "submit_tasks",
                json!({
                    "summary": "Fix median() for an even number of values: a one-function change in src/calc.py.",
                    "tasks": [{
                        "id": "T1",
                        "title": "Make median() average the two middle values for an even count",
                        "description": "median() in src/calc.py returns ordered[len(ordered) // 2] for every count, which for an even count is the upper of the two middle values (3 for [1, 2, 3, 4]). Its docstring already promises the mean of the two middle values. Keep the odd case as it is and return (ordered[middle - 1] + ordered[middle]) / 2 when the count is even. report.py only formats the result, so it needs no change.",
                        "status": "todo",
                        "files": ["src/calc.py"],
                        "acceptance_criteria": [
                            "median([1, 2, 3, 4]) returns 2.5",
                            "median([3, 1, 2]) still returns 2 and median([5]) still returns 5",
                            "`python3 src/report.py 1 2 3 4` prints median=2.5"
                        ]
                    }]
                }),
            ),
        ]),
        // fix (scripted-author)
        Reply::anthropic(vec![
            say("Reading the current `median` before editing it."),
            Part::Tool("read_file", json!({ "path": "src/calc.py" })),
        ]),
        Reply::anthropic(vec![
            say(
                "As planned: an odd count keeps the middle element, an even count returns the mean of the two middle ones.",
            ),
            Part::Tool(
                "edit_file",
                json!({ "path": "src/calc.py", "old": MEDIAN_BUGGY, "new": MEDIAN_FIXED }),
            ),
        ]),
        Reply::anthropic(vec![
            say("Checking the edited function."),
            Part::Tool(
                "read_file",
                json!({ "path": "src/calc.py", "start_line": 9 }),
            ),
        ]),
        Reply::anthropic(vec![
            say(
                "It reads right: [1, 2, 3, 4] gives (2 + 3) / 2 = 2.5, [3, 1, 2] gives 2 and [5] gives 5.",
            ),
            Part::Tool(
                "submit_summary",
                json!({ "text": fix_summary, "tags": ["bugfix", "calc"] }),
            ),
        ]),
        // fix, review round 1 (scripted-reviewer)
        Reply::anthropic(vec![
            say("I'll check the change against the plan, starting with the code."),
            Part::Tool("read_file", json!({ "path": "src/calc.py" })),
        ]),
        Reply::anthropic(vec![
            say(
                "The logic is right for both parities, and the list is sorted before it is indexed. Is anything checking it?",
            ),
            Part::Tool("read_file", json!({ "path": "test_calc.sh" })),
        ]),
        Reply::anthropic(vec![
            say("The code is right but unguarded: every median check uses an odd-length list."),
            Part::Tool(
                "submit_review",
                json!({
                    "verdict": "changes_requested",
                    "summary": "The fix is correct, but nothing guards it: test_calc.sh has no even-length case, which is how the bug went unnoticed.",
                    "findings": [{
                        "severity": "major",
                        "message": "test_calc.sh checks median only on odd-length lists (median([5]), median([3, 1, 2])), so it passed with the bug and would pass if the bug came back.",
                        "location": { "file": "test_calc.sh", "line": 13, "end_line": 14 },
                        "suggestion": "Add (\"median([4, 1, 3, 2])\", 2.5) to CHECKS: an even count, unsorted so that the sort is exercised too."
                    }]
                }),
            ),
        ]),
        // fix, the author's revision (scripted-author)
        Reply::anthropic(vec![
            say(
                "Agreed: the checks never had an even count, which is why the bug got through. Adding the case the reviewer suggests.",
            ),
            Part::Tool(
                "edit_file",
                json!({ "path": "test_calc.sh", "old": CHECKS_BEFORE, "new": CHECKS_AFTER }),
            ),
        ]),
        Reply::anthropic(vec![Part::Tool(
            "submit_summary",
            json!({
                "text": format!(
                    "{fix_summary} test_calc.sh gains the regression check median([4, 1, 3, 2]) == 2.5, \
                     an even count given unsorted so the sort is covered too."
                ),
                "tags": ["bugfix", "calc", "tests"]
            }),
        )]),
        // fix, review round 2 (scripted-reviewer)
        Reply::anthropic(vec![
            say("Checking the new case."),
            Part::Tool(
                "read_file",
                json!({ "path": "test_calc.sh", "start_line": 11, "end_line": 16 }),
            ),
        ]),
        Reply::anthropic(vec![Part::Tool(
            "submit_review",
            json!({
                "verdict": "approve",
                "summary": "The fix matches the plan, and test_calc.sh now covers an even-length, unsorted list.",
                "findings": []
            }),
        )]),
    ]
}
