//! Honest provider behaviour end to end, with the real binary against the
//! fake model server: answers cut off by the output limit (each provider's
//! way of saying so), `max_tokens` per phase and per role, retries shown
//! as they happen, and model text shown as it streams.

use crate::common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::Repo;
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply, sse};

/// A repo with provider `p` of `kind` at `url` playing `primary`, and a
/// one-phase template `honest` whose agent must submit a `message`.
fn repo_with(kind: &str, url: &str, phase_extra: Value, role_extra: Value) -> Repo {
    let repo = Repo::new();
    let mut role = json!({ "provider": "p", "model": "m-test" });
    if let (Some(role), Some(extra)) = (role.as_object_mut(), role_extra.as_object()) {
        role.extend(extra.clone());
    }
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": {
                "p": {
                    "kind": kind,
                    "base_url": url,
                    "max_tokens": 4096,
                    "retry": { "max_attempts": 3, "backoff": "10ms", "max_backoff": "20ms" }
                }
            },
            "roles": { "primary": role }
        }))
        .unwrap(),
    );
    let mut phase = json!({
        "id": "plan", "kind": "agent", "role": "primary",
        "prompt": "Plan.",
        "outputs": { "plan": "message" }
    });
    if let (Some(phase), Some(extra)) = (phase.as_object_mut(), phase_extra.as_object()) {
        phase.extend(extra.clone());
    }
    repo.template("honest", &json!({ "name": "honest", "phases": [phase] }));
    repo
}

fn wfe(repo: &Repo, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "k-anthropic")
        .env("OPENAI_API_KEY", "k-openai")
        .env("GEMINI_API_KEY", "k-gemini")
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn log_lines(repo: &Repo, run: &str) -> Vec<(String, String)> {
    repo.git(&[
        "show",
        &format!("refs/wfe/runs/{run}:phases/plan/log.jsonl"),
    ])
    .lines()
    .map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        (
            v["stream"].as_str().unwrap().to_string(),
            v["line"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

fn openai_chunk(delta: Value, finish: Option<&str>) -> String {
    sse(
        None,
        &json!({"id": "c1", "object": "chat.completion.chunk", "model": "m-test",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
    )
}

fn gemini_chunk(parts: Value, finish: &str) -> String {
    sse(
        None,
        &json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0,
                                "finishReason": finish}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4096,
                                  "totalTokenCount": 4106}}),
    )
}

/// For each provider kind: its cut-off answer, then an answer submitting.
fn cut_off_scripts() -> Vec<(&'static str, Vec<Reply>)> {
    vec![
        (
            "anthropic",
            vec![
                Reply::anthropic_max_tokens(vec![
                    Part::Text("Writing a long plan.".into()),
                    Part::Tool("submit_plan", json!({ "text": "a very long plan indeed" })),
                ]),
                Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "short" }))]),
            ],
        ),
        (
            "openai",
            vec![
                Reply::sse(vec![
                    openai_chunk(json!({"content": "Writing a long plan."}), None),
                    openai_chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "submit_plan", "arguments": "{\"text\": \"a very"}}]}),
                        None,
                    ),
                    openai_chunk(json!({}), Some("length")),
                    "data: [DONE]\n\n".into(),
                ]),
                Reply::sse(vec![
                    openai_chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_2", "type": "function",
                               "function": {"name": "submit_plan", "arguments": "{\"text\": \"short\"}"}}]}),
                        None,
                    ),
                    openai_chunk(json!({}), Some("tool_calls")),
                    "data: [DONE]\n\n".into(),
                ]),
            ],
        ),
        (
            "gemini",
            vec![
                Reply::sse(vec![gemini_chunk(
                    json!([{"text": "Writing a long plan."}]),
                    "MAX_TOKENS",
                )]),
                Reply::sse(vec![gemini_chunk(
                    json!([{"functionCall": {"name": "submit_plan", "args": {"text": "short"}}}]),
                    "STOP",
                )]),
            ],
        ),
    ]
}

