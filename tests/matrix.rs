//! Templates CI users expect: a template-level `env` (and `defaults.env`)
//! and `matrix` phases (one phase per combination, `max_parallel`,
//! `fail_fast`, dependants that see every combination's artifacts, retry
//! of one combination), and how invalid ones are refused.
//!
//! Phases synchronise with the test through FIFOs and status polling;
//! nothing here sleeps to synchronise.

use crate::common;

use std::time::{Duration, Instant};

use common::{Repo, mkfifo, script, write_fifo_line};
use serde_json::{Value, json};

/// Polls `ready` every few milliseconds for at most 30 s.
#[track_caller]
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wfe status --json`, once it reads (the run may not exist yet).
fn status(repo: &Repo) -> Option<Value> {
    let out = repo.wfe(&["status", "--json"]);
    out.stdout
        .starts_with('{')
        .then(|| out.json())
        .filter(|doc| doc["phases"].is_array())
}

/// The status of phase `id` in a status or run document.
fn phase_status(doc: &Value, id: &str) -> String {
    phase(doc, id)["status"].as_str().unwrap_or("?").to_string()
}

fn phase<'d>(doc: &'d Value, id: &str) -> &'d Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no phase {id} in {doc:#}"))
}

/// The ids of the phases with `status`.
fn with_status(doc: &Value, status: &str) -> Vec<String> {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == status)
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (bounded) for the runner to exit; kills it and fails the test otherwise.
fn finish(mut runner: std::process::Child, within: Duration) -> common::Run {
    let until = Instant::now() + within;
    loop {
        if runner.try_wait().unwrap().is_some() {
            return common::Run::from(runner.wait_with_output().unwrap());
        }
        if Instant::now() > until {
            let _ = runner.kill();
            let _ = runner.wait();
            panic!("the run did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn env_precedence_phase_over_defaults_over_template() {
    let repo = Repo::new();
    repo.template(
        "env",
        &json!({ "name": "env",
            "args": { "type": "object", "properties": { "who": { "type": "string", "default": "arg" } } },
            "env": { "A": "template", "B": "template", "C": "template", "WHO": "{{ args.who }}-{{ phase.id }}" },
            "defaults": { "env": { "B": "defaults", "C": "defaults" } },
            "phases": [
                { "id": "show", "kind": "script", "env": { "C": "phase" },
                  "run": "echo \"$A $B $C $WHO\" > env.txt" }
            ]}),
    );
    repo.wfe(&["run", "env"]).code(0);
    let seen = std::fs::read_to_string(repo.path().join("env.txt")).unwrap();
    assert_eq!(seen.trim(), "template defaults phase arg-show");
}

#[test]
fn template_env_keeps_the_secret_rules() {
    let repo = Repo::new();
    repo.template(
        "env",
        &json!({ "name": "env",
            "env": { "GREETING": "hello" },
            "phases": [
                { "id": "leak", "kind": "script", "secrets": ["TOKEN"],
                  "run": "echo \"$GREETING token=$TOKEN\"; echo \"key=${ANTHROPIC_API_KEY:-none}\" > key.txt" }
            ]}),
    );
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-not-for-scripts")
        .env("TOKEN", "s3cr3t-value-here")
        .args(["run", "env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let key = std::fs::read_to_string(repo.path().join("key.txt")).unwrap();
    assert_eq!(key.trim(), "key=none", "provider keys are not passed");
    let id = repo.run_id();
    let log = repo.git(&["show", &format!("refs/wfe/runs/{id}:phases/leak/log.jsonl")]);
    assert!(!log.contains("s3cr3t-value-here"), "{log}");
    assert!(log.contains("hello token=***"), "{log}");
}

/// A 2×2 matrix whose combinations each write a file and an artifact,
/// and a dependant that reads them all.
fn two_by_two(repo: &Repo) {
    // Written by hand: `json!` sorts keys, and the axes' order is the test.
    let doc = json!({ "name": "m", "phases": [
        { "id": "test", "kind": "script",
          "matrix": "MATRIX",
          "outputs": { "report": "message" },
          "run": "touch ran-{{ matrix.python }}-{{ matrix.model }}.txt; echo \"$WFE_PHASE\" >> phases.txt; printf '{\"text\": \"%s/%s\"}' {{ matrix.python | shquote }} {{ matrix.model | shquote }} > \"$WFE_OUT/report.json\"" },
        { "id": "sum", "kind": "script", "needs": ["test"],
          "run": "echo {{ artifacts.test | tojson | shquote }} > sum.json; ls \"$WFE_IN\" > inputs.txt" }
    ]});
    let text = serde_json::to_string_pretty(&doc).unwrap().replace(
        "\"MATRIX\"",
        r#"{ "python": ["3.11", "3.12"], "model": ["a", "b"] }"#,
    );
    repo.write(".wfe/templates/m.json", &text);
}

#[test]
fn a_two_by_two_matrix_runs_four_phases_and_the_dependant_sees_them_all() {
    let repo = Repo::new();
    two_by_two(&repo);
    let out = repo.wfe(&["run", "m", "--json", "--jobs", "4"]);
    out.code(0);
    let doc = out.json();
    let ids = [
        "test[python=3.11,model=a]",
        "test[python=3.11,model=b]",
        "test[python=3.12,model=a]",
        "test[python=3.12,model=b]",
    ];
    for id in ids {
        assert_eq!(phase_status(&doc, id), "completed", "{id}");
    }
    assert_eq!(phase_status(&doc, "sum"), "completed");
    for file in ["3.11-a", "3.11-b", "3.12-a", "3.12-b"] {
        assert!(
            repo.path().join(format!("ran-{file}.txt")).exists(),
            "{file}"
        );
    }
    let mut phases: Vec<String> = std::fs::read_to_string(repo.path().join("phases.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    phases.sort();
    assert_eq!(phases, ids, "WFE_PHASE is the combination's id");
    let sum: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.path().join("sum.json")).unwrap())
            .unwrap();
    assert_eq!(
        sum,
        json!({
            "python=3.11,model=a": { "report": { "text": "3.11/a" } },
            "python=3.11,model=b": { "report": { "text": "3.11/b" } },
            "python=3.12,model=a": { "report": { "text": "3.12/a" } },
            "python=3.12,model=b": { "report": { "text": "3.12/b" } },
        })
    );
    let inputs = std::fs::read_to_string(repo.path().join("inputs.txt")).unwrap();
    assert_eq!(
        inputs.lines().collect::<Vec<_>>(),
        ids,
        "$WFE_IN by combination id"
    );

    // Status, list and show know each combination.
    let status = repo.wfe(&["status", "--json"]).json();
    for id in ids {
        assert_eq!(phase_status(&status, id), "completed");
    }
    let text = repo.wfe(&["status"]);
    assert!(
        text.stdout.contains("test[python=3.12,model=b]"),
        "{}",
        text.stdout
    );
    let id = repo.run_id();
    let show = repo.wfe(&["show", &id, "test[python=3.12,model=a]", "--json"]);
    show.code(0);
    assert!(
        show.stdout.contains("test[python=3.12,model=a]"),
        "{}",
        show.stdout
    );
    repo.wfe(&["list", "--json"]).code(0);
}

#[test]
fn max_parallel_one_never_runs_two_combinations_at_once() {
    let repo = Repo::new();
    let go = repo.path().join("go.fifo");
    mkfifo(&go);
    // Each combination counts itself in and out under a lock and keeps the
    // highest count seen; in between it waits for the test's go.
    let counted = "flock lock sh -c 'n=$(($(cat count 2>/dev/null || echo 0) + 1)); echo $n > count; m=$(cat max 2>/dev/null || echo 0); [ $n -gt $m ] && echo $n > max; true'";
    let out = "flock lock sh -c 'echo $(($(cat count) - 1)) > count'";
    repo.template(
        "mp",
        &json!({ "name": "mp", "phases": [
            { "id": "one", "kind": "script", "max_parallel": 1,
              "matrix": { "n": [1, 2, 3, 4] },
              "run": format!("{counted}; read x < {}; {out}", go.display()) }
        ]}),
    );
    let runner = repo.spawn(&["run", "mp", "--jobs", "4", "--json"]);
    for released in 0..4 {
        // One combination is running; the others were never started with
        // it (starting is committed before a process spawns).
        wait_for("the next combination to run", || {
            status(&repo).is_some_and(|doc| {
                with_status(&doc, "running").len() == 1
                    && with_status(&doc, "completed").len() == released
            })
        });
        let doc = status(&repo).unwrap();
        assert_eq!(with_status(&doc, "completed").len(), released, "{doc:#}");
        assert_eq!(with_status(&doc, "pending").len(), 3 - released, "{doc:#}");
        write_fifo_line(&go, "go");
    }
    let out = finish(runner, Duration::from_secs(30));
    out.code(0);
    let max = std::fs::read_to_string(repo.path().join("max")).unwrap();
    assert_eq!(max.trim(), "1");
}

/// A matrix of `boom` (fails once `slow` runs), `slow` (traps SIGTERM,
/// writing a marker; otherwise runs `slow_body`) and `later` (never
/// starts with max_parallel 2 before `boom` fails). The run's own fail
/// fast is off and the matrix fails with `on_failure: continue`, so what
/// stops `slow` is the matrix's own `fail_fast`.
fn fail_fast_template(repo: &Repo, fail_fast: bool, slow_body: &str) {
    let started = repo.path().join("started.fifo");
    mkfifo(&started);
    let marker = repo.path().join("trapped.txt");
    let run = format!(
        "case {{{{ matrix.x }}}} in \
           boom) read pid < {started}; exit 1;; \
           slow) trap 'echo trapped > {marker}; exit 143' TERM; {slow_body} & echo $$ > {started}; wait $!;; \
           later) touch later.txt;; \
         esac",
        started = started.display(),
        marker = marker.display(),
    );
    repo.template(
        "ff",
        &json!({ "name": "ff", "defaults": { "kill_grace": "60s", "fail_fast": false },
        "phases": [
            { "id": "m", "kind": "script", "matrix": { "x": ["boom", "slow", "later"] },
              "max_parallel": 2, "fail_fast": fail_fast, "on_failure": "continue", "run": run },
            script("after", &["m"], "touch after.txt"),
        ]}),
    );
}

#[test]
fn fail_fast_cancels_the_running_combination_and_starts_no_more() {
    let repo = Repo::new();
    fail_fast_template(&repo, true, "sleep 1000");
    let started = Instant::now();
    let runner = repo.spawn(&["run", "ff", "--jobs", "4", "--json"]);
    let out = finish(runner, Duration::from_secs(45));
    // `kill_grace` is 60 s: ending well within it proves the sibling
    // stopped on SIGTERM (its trap ran).
    assert!(started.elapsed() < Duration::from_secs(20));
    out.code(0);
    let doc = out.json();
    assert_eq!(phase_status(&doc, "m[x=boom]"), "failed");
    assert_eq!(phase_status(&doc, "m[x=slow]"), "cancelled");
    assert_eq!(phase_status(&doc, "m[x=later]"), "cancelled");
    assert_eq!(phase_status(&doc, "after"), "completed");
    let marker = std::fs::read_to_string(repo.path().join("trapped.txt")).unwrap();
    assert_eq!(marker.trim(), "trapped");
    assert!(
        !repo.path().join("later.txt").exists(),
        "later never started"
    );
}

#[test]
fn without_fail_fast_the_running_combination_finishes() {
    let repo = Repo::new();
    let release = repo.path().join("release.fifo");
    mkfifo(&release);
    fail_fast_template(&repo, false, &format!("read x < {}", release.display()));
    let runner = repo.spawn(&["run", "ff", "--jobs", "4", "--json"]);
    wait_for("boom to fail", || {
        status(&repo).is_some_and(|doc| phase_status(&doc, "m[x=boom]") == "failed")
    });
    assert_eq!(
        phase_status(&status(&repo).unwrap(), "m[x=slow]"),
        "running"
    );
    write_fifo_line(&release, "go");
    let out = finish(runner, Duration::from_secs(30));
    out.code(0);
    let doc = out.json();
    assert_eq!(phase_status(&doc, "m[x=slow]"), "completed");
    assert_eq!(phase_status(&doc, "m[x=later]"), "completed");
    assert!(!repo.path().join("trapped.txt").exists(), "no SIGTERM");
    assert!(repo.path().join("later.txt").exists());
}

#[test]
fn retry_reruns_one_combination() {
    let repo = Repo::new();
    repo.template(
        "r",
        &json!({ "name": "r", "phases": [
            { "id": "t", "kind": "script", "matrix": { "x": ["ok", "flaky"] }, "fail_fast": false,
              "run": "echo {{ matrix.x }} >> ran.txt; [ {{ matrix.x }} = ok ] || [ -e fixed ]" },
            script("after", &["t"], "true"),
        ]}),
    );
    repo.wfe(&["run", "r", "--jobs", "1"]).code(1);
    let id = repo.run_id();
    std::fs::write(repo.path().join("fixed"), "").unwrap();
    repo.wfe(&["retry", &id, "t[x=flaky]", "--json"]).code(0);
    let doc = repo.wfe(&["status", &id, "--json"]).json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(phase(&doc, "t[x=flaky]")["attempts"], 2);
    assert_eq!(phase(&doc, "t[x=ok]")["attempts"], 1);
    let ran = std::fs::read_to_string(repo.path().join("ran.txt")).unwrap();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["ok", "flaky", "flaky"]);
}

#[test]
fn invalid_matrices_and_envs_exit_2_with_file_and_path() {
    let cases = [
        (
            json!({ "matrix": {} }),
            "phases[0].matrix",
            "at least one axis",
        ),
        (
            json!({ "matrix": { "x": "a" } }),
            "phases[0].matrix.x",
            "expected a list",
        ),
        (
            json!({ "matrix": { "x": [] } }),
            "phases[0].matrix.x",
            "at least one value",
        ),
        (
            json!({ "matrix": { "x": [["a"]] } }),
            "phases[0].matrix.x[0]",
            "string, number or boolean",
        ),
        (
            json!({ "matrix": { "x": ["a", "a"] } }),
            "phases[0].matrix.x[1]",
            "given twice",
        ),
        (
            json!({ "matrix": { "x": ["a b"] } }),
            "phases[0].matrix.x[0]",
            "cannot stand in a phase id",
        ),
        (
            json!({ "matrix": { "x": (0..20).collect::<Vec<_>>(), "y": (0..20).collect::<Vec<_>>() } }),
            "phases[0].matrix",
            "400 combinations; a matrix may have at most 256",
        ),
        (
            json!({ "max_parallel": 2 }),
            "phases[0].max_parallel",
            "has no `matrix`",
        ),
        (
            json!({ "matrix": { "x": [1] }, "max_parallel": 0 }),
            "phases[0].max_parallel",
            "at least 1",
        ),
        (
            json!({ "run": "echo {{ matrix.y }}", "matrix": { "x": [1] } }),
            "phases[0].run",
            "names no axis",
        ),
        (
            json!({ "env": { "A": "a\u{0}b" } }),
            "phases[0].env.A",
            "NUL",
        ),
    ];
    for (extra, path, message) in cases {
        let repo = Repo::new();
        let mut phase = json!({ "id": "t", "kind": "script", "run": "true" });
        for (k, v) in extra.as_object().unwrap() {
            phase[k] = v.clone();
        }
        repo.template("bad", &json!({ "name": "bad", "phases": [phase] }));
        let out = repo.wfe(&["run", "bad"]);
        out.code(2);
        assert!(
            out.stderr
                .contains(&format!(".wfe/templates/bad.json: {path}: "))
                && out.stderr.contains(message),
            "{path}: {message}\n{}",
            out.stderr
        );
        assert!(repo.wfe_refs().is_empty(), "nothing written");
    }
    // A matrix on a gate or a loop, or on a loop's child; env at the top.
    let repo = Repo::new();
    repo.template(
        "bad",
        &json!({ "name": "bad",
        "env": { "WFE_X": "1", "OK": "{{ oops" },
        "defaults": { "env": { "1A": "x" } },
        "phases": [
            { "id": "g", "kind": "gate", "matrix": { "x": [1] } },
            { "id": "l", "kind": "loop", "max_iters": 1, "matrix": { "x": [1] },
              "phases": [ { "id": "c", "kind": "script", "run": "true", "matrix": { "x": [1] } } ] }
        ]}),
    );
    let out = repo.wfe(&["run", "bad"]);
    out.code(2);
    for (path, message) in [
        ("env.WFE_X", "reserved"),
        ("env.OK", "not a valid template"),
        ("defaults.env.1A", "not a valid environment variable name"),
        ("phases[0].matrix", "not allowed on gate phases"),
        ("phases[1].matrix", "not allowed on loop phases"),
        (
            "phases[1].phases[0].matrix",
            "loop's child phase cannot have a matrix",
        ),
    ] {
        assert!(
            out.stderr.contains(&format!("bad.json: {path}: ")) && out.stderr.contains(message),
            "{path}: {message}\n{}",
            out.stderr
        );
    }
}
