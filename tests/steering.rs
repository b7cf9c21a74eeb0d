//! Steering a retry: the person's instructions and comments reach the
//! model, the frozen template or the current one, and a manual retry that
//! leaves the automatic retry budget whole.

use crate::common;

use common::Repo;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

fn submit(text: &str) -> Part {
    Part::Tool("submit_plan", json!({ "text": text }))
}

/// A repo whose `primary` role talks to the fake server at `url`, with an
/// agent phase `plan` and a script phase `after` that needs it.
fn agent_repo(url: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": url,
                "retry": { "max_attempts": 1, "backoff": "10ms" } } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo.template(
        "steer",
        &json!({
            "name": "steer",
            "phases": [
                { "id": "plan", "kind": "agent", "role": "primary",
                  "prompt": "Write the plan.", "outputs": { "plan": "message" } },
                { "id": "after", "kind": "script", "needs": ["plan"], "run": "echo after" }
            ]
        }),
    );
    repo
}

fn wfe(repo: &Repo, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn show(repo: &Repo, run: &str, path: &str) -> String {
    repo.git(&["show", &format!("refs/wfe/runs/{run}:{path}")])
}

fn tip(repo: &Repo, run: &str) -> String {
    repo.git(&["rev-parse", &format!("refs/wfe/runs/{run}")])
}

/// The text of every message the request sent, joined.
fn sent(body: &Value) -> String {
    body["messages"].to_string()
}

#[test]
fn retry_prompt_reaches_the_model_and_is_recorded() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(400),
        Reply::anthropic(vec![submit("steered")]),
    ]);
    let repo = agent_repo(server.url());
    wfe(&repo, &["run", "steer"]).code(1);
    let id = repo.run_id();
    let retried = wfe(
        &repo,
        &["retry", &id, "plan", "--prompt", "Use the blue approach."],
    );
    retried.code(0);
    assert!(
        retried
            .stderr
            .contains("using the template as frozen at the start of the run; --refresh-template takes the current one"),
        "{}",
        retried.stderr
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(!sent(&requests[0].body).contains("blue approach"));
    let second = sent(&requests[1].body);
    assert!(second.contains("Write the plan."), "{second}");
    assert!(second.contains("Use the blue approach."), "{second}");
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/plan/state.json")).unwrap();
    assert_eq!(state["guidance"], "Use the blue approach.");
    assert_eq!(state["attempt"], 2);
    // The conversation records the prompt as sent.
    let exchanges = show(&repo, &id, "phases/plan/exchanges.jsonl");
    assert!(exchanges.contains("Use the blue approach."), "{exchanges}");
}

#[test]
fn retry_prompt_file_is_read_and_a_script_phase_refuses_a_prompt() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![submit("first")]),
        Reply::anthropic(vec![submit("second")]),
    ]);
    let repo = agent_repo(server.url());
    wfe(&repo, &["run", "steer"]).code(0);
    let id = repo.run_id();
    let before = tip(&repo, &id);
    let refused = wfe(&repo, &["retry", &id, "after", "--prompt", "x"]);
    refused.code(2);
    assert!(
        refused
            .stderr
            .contains("--prompt steers an agent phase, but `after` is a script phase"),
        "{}",
        refused.stderr
    );
    assert_eq!(tip(&repo, &id), before, "nothing written");
    let file = repo.write("notes.txt", "Mind the edge cases.\n");
    wfe(
        &repo,
        &[
            "retry",
            &id,
            "plan",
            "--prompt-file",
            file.to_str().unwrap(),
        ],
    )
    .code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(sent(&requests[1].body).contains("Mind the edge cases."));
}

