//! Agent phases end to end: the real binary, a real git repo, and a fake
//! Anthropic server on 127.0.0.1 speaking the streamed Messages format.

use crate::common;

use common::Repo;
use common::snapshot::assert_run;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

/// A recognisable fake key: it must never reach git, a log or an output.
const KEY: &str = "sk-ant-LEAKCHECK-7f3a9c2e51d04b86";

fn submit(text: &str) -> Part {
    Part::Tool("submit_plan", json!({ "text": text }))
}

/// A repo whose config points the `primary` and `reviewer` roles at `url`.
fn repo_with(url: &str) -> Repo {
    let repo = Repo::new();
    repo.write(
        "src/lib.rs",
        "pub fn answer() -> u32 {\n    41\n}\n\npub fn name() -> &'static str {\n    \"wfe\"\n}\n",
    );
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "code"]);
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": {
                "claude": {
                    "kind": "anthropic",
                    "base_url": url,
                    "retry": { "max_attempts": 3, "backoff": "10ms", "max_backoff": "20ms" }
                }
            },
            "roles": {
                "primary": { "provider": "claude", "model": "claude-test" },
                "reviewer": { "provider": "claude", "model": "claude-review" }
            },
            "models": {
                "claude-test": { "context_tokens": 200000, "input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0 }
            }
        }))
        .unwrap(),
    );
    repo
}

/// An agent phase `plan` that may use `tools` and must submit a `message`.
fn agent_template(repo: &Repo, tools: &[&str], extra: Value) {
    let mut phase = json!({
        "id": "plan", "kind": "agent", "role": "primary",
        "prompt": "Fix the answer in src/lib.rs for {{ args.who }}, then submit a plan.",
        "system": "You are careful.",
        "tools": tools,
        "outputs": { "plan": "message" }
    });
    if let (Some(phase), Some(extra)) = (phase.as_object_mut(), extra.as_object()) {
        phase.extend(extra.clone());
    }
    repo.template(
        "agentic",
        &json!({
            "name": "agentic",
            "args": { "type": "object", "properties": { "who": { "type": "string", "default": "you" } } },
            "phases": [
                phase,
                { "id": "after", "kind": "script", "needs": ["plan"], "run": "cat \"$WFE_IN/plan/plan.json\"" }
            ]
        }),
    );
}

