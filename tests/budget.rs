//! Budgets end to end: the real binary against the fake Anthropic server,
//! whose every answer reports 100 input and 20 output tokens (120 a
//! request; with the test prices, $0.0006).

use crate::common;

use common::Repo;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply};

const KEY: &str = "sk-ant-budget-test-key";

fn read() -> Reply {
    Reply::anthropic(vec![Part::Tool(
        "read_file",
        json!({ "path": "notes.txt" }),
    )])
}

fn submit(text: &str) -> Reply {
    Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": text }))])
}

/// A repo whose `primary` role is the fake server's, with prices, and
/// `budget` (if any) as the config's.
fn repo_with(url: &str, budget: Option<Value>) -> Repo {
    let repo = Repo::new();
    repo.write("notes.txt", "some notes\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "notes"]);
    let mut config = json!({
        "providers": {
            "claude": {
                "kind": "anthropic",
                "base_url": url,
                "retry": { "max_attempts": 1, "backoff": "10ms", "max_backoff": "20ms" }
            }
        },
        "roles": { "primary": { "provider": "claude", "model": "claude-test" } },
        "models": {
            "claude-test": { "input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0 }
        }
    });
    if let Some(budget) = budget {
        config["budget"] = budget;
    }
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&config).unwrap(),
    );
    repo
}

/// Agent phases `ids` (each after the one before), each with `budget`
/// (if any), and `defaults` for the template.
fn template(repo: &Repo, ids: &[&str], budget: Option<Value>, defaults: Value) {
    let mut phases = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut phase = json!({
            "id": id, "kind": "agent", "role": "primary",
            "prompt": "Read notes.txt, then submit a plan.",
            "tools": ["read_file"],
            "outputs": { "plan": "message" }
        });
        if i > 0 {
            phase["needs"] = json!([ids[i - 1]]);
        }
        if let Some(budget) = &budget {
            phase["budget"] = budget.clone();
        }
        phases.push(phase);
    }
    repo.template(
        "spend",
        &json!({ "name": "spend", "defaults": defaults, "phases": phases }),
    );
}

fn wfe(repo: &Repo, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn state(repo: &Repo, run: &str, phase: &str) -> Value {
    let text = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{run}:phases/{phase}/state.json"),
    ]);
    serde_json::from_str(&text).unwrap()
}

fn record(repo: &Repo, run: &str) -> Value {
    let text = repo.git(&["show", &format!("refs/wfe/runs/{run}:run.json")]);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_phase_pauses_at_its_soft_limit_and_goes_on_when_approved_with_a_raise() {
    let server = Server::spawn(vec![read(), read(), submit("done")]);
    let repo = repo_with(server.url(), None);
    // 300 tokens, soft 80%: 240 after two answers pauses before the third.
    template(&repo, &["plan"], Some(json!({ "tokens": 300 })), json!({}));
    let run = wfe(&repo, &["run", "spend"]);
    run.code(3);
    assert_eq!(server.request_count(), 2, "paused before the third request");
    assert!(
        run.stderr
            .contains("240 tokens of the phase's 300 tokens spent (80%"),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["status"], "waiting");
    assert_eq!(plan["continues"], true);
    assert_eq!(plan["error"]["kind"], "budget");
    assert_eq!(plan["error"]["limit"], "tokens");
    assert_eq!(plan["spend"]["tokens"], 240);
    assert_eq!(plan["spend"]["tool_calls"], 2);

    // Status, show and --json show the spend and the limit.
    let status = wfe(&repo, &["status", &id]);
    assert!(
        status.stderr.contains("240 tokens") || status.stdout.contains("240 tokens"),
        "{}{}",
        status.stdout,
        status.stderr
    );
    let shown = wfe(&repo, &["show", &id, "--json"]);
    let doc = shown.json();
    let phase = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "plan")
        .unwrap();
    assert_eq!(phase["spend"]["tokens"], 240, "{phase}");
    assert_eq!(phase["budget"]["tokens"], 300, "{phase}");
    assert_eq!(doc["spend"]["tokens"], 240, "{doc}");

    // A raise that is not one is refused, nothing written.
    let bad = wfe(&repo, &["approve", &id, "plan", "--budget", "tokens=+x"]);
    bad.code(2);
    assert!(
        bad.stderr.contains("not a positive number"),
        "{}",
        bad.stderr
    );

    let approve = wfe(&repo, &["approve", &id, "plan", "--budget", "tokens=+300"]);
    approve.code(0);
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["status"], "pending");
    assert_eq!(plan["budget"]["tokens"], 600);
    assert_eq!(plan["budget_approved"]["tokens"], 240);

    let resume = wfe(&repo, &["resume", &id]);
    resume.code(0);
    assert_eq!(server.request_count(), 3, "one more request, no resend");
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["status"], "completed");
    assert_eq!(plan["attempt"], 1, "the same attempt went on");
    assert_eq!(plan["spend"]["tokens"], 360);
    // The conversation went on: the third request holds the first two answers.
    let third: Value = serde_json::from_slice(&server.bodies()[2]).unwrap();
    assert_eq!(third["messages"].as_array().unwrap().len(), 5, "{third}");
    // A raise applies only to a phase paused at a budget.
    let late = wfe(&repo, &["approve", &id, "plan", "--budget", "+1"]);
    assert_ne!(late.code, 0, "{}", late.stderr);
    assert!(
        late.stderr.contains("not paused at a budget"),
        "{}",
        late.stderr
    );
}