#[test]
fn an_answer_cut_off_by_the_output_limit_is_reported_and_the_model_asked_to_continue() {
    for (kind, replies) in cut_off_scripts() {
        let server = Server::spawn(replies);
        let repo = repo_with(kind, server.url(), json!({}), json!({}));
        let run = wfe(&repo, &["run", "honest"]);
        run.code(0);
        let said = "primary's answer was cut off at the output limit (max_tokens 4096)";
        assert!(run.stderr.contains(said), "{kind}: {}", run.stderr);
        assert!(!run.stderr.contains("malformed"), "{kind}: {}", run.stderr);
        let id = repo.run_id();
        let lines = log_lines(&repo, &id);
        assert!(
            lines.contains(&("wfe".into(), said.into())),
            "{kind}: {lines:?}"
        );
        // Sent once each, the second time with the request to continue.
        let requests = server.requests();
        assert_eq!(requests.len(), 2, "{kind}");
        assert_ne!(requests[0].body, requests[1].body, "{kind}");
        let second = requests[1].body.to_string();
        assert!(
            second.contains("Your answer was cut off: it reached the output limit of 4096 tokens"),
            "{kind}: {second}"
        );
        let artifact = repo.git(&[
            "show",
            &format!("refs/wfe/runs/{id}:phases/plan/artifacts/plan.json"),
        ]);
        assert!(artifact.contains("short"), "{kind}: {artifact}");
    }
}

#[test]
fn answers_cut_off_three_times_fail_the_phase_naming_max_tokens() {
    let cut = || Reply::anthropic_max_tokens(vec![Part::Text("Still writing".into())]);
    let server = Server::spawn(vec![cut(), cut(), cut()]);
    let repo = repo_with(
        "anthropic",
        server.url(),
        json!({"retry": {"max_attempts": 1}}),
        json!({}),
    );
    let run = wfe(&repo, &["run", "honest"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("cut off at the output limit (max_tokens 4096) 3 times in a row"),
        "{}",
        run.stderr
    );
    assert_eq!(server.requests().len(), 3);
    let id = repo.run_id();
    let state: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/plan/state.json"),
    ]))
    .unwrap();
    assert_eq!(state["error"]["kind"], "output_limit", "{state}");
    assert_eq!(state["error"]["max_tokens"], 4096, "{state}");
}

#[test]
fn max_tokens_comes_from_the_phase_then_the_role_then_the_provider() {
    let submit = || Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "ok" }))]);
    for (phase, role, expected) in [
        (json!({"max_tokens": 333}), json!({"max_tokens": 777}), 333),
        (json!({}), json!({"max_tokens": 777}), 777),
        (json!({}), json!({}), 4096),
    ] {
        let server = Server::spawn(vec![submit()]);
        let repo = repo_with("anthropic", server.url(), phase, role);
        wfe(&repo, &["run", "honest"]).code(0);
        assert_eq!(server.requests()[0].body["max_tokens"], expected);
    }
    // Zero is refused where it is written, before anything runs.
    let server = Server::spawn(vec![]);
    let repo = repo_with(
        "anthropic",
        server.url(),
        json!({"max_tokens": 0}),
        json!({}),
    );
    let run = wfe(&repo, &["run", "honest"]);
    run.code(2);
    assert!(run.stderr.contains("max_tokens"), "{}", run.stderr);
    assert!(server.requests().is_empty());
}

#[test]
fn provider_retries_are_shown_and_logged_with_reason_and_wait() {
    let server = Server::spawn(vec![
        Reply::anthropic_cut(vec![Part::Text("half an answ".into())]),
        Reply::anthropic_error(500),
        Reply::anthropic(vec![
            Part::Text("A whole answer.".into()),
            Part::Tool("submit_plan", json!({ "text": "done" })),
        ]),
    ]);
    let repo = repo_with("anthropic", server.url(), json!({}), json!({}));
    let run = wfe(&repo, &["run", "honest"]);
    run.code(0);
    let first = "provider `p`: attempt 1 of 3 failed: the stream ended before `message_stop`; \
                 retrying in ";
    let second = "provider `p`: attempt 2 of 3 failed: HTTP 500 Internal Server Error: scripted 500; \
                  retrying in ";
    assert!(run.stderr.contains(first), "{}", run.stderr);
    assert!(run.stderr.contains(second), "{}", run.stderr);
    let lines = log_lines(&repo, &repo.run_id());
    let at = lines
        .iter()
        .position(|(_, l)| l == "half an answ")
        .unwrap_or_else(|| panic!("the discarded text is a line of its own: {lines:?}"));
    assert_eq!(lines[at].0, "model");
    let (stream, retry) = &lines[at + 1];
    assert_eq!(stream, "wfe");
    assert!(retry.starts_with(first), "{retry}");
    assert!(
        retry.ends_with("; the 12 characters of text above from that attempt are discarded"),
        "{retry}"
    );
    let (stream, retry) = &lines[at + 2];
    assert_eq!(stream, "wfe");
    assert!(retry.starts_with(second), "{retry}");
    assert!(
        !retry.contains("discarded"),
        "nothing was streamed: {retry}"
    );
    assert_eq!(lines[at + 3], ("model".into(), "A whole answer.".into()));
}