fn wfe_with_key(repo: &Repo, args: &[&str]) -> common::Run {
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

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every object in the repo, and every output, is free of the key.
fn assert_no_key(repo: &Repo, outputs: &[&common::Run]) {
    let out = repo.git_output(&["cat-file", "--batch-all-objects", "--batch"]);
    assert!(out.status.success());
    let objects = String::from_utf8_lossy(&out.stdout);
    assert!(!objects.contains(KEY), "the key is in a git object");
    assert!(
        !objects.contains("LEAKCHECK"),
        "part of the key is in a git object"
    );
    for run in outputs {
        assert!(
            !run.stdout.contains("LEAKCHECK"),
            "key in stdout: {}",
            run.stdout
        );
        assert!(
            !run.stderr.contains("LEAKCHECK"),
            "key in stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn a_tool_using_conversation_reads_edits_greps_and_submits() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![
            Part::Text("Let me look at the code.".into()),
            Part::Tool("read_file", json!({ "path": "src/lib.rs" })),
        ]),
        Reply::anthropic(vec![Part::Tool(
            "edit_file",
            json!({ "path": "src/lib.rs", "old": "    41\n", "new": "    42\n" }),
        )]),
        Reply::anthropic(vec![Part::Tool("grep", json!({ "pattern": "42" }))]),
        Reply::anthropic(vec![
            Part::Text("Done.".into()),
            submit("answer() now returns 42"),
        ]),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &["read_file", "edit_file", "grep"], json!({}));
    let run = wfe_with_key(&repo, &["run", "agentic", "--arg", "who=me"]);
    run.code(0);
    let id = repo.run_id();

    // The agent's edit is in the working tree and in the workspace snapshot.
    let code = std::fs::read_to_string(repo.path().join("src/lib.rs")).unwrap();
    assert!(code.contains("    42\n"), "{code}");
    assert!(show(&repo, &id, "workspace/src/lib.rs").contains("    42\n"));

    // The artifact is committed and handed on.
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan, json!({ "text": "answer() now returns 42" }));
    assert!(show(&repo, &id, "phases/after/log.jsonl").contains("answer() now returns 42"));

    // What went over the wire: the rendered prompt, system, tools with
    // the submit tool's schema, the key header, and tool results.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    let first = &requests[0].body;
    assert_eq!(first["model"], "claude-test");
    assert_eq!(first["system"], "You are careful.");
    assert!(
        first["messages"][0]
            .to_string()
            .contains("Fix the answer in src/lib.rs for me")
    );
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"read_file") && tools.contains(&"submit_plan"),
        "{tools:?}"
    );
    assert!(!tools.contains(&"bash"), "{tools:?}");
    assert!(
        requests[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == KEY)
    );
    let second = requests[1].body["messages"].to_string();
    assert!(
        second.contains("tool_result") && second.contains("pub fn answer"),
        "{second}"
    );
    let fourth = requests[3].body["messages"].to_string();
    assert!(
        fourth.contains("src/lib.rs:2:"),
        "grep's result is sent back: {fourth}"
    );

    // Every exchange and tool call is in the run, with usage.
    let exchanges = jsonl(&show(&repo, &id, "phases/plan/exchanges.jsonl"));
    assert_eq!(exchanges.len(), 4);
    assert_eq!(exchanges[3]["turn"], 4);
    let calls = jsonl(&show(&repo, &id, "phases/plan/tool-calls.jsonl"));
    let names: Vec<&str> = calls.iter().map(|c| c["tool"].as_str().unwrap()).collect();
    assert_eq!(names, ["read_file", "edit_file", "grep"]);
    assert!(calls.iter().all(|c| c["error"].is_null()), "{calls:?}");
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/plan/state.json")).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["usage"]["requests"], 4);
    assert_eq!(state["usage"]["input_tokens"], 400);
    assert_eq!(state["usage"]["output_tokens"], 80);
    // 400 in at $3/M + 80 out at $15/M
    let cost = state["usage"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0024).abs() < 1e-9, "{cost}");

    // Each step was its own checkpoint, readable with git log.
    let log = repo.git(&[
        "log",
        "--format=%(trailers:key=Wfe-Event,valueonly,separator=%x2c)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert_eq!(log.matches("agent-exchange").count(), 4, "{log}");
    assert_eq!(log.matches("tool-call").count(), 3, "{log}");
    assert_no_key(&repo, &[&run]);
}

#[test]
fn an_invalid_submission_is_answered_with_its_errors_and_corrected() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "txt": "typo" }))]),
        Reply::anthropic(vec![submit("fixed")]),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &[], json!({}));
    wfe_with_key(&repo, &["run", "agentic"]).code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let answer = requests[1].body["messages"].to_string();
    assert!(answer.contains("is_error"), "{answer}");
    assert!(
        answer.contains("text"),
        "the missing property is named: {answer}"
    );
    let id = repo.run_id();
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan["text"], "fixed");
}

#[test]
fn too_many_invalid_submissions_fail_the_attempt_and_keep_the_rejected_output() {
    let bad = || Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "nope": 1 }))]);
    let server = Server::spawn(vec![bad(), bad()]);
    let repo = repo_with(server.url());
    agent_template(&repo, &[], json!({ "max_invalid_submissions": 1 }));
    let run = wfe_with_key(&repo, &["run", "agentic"]);
    run.code(1);
    let id = repo.run_id();
    let rejected = show(&repo, &id, "phases/plan/attempts/1/rejected/plan.json");
    assert!(rejected.contains("nope"), "{rejected}");
    let error: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/attempts/1/error.json")).unwrap();
    assert_eq!(error["kind"], "invalid_outputs");
}

#[test]
fn a_rate_limit_is_waited_out_and_an_outage_pauses_the_run_until_resume() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(429).header("retry-after", "0"),
        Reply::anthropic(vec![Part::Tool(
            "read_file",
            json!({ "path": "src/lib.rs" }),
        )]),
        Reply::anthropic_error(500),
        Reply::anthropic_error(503),
        Reply::anthropic_cut(vec![Part::Text("half an answ".into())]),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &["read_file"], json!({}));
    let run = wfe_with_key(&repo, &["run", "agentic"]);
    run.code(3);
    let id = repo.run_id();
    let record: Value = serde_json::from_str(&show(&repo, &id, "run.json")).unwrap();
    assert_eq!(record["status"], "paused");
    // The reason is data: which phase, which provider, and what it said.
    let reason = &record["reason"];
    assert_eq!(reason["kind"], "provider-unavailable", "{reason}");
    assert_eq!(reason["phase"], "plan", "{reason}");
    assert_eq!(reason["provider"], "claude", "{reason}");
    let message = reason["message"].as_str().unwrap();
    assert!(message.contains("3 attempts"), "{reason}");
    // No advice for people is committed to the run.
    assert!(!record.to_string().contains("`wfe "), "{record}");
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/plan/state.json")).unwrap();
    assert_eq!(state["status"], "pending");
    assert_eq!(state["continues"], true);
    assert_eq!(server.requests().len(), 5);

    // The server recovers: resume sends only the unanswered request.
    server.push(vec![Reply::anthropic(vec![submit("after the outage")])]);
    let resumed = wfe_with_key(&repo, &["resume", &id]);
    resumed.code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(
        requests[5].body, requests[4].body,
        "the same request, once more"
    );
    let calls = jsonl(&show(&repo, &id, "phases/plan/tool-calls.jsonl"));
    assert_eq!(calls.len(), 1, "the read was not done again");
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/plan/state.json")).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["attempt"], 1, "the same attempt went on");
    assert_no_key(&repo, &[&run, &resumed]);
}

