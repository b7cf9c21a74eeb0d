//! CI mode end to end: log groups in each host's dialect, the GitHub job
//! summary and annotations, JUnit validated against the Jenkins xUnit
//! plugin's `junit-10.xsd` (tests/data), gates approved up front or from
//! elsewhere, `--deadline` and `--detach`, and the commands of
//! `examples/ci/`.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::snapshot::{assert_run, assert_text};
use common::{Repo, script};
use serde_json::json;

/// A run of `args` with `env` set on top of the hermetic environment.
fn wfe_env(repo: &Repo, env: &[(&str, &str)], args: &[&str]) -> common::Run {
    let mut cmd = repo.wfe_cmd();
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::Run::from(cmd.args(args).output().unwrap())
}

/// Two phases that pass (one writes an artifact, one a line with
/// characters every format escapes) and one that fails.
fn mixed(repo: &Repo) {
    repo.write(
        ".wfe/schemas/ok.json",
        r#"{"type": "object", "required": ["ok"]}"#,
    );
    repo.template(
        "mixed",
        &json!({
            "name": "mixed",
            "defaults": { "on_failure": "continue" },
            "phases": [
                { "id": "build", "kind": "script",
                  "run": "echo compiling; echo '{\"ok\": true}' > \"$WFE_OUT/report.json\"",
                  "outputs": { "report": "ok" } },
                script("lint", &[], "printf '50%% <a & b> \"q\" \\033[31mred\\033[0m ::endgroup::\\n'"),
                script("test", &["build"], "echo 'assertion failed: 1 == 2' >&2; echo 'fail, at: here' >&2; exit 3"),
            ]
        }),
    );
}

/// Checks `file` against the vendored JUnit XSD with xmllint; without
/// xmllint the check is skipped, except in CI, where it must be there.
fn xmllint_valid(file: &Path) {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit-10.xsd");
    let out = match std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(file)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "xmllint is needed in CI (apt-get install libxml2-utils): {e}"
            );
            eprintln!("xmllint missing: JUnit not checked against the XSD");
            return;
        }
    };
    assert!(
        out.status.success(),
        "JUnit does not validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap()
    );
}

