//! `wfe provider list|test|set-key` through the real binary: what is shown,
//! what is never shown (a key), and the exit codes.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, Run};
use serde_json::json;

/// A fake key that must never appear in any output.
const FAKE_KEY: &str = "sk-ant-test-DO-NOT-PRINT-7f3a9c";

/// Every variable that could leak a real key or config dir into a test.
const KEY_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "WFE_CONFIG_DIR",
];

/// The user config dir the tests point wfe at (inside the test's HOME).
fn config_dir(repo: &Repo) -> PathBuf {
    repo.home.path().join("wfe-config")
}

/// Runs wfe with no keys in the environment but `env`, and `stdin`.
fn wfe(repo: &Repo, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    use std::io::Write;
    let mut cmd = repo.wfe_cmd();
    for var in KEY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("WFE_CONFIG_DIR", config_dir(repo));
    cmd.envs(env.iter().copied()).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// Writes an executable `sh` script into the test's HOME; returns its path.
fn agent(repo: &Repo, name: &str, body: &str) -> String {
    let path = repo.home.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn config(repo: &Repo, value: serde_json::Value) {
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&value).unwrap(),
    );
}

fn sample(repo: &Repo) {
    config(
        repo,
        json!({
            "providers": {
                "claude": { "kind": "anthropic" },
                "gpt": { "kind": "openai" },
                "local": { "kind": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1" }
            },
            "roles": {
                "primary": { "provider": "claude", "model": "claude-sonnet-4-5" },
                "second_opinion": { "provider": "gpt", "model": "gpt-5" }
            }
        }),
    );
}

fn assert_no_key(run: &Run) {
    assert!(
        !run.stdout.contains(FAKE_KEY) && !run.stderr.contains(FAKE_KEY),
        "the key leaked:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn list_shows_roles_and_where_keys_come_from_never_the_key() {
    let repo = Repo::new();
    sample(&repo);
    let run = wfe(
        &repo,
        &["provider", "list"],
        &[("ANTHROPIC_API_KEY", FAKE_KEY)],
        "",
    );
    run.code(0);
    assert_no_key(&run);
    // Each role's provider and model; each provider's kind, URL and where
    // its key comes from: the environment, missing (and where wfe looked:
    // the credentials file in the config dir), or not needed.
    assert_run!(&repo, "provider_list", &run);

    let run = wfe(
        &repo,
        &["provider", "list", "--json"],
        &[("ANTHROPIC_API_KEY", FAKE_KEY)],
        "",
    );
    run.code(0);
    assert_no_key(&run);
    let doc = run.json();
    assert_eq!(
        doc["roles"][0],
        json!({ "role": "primary", "provider": "claude", "model": "claude-sonnet-4-5" })
    );
    let providers = doc["providers"].as_array().unwrap();
    let by_name = |name: &str| {
        providers
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("claude")["key"],
        json!({ "status": "env", "var": "ANTHROPIC_API_KEY" })
    );
    assert_eq!(by_name("gpt")["key"]["status"], "missing");
    assert_eq!(by_name("local")["key"], json!({ "status": "not_needed" }));
    assert_eq!(by_name("local")["base_url"], "http://127.0.0.1:11434/v1");
}

#[test]
fn a_bad_config_exits_2_naming_the_path() {
    let repo = Repo::new();
    config(
        &repo,
        json!({
            "providers": { "local": { "kind": "openai-compatible" } },
            "roles": { "primary": { "provider": "claude", "model": "m" } }
        }),
    );
    let run = wfe(&repo, &["provider", "list"], &[], "");
    run.code(2);
    // `providers.local.base_url` and `roles.primary.provider`, each with
    // the file and what is wrong.
    assert_run!(&repo, "provider_bad_config", &run);

    // Errors serde finds keep their path too.
    config(
        &repo,
        json!({ "providers": { "x": { "kind": "anthropic", "base_url": 7 } } }),
    );
    let run = wfe(&repo, &["provider", "list"], &[], "");
    run.code(2);
    assert_run!(&repo, "provider_bad_config_type", &run);
}

#[test]
fn test_a_cli_provider() {
    let repo = Repo::new();
    // Like `claude -p --output-format json`: reads the prompt, answers in an envelope.
    let ok = agent(
        &repo,
        "fake-claude",
        r#"grep -q 'Reply with the word OK.' || exit 9
printf '%s\n' '{"type":"result","result":"OK"}'"#,
    );
    let broken = agent(
        &repo,
        "broken-agent",
        "cat >/dev/null\necho 'error: not logged in' >&2\nexit 4",
    );
    config(
        &repo,
        json!({
            "providers": {
                "agent": { "kind": "cli", "command": [ok, "-p", "--output-format", "json"] },
                "broken": { "kind": "cli", "command": [broken] },
                "claude": { "kind": "anthropic" }
            },
            "roles": { "primary": { "provider": "agent", "model": "agent-model" } }
        }),
    );

    let mut session = String::new();
    let mut test = |args: &[&str], code: i32| {
        let run = wfe(&repo, args, &[], "");
        run.code(code);
        session.push_str(&command(args, &run));
        run
    };
    // The answer, with the model and the tokens.
    test(&["provider", "test", "agent"], 0);
    let doc = test(&["provider", "test", "agent", "--json"], 0).json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["text"], "OK");
    // The command, its exit code and the end of its stderr.
    test(&["provider", "test", "broken", "--model", "m"], 1);
    // No role uses it and no --model: nothing to test with.
    test(&["provider", "test", "broken"], 2);
    // A hosted API without a key fails the test, saying what to do.
    test(&["provider", "test", "claude", "--model", "m"], 1);
    test(&["provider", "test", "nope"], 2);
    assert_text!(&repo, "provider_test", session);
}

#[test]
fn set_key_then_list_shows_the_file() {
    let repo = Repo::new();
    sample(&repo);
    let run = wfe(
        &repo,
        &["provider", "set-key", "claude"],
        &[],
        &format!("  {FAKE_KEY}  \n"),
    );
    run.code(0);
    assert_no_key(&run);
    let credentials = config_dir(&repo).join("credentials.json");
    // Where the key went: the credentials file in the config dir.
    assert_run!(&repo, "provider_set_key", &run);
    let meta = std::fs::metadata(&credentials).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    assert_eq!(stored, json!({ "claude": FAKE_KEY }));

    let run = wfe(&repo, &["provider", "list"], &[], "");
    run.code(0);
    assert_no_key(&run);
    // claude's key: from the credentials file.
    assert_run!(&repo, "provider_list_key_from_file", &run);
    let run = wfe(&repo, &["provider", "list", "--json"], &[], "");
    assert_no_key(&run);
    assert_eq!(
        run.json()["providers"][0]["key"],
        json!({ "status": "file", "path": credentials })
    );

    // A file others can read is refused, with the fix.
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = wfe(&repo, &["provider", "list"], &[], "");
    run.code(0);
    assert_no_key(&run);
    // The fix: `chmod 600` of the file.
    assert_run!(&repo, "provider_list_key_file_readable_by_others", &run);

    // An empty line stores nothing.
    let run = wfe(&repo, &["provider", "set-key", "gpt"], &[], "\n");
    run.code(2);
    assert_run!(&repo, "provider_set_key_without_a_key", &run);
}

#[test]
fn set_key_works_outside_a_repository() {
    let repo = Repo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = repo.wfe_cmd();
    for var in KEY_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .current_dir(elsewhere.path())
        .env("WFE_CONFIG_DIR", config_dir(&repo))
        .args(["provider", "set-key", "claude"])
        .stdin(std::fs::File::open(repo.write("key.txt", "k-123\n")).unwrap())
        .output()
        .unwrap();
    Run::from(out).code(0);
    assert!(config_dir(&repo).join("credentials.json").exists());
}