#[test]
fn a_comment_for_the_agent_reaches_its_next_attempt_only() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(400),
        Reply::anthropic(vec![submit("with the comment")]),
        Reply::anthropic(vec![submit("without it")]),
    ]);
    let repo = agent_repo(server.url());
    wfe(&repo, &["run", "steer"]).code(1);
    let id = repo.run_id();
    let said = wfe(
        &repo,
        &[
            "comment",
            &id,
            "plan",
            "--for-agent",
            "The plan forgot the tests.",
        ],
    );
    said.code(0);
    assert!(
        said.stderr
            .contains("the next attempt of plan gets it with its prompt"),
        "{}",
        said.stderr
    );
    // A plain comment stays with people.
    wfe(&repo, &["comment", &id, "plan", "just a note"]).code(0);
    let comments = show(&repo, &id, "comments.jsonl");
    assert!(comments.contains("\"for_attempt\":2"), "{comments}");
    wfe(&repo, &["retry", &id, "plan"]).code(0);
    wfe(&repo, &["retry", &id, "plan"]).code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let second = sent(&requests[1].body);
    assert!(second.contains("The plan forgot the tests."), "{second}");
    assert!(!second.contains("just a note"), "{second}");
    assert!(!sent(&requests[2].body).contains("The plan forgot the tests."));

    // Only an agent phase, and only a phase, takes one.
    let before = tip(&repo, &id);
    let refused = wfe(&repo, &["comment", &id, "after", "--for-agent", "x"]);
    refused.code(2);
    assert!(
        refused.stderr.contains("it is a script phase"),
        "{}",
        refused.stderr
    );
    wfe(&repo, &["comment", &id, "--for-agent", "x"]).code(2);
    assert_eq!(tip(&repo, &id), before, "nothing written");
}

/// A template with a failing `build` and a `report` after it.
fn scripts(repo: &Repo, build: &str, report_needs: &[&str]) {
    repo.template(
        "fixme",
        &json!({
            "name": "fixme",
            "phases": [
                { "id": "build", "kind": "script", "run": build },
                { "id": "report", "kind": "script", "needs": report_needs, "run": "echo report" },
                { "id": "other", "kind": "script", "run": "echo other" }
            ]
        }),
    );
}

#[test]
fn refresh_template_takes_the_current_phase_definition() {
    let repo = Repo::new();
    scripts(&repo, "echo broken; exit 1", &["build"]);
    repo.wfe(&["run", "fixme"]).code(1);
    let id = repo.run_id();
    scripts(&repo, "echo fixed", &["build"]);

    // Without the flag the frozen template runs again, and says so.
    let again = repo.wfe(&["retry", &id, "build"]);
    again.code(1);
    assert!(
        again
            .stderr
            .contains("using the template as frozen at the start of the run"),
        "{}",
        again.stderr
    );

    // A template that does not validate is refused with nothing written.
    let before = tip(&repo, &id);
    repo.write(".wfe/templates/fixme.json", "{ \"name\": \"fixme\", ");
    repo.wfe(&["retry", &id, "build", "--refresh-template"])
        .code(2);
    assert_eq!(tip(&repo, &id), before, "nothing written");

    // Nor one whose DAG the run cannot follow.
    scripts(&repo, "echo fixed", &["other"]);
    let shape = repo.wfe(&["retry", &id, "build", "--refresh-template"]);
    shape.code(2);
    assert!(
        shape.stderr.contains(
            "changes the run's shape: phase `report` needs [other] now, the run's needs [build]"
        ),
        "{}",
        shape.stderr
    );
    assert_eq!(tip(&repo, &id), before, "nothing written");

    scripts(&repo, "echo fixed", &["build"]);
    let fixed = repo.wfe(&["retry", &id, "build", "--refresh-template"]);
    fixed.code(0);
    assert!(
        fixed
            .stderr
            .contains("using the current template for build, report"),
        "{}",
        fixed.stderr
    );
    let template: Value = serde_json::from_str(&show(&repo, &id, "template.json")).unwrap();
    assert_eq!(template["phases"][0]["run"], "echo fixed");
    let events = repo.git(&[
        "log",
        "--format=%(trailers:key=Wfe-Event,valueonly)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(events.contains("template-refreshed"), "{events}");
    let log = show(&repo, &id, "phases/build/log.jsonl");
    assert!(log.contains("fixed"), "{log}");
}

#[test]
fn a_manual_retry_gets_the_whole_automatic_budget_again() {
    let repo = Repo::new();
    repo.template(
        "flaky",
        &json!({
            "name": "flaky",
            "phases": [
                { "id": "build", "kind": "script",
                  "retry": { "max_attempts": 2, "backoff": "1ms" },
                  "run": "echo try >> tries.txt; exit 1" }
            ]
        }),
    );
    repo.wfe(&["run", "flaky"]).code(1);
    let id = repo.run_id();
    let tries = |repo: &Repo| {
        std::fs::read_to_string(repo.path().join("tries.txt"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(tries(&repo), 2);
    repo.wfe(&["retry", &id, "build"]).code(1);
    assert_eq!(
        tries(&repo),
        4,
        "attempts 3 and 4: the budget is whole again"
    );
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/build/state.json")).unwrap();
    assert_eq!(state["attempt"], 4);
    assert_eq!(state["retry_base"], 2);
}