#[test]
fn github_actions_gets_groups_annotations_a_summary_and_junit() {
    let repo = Repo::new();
    mixed(&repo);
    let summary = repo.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let summary_env = summary.display().to_string();
    let run = wfe_env(
        &repo,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", &summary_env),
        ],
        &["run", "mixed", "--jobs", "1", "--junit", "junit.xml"],
    );
    run.code(0);
    assert!(run.stderr.contains("::group::"), "{}", run.stderr);
    assert!(!run.stderr.contains("\x1b[2K"), "no footer drawn in CI");
    assert_run!(&repo, "ci_github_log", &run);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("earlier step\n"),
        "the summary is appended"
    );
    assert_text!(&repo, "ci_github_summary", text);
    let junit = repo.path().join("junit.xml");
    xmllint_valid(&junit);
    // Times are measured: blur them, keep their shape (seconds, 3 decimals).
    let xml = std::fs::read_to_string(&junit).unwrap();
    let times = regex::Regex::new(r#"time="\d+\.\d{3}""#).unwrap();
    assert_eq!(times.find_iter(&xml).count(), 5, "{xml}");
    assert_text!(
        &repo,
        "ci_junit",
        times.replace_all(&xml, r#"time="[SECS]""#)
    );
}

#[test]
fn gitlab_buildkite_and_other_ci_fold_phases_their_way_and_no_ci_turns_it_off() {
    let repo = Repo::new();
    repo.template(
        "one",
        &json!({ "name": "one", "phases": [script("hello", &[], "echo hi")] }),
    );
    let gitlab = wfe_env(&repo, &[("GITLAB_CI", "true")], &["run", "one"]);
    gitlab.code(0);
    assert_run!(&repo, "ci_gitlab_log", &gitlab);
    let buildkite = wfe_env(&repo, &[("BUILDKITE", "true")], &["run", "one"]);
    assert!(
        buildkite
            .stderr
            .contains("\n--- [2026-01-02T03:04:05.000Z] ✓ hello completed"),
        "{}",
        buildkite.stderr
    );
    let plain = wfe_env(&repo, &[("CI", "true")], &["run", "one"]);
    assert!(plain.stderr.contains("  hello │ hi"), "{}", plain.stderr);
    assert!(plain.stderr.contains("] wfe: run "), "{}", plain.stderr);
    let forced = repo.wfe(&["run", "one", "--ci"]);
    assert!(forced.stderr.contains("  hello │ hi"), "{}", forced.stderr);
    let off = wfe_env(
        &repo,
        &[("GITHUB_ACTIONS", "true")],
        &["run", "one", "--no-ci"],
    );
    off.code(0);
    assert!(!off.stderr.contains("::group::"), "{}", off.stderr);
    assert!(off.stderr.contains("✓ hello completed"), "{}", off.stderr);
}

#[test]
fn at_most_ten_errors_are_annotated_and_a_notice_counts_the_rest() {
    let repo = Repo::new();
    let phases: Vec<_> = (0..12)
        .map(|i| script(&format!("p{i}"), &[], "echo 'a: b, 100%'; exit 1"))
        .collect();
    repo.template(
        "many",
        &json!({ "name": "many", "defaults": { "on_failure": "continue" }, "phases": phases }),
    );
    let run = wfe_env(&repo, &[("GITHUB_ACTIONS", "true")], &["run", "many"]);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    assert_eq!(errors.len(), 10, "{}", run.stderr);
    assert_eq!(
        errors[0],
        "::error title=wfe%3A phase p0 failed::the script exited with code 1"
    );
    assert!(
        run.stderr
            .contains("::notice title=wfe::2 more annotations left out"),
        "{}",
        run.stderr
    );
}

fn gated(repo: &Repo) {
    repo.template(
        "gated",
        &json!({
            "name": "gated",
            "phases": [
                script("build", &[], "echo built"),
                { "id": "ship", "kind": "gate", "needs": ["build"] },
                script("deploy", &["ship"], "echo deployed"),
            ]
        }),
    );
}

#[test]
fn a_gate_in_ci_stops_with_exit_3_and_says_how_to_approve_from_anywhere() {
    let repo = Repo::new();
    gated(&repo);
    let summary = repo.path().join("summary.md");
    let summary_env = summary.display().to_string();
    let run = wfe_env(
        &repo,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", &summary_env),
        ],
        &["run", "gated"],
    );
    run.code(3);
    let id = repo.run_id();
    assert!(
        run.stderr.contains(&format!("wfe approve {id} ship")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("wfe pull && wfe resume {id}")),
        "{}",
        run.stderr
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("### Next steps"), "{text}");
    assert!(
        text.contains(&format!("wfe pull\nwfe approve {id} ship\nwfe push\n")),
        "{text}"
    );
    // Approved elsewhere, resumed here: finished phases are not redone.
    repo.wfe(&["approve", &id, "ship"]).code(0);
    let resumed = repo.wfe(&["resume", &id, "--ci", "--json"]);
    resumed.code(0);
    let doc = resumed.json();
    assert_eq!(doc["phases"][0]["attempts"], 1);
}

#[test]
fn approve_up_front_runs_through_gates_and_is_checked_before_anything_runs() {
    let repo = Repo::new();
    gated(&repo);
    let run = repo.wfe(&["run", "gated", "--ci", "--approve", "ship"]);
    run.code(0);
    assert!(
        run.stderr.contains("ship: approved up front (--approve)"),
        "{}",
        run.stderr
    );
    repo.wfe(&["run", "gated", "--approve-all"]).code(0);
    let unknown = repo.wfe(&["run", "gated", "--approve", "nope"]);
    unknown.code(2);
    let not_gate = repo.wfe(&["run", "gated", "--approve", "build"]);
    not_gate.code(2);
    assert_eq!(repo.wfe_refs().len(), 2, "the refused runs wrote nothing");
    assert_run!(&repo, "ci_approve_unknown", &unknown);
    assert_run!(&repo, "ci_approve_not_a_gate", &not_gate);
}

