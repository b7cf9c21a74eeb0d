//! Rendering and provider answers are bounded (issue 10 §3): undefined
//! template values are errors (at validation when the args schema says
//! so, at render time otherwise), a runaway template fails fast and a
//! cancel still ends the run, a provider asking to wait for a day pauses
//! the run instead, and absurd numbers from a provider or a template never
//! panic. The real binary, a real git repo, the fake LLM server.

use crate::common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{Repo, script};
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer as Server, Part, Reply, anthropic_stream};

/// A recognisable fake key.
const KEY: &str = "sk-ant-BOUNDS-7f3a9c2e51d04b86";

/// Waits for `child` at most `limit` (generous: a hang is what is tested,
/// not speed); kills it and fails the test if it is still running.
#[track_caller]
fn finish_within(mut child: Child, limit: Duration) -> common::Run {
    let until = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return common::Run::from(child.wait_with_output().unwrap());
        }
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The committed `run.json` of `run`.
fn record(repo: &Repo, run: &str) -> Value {
    serde_json::from_str(&repo.git(&["show", &format!("refs/wfe/runs/{run}:run.json")])).unwrap()
}

/// The committed `state.json` of phase `phase`.
fn state(repo: &Repo, run: &str, phase: &str) -> Value {
    serde_json::from_str(&repo.git(&[
        "show",
        &format!("refs/wfe/runs/{run}:phases/{phase}/state.json"),
    ]))
    .unwrap()
}