#[test]
fn a_refused_key_fails_the_phase_and_never_shows_the_key() {
    let server = Server::spawn(vec![Reply::anthropic_error(401)]);
    let repo = repo_with(server.url());
    agent_template(&repo, &[], json!({}));
    let run = wfe_with_key(&repo, &["run", "agentic", "--json"]);
    run.code(1);
    assert_eq!(server.requests().len(), 1, "no retry on 401");
    let id = repo.run_id();
    let shown = wfe_with_key(&repo, &["show", &id, "plan", "--json"]);
    let log = wfe_with_key(&repo, &["log", &id]);
    assert_no_key(&repo, &[&run, &shown, &log]);
}

#[test]
fn a_runner_killed_mid_conversation_resumes_without_repeating_anything() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![Part::Tool(
            "bash",
            json!({ "command": "echo ran >> counter.txt" }),
        )]),
        Reply::anthropic(vec![Part::Tool(
            "read_file",
            json!({ "path": "counter.txt" }),
        )]),
        // The third request waits: the test kills the runner meanwhile.
        Reply::anthropic(vec![submit("never delivered")]).held(),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &["bash", "read_file"], json!({}));
    let mut child = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["run", "agentic"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for_request(3);
    child.kill().unwrap();
    child.wait().unwrap();
    let id = repo.run_id();
    assert_eq!(
        jsonl(&show(&repo, &id, "phases/plan/exchanges.jsonl")).len(),
        2
    );

    server.push(vec![Reply::anthropic(vec![submit("resumed")])]);
    wfe_with_key(&repo, &["resume", &id]).code(0);
    let requests = server.requests();
    // 1 and 2 were answered before the kill and are not sent again; the
    // 3rd was never answered, so it is sent once more, unchanged.
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[3].body, requests[2].body);
    let counter = std::fs::read_to_string(repo.path().join("counter.txt")).unwrap();
    assert_eq!(counter, "ran\n", "the bash call ran once");
    let calls = jsonl(&show(&repo, &id, "phases/plan/tool-calls.jsonl"));
    assert_eq!(calls.len(), 2);
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan["text"], "resumed");
}

#[test]
fn a_reviewer_requests_changes_once_then_approves() {
    let review = |verdict: &str, findings: Value| {
        Reply::anthropic(vec![Part::Tool(
            "submit_review",
            json!({ "verdict": verdict, "summary": format!("{verdict}!"), "findings": findings }),
        )])
    };
    let server = Server::spawn(vec![
        Reply::anthropic(vec![submit("first draft")]),
        review(
            "changes_requested",
            json!([{ "severity": "major", "message": "say why 42", "location": { "file": "src/lib.rs", "line": 2 } }]),
        ),
        Reply::anthropic(vec![submit("42, because of the guide")]),
        review("approve", json!([])),
    ]);
    let repo = repo_with(server.url());
    agent_template(
        &repo,
        &[],
        json!({ "review": { "role": "reviewer", "rounds": 2 } }),
    );
    wfe_with_key(&repo, &["run", "agentic"]).code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[1].body["model"], "claude-review");
    assert!(
        requests[1].body.to_string().contains("first draft"),
        "the reviewer sees the artifact"
    );
    assert!(
        requests[2].body.to_string().contains("say why 42"),
        "the primary sees the findings"
    );
    let id = repo.run_id();
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan["text"], "42, because of the guide");
    let first: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/reviews/1-1.json")).unwrap();
    let second: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/reviews/1-2.json")).unwrap();
    assert_eq!(first["verdict"], "changes_requested");
    assert_eq!(second["verdict"], "approve");
    // What the reviewer said is searchable, by word and by field.
    for query in ["why", "verdict:changes_requested"] {
        let found = repo.wfe(&["search", query, "--json"]);
        found.code(0);
        assert!(
            found.stdout.contains("phases/plan/reviews/1-1.json"),
            "{query}: {}",
            found.stdout
        );
    }
}