#[test]
fn model_text_is_shown_before_its_line_ends() {
    // The answer's first words, then silence: a line-at-a-time display
    // would show nothing until the read timeout (a minute) ends the attempt.
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "m", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 1, "output_tokens": 1}}});
    let block = json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}});
    let delta = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "Thinking about it"}});
    let server = Server::spawn(vec![
        Reply::sse(vec![
            sse(Some("message_start"), &start),
            sse(Some("content_block_start"), &block),
            sse(Some("content_block_delta"), &delta),
        ])
        .stalled(),
    ]);
    let repo = repo_with("anthropic", server.url(), json!({}), json!({}));
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join(".wfe/config.json")).unwrap(),
    )
    .unwrap();
    config["providers"]["p"]["read_timeout"] = json!("60s");
    repo.write(".wfe/config.json", &config.to_string());
    let mut child = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "k-anthropic")
        .args(["run", "honest"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        if String::from_utf8_lossy(&seen).contains("plan │ Thinking about it") {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.extend(bytes),
            Err(_) => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        shown,
        "the streamed text was not shown: {}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("Thinking about it\n"),
        "the line had not ended"
    );
}

#[test]
fn each_attempt_records_its_provider_and_model_and_show_tells() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(400),
        Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "ok" }))]),
    ]);
    let repo = repo_with("anthropic", server.url(), json!({}), json!({}));
    wfe(&repo, &["run", "honest"]).code(1);
    let id = repo.run_id();
    wfe(&repo, &["retry", &id, "plan", "--model", "m-bigger"]).code(0);

    let state: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/plan/state.json"),
    ]))
    .unwrap();
    assert_eq!(
        state["models"],
        json!([
            {"attempt": 1, "provider": "p", "model": "m-test"},
            {"attempt": 2, "provider": "p", "model": "m-bigger"}
        ]),
        "{state}"
    );
    assert_eq!(state["usage"]["provider"], "p");
    assert_eq!(state["usage"]["model"], "m-bigger");

    let shown = wfe(&repo, &["show", &id, "plan"]);
    shown.code(0);
    assert!(
        shown
            .stdout
            .contains("  model      m-bigger (p): 1 request, "),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("  attempts   1: m-test (p) · 2: m-bigger (p)"),
        "{}",
        shown.stdout
    );
    let json = wfe(&repo, &["show", &id, "plan", "--json"]).json();
    let text = json.to_string();
    assert!(
        text.contains(r#"{"attempt":2,"model":"m-bigger","provider":"p"}"#),
        "{text}"
    );
}

#[test]
fn a_cli_agent_reports_the_tokens_its_envelope_gives() {
    let repo = Repo::new();
    repo.write(
        "fake-claude.sh",
        "#!/bin/sh\ncat > /dev/null\nprintf '%s' '{\"type\":\"result\",\"result\":\"```json\\n{\\\"plan\\\": {\\\"text\\\": \\\"cli\\\"}}\\n```\",\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":1000,\"output_tokens\":33}}'\n",
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
    repo.template(
        "honest",
        &json!({ "name": "honest", "phases": [{
            "id": "plan", "kind": "agent", "role": "primary", "prompt": "Plan.",
            "outputs": { "plan": "message" }
        }] }),
    );
    repo.wfe(&["run", "honest"]).code(0);
    let id = repo.run_id();
    let state: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/plan/state.json"),
    ]))
    .unwrap();
    assert_eq!(state["usage"]["input_tokens"], 1007, "{state}");
    assert_eq!(state["usage"]["output_tokens"], 33, "{state}");
    let shown = repo.wfe(&["show", &id, "plan"]);
    assert!(
        shown
            .stdout
            .contains("model      default (claude-code): 1 request, 1007 tokens in, 33 out"),
        "{}",
        shown.stdout
    );
}