#[test]
fn an_arg_that_may_be_undefined_is_refused_before_anything_runs() {
    let repo = Repo::new();
    let file = repo.template(
        "clean",
        &json!({
            "name": "clean",
            "args": { "type": "object", "properties": { "dir": { "type": "string" } } },
            "phases": [script("wipe", &[], "echo rm -rf {{ args.dir }}/build")]
        }),
    );
    for args in [&["template", "validate", "clean"][..], &["run", "clean"]] {
        let out = repo.wfe(args);
        out.code(2);
        assert!(
            out.stderr
                .contains(&*file.file_name().unwrap().to_string_lossy()),
            "{args:?} names the file: {}",
            out.stderr
        );
        assert!(out.stderr.contains("phases[0].run"), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("`args.dir` is optional without a default"),
            "{}",
            out.stderr
        );
    }
    assert!(repo.wfe_refs().is_empty(), "nothing was written");

    // An arg the schema does not declare at all is refused the same way.
    repo.template(
        "typo",
        &json!({
            "name": "typo",
            "args": { "type": "object", "properties": { "dir": { "type": "string", "default": "." } } },
            "phases": [script("wipe", &[], "echo {{ args.dri }}")]
        }),
    );
    let out = repo.wfe(&["run", "typo"]);
    out.code(2);
    assert!(
        out.stderr.contains("`args.dri` is not declared"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("did you mean `dir`?"), "{}", out.stderr);

    // Guarded or given a default, it passes; the bundled templates too.
    repo.template(
        "guarded",
        &json!({
            "name": "guarded",
            "args": { "type": "object", "properties": { "dir": { "type": "string" } } },
            "phases": [script("wipe", &[], "{% if args.dir %}echo {{ args.dir }}{% endif %}")]
        }),
    );
    repo.wfe(&["template", "validate", "guarded"]).code(0);
    repo.wfe(&["template", "validate", "hello"]).code(0);
}

#[test]
fn an_undefined_value_at_render_time_fails_the_phase_naming_field_and_variable() {
    let repo = Repo::new();
    let marker = repo.path().join("ran.txt");
    repo.template(
        "clean",
        &json!({
            "name": "clean",
            "phases": [script(
                "wipe",
                &[],
                &format!("echo ran > {}; echo rm -rf {{{{ args.dir }}}}/build", marker.display()),
            )]
        }),
    );
    let out = repo.wfe(&["run", "clean", "--json"]);
    out.code(1);
    assert!(!marker.exists(), "the command never ran");
    let run = repo.run_id();
    let error = &state(&repo, &run, "wipe")["error"];
    assert_eq!(error["kind"], "render", "{error}");
    assert_eq!(error["field"], "run", "{error}");
    assert_eq!(error["message"], "`args.dir` is undefined", "{error}");
    assert!(
        out.stderr
            .contains("cannot render `run`: `args.dir` is undefined"),
        "{}",
        out.stderr
    );

    // Given, it renders and runs.
    repo.wfe(&["run", "clean", "--arg", "dir=/tmp/x"]).code(0);
    assert!(marker.exists());
}

#[test]
fn a_runaway_template_fails_fast_instead_of_hanging() {
    let repo = Repo::new();
    let forever =
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}";
    repo.template(
        "spin",
        &json!({
            "name": "spin",
            "phases": [
                { "id": "spin", "kind": "script", "run": forever, "on_failure": "continue" },
                { "id": "env", "kind": "script", "run": "true",
                  "env": { "BIG": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" } }
            ]
        }),
    );
    // Validation renders a dry run too: bounded as well.
    repo.wfe(&["template", "validate", "spin"]).code(0);
    let out = finish_within(
        repo.spawn(&["run", "spin", "--json"]),
        Duration::from_secs(120),
    );
    out.code(1);
    let run = repo.run_id();
    for (phase, field) in [("spin", "run"), ("env", "env.BIG")] {
        let error = &state(&repo, &run, phase)["error"];
        assert_eq!(error["field"], field, "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("(a loop too large?)"),
            "{error}"
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn a_cancel_ends_a_run_busy_rendering() {
    let repo = Repo::new();
    // Every iteration renders a heavy (but allowed) template; without the
    // cancel this loop would go on for hours.
    let heavy = "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}true";
    repo.template(
        "busy",
        &json!({
            "name": "busy",
            "phases": [{ "id": "spin", "kind": "loop", "max_iters": 100000,
                         "phases": [script("render", &[], heavy)] }]
        }),
    );
    let runner = repo.spawn(&["run", "busy", "--json"]);
    let until = Instant::now() + Duration::from_secs(60);
    while repo.wfe_refs().is_empty() {
        assert!(Instant::now() < until, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    repo.wfe(&["cancel", &repo.run_id()]).code(0);
    let out = finish_within(runner, Duration::from_secs(120));
    out.code(3);
    assert_eq!(out.json()["status"], "cancelled");
}

#[test]
fn a_huge_duration_in_a_template_is_refused_not_overflowed() {
    let repo = Repo::new();
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [
            { "id": "a", "kind": "script", "run": "true", "timeout": "99999999999h" }
        ]}),
    );
    let out = repo.wfe(&["run", "slow"]);
    out.code(2);
    assert!(out.stderr.contains("too long a duration"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(repo.wfe_refs().is_empty());
}

/// A repo whose `primary` role is Anthropic at `url`, with `extra` merged
/// into the provider entry, and an agent template `ask`.
fn agent_repo(url: &str, extra: Value) -> Repo {
    let repo = Repo::new();
    let mut provider = json!({
        "kind": "anthropic",
        "base_url": url,
        "retry": { "max_attempts": 3, "backoff": "10ms", "max_backoff": "20ms" }
    });
    if let (Some(p), Some(extra)) = (provider.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": provider },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } },
            "models": { "claude-test": { "input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0 } }
        }))
        .unwrap(),
    );
    repo.template(
        "ask",
        &json!({
            "name": "ask",
            "phases": [{ "id": "plan", "kind": "agent", "role": "primary",
                         "prompt": "Plan it.", "outputs": { "plan": "message" } }]
        }),
    );
    repo
}

fn wfe_with_key(repo: &Repo, args: &[&str]) -> Child {
    repo.wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn submit(text: &str) -> Part {
    Part::Tool("submit_plan", json!({ "text": text }))
}

#[test]
fn a_provider_asking_to_wait_a_day_pauses_the_run_until_resume() {
    let server = Server::spawn(vec![
        Reply::anthropic_error(429).header("retry-after", "86400"),
    ]);
    let repo = agent_repo(server.url(), json!({}));
    let out = finish_within(
        wfe_with_key(&repo, &["run", "ask"]),
        Duration::from_secs(120),
    );
    out.code(3);
    assert_eq!(server.requests().len(), 1, "no second request was sent");
    let run = repo.run_id();
    let record = record(&repo, &run);
    assert_eq!(record["status"], "paused");
    let reason = &record["reason"];
    assert_eq!(reason["kind"], "provider-unavailable", "{reason}");
    let message = reason["message"].as_str().unwrap();
    assert!(message.contains("asks to wait 1day"), "{message}");
    assert!(message.contains("longer than the 5m"), "{message}");
    assert!(out.stderr.contains("1day"), "{}", out.stderr);

    server.push(vec![Reply::anthropic(vec![submit("after the wait")])]);
    let resumed = finish_within(
        wfe_with_key(&repo, &["resume", &run]),
        Duration::from_secs(120),
    );
    resumed.code(0);
    assert_eq!(state(&repo, &run, "plan")["status"], "completed");
}

#[test]
fn the_wait_cap_is_set_per_provider() {
    // A 2 s wait is over a 1 s cap: pause at once.
    let server = Server::spawn(vec![Reply::anthropic_error(429).header("retry-after", "2")]);
    let repo = agent_repo(server.url(), json!({ "max_wait": "1s" }));
    let out = finish_within(
        wfe_with_key(&repo, &["run", "ask"]),
        Duration::from_secs(120),
    );
    out.code(3);
    let message = record(&repo, &repo.run_id())["reason"]["message"].to_string();
    assert!(message.contains("longer than the 1s"), "{message}");
}

#[test]
fn absurd_numbers_from_a_provider_never_panic() {
    // retry-after-ms 1e300 overflowed `Duration::from_secs_f64` and
    // panicked the runtime; now it is simply over the cap.
    let server = Server::spawn(vec![
        Reply::anthropic_error(429).header("retry-after-ms", "1e300"),
    ]);
    let repo = agent_repo(server.url(), json!({}));
    let out = finish_within(
        wfe_with_key(&repo, &["run", "ask"]),
        Duration::from_secs(120),
    );
    out.code(3);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let message = record(&repo, &repo.run_id())["reason"]["message"].to_string();
    assert!(message.contains("more than a century"), "{message}");

    // Token counts at u64::MAX (twice, and summed over cached input) with
    // prices set: counts saturate, the cost is left unknown.
    let huge = |parts: Vec<Part>, id: usize| {
        let max = u64::MAX;
        Reply::sse(vec![
            anthropic_stream(id, &parts, false)
                .replace(
                    r#""input_tokens":100"#,
                    &format!(r#""input_tokens":{max},"cache_read_input_tokens":{max}"#),
                )
                .replace(
                    r#""output_tokens":20"#,
                    &format!(r#""output_tokens":{max}"#),
                ),
        ])
    };
    let server = Server::spawn(vec![
        huge(vec![Part::Tool("submit_plan", json!({ "txt": "typo" }))], 1),
        huge(vec![submit("done")], 2),
    ]);
    let repo = agent_repo(server.url(), json!({}));
    let out = finish_within(
        wfe_with_key(&repo, &["run", "ask"]),
        Duration::from_secs(120),
    );
    out.code(0);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let run = repo.run_id();
    let usage = &state(&repo, &run, "plan")["usage"];
    assert_eq!(usage["input_tokens"], u64::MAX, "{usage}");
    assert_eq!(usage["output_tokens"], u64::MAX, "{usage}");
    repo.wfe(&["show", &run]).code(0);
}