#[test]
fn a_deadline_stops_the_run_cleanly_and_resume_does_not_redo_finished_phases() {
    let repo = Repo::new();
    let count = repo.path().join("fast-count");
    let marker = repo.path().join("go-on");
    repo.template(
        "long",
        &json!({
            "name": "long",
            "phases": [
                script("fast", &[], &format!("echo x >> {}", count.display())),
                { "id": "slow", "kind": "script", "needs": ["fast"], "kill_grace": "1s",
                  "run": format!("while [ ! -f {} ]; do sleep 0.05; done", marker.display()) },
            ]
        }),
    );
    let started = Instant::now();
    let run = repo.wfe(&["run", "long", "--deadline", "3s", "--json"]);
    let took = started.elapsed();
    run.code(3);
    assert!(
        took < Duration::from_secs(3),
        "stopped before its deadline: {took:?}"
    );
    let doc = run.json();
    assert_eq!(doc["status"], "paused");
    assert_eq!(doc["reason"], "stopped at its deadline");
    assert_eq!(doc["phases"][1]["status"], "pending");
    std::fs::write(&marker, "").unwrap();
    let id = repo.run_id();
    repo.wfe(&["resume", &id]).code(0);
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "x\n",
        "fast ran once"
    );
}

#[test]
fn detach_prints_the_id_at_once_and_the_run_goes_on_in_the_background() {
    let repo = Repo::new();
    let marker = repo.path().join("go-on");
    repo.template(
        "bg",
        &json!({
            "name": "bg",
            "phases": [script("wait", &[], &format!("while [ ! -f {} ]; do sleep 0.05; done; echo done", marker.display()))]
        }),
    );
    let run = repo.wfe(&["run", "bg", "--detach"]);
    run.code(0);
    let id = run.stdout.trim().to_string();
    assert_eq!(id, repo.run_id());
    // The parent has exited; the background runner still holds the run.
    std::fs::write(&marker, "").unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = repo.wfe(&["show", &id, "--json"]).json();
        if doc["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < until,
            "the detached run did not finish: {doc}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = repo.path().join(format!(".git/wfe/detached/{id}.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("wait completed"), "{text}");
}

/// The commands of `examples/ci/` as each file spells them.
const EXAMPLE_RUN: &str = "wfe run check --ci --junit junit.xml --deadline 5h30m";

#[test]
fn the_ci_examples_commands_work_locally_on_github_and_gitlab() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    for file in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for line in ["wfe pull", EXAMPLE_RUN, "wfe push"] {
            assert!(text.contains(line), "{file} runs `{line}`");
        }
    }
    let template = std::fs::read_to_string(dir.join("check.json")).unwrap();
    for (host, var) in [("github", "GITHUB_ACTIONS"), ("gitlab", "GITLAB_CI")] {
        let repo = Repo::new();
        repo.write(".wfe/templates/check.json", &template);
        let remote = tempfile::tempdir().unwrap();
        repo.git(&["init", "-q", "--bare", &remote.path().display().to_string()]);
        repo.git(&[
            "remote",
            "add",
            "origin",
            &remote.path().display().to_string(),
        ]);
        let summary = repo.path().join("summary.md");
        let summary_env = summary.display().to_string();
        let env = [(var, "true"), ("GITHUB_STEP_SUMMARY", summary_env.as_str())];
        let args: Vec<&str> = EXAMPLE_RUN.split(' ').skip(1).collect();
        let run = wfe_env(&repo, &env, &args);
        run.code(0);
        let id = repo.run_id();
        wfe_env(&repo, &env, &["push"]).code(0);
        let pushed = repo.git(&["ls-remote", "origin", "refs/wfe/runs/*"]);
        assert!(pushed.contains(&id), "{pushed}");
        let junit = repo.path().join("junit.xml");
        xmllint_valid(&junit);
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(
            xml.contains(r#"<testcase classname="wfe.check" name="test""#),
            "{xml}"
        );
        match host {
            "github" => {
                assert!(run.stderr.contains("::group::"), "{}", run.stderr);
                let text = std::fs::read_to_string(&summary).unwrap();
                assert!(text.contains("| `test` | ✅ completed |"), "{text}");
            }
            _ => {
                assert!(run.stderr.contains("section_start:"), "{}", run.stderr);
                assert!(!summary.exists(), "only GitHub gets a job summary");
            }
        }
    }
}
