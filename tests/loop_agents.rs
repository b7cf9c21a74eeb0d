//! What agent pipelines need of loops, end to end with the real binary:
//! an agent phase inside a loop (against the fake Anthropic server, then
//! replayed offline), a gate inside a loop, a loop that hands over to a
//! fallback phase when it runs out (`on_exhausted: {"next": …}`), and the
//! loops the runner cannot run, refused before anything is written.

use crate::common;

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, script};
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

/// A recognisable fake key.
const KEY: &str = "sk-ant-LOOPTEST-0123456789abcdef";

/// A repo whose `primary` role is the fake server at `url`.
fn repo_with(url: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": url } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo
}

fn with_key(repo: &Repo, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn show(repo: &Repo, run: &str, path: &str) -> String {
    repo.git(&["show", &format!("refs/wfe/runs/{run}:{path}")])
}

fn phase<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no phase {id} in {doc:#}"))
}

/// Loop `refine` (at most 3 iterations): agent `draft` writes a plan for
/// iteration N (its prompt says which), script `check` passes from the
/// 2nd iteration on; `ship` after the loop prints the last plan.
fn agent_loop(repo: &Repo) {
    repo.template(
        "drafts",
        &json!({ "name": "drafts", "phases": [
            { "id": "refine", "kind": "loop", "max_iters": 3,
              "until": "artifacts.check.result.passed",
              "phases": [
                { "id": "draft", "kind": "agent", "role": "primary",
                  "prompt": "Write plan number {{ loop.iteration }}.{% if previous.draft %} Last time: {{ previous.draft.plan.text }}{% endif %}",
                  "outputs": { "plan": "message" } },
                { "id": "check", "kind": "script", "needs": ["draft"],
                  "run": "echo '{\"passed\": {{ (loop.iteration >= 2) | tojson }}}' > \"$WFE_OUT/result.json\"",
                  "outputs": { "result": "test-report" } }
              ] },
            script("ship", &["refine"], "cat \"$WFE_IN/draft/plan.json\""),
        ]}),
    );
}

fn plan(text: &str) -> Reply {
    Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": text }))])
}

#[test]
fn an_agent_inside_a_loop_runs_each_iteration_and_a_replay_reproduces_it_offline() {
    let server = Server::spawn(vec![plan("first plan"), plan("second plan")]);
    let repo = repo_with(server.url());
    agent_loop(&repo);
    let run = with_key(&repo, &["run", "drafts", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(phase(&doc, "refine")["iteration"], 2);
    assert_eq!(server.request_count(), 2, "one conversation per iteration");
    let original = doc["id"].as_str().unwrap().to_string();

    // Each iteration's attempt has its own artifacts and exchanges, and the
    // second saw the first's plan as `previous`.
    for (k, text) in [(1, "first plan"), (2, "second plan")] {
        let at = format!("phases/refine/iterations/{k}/draft");
        let artifact: Value = serde_json::from_str(&show(
            &repo,
            &original,
            &format!("{at}/artifacts/plan.json"),
        ))
        .unwrap();
        assert_eq!(artifact, json!({ "text": text }), "iteration {k}");
        let exchanges = show(&repo, &original, &format!("{at}/exchanges.jsonl"));
        assert_eq!(exchanges.lines().count(), 1, "iteration {k}: {exchanges}");
        assert!(
            exchanges.contains(&format!("Write plan number {k}.")),
            "iteration {k}: {exchanges}"
        );
    }
    let second = show(
        &repo,
        &original,
        "phases/refine/iterations/2/draft/exchanges.jsonl",
    );
    assert!(second.contains("Last time: first plan"), "{second}");
    assert!(
        show(&repo, &original, "phases/ship/log.jsonl").contains("second plan"),
        "the loop's dependant reads the last iteration's plan"
    );
    let draft = repo
        .wfe(&["show", &original, "draft@1", "plan"])
        .code(0)
        .json();
    assert_eq!(draft, json!({ "text": "first plan" }));
    drop(server);

    // No server, no key: each iteration's agent answers from the same
    // iteration's recording.
    let replay = repo.wfe(&["run", "drafts", "--replay", &original, "--json"]);
    replay.code(0);
    let copy = replay.json()["id"].as_str().unwrap().to_string();
    for k in [1, 2] {
        let path = format!("phases/refine/iterations/{k}/draft/artifacts/plan.json");
        assert_eq!(
            show(&repo, &copy, &path),
            show(&repo, &original, &path),
            "iteration {k}"
        );
    }

    // A changed prompt in iteration 2 diverges there, naming the iteration.
    let template = repo.path().join(".wfe/templates/drafts.json");
    let text = std::fs::read_to_string(&template)
        .unwrap()
        .replace("Last time:", "Before:");
    std::fs::write(&template, text).unwrap();
    let diverged = repo.wfe(&["run", "drafts", "--replay", &original, "--json"]);
    diverged.code(1);
    let doc = diverged.json();
    let refine = phase(&doc, "refine");
    assert_eq!(refine["status"], "failed");
    assert_eq!(refine["iteration"], 2, "{refine:#}");
    let error = refine["children"][0]["error"].to_string();
    assert!(
        error.contains("refine/iterations/2/draft"),
        "the divergence names the iteration: {error}"
    );
}

/// Loop `review` of 2 iterations: `work`, then gate `ok`; `ship` after.
fn gated_loop(repo: &Repo) {
    let count = repo.path().join("count.txt");
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            { "id": "review", "kind": "loop", "max_iters": 2,
              "phases": [
                script("work", &[], &format!("echo \"work $WFE_ITERATION\" >> {}", count.display())),
                { "id": "ok", "kind": "gate", "needs": ["work"], "outputs": { "note": "message" } },
              ] },
            script("ship", &["review"], &format!("cat \"$WFE_IN/ok/note.json\" >> {}", count.display())),
        ]}),
    );
}

