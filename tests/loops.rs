//! Loop phases end to end: iterations in `wfe status`, `wfe show` and the
//! run's git tree, and a runner killed mid-iteration that `wfe resume`
//! finishes without re-running a completed child.
//!
//! Synchronisation uses a FIFO (see tests/recovery.rs): a child writes to
//! it and the test's blocking read returns exactly when it is running.

use crate::common;

use std::process::Stdio;

use common::snapshot::assert_run;
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::{Value, json};

/// A loop `repair` of `fix` then `test`, until the test passes (from the
/// 2nd iteration on), then `ship`, which reads the last test result. Every
/// phase appends `<id> <iteration>` to `count.txt`. With `fifo`, `test`
/// reports its process group there and hangs in iteration 2's first attempt.
fn loop_template(repo: &Repo, fifo: Option<&std::path::Path>) -> std::path::PathBuf {
    let count = repo.path().join("count.txt");
    let side = |id: &str| format!("echo \"{id} ${{WFE_ITERATION:-0}}\" >> {}", count.display());
    let block = fifo
        .map(|f| {
            format!(
                "if [ \"$WFE_ITERATION\" = 2 ] && [ \"$WFE_ATTEMPT\" = 1 ]; then echo $$ > {}; sleep 1000; fi; ",
                f.display()
            )
        })
        .unwrap_or_default();
    repo.template(
        "loopy",
        &json!({ "name": "loopy", "phases": [
            { "id": "repair", "kind": "loop", "max_iters": 5,
              "until": "artifacts.test.result.passed",
              "phases": [
                script("fix", &[], &side("fix")),
                { "id": "test", "kind": "script", "needs": ["fix"],
                  "run": format!("{}; {block}echo '{{\"passed\": {{{{ (loop.iteration >= 2) | tojson }}}}}}' > \"$WFE_OUT/result.json\"", side("test")),
                  "outputs": { "result": "test-report" } }
              ] },
            script("ship", &["repair"], &format!("{}; grep -q true \"$WFE_IN/test/result.json\"", side("ship"))),
        ]}),
    );
    count
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn phase<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no phase {id} in {doc:#}"))
}

#[test]
fn a_loop_iterates_until_its_test_passes_and_every_iteration_stays_in_git() {
    let repo = Repo::new();
    let count = loop_template(&repo, None);
    let run = repo.wfe(&["run", "loopy", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(doc["status"], "completed");
    let repair = phase(&doc, "repair");
    assert_eq!(repair["status"], "completed");
    assert_eq!(repair["iteration"], 2);
    assert_eq!(repair["children"][1]["id"], "test");
    assert_eq!(
        lines(&count),
        ["fix 1", "test 1", "fix 2", "test 2", "ship 0"]
    );
    // Progress shows iterations (`repair iteration 2/5`).
    assert_run!(&repo, "loop_run", &run);

    let id = doc["id"].as_str().unwrap();
    let r = format!("refs/wfe/runs/{id}");
    for (k, passed) in [(1, false), (2, true)] {
        let result: Value = serde_json::from_str(&repo.git(&[
            "show",
            &format!("{r}:phases/repair/iterations/{k}/test/artifacts/result.json"),
        ]))
        .unwrap();
        assert_eq!(result, json!({ "passed": passed }), "iteration {k}");
    }
    let state: Value =
        serde_json::from_str(&repo.git(&["show", &format!("{r}:phases/repair/state.json")]))
            .unwrap();
    assert_eq!(state["iteration"], 2);

    let status = repo.wfe(&["status", id]);
    status.code(0);
    // The loop's line says `iteration 2/5`; the current iteration's
    // children (`├─ ✓ fix`, `└─ ✓ test`) are under it.
    assert_run!(&repo, "loop_status", &status);

    let show = repo.wfe(&["show", id, "repair"]);
    show.code(0);
    // `iteration  2 of at most 5`, and a row per iteration with its
    // children's outcomes.
    assert_run!(&repo, "loop_show", &show);
    let iterations = repo.wfe(&["show", id, "repair", "--json"]).code(0).json();
    assert_eq!(iterations["iterations"].as_array().unwrap().len(), 2);

    let first = repo.wfe(&["show", id, "test@1", "result"]).code(0).json();
    assert_eq!(first, json!({ "passed": false }));
    let latest = repo.wfe(&["show", id, "test"]);
    latest.code(0);
    // The latest iteration's child: `test (repair iteration 2)`.
    assert_run!(&repo, "loop_show_child", &latest);
    let third = repo.wfe(&["show", id, "test@3"]);
    third.code(2);
    assert_run!(&repo, "loop_show_child_of_no_iteration", &third);
}

#[test]
fn kill_9_mid_iteration_then_resume_finishes_the_loop_without_rerunning_completed_children() {
    let repo = Repo::new();
    let fifo = repo.path().join("running.fifo");
    mkfifo(&fifo);
    let count = loop_template(&repo, Some(&fifo));
    let mut runner = repo
        .wfe_cmd()
        .args(["run", "loopy", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = read_fifo_line(&fifo);

    // The runner is inside iteration 2's `test`: kill it the hard way.
    runner.kill().unwrap();
    runner.wait().unwrap();
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -s KILL -- -{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let refs = repo.wfe_refs();
    let r = &refs[0];
    let at = |path: &str| -> Value {
        serde_json::from_str(&repo.git(&["show", &format!("{r}:{path}")])).unwrap()
    };
    assert_eq!(at("phases/repair/state.json")["iteration"], 2);
    assert_eq!(at("phases/repair/state.json")["status"], "running");
    assert_eq!(
        at("phases/repair/iterations/2/test/state.json")["status"],
        "running"
    );
    assert_eq!(
        at("phases/repair/iterations/2/fix/state.json")["status"],
        "completed"
    );

    let id = r.trim_start_matches("refs/wfe/runs/");
    let resumed = repo.wfe(&["resume", id, "--json"]);
    resumed.code(0);
    let doc = resumed.json();
    assert_eq!(doc["status"], "completed");
    let repair = phase(&doc, "repair");
    assert_eq!(repair["iteration"], 2);
    assert_eq!(
        repair["children"][1]["attempts"], 2,
        "the interrupted attempt counts; the re-run is attempt 2"
    );
    assert_eq!(
        lines(&count),
        ["fix 1", "test 1", "fix 2", "test 2", "test 2", "ship 0"],
        "completed children never ran twice"
    );
    let err = repo.git(&[
        "show",
        &format!("{r}:phases/repair/iterations/2/test/attempts/1/error.json"),
    ]);
    assert!(err.contains("interrupted"), "{err}");
}
