//! `wfe diff` end to end: runs of real templates in temporary git
//! repositories, compared as whole runs, checkpoints, phases and attempts;
//! and `git diff` between checkpoints, which must read well on its own.

use crate::common;

use common::Repo;
use common::snapshot::{assert_run, assert_text, command};
use serde_json::{Value, json};

/// A repo with template `tasks`: `plan` copies `data/tasks-<v>.json` into its
/// `tasks` artifact; `extra` runs only when `v` is 2.
fn tasks_repo() -> Repo {
    let repo = Repo::new();
    repo.write(".wfe/schemas/any.json", "{}");
    repo.write(
        "data/tasks-1.json",
        &json!({
            "tasks": [
                { "id": 1, "title": "parse", "status": "todo" },
                { "id": 2, "title": "check", "status": "todo" },
                { "id": "t3", "title": "print", "status": "todo" }
            ],
            "meta": { "owner": { "name": "ada", "team": "core" } }
        })
        .to_string(),
    );
    repo.write(
        "data/tasks-2.json",
        &json!({
            "tasks": [
                { "id": "t3", "title": "print", "status": "todo" },
                { "id": 1, "title": "parse", "status": "done" },
                { "id": 2, "title": "check", "status": "todo" }
            ],
            "meta": { "owner": { "name": "bob", "team": "core" } }
        })
        .to_string(),
    );
    repo.template(
        "tasks",
        &json!({
            "name": "tasks",
            "args": { "type": "object", "properties": { "v": { "type": "string" } }, "required": ["v"] },
            "phases": [
                { "id": "plan", "kind": "script",
                  "run": "cp \"data/tasks-$WFE_ARG_V.json\" \"$WFE_OUT/tasks.json\"",
                  "outputs": { "tasks": "any" } },
                { "id": "extra", "kind": "script", "needs": ["plan"], "if": "args.v == '2'",
                  "run": "echo '{\"text\": \"more\", \"tags\": [\"late\"]}' > \"$WFE_OUT/note.json\"",
                  "outputs": { "note": "message" } }
            ]
        }),
    );
    repo
}

/// Runs `template` with `args` and returns the run's id.
fn run(repo: &Repo, template: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", template, "--json"];
    argv.extend_from_slice(args);
    let out = repo.wfe(&argv);
    out.code(0);
    out.json()["id"].as_str().unwrap().to_string()
}

/// The entry of `phase` in a `wfe diff --json` document.
fn phase<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == id)
        .unwrap_or_else(|| panic!("no phase {id} in {doc:#}"))
}

#[test]
fn two_runs_of_one_template_differ_by_json_pointer() {
    let repo = tasks_repo();
    let one = run(&repo, "tasks", &["--arg", "v=1"]);
    let two = run(&repo, "tasks", &["--arg", "v=2"]);

    let out = repo.wfe(&["diff", &one, &two, "--json"]);
    out.code(0);
    let doc = out.json();
    assert_eq!(doc["a"]["run"], one.as_str());
    assert_eq!(doc["b"]["run"], two.as_str());
    assert!(doc.get("run_status").is_none(), "both completed: {doc:#}");

    let plan = phase(&doc, "plan");
    assert!(plan.get("status").is_none(), "plan completed in both");
    assert_eq!(
        plan["artifacts"],
        json!([{ "name": "tasks", "kind": "changed", "changes": [
            { "kind": "changed", "path": "/meta/owner/name", "from": "ada", "to": "bob" },
            { "kind": "moved", "from_path": "/tasks/2", "to_path": "/tasks/0" },
            { "kind": "changed", "path": "/tasks/1/status", "from": "todo", "to": "done" }
        ] }])
    );
    let extra = phase(&doc, "extra");
    assert_eq!(
        extra["status"],
        json!({ "from": "skipped", "to": "completed" })
    );
    assert_eq!(
        extra["artifacts"],
        json!([{ "name": "note", "kind": "added", "changes": [
            { "kind": "added", "path": "", "value": { "text": "more", "tags": ["late"] } }
        ] }])
    );

    // The same for people, on stdout.
    let human = repo.wfe(&["diff", &one, &two]);
    human.code(0);
    // Headed by the two sides; a line per change: `~` changed, `↷` moved,
    // `+` added, and a phase's status change on its own line.
    assert_run!(&repo, "diff_two_runs", &human);

    // Differences exit 0 unless asked; --exit-code makes them 1.
    repo.wfe(&["diff", &one, &two, "--exit-code"]).code(1);
    let same = repo.wfe(&["diff", &one, &one, "--exit-code"]);
    same.code(0);
    assert_run!(&repo, "diff_a_run_with_itself", &same);
    let json_same = repo.wfe(&["diff", &two, "latest", "--json"]);
    json_same.code(0);
    assert_eq!(json_same.json()["phases"], json!([]));
}