#[test]
fn a_gate_inside_a_loop_waits_each_iteration_until_approved() {
    let repo = Repo::new();
    gated_loop(&repo);
    let first = repo.wfe(&["run", "gated", "--json"]);
    first.code(3);
    let doc = first.json();
    assert_eq!(doc["status"], "waiting");
    let review = phase(&doc, "review");
    assert_eq!(review["status"], "running");
    assert_eq!(review["children"][1]["status"], "waiting");
    assert_eq!(doc["reason"], "ok@1 waiting for approval", "{doc:#}");
    let id = doc["id"].as_str().unwrap().to_string();
    let status = repo.wfe(&["status", &id]);
    status.code(0);
    // `review iteration 1/2`, `ok` waiting under it, and how to approve it
    // (`wfe approve ID ok@1`).
    assert_run!(&repo, "loop_gate_waits", &status);

    let approve1 = ["approve", &id, "ok@1"];
    let first_approval = repo.wfe(&approve1);
    first_approval.code(0);
    let second = repo.wfe(&["resume", &id, "--json"]);
    second.code(3);
    let doc = second.json();
    assert_eq!(phase(&doc, "review")["iteration"], 2);
    assert_eq!(doc["reason"], "ok@2 waiting for approval");

    // The first iteration's gate is done; a wrong address writes nothing.
    let tip = repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]);
    let stale = repo.wfe(&approve1);
    stale.code(2);
    let not_a_loop = ["approve", &id, "ship@2"];
    let not_in_loop = repo.wfe(&not_a_loop);
    not_in_loop.code(2);
    assert_eq!(
        repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]),
        tip,
        "refused approvals write nothing"
    );
    repo.write("note.json", r#"{"text": "looks good"}"#);
    let approve2 = ["approve", &id, "ok", "--artifact", "note.json"];
    let second_approval = repo.wfe(&approve2);
    second_approval.code(0);
    assert_text!(
        &repo,
        "loop_gate_approvals",
        [
            command(&approve1, &first_approval),
            command(&approve1, &stale),
            command(&not_a_loop, &not_in_loop),
            command(&approve2, &second_approval),
        ]
        .concat()
    );
    let done = repo.wfe(&["resume", &id, "--json"]);
    done.code(0);
    assert_eq!(done.json()["status"], "completed");
    let count = std::fs::read_to_string(repo.path().join("count.txt")).unwrap();
    assert!(count.starts_with("work 1\nwork 2\n"), "{count}");
    assert!(
        count.contains("looks good"),
        "`ship` read the last iteration's approval: {count}"
    );
    let note = show(
        &repo,
        &id,
        "phases/review/iterations/2/ok/artifacts/note.json",
    );
    assert!(note.contains("looks good"), "{note}");
}