#[test]
fn the_hard_limit_ends_the_attempt_naming_the_limit() {
    let server = Server::spawn(vec![read(), read(), read(), submit("never")]);
    let repo = repo_with(server.url(), None);
    template(
        &repo,
        &["plan"],
        Some(json!({ "tokens": 250, "soft": 1 })),
        json!({}),
    );
    let run = wfe(&repo, &["run", "spend"]);
    run.code(1);
    assert_eq!(
        server.request_count(),
        3,
        "stopped before the fourth request"
    );
    assert!(
        run.stderr.contains(
            "budget: the phase's tokens limit of 250 tokens is reached: 360 tokens spent"
        ),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["status"], "failed");
    assert_eq!(plan["attempt"], 1, "a budget failure is not retried");
    // The spend is in the log, and so in the search index.
    let found = wfe(&repo, &["search", "\"360 tokens\"", "--json"]);
    found.code(0);
    let hits = found.json()["hits"].as_array().unwrap().clone();
    assert!(
        hits.iter()
            .any(|h| h["kind"] == "log" && h["phase"] == "plan"),
        "{hits:?}"
    );
    let kinds: Vec<&str> = hits.iter().filter_map(|h| h["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"error"),
        "the archived budget error: {kinds:?}"
    );
}

#[test]
fn status_and_show_say_what_was_spent_and_why_a_phase_waits() {
    let server = Server::spawn(vec![read(), read()]);
    let repo = repo_with(server.url(), None);
    template(&repo, &["plan"], Some(json!({ "tokens": 300 })), json!({}));
    let run = wfe(&repo, &["run", "spend", "--budget", "cost=1"]);
    run.code(3);
    let id = repo.run_id();
    let status = wfe(&repo, &["status", &id]);
    let show = wfe(&repo, &["show", &id, "plan"]);
    let session = format!(
        "$ wfe run spend --budget cost=1\n{}\n$ wfe status RUN\n{}{}\n$ wfe show RUN plan\n{}{}",
        run.stderr, status.stdout, status.stderr, show.stdout, show.stderr
    );
    common::snapshot::assert_text!(&repo, "budget_pause_in_status_and_show", session);
}

#[test]
fn a_run_budget_sums_over_phases() {
    let server = Server::spawn(vec![read(), submit("one"), read(), read(), submit("two")]);
    let repo = repo_with(server.url(), None);
    template(&repo, &["first", "second"], None, json!({}));
    // 500 tokens, soft 80% = 400: the first phase spends 240, the second
    // pauses after two answers (480) before its third request.
    let run = wfe(&repo, &["run", "spend", "--budget", "tokens=500"]);
    run.code(3);
    assert_eq!(server.request_count(), 4);
    assert!(
        run.stderr
            .contains("480 tokens of the run's 500 tokens spent"),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    assert_eq!(record(&repo, &id)["budget"]["tokens"], 500);
    let approve = wfe(&repo, &["approve", &id, "second", "--budget", "+50%"]);
    approve.code(0);
    assert_eq!(record(&repo, &id)["budget"]["tokens"], 750);
    wfe(&repo, &["resume", &id]).code(0);
    assert_eq!(server.request_count(), 5);
    let shown = wfe(&repo, &["show", &id, "--json"]).json();
    assert_eq!(shown["spend"]["tokens"], 600, "{shown}");
}

#[test]
fn a_run_budget_hard_limit_stops_the_second_phase() {
    let server = Server::spawn(vec![read(), submit("one"), read(), read()]);
    let repo = repo_with(server.url(), None);
    template(
        &repo,
        &["first", "second"],
        None,
        json!({ "budget": { "tokens": 300, "soft": 1 } }),
    );
    let run = wfe(&repo, &["run", "spend"]);
    run.code(1);
    // 240 after the first phase; the second sends one (360) and stops.
    assert_eq!(server.request_count(), 3);
    assert!(
        run.stderr
            .contains("the run's tokens limit of 300 tokens is reached"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_cost_budget_from_the_config_prices_each_answer() {
    let server = Server::spawn(vec![read(), read(), submit("done")]);
    // Each answer costs $0.0006: soft 50% of $0.001 is reached after one.
    let repo = repo_with(
        server.url(),
        Some(json!({ "cost_usd": 0.001, "soft": 0.5 })),
    );
    template(&repo, &["plan"], None, json!({}));
    let run = wfe(&repo, &["run", "spend"]);
    run.code(3);
    assert_eq!(server.request_count(), 1);
    assert!(
        run.stderr.contains("$0.0006 of the run's $0.0010"),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["error"]["limit"], "cost_usd");
    let cost = plan["spend"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0006).abs() < 1e-9, "{cost}");
    // Approved without a raise: on to the hard limit, $0.0012 after two.
    wfe(&repo, &["approve", &id, "plan"]).code(0);
    let resume = wfe(&repo, &["resume", &id]);
    resume.code(1);
    assert_eq!(server.request_count(), 2);
    assert!(
        resume.stderr.contains("the run's cost_usd limit"),
        "{}",
        resume.stderr
    );
}

#[test]
fn a_tool_call_budget_stops_before_the_call_past_it() {
    let server = Server::spawn(vec![Reply::anthropic(vec![
        Part::Tool("read_file", json!({ "path": "notes.txt" })),
        Part::Tool("read_file", json!({ "path": "notes.txt" })),
    ])]);
    let repo = repo_with(server.url(), None);
    template(
        &repo,
        &["plan"],
        Some(json!({ "tool_calls": 1 })),
        json!({}),
    );
    let run = wfe(&repo, &["run", "spend"]);
    run.code(1);
    assert_eq!(server.request_count(), 1);
    assert!(
        run.stderr.contains("stopped before the next tool call: budget: the phase's tool_calls limit of 1 tool call is reached: 1 tool call spent"),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    let calls = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/plan/tool-calls.jsonl"),
    ]);
    assert_eq!(calls.lines().count(), 1, "the second call never ran");
}

#[test]
fn bad_budgets_are_refused_with_where_and_what() {
    let server = Server::spawn(vec![]);
    let repo = repo_with(server.url(), None);
    template(
        &repo,
        &["plan"],
        Some(json!({ "tokens": 0, "soft": 1.5 })),
        json!({}),
    );
    let run = wfe(&repo, &["run", "spend"]);
    run.code(2);
    assert!(
        run.stderr.contains("phases[0].budget.tokens"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("phases[0].budget.soft"),
        "{}",
        run.stderr
    );

    template(
        &repo,
        &["plan"],
        Some(json!({ "tokens": "many" })),
        json!({}),
    );
    let run = wfe(&repo, &["run", "spend"]);
    run.code(2);
    assert!(run.stderr.contains("budget"), "{}", run.stderr);

    template(&repo, &["plan"], None, json!({}));
    let run = wfe(&repo, &["run", "spend", "--budget", "tokes=5"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("--budget tokes=5: `tokes` is not a budget limit"),
        "{}",
        run.stderr
    );

    let repo = repo_with(server.url(), Some(json!({ "wall": "0s" })));
    template(&repo, &["plan"], None, json!({}));
    let run = wfe(&repo, &["run", "spend"]);
    run.code(2);
    assert!(
        run.stderr.contains("config.json: budget.wall"),
        "{}",
        run.stderr
    );
    assert_eq!(server.request_count(), 0);
    assert!(
        repo.git(&["for-each-ref", "refs/wfe/runs"]).is_empty(),
        "nothing written"
    );
}

#[test]
fn a_live_runner_waiting_on_a_budget_goes_on_when_approved() {
    let server = Server::spawn(vec![read(), read(), submit("done")]);
    let repo = repo_with(server.url(), None);
    template(&repo, &["plan"], Some(json!({ "tokens": 300 })), json!({}));
    let runner = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["run", "spend", "--wait", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded polling until the phase waits on its budget.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the phase never paused"
        );
        if let Some(r) = repo.wfe_refs().first() {
            let shown = repo.git_output(&["show", &format!("{r}:phases/plan/state.json")]);
            if String::from_utf8_lossy(&shown.stdout).contains("\"waiting\"") {
                break r.trim_start_matches("refs/wfe/runs/").to_string();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(server.request_count(), 2);
    let approve = wfe(&repo, &["approve", &id, "plan", "--budget", "+300"]);
    approve.code(0);
    assert!(
        approve
            .stderr
            .contains("plan approved past its phase budget, raised to 600 tokens"),
        "{}",
        approve.stderr
    );
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(0);
    assert_eq!(out.json()["status"], "completed");
    assert_eq!(server.request_count(), 3);
    let plan = state(&repo, &id, "plan");
    assert_eq!(plan["attempt"], 1);
    assert_eq!(plan["budget"]["tokens"], 600);
}