#[test]
fn a_checkpoint_against_the_tip_of_the_same_run() {
    let repo = tasks_repo();
    let id = run(&repo, "tasks", &["--arg", "v=1"]);
    let r = format!("refs/wfe/runs/{id}");
    let commits: Vec<String> = repo
        .git(&["rev-list", &r])
        .lines()
        .map(String::from)
        .collect();

    let out = repo.wfe(&["diff", &format!("{id}@2"), &id, "--json"]);
    out.code(0);
    let doc = out.json();
    assert_eq!(doc["a"]["number"], 2);
    assert_eq!(doc["a"]["checkpoint"], commits[commits.len() - 2].as_str());
    assert_eq!(doc["b"]["number"], commits.len());
    assert_eq!(doc["b"]["checkpoint"], commits[0].as_str());
    assert_eq!(
        doc["run_status"],
        json!({ "from": "running", "to": "completed" })
    );
    let plan = phase(&doc, "plan");
    assert_eq!(
        plan["status"],
        json!({ "from": "running", "to": "completed" })
    );
    assert_eq!(plan["artifacts"][0]["kind"], "added");
    assert_eq!(plan["artifacts"][0]["changes"][0]["path"], "");
    assert_eq!(
        plan["artifacts"][0]["changes"][0]["value"]["meta"]["owner"]["name"],
        "ada"
    );

    // A checkpoint by commit prefix, with a phase: the first checkpoint is number 1.
    let first = &commits[commits.len() - 1][..10];
    let out = repo.wfe(&[
        "diff",
        &format!("{id}@{first}:plan"),
        &format!("{id}:plan"),
        "--json",
    ]);
    out.code(0);
    let doc = out.json();
    assert_eq!(doc["a"]["number"], 1);
    assert_eq!(doc["a"]["phase"], "plan");
    assert_eq!(doc["phases"].as_array().unwrap().len(), 1);
    assert!(
        doc.get("run_status").is_none(),
        "a phase leaves run.json out"
    );

    // A checkpoint of another run is refused.
    let other = run(&repo, "tasks", &["--arg", "v=2"]);
    let foreign = repo.git(&["rev-parse", &format!("refs/wfe/runs/{other}")]);
    let foreign = &foreign.trim()[..12];
    let out = repo.wfe(&["diff", &format!("{id}@{foreign}"), &id]);
    out.code(2);
    // `checkpoint [FOREIGN] is not part of run ID`.
    assert_run!(
        &repo,
        "diff_a_checkpoint_of_another_run",
        &out,
        [(foreign, "[FOREIGN]")]
    );
}