#[test]
fn a_live_runner_takes_the_approval_of_a_gate_inside_a_loop() {
    let repo = Repo::new();
    gated_loop(&repo);
    let mut runner = repo.spawn(&["run", "gated", "--wait", "--json"]);
    for k in [1, 2] {
        // The runner answers only once the gate waits: poll until it does.
        let id = loop {
            if let Some(r) = repo.wfe_refs().first() {
                let id = r.trim_start_matches("refs/wfe/runs/").to_string();
                let state = repo.git_output(&[
                    "show",
                    &format!("{r}:phases/review/iterations/{k}/ok/state.json"),
                ]);
                if String::from_utf8_lossy(&state.stdout).contains("\"waiting\"") {
                    break id;
                }
            }
            std::thread::yield_now();
        };
        repo.write("note.json", r#"{"text": "fine"}"#);
        let approve = repo.wfe(&["approve", &id, "ok", "--artifact", "note.json"]);
        approve.code(0);
        let said = format!("{}{}", approve.stdout, approve.stderr);
        assert!(said.contains(&format!("ok@{k}")), "{said}");
    }
    let status = runner.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let count = std::fs::read_to_string(repo.path().join("count.txt")).unwrap();
    assert!(count.starts_with("work 1\nwork 2\n"), "{count}");
}

/// Loop `fix` (2 iterations) until `check` passes, which it does from
/// iteration `passes_from` on; it hands over to `replan` when it runs out.
fn fallback(repo: &Repo, passes_from: u32) {
    repo.template(
        "fallback",
        &json!({ "name": "fallback", "phases": [
            { "id": "fix", "kind": "loop", "max_iters": 2,
              "until": "artifacts.check.result.passed",
              "on_exhausted": { "next": "replan" },
              "phases": [
                { "id": "check", "kind": "script",
                  "run": format!("echo '{{\"passed\": {{{{ (loop.iteration >= {passes_from}) | tojson }}}}}}' > \"$WFE_OUT/result.json\""),
                  "outputs": { "result": "test-report" } }
              ] },
            script("replan", &[], "echo replanning; cat \"$WFE_IN/check/result.json\""),
            script("report", &["replan"], "echo reported"),
        ]}),
    );
}

#[test]
fn a_loop_that_runs_out_hands_over_to_its_fallback_and_the_run_completes() {
    let repo = Repo::new();
    fallback(&repo, 9);
    let run = repo.wfe(&["run", "fallback", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(doc["status"], "completed");
    let fix = phase(&doc, "fix");
    assert_eq!(
        (&fix["status"], &fix["exhausted"], &fix["iteration"]),
        (&json!("completed"), &json!(true), &json!(2))
    );
    assert_eq!(phase(&doc, "replan")["status"], "completed");
    assert_eq!(phase(&doc, "report")["status"], "completed");
    let id = doc["id"].as_str().unwrap().to_string();
    let log = show(&repo, &id, "phases/replan/log.jsonl");
    assert!(
        log.contains("replanning") && log.contains("false"),
        "the fallback sees the loop's last iteration: {log}"
    );
    let shown = repo.wfe(&["show", &id, "fix"]);
    shown.code(0);
    // `exhausted  … (on_exhausted: next `replan`, which runs instead)`.
    assert_run!(&repo, "loop_handed_over", &shown);

    // When `until` holds, the fallback is skipped and its dependants run.
    let repo = Repo::new();
    fallback(&repo, 1);
    let run = repo.wfe(&["run", "fallback", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(phase(&doc, "fix")["exhausted"], false);
    assert_eq!(phase(&doc, "replan")["status"], "skipped");
    let id = doc["id"].as_str().unwrap();
    let replan: Value = serde_json::from_str(&show(&repo, id, "phases/replan/state.json")).unwrap();
    assert!(
        replan["skip_reason"]
            .as_str()
            .is_some_and(|r| r.contains("`fix` did not run out")),
        "{replan:#}"
    );
    assert_eq!(phase(&doc, "report")["status"], "completed");
}

#[test]
fn loops_the_runner_cannot_run_are_refused_before_anything_is_written() {
    let repo = Repo::new();
    repo.template(
        "nested",
        &json!({ "name": "nested", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2, "phases": [
                { "id": "inner", "kind": "loop", "max_iters": 2, "phases": [
                    { "id": "innermost", "kind": "loop", "max_iters": 2, "phases": [script("x", &[], "true")] }
                ] }
            ] },
        ]}),
    );
    repo.template(
        "cyclic",
        &json!({ "name": "cyclic", "phases": [
            script("plan", &[], "true"),
            { "id": "fix", "kind": "loop", "max_iters": 2, "needs": ["plan"], "until": "false",
              "on_exhausted": { "next": "plan" }, "phases": [script("x", &[], "true")] },
            { "id": "later", "kind": "loop", "max_iters": 2, "until": "false",
              "on_exhausted": { "next": "x" }, "phases": [script("y", &[], "true")] },
        ]}),
    );
    let nested = ["run", "nested"];
    let nested_run = repo.wfe(&nested);
    nested_run.code(2);
    let cyclic = ["run", "cyclic"];
    let cyclic_run = repo.wfe(&cyclic);
    cyclic_run.code(2);
    assert!(repo.wfe_refs().is_empty(), "nothing is written");
    // Each with the file and the JSON path: the loop three deep; the
    // fallback the loop needs; the fallback inside another loop.
    assert_text!(
        &repo,
        "loop_refusals",
        [command(&nested, &nested_run), command(&cyclic, &cyclic_run)].concat()
    );
}

#[test]
fn a_child_with_approval_after_holds_its_iteration_until_approved() {
    let repo = Repo::new();
    repo.template(
        "drafted",
        &json!({ "name": "drafted", "phases": [
            { "id": "write", "kind": "loop", "max_iters": 1, "phases": [
                { "id": "draft", "kind": "script", "approval": "after", "run": "echo drafted" },
                script("polish", &["draft"], "true"),
            ] },
        ]}),
    );
    let first = repo.wfe(&["run", "drafted", "--json"]);
    first.code(3);
    let doc = first.json();
    assert_eq!(doc["reason"], "draft@1 waiting for approval");
    assert_eq!(phase(&doc, "write")["children"][1]["status"], "pending");
    let id = doc["id"].as_str().unwrap().to_string();
    repo.wfe(&["approve", &id, "draft@1"]).code(0);
    let done = repo.wfe(&["resume", &id, "--json"]);
    done.code(0);
    let doc = done.json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(phase(&doc, "write")["children"][1]["status"], "completed");
}