#[test]
fn a_replayed_run_reproduces_its_artifacts_byte_for_byte_offline() {
    let server = Server::spawn(vec![
        Reply::anthropic(vec![Part::Tool(
            "read_file",
            json!({ "path": "src/lib.rs", "start_line": 1, "end_line": 2 }),
        )]),
        Reply::anthropic(vec![
            Part::Text("Plan ready.".into()),
            submit("one line plan"),
        ]),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &["read_file"], json!({}));
    wfe_with_key(&repo, &["run", "agentic"]).code(0);
    let original = repo.run_id();
    drop(server);

    // No server, no key: the replay answers from the recorded exchanges.
    let replay = repo.wfe(&["run", "agentic", "--replay", &original, "--json"]);
    replay.code(0);
    let copy = replay.json()["id"].as_str().unwrap().to_string();
    assert_ne!(copy, original);
    assert_eq!(
        show(&repo, &copy, "phases/plan/artifacts/plan.json"),
        show(&repo, &original, "phases/plan/artifacts/plan.json")
    );

    // A changed prompt diverges: the run stops with a diff of the requests.
    let template = repo.path().join(".wfe/templates/agentic.json");
    let text = std::fs::read_to_string(&template)
        .unwrap()
        .replace("then submit a plan", "then submit a short plan");
    std::fs::write(&template, text).unwrap();
    let diverged = repo.wfe(&["run", "agentic", "--replay", &original]);
    diverged.code(1);
    // The diff of the requests names where (`/messages/0`) and what changed.
    assert_run!(&repo, "agent_replay_diverged", &diverged);
}

#[test]
fn a_cli_agent_stands_in_for_claude_code() {
    let repo = Repo::new();
    repo.write(
        "fake-claude.sh",
        "#!/bin/sh\n# Reads the prompt on stdin like `claude -p`, answers in its JSON shape.\ncat > prompt.txt\nprintf '%s' '{\"type\":\"result\",\"result\":\"Here it is:\\n```json\\n{\\\"plan\\\": {\\\"text\\\": \\\"from the cli\\\"}}\\n```\"}'\n",
    );
    std::process::Command::new("chmod")
        .args(["+x", "fake-claude.sh"])
        .current_dir(repo.path())
        .status()
        .unwrap();
    repo.write(
        ".wfe/config.json",
        &json!({
            "providers": { "claude-code": { "kind": "cli", "command": ["./fake-claude.sh", "-p", "--output-format", "json"] } },
            "roles": { "primary": { "provider": "claude-code", "model": "default" } }
        })
        .to_string(),
    );
    agent_template(&repo, &[], json!({}));
    repo.wfe(&["run", "agentic"]).code(0);
    let id = repo.run_id();
    let plan: Value =
        serde_json::from_str(&show(&repo, &id, "phases/plan/artifacts/plan.json")).unwrap();
    assert_eq!(plan["text"], "from the cli");
    let prompt = std::fs::read_to_string(repo.path().join("prompt.txt")).unwrap();
    assert!(prompt.contains("Fix the answer in src/lib.rs"), "{prompt}");
    assert!(prompt.contains("plan"), "{prompt}");
}

#[test]
fn a_retry_may_change_the_model_of_the_next_attempt() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(400),
        Reply::anthropic(vec![submit("with the bigger model")]),
    ]);
    let repo = repo_with(server.url());
    agent_template(&repo, &[], json!({}));
    let failed = wfe_with_key(&repo, &["run", "agentic"]);
    failed.code(1);
    // The API's message is shown.
    assert_run!(&repo, "agent_request_refused_with_400", &failed);
    let id = repo.run_id();
    wfe_with_key(&repo, &["retry", &id, "plan", "--model", "claude-bigger"]).code(0);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body["model"], "claude-test");
    assert_eq!(requests[1].body["model"], "claude-bigger");
    let state: Value = serde_json::from_str(&show(&repo, &id, "phases/plan/state.json")).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["attempt"], 2);
    assert_eq!(state["model"], "claude-bigger");
    let exchanges = jsonl(&show(&repo, &id, "phases/plan/exchanges.jsonl"));
    assert_eq!(
        exchanges.len(),
        1,
        "the refused request got no answer to record"
    );
    assert_eq!(exchanges[0]["attempt"], 2);
}
