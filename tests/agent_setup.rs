//! Agent setup checked before anything runs: an agent phase whose role,
//! provider, model or key cannot be found stops `wfe run`, `resume` and
//! `retry` with exit 2 before a ref is written or a phase starts, and
//! `wfe template validate` reports the same against the repo's config.
//! The harness clears the environment, so no provider key is set.

use crate::common;

use common::Repo;
use common::snapshot::{assert_run, assert_text, command};
use serde_json::{Value, json};

/// Providers of every kind the check treats differently: a hosted API
/// (needs a key), a local server and a CLI agent (need none). The CLI
/// agent is `false`: it fails at once, so a run that gets past the check
/// ends quickly, with its agent phase failed.
fn config(repo: &Repo) {
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": {
                "claude": { "kind": "anthropic" },
                "local": { "kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1" },
                "agent": { "kind": "cli", "command": ["false"] }
            },
            "roles": {
                "primary": { "provider": "claude", "model": "claude-test" },
                "reviewer": { "provider": "local", "model": "llama" },
                "offline": { "provider": "agent", "model": "any" }
            }
        }))
        .unwrap(),
    );
}

/// A template `setup`: a script phase that leaves `ran.txt`, then agent
/// phases each with the seat fields in `agents`.
fn template(repo: &Repo, agents: &[Value]) {
    let mut phases = vec![common::script("first", &[], "touch ran.txt")];
    for (i, seat) in agents.iter().enumerate() {
        let mut phase = json!({
            "id": format!("agent{}", i + 1), "kind": "agent", "needs": ["first"],
            "prompt": "Plan.", "outputs": { "plan": "message" }
        });
        phase
            .as_object_mut()
            .unwrap()
            .extend(seat.as_object().unwrap().clone());
        phases.push(phase);
    }
    repo.template(
        "setup",
        &json!({
            "name": "setup",
            "args": { "type": "object", "properties": { "provider": { "type": "string", "default": "claude" } } },
            "phases": phases
        }),
    );
}

/// Asserts that nothing ran and nothing was written.
#[track_caller]
fn assert_nothing_ran(repo: &Repo) {
    assert_eq!(repo.wfe_refs(), Vec::<String>::new(), "a ref was written");
    assert!(
        !repo.path().join("ran.txt").exists(),
        "the script phase before the agent phase ran"
    );
}

/// `wfe run setup` with agent phases `agents`: exit 2, nothing ran; the
/// transcript matches snapshot `name`.
fn refused(name: &str, agents: &[Value]) {
    let repo = Repo::new();
    config(&repo);
    template(&repo, agents);
    let run = repo.wfe(&["run", "setup"]);
    assert_run!(&repo, name, &run);
    run.code(2);
    assert_nothing_ran(&repo);
}

#[test]
fn an_unknown_provider_is_refused_before_the_run_is_created() {
    refused(
        "agent_setup_unknown_provider",
        &[json!({ "provider": "nosuch", "model": "m" })],
    );
}

#[test]
fn an_unknown_role_is_refused_before_the_run_is_created() {
    refused("agent_setup_unknown_role", &[json!({ "role": "critic" })]);
}

#[test]
fn a_missing_key_is_refused_with_the_command_that_stores_one() {
    refused("agent_setup_missing_key", &[json!({ "role": "primary" })]);
}

#[test]
fn every_problem_of_every_seat_is_reported_at_once() {
    refused(
        "agent_setup_every_problem",
        &[
            // No role: the `primary` role, whose provider has no key.
            json!({}),
            json!({ "role": "critic", "provider": "gone" }),
            json!({ "role": "offline", "review": { "role": "nobody" } }),
            json!({ "provider": "local", "model": "llama", "review": { "provider": "claude", "model": "c" } }),
        ],
    );
}

#[test]
fn a_templated_provider_is_refused_at_validation() {
    refused(
        "agent_setup_templated_provider",
        &[json!({ "provider": "{{ args.provider }}", "model": "m" })],
    );
}

#[test]
fn providers_that_need_no_key_pass_and_the_run_goes_on() {
    let repo = Repo::new();
    config(&repo);
    template(
        &repo,
        &[
            json!({ "role": "offline" }),
            json!({ "provider": "local", "model": "llama", "on_failure": "continue", "timeout": "1s" }),
        ],
    );
    let run = repo.wfe(&["run", "setup", "--no-output"]);
    // Past the check: the run exists and its first phase ran; the `false`
    // agent then fails its phase.
    assert_ne!(run.code, 2, "{}", run.stderr);
    assert_eq!(repo.wfe_refs().len(), 1);
    assert!(repo.path().join("ran.txt").exists());
}

#[test]
fn retry_and_resume_check_the_seats_they_will_use_before_writing() {
    let repo = Repo::new();
    config(&repo);
    template(&repo, &[json!({ "role": "offline" })]);
    repo.wfe(&["run", "setup", "--no-output"]).code(1);
    let id = repo.run_id();
    let tip = || repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]);
    let before = tip();

    let args = ["retry", &id, "agent1", "--provider", "nosuch"];
    let retry = repo.wfe(&args);
    let mut transcript = command(&args, &retry);
    retry.code(2);
    assert_eq!(tip(), before, "a refused retry wrote to the run");

    // A retry recorded without running it, then the role loses its provider.
    repo.wfe(&["retry", &id, "agent1", "--no-run"]).code(0);
    let paused = tip();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic" } },
            "roles": { "offline": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    let args = ["resume", &id];
    let resume = repo.wfe(&args);
    transcript.push_str(&command(&args, &resume));
    resume.code(2);
    assert_eq!(tip(), paused, "a refused resume wrote to the run");
    assert_text!(
        &repo,
        "agent_setup_retry_and_resume",
        transcript,
        [(id, "[RUN]")]
    );
}

#[test]
fn template_validate_reports_the_setup_against_the_repos_config() {
    let repo = Repo::new();
    config(&repo);
    template(
        &repo,
        &[json!({ "role": "critic" }), json!({ "role": "primary" })],
    );
    repo.template(
        "fine",
        &json!({
            "name": "fine",
            "phases": [ { "id": "plan", "kind": "agent", "role": "offline", "prompt": "Plan." } ]
        }),
    );
    let args = ["template", "validate", "setup", "fine"];
    let run = repo.wfe(&args);
    assert_text!(&repo, "agent_setup_template_validate", command(&args, &run));
    run.code(2);
    assert_nothing_ran(&repo);
}