#[test]
fn the_attempts_of_a_retried_phase() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/x.json",
        &json!({ "type": "object", "required": ["title"] }).to_string(),
    );
    repo.write(
        "data/attempt-1.json",
        r#"{"tasks": [{"id": 1, "title": "a"}]}"#,
    );
    repo.write(
        "data/attempt-2.json",
        r#"{"title": "plan", "tasks": [{"id": 1, "title": "A"}, {"id": 2, "title": "b"}]}"#,
    );
    repo.template(
        "flaky",
        &json!({
            "name": "flaky",
            "phases": [
                { "id": "p", "kind": "script",
                  "run": "cp \"data/attempt-$WFE_ATTEMPT.json\" \"$WFE_OUT/out.json\"",
                  "outputs": { "out": "x" },
                  "retry": { "max_attempts": 2, "backoff": "10ms" } }
            ]
        }),
    );
    let id = run(&repo, "flaky", &[]);

    let out = repo.wfe(&["diff", &format!("{id}:p#1"), &format!("{id}:p#2"), "--json"]);
    out.code(0);
    let doc = out.json();
    assert_eq!(doc["a"]["attempt"], 1);
    assert_eq!(
        doc["a"]["rejected"], true,
        "attempt 1 failed: its rejected output"
    );
    assert!(doc["b"].get("rejected").is_none());
    assert_eq!(
        doc["phases"],
        json!([{ "phase": "p", "artifacts": [{ "name": "out", "kind": "changed", "changes": [
            { "kind": "changed", "path": "/tasks/0/title", "from": "a", "to": "A" },
            { "kind": "added", "path": "/tasks/1", "value": { "id": 2, "title": "b" } },
            { "kind": "added", "path": "/title", "value": "plan" }
        ] }] }])
    );

    let human = repo.wfe(&["diff", &format!("{id}:p#1"), &format!("{id}:p#2")]);
    human.code(0);
    // Side a is attempt 1's rejected outputs; `+ /title "plan"` among the changes.
    assert_run!(&repo, "diff_two_attempts", &human);

    let out = repo.wfe(&["diff", &format!("{id}:p#3"), &id]);
    out.code(2);
    // `phase `p` of run ID has no attempt 3; its attempts: 1 to 2`.
    assert_run!(&repo, "diff_an_attempt_that_never_ran", &out);
}

#[test]
fn bad_sides_are_refused_with_exit_2() {
    let repo = tasks_repo();
    let id = run(&repo, "tasks", &["--arg", "v=1"]);
    let count = repo
        .git(&["rev-list", "--count", &format!("refs/wfe/runs/{id}")])
        .trim()
        .to_string();
    // Each case's message is in the snapshot `diff_bad_sides`.
    let cases = [
        ("nope".to_string(), "no run nope".to_string()),
        (
            format!("{id}@0"),
            "checkpoints are numbered from 1".to_string(),
        ),
        (
            format!("{id}@99"),
            format!("run {id} has {count} checkpoints; there is no @99"),
        ),
        (
            format!("{id}@zz"),
            "is neither a checkpoint number nor a commit".to_string(),
        ),
        (
            format!("{id}:build"),
            format!("run {id} has no phase `build`; its phases: plan, extra"),
        ),
        (format!("{id}#2"), "`#ATTEMPT` needs a phase".to_string()),
        (
            format!("{id}:plan#x"),
            "attempt `x` is not a number from 1".to_string(),
        ),
        (String::new(), "it is empty".to_string()),
    ];
    let mut session = String::new();
    for (spec, _says) in cases {
        let out = repo.wfe(&["diff", &spec, &id]);
        assert_eq!(out.code, 2, "{spec}: {}", out.stderr);
        session.push_str(&command(&["diff", &spec, &id], &out));
    }
    assert_text!(&repo, "diff_bad_sides", session);
}

#[test]
fn git_diff_between_checkpoints_shows_a_status_change_as_one_line_pair() {
    let repo = tasks_repo();
    // Checkpoints: created, plan started, plan completed, extra completed.
    let id = run(&repo, "tasks", &["--arg", "v=2"]);
    let r = format!("refs/wfe/runs/{id}");
    let diff = repo.git(&["diff", &format!("{r}~2"), &r, "--", "phases/"]);
    let lines: Vec<&str> = diff.lines().collect();
    let pair = lines
        .windows(2)
        .find(|w| w[0].starts_with("-  \"status\": ") && w[1].starts_with("+  \"status\": "));
    let Some([old, new]) = pair else {
        panic!("no -/+ pair of \"status\" lines in:\n{diff}");
    };
    assert_eq!(
        (*old, *new),
        (
            "-  \"status\": \"running\",",
            "+  \"status\": \"completed\","
        ),
        "{diff}"
    );
    // Pretty JSON, stable key order: state.json starts with id, kind, status.
    assert!(
        diff.contains("   \"id\": \"plan\",\n   \"kind\": \"script\",\n-  \"status\": "),
        "{diff}"
    );
}