#[test]
fn providers_and_roles_are_edited_in_the_config_with_validation() {
    let repo = Repo::new();
    let config = repo.path().join(".wfe/config.json");
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "auto": true,
            "secrets": ["DEPLOY_TOKEN"],
            "providers": { "claude": { "kind": "anthropic", "max_tokens": 2000 } },
            "roles": { "primary": { "provider": "claude", "model": "claude-a", "max_tokens": 1000 } }
        }))
        .unwrap(),
    );
    let read =
        || -> Value { serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap() };

    let added = repo.wfe(&[
        "provider",
        "add",
        "local",
        "--kind",
        "openai-compatible",
        "--base-url",
        "http://127.0.0.1:11434/v1",
        "--key-env",
        "LOCAL_KEY",
    ]);
    added.code(0);
    assert!(
        added.stderr.contains("added provider `local`"),
        "{}",
        added.stderr
    );
    repo.wfe(&["role", "set", "reviewer", "local", "llama3"])
        .code(0);
    repo.wfe(&["role", "set", "primary", "claude", "claude-b"])
        .code(0);
    assert_eq!(
        read(),
        json!({
            "auto": true,
            "secrets": ["DEPLOY_TOKEN"],
            "providers": {
                "claude": { "kind": "anthropic", "max_tokens": 2000 },
                "local": { "kind": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1",
                           "api_key_env": "LOCAL_KEY" }
            },
            "roles": {
                "primary": { "provider": "claude", "model": "claude-b", "max_tokens": 1000 },
                "reviewer": { "provider": "local", "model": "llama3" }
            }
        })
    );
    // `wfe provider list` reads the edited file.
    let listed = repo.wfe(&["provider", "list", "--json"]);
    listed.code(0);
    assert!(listed.stdout.contains("\"llama3\""), "{}", listed.stdout);

    // Every refusal exits 2, says what is valid, and writes nothing.
    let before = std::fs::read(&config).unwrap();
    let refused = repo.wfe(&["provider", "remove", "local"]);
    refused.code(2);
    assert!(
        refused
            .stderr
            .contains("provider `local` still plays role `reviewer`"),
        "{}",
        refused.stderr
    );
    let unknown_kind = repo.wfe(&["provider", "add", "x", "--kind", "claude"]);
    unknown_kind.code(2);
    assert!(
        unknown_kind
            .stderr
            .contains("the kinds are: anthropic, openai, openai-compatible, gemini, cli, replay"),
        "{}",
        unknown_kind.stderr
    );
    let no_url = repo.wfe(&["provider", "add", "x", "--kind", "openai-compatible"]);
    no_url.code(2);
    assert!(
        no_url.stderr.contains("providers.x.base_url"),
        "{}",
        no_url.stderr
    );
    let unknown_provider = repo.wfe(&["role", "set", "primary", "gpt", "gpt-5"]);
    unknown_provider.code(2);
    assert!(
        unknown_provider.stderr.contains(
            "provider `gpt` is not in .wfe/config.json `providers` (known: claude, local)"
        ),
        "{}",
        unknown_provider.stderr
    );
    let unknown_remove = repo.wfe(&["provider", "remove", "gpt"]);
    unknown_remove.code(2);
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "nothing was written"
    );

    // Once no role uses it, it goes.
    repo.wfe(&["role", "set", "reviewer", "claude", "claude-a"])
        .code(0);
    repo.wfe(&["provider", "remove", "local"]).code(0);
    assert_eq!(
        read()["providers"],
        json!({ "claude": { "kind": "anthropic", "max_tokens": 2000 } })
    );
}
