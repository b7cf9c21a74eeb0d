//! Loops inside loops end to end: an outer loop whose every iteration
//! runs an inner loop to its own `until`, the nested paths in git, labels
//! and addresses (`CHILD@J.K`), a gate in the inner loop, kill -9 in the
//! middle of an inner iteration, an agent in the inner loop (the fake
//! Anthropic server, then replayed offline), and the depth cap.

use crate::common;

use std::process::Stdio;

use common::snapshot::assert_run;
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::{Value, json};
use wfe::testing::llm::{FakeServer, Part, Reply};

/// Loop `outer` (2 iterations, no `until`) of `prep` then loop `inner`
/// (at most 3 iterations) of `work`, until `work` says it passed: in outer
/// iteration J it passes once it has run J+1 times (a counter in
/// `count.txt`), so inner runs 2 iterations, then 3. `ship` after.
/// With `fifo`, `work` in iteration 2.2 reports its process group there
/// and hangs in its first attempt, before counting.
fn nested_template(repo: &Repo, fifo: Option<&std::path::Path>) -> std::path::PathBuf {
    let count = repo.path().join("count.txt");
    let c = count.display();
    let block = fifo
        .map(|f| {
            format!(
                "if [ \"$J.$WFE_ITERATION\" = 2.2 ] && [ \"$WFE_ATTEMPT\" = 1 ]; then echo $$ > {}; sleep 1000; fi; ",
                f.display()
            )
        })
        .unwrap_or_default();
    let work = format!(
        "J={{{{ loop.parent.iteration }}}}; {block}echo \"work $J.$WFE_ITERATION $WFE_LOOP\" >> {c}; \
         n=$(grep -c \"^work $J\\.\" {c}); \
         if [ \"$n\" -ge $((J + 1)) ]; then p=true; else p=false; fi; \
         echo \"{{\\\"passed\\\": $p}}\" > \"$WFE_OUT/result.json\""
    );
    repo.template(
        "nested",
        &json!({ "name": "nested", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2,
              "phases": [
                script("prep", &[], &format!("echo \"prep $WFE_ITERATION\" >> {c}")),
                { "id": "inner", "kind": "loop", "needs": ["prep"], "max_iters": 3,
                  "until": "artifacts.work.result.passed",
                  "phases": [
                    { "id": "work", "kind": "script", "run": work,
                      "outputs": { "result": "test-report" } }
                  ] }
              ] },
            script("ship", &["outer"], &format!("echo ship >> {c}")),
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

const EXPECTED: [&str; 9] = [
    "prep 1",
    "work 1.1 inner",
    "work 1.2 inner",
    "prep 2",
    "work 2.1 inner",
    "work 2.2 inner",
    "work 2.3 inner",
    "ship",
    "",
];

#[test]
fn an_inner_loop_runs_to_its_own_until_in_every_outer_iteration() {
    let repo = Repo::new();
    let count = nested_template(&repo, None);
    let run = repo.wfe(&["run", "nested", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(doc["status"], "completed", "{doc:#}");
    assert_eq!(lines(&count), EXPECTED[..8]);
    let outer = phase(&doc, "outer");
    assert_eq!(outer["iteration"], 2);
    assert_eq!(outer["children"][1]["id"], "inner");
    assert_eq!(outer["children"][1]["iteration"], 3);
    assert_run!(&repo, "nested_run", &run);

    let id = doc["id"].as_str().unwrap();
    let r = format!("refs/wfe/runs/{id}");
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &r, "phases/outer"]);
    let states: Vec<&str> = tree.lines().filter(|l| l.ends_with("state.json")).collect();
    assert_eq!(
        states,
        [
            "phases/outer/iterations/1/inner/iterations/1/work/state.json",
            "phases/outer/iterations/1/inner/iterations/2/work/state.json",
            "phases/outer/iterations/1/inner/state.json",
            "phases/outer/iterations/1/prep/state.json",
            "phases/outer/iterations/2/inner/iterations/1/work/state.json",
            "phases/outer/iterations/2/inner/iterations/2/work/state.json",
            "phases/outer/iterations/2/inner/iterations/3/work/state.json",
            "phases/outer/iterations/2/inner/state.json",
            "phases/outer/iterations/2/prep/state.json",
            "phases/outer/state.json",
        ]
    );
    for (at, passed) in [
        ("1/inner/iterations/1", false),
        ("1/inner/iterations/2", true),
        ("2/inner/iterations/2", false),
        ("2/inner/iterations/3", true),
    ] {
        let result: Value = serde_json::from_str(&repo.git(&[
            "show",
            &format!("{r}:phases/outer/iterations/{at}/work/artifacts/result.json"),
        ]))
        .unwrap();
        assert_eq!(result, json!({ "passed": passed }), "{at}");
    }

    let status = repo.wfe(&["status", id]);
    status.code(0);
    assert_run!(&repo, "nested_status", &status);
    let show = repo.wfe(&["show", id, "inner@1"]);
    show.code(0);
    // The inner loop of outer iteration 1: its 2 iterations.
    assert_run!(&repo, "nested_show_inner", &show);
    let first = repo.wfe(&["show", id, "work@1.1", "result"]).code(0).json();
    assert_eq!(first, json!({ "passed": false }));
    let last = repo.wfe(&["show", id, "work@2.3", "result"]).code(0).json();
    assert_eq!(last, json!({ "passed": true }));
    let work = repo.wfe(&["show", id, "work"]);
    work.code(0);
    assert_run!(&repo, "nested_show_child", &work);
    // fsck checks the nested children's artifacts like any phase's.
    repo.wfe(&["fsck", id]).code(0);
    // A JUnit report has a case per child of every nested iteration (the
    // counter starts over, so the run goes as the first did).
    std::fs::remove_file(&count).unwrap();
    repo.wfe(&["run", "nested", "--junit", "junit.xml"]).code(0);
    let junit = std::fs::read_to_string(repo.path().join("junit.xml")).unwrap();
    for name in ["prep@1", "inner@2", "work@1.2", "work@2.3"] {
        assert!(
            junit.contains(&format!("name=\"{name}\"")),
            "{name}: {junit}"
        );
    }
    assert!(!junit.contains("name=\"work@1.3\""), "{junit}");
    let none = repo.wfe(&["show", id, "work@1.3"]);
    none.code(2);
    assert_run!(&repo, "nested_show_no_such_iteration", &none);
}

#[test]
fn kill_9_mid_inner_iteration_then_resume_goes_on_in_that_inner_iteration() {
    let repo = Repo::new();
    let fifo = repo.path().join("running.fifo");
    mkfifo(&fifo);
    let count = nested_template(&repo, Some(&fifo));
    let mut runner = repo
        .wfe_cmd()
        .args(["run", "nested", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = read_fifo_line(&fifo);
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
    assert_eq!(at("phases/outer/state.json")["iteration"], 2);
    assert_eq!(
        at("phases/outer/iterations/2/inner/state.json")["iteration"],
        2
    );
    assert_eq!(
        at("phases/outer/iterations/2/inner/iterations/2/work/state.json")["status"],
        "running"
    );

    let id = r.trim_start_matches("refs/wfe/runs/");
    let resumed = repo.wfe(&["resume", id, "--json"]);
    resumed.code(0);
    assert_eq!(resumed.json()["status"], "completed");
    // The killed attempt hung before counting; nothing that completed
    // before it ran again, and iteration 2.2 went on (`work` attempt 2).
    assert_eq!(lines(&count), EXPECTED[..8]);
    let done: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("{r}:phases/outer/iterations/2/inner/iterations/2/work/state.json"),
    ]))
    .unwrap();
    assert_eq!(done["attempt"], 2);
    let err = repo.git(&[
        "show",
        &format!("{r}:phases/outer/iterations/2/inner/iterations/2/work/attempts/1/error.json"),
    ]);
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn a_gate_inside_an_inner_loop_waits_in_each_outer_iteration() {
    let repo = Repo::new();
    let count = repo.path().join("count.txt");
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2,
              "phases": [
                { "id": "inner", "kind": "loop", "max_iters": 1,
                  "phases": [
                    script("work", &[], &format!("echo \"work {{{{ loop.parent.iteration }}}}.$WFE_ITERATION\" >> {}", count.display())),
                    { "id": "ok", "kind": "gate", "needs": ["work"] },
                  ] }
              ] },
        ]}),
    );
    let first = repo.wfe(&["run", "gated", "--json"]);
    first.code(3);
    let doc = first.json();
    assert_eq!(doc["reason"], "ok@1.1 waiting for approval", "{doc:#}");
    let id = doc["id"].as_str().unwrap().to_string();
    let status = repo.wfe(&["status", &id]);
    status.code(0);
    assert_run!(&repo, "nested_gate_waits", &status);
    // Only the current iterations wait.
    repo.wfe(&["approve", &id, "ok@2.1"]).code(2);
    repo.wfe(&["approve", &id, "ok@1.1"]).code(0);
    let second = repo.wfe(&["resume", &id, "--json"]);
    second.code(3);
    assert_eq!(second.json()["reason"], "ok@2.1 waiting for approval");
    repo.wfe(&["approve", &id, "ok"]).code(0);
    let done = repo.wfe(&["resume", &id, "--json"]);
    done.code(0);
    assert_eq!(done.json()["status"], "completed");
    assert_eq!(lines(&count), ["work 1.1", "work 2.1"]);
    let r = format!("refs/wfe/runs/{id}");
    let ok: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("{r}:phases/outer/iterations/2/inner/iterations/1/ok/state.json"),
    ]))
    .unwrap();
    assert_eq!(ok["status"], "completed");
}

#[test]
fn loops_nest_two_deep_at_most() {
    let repo = Repo::new();
    repo.template(
        "deep",
        &json!({ "name": "deep", "phases": [
            { "id": "a", "kind": "loop", "max_iters": 2, "phases": [
                { "id": "b", "kind": "loop", "max_iters": 2, "until": "true",
                  "on_exhausted": { "next": "c" }, "phases": [
                    { "id": "c", "kind": "loop", "max_iters": 2, "phases": [
                        script("d", &[], "true") ] } ] } ] },
        ]}),
    );
    let refused = repo.wfe(&["run", "deep"]);
    refused.code(2);
    assert!(repo.wfe_refs().is_empty(), "nothing written");
    assert_run!(&repo, "nested_too_deep", &refused);
}

/// A recognisable fake key.
const KEY: &str = "sk-ant-NESTEDTEST-0123456789abcdef";

fn plan(text: &str) -> Reply {
    Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": text }))])
}

#[test]
fn an_agent_in_an_inner_loop_runs_per_nested_iteration_and_replays_from_the_same_paths() {
    let server = FakeServer::spawn(vec![plan("a"), plan("b"), plan("c"), plan("d")]);
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": server.url() } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo.template(
        "drafts",
        &json!({ "name": "drafts", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2, "phases": [
                { "id": "inner", "kind": "loop", "max_iters": 2, "phases": [
                    { "id": "draft", "kind": "agent", "role": "primary",
                      "prompt": "Plan {{ loop.parent.iteration }}.{{ loop.iteration }}.{% if previous.draft %} Last: {{ previous.draft.plan.text }}{% endif %}",
                      "outputs": { "plan": "message" } }
                ] }
            ] },
        ]}),
    );
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", KEY)
        .args(["run", "drafts", "--json"])
        .output()
        .unwrap();
    let run = common::Run::from(out);
    run.code(0);
    assert_eq!(
        server.request_count(),
        4,
        "one conversation per inner iteration"
    );
    let original = run.json()["id"].as_str().unwrap().to_string();
    let show = |run: &str, path: &str| repo.git(&["show", &format!("refs/wfe/runs/{run}:{path}")]);
    for (j, k, text) in [(1, 1, "a"), (1, 2, "b"), (2, 1, "c"), (2, 2, "d")] {
        let at = format!("phases/outer/iterations/{j}/inner/iterations/{k}/draft");
        let exchanges = show(&original, &format!("{at}/exchanges.jsonl"));
        assert!(
            exchanges.contains(&format!("Plan {j}.{k}.")),
            "{j}.{k}: {exchanges}"
        );
        let artifact: Value =
            serde_json::from_str(&show(&original, &format!("{at}/artifacts/plan.json"))).unwrap();
        assert_eq!(artifact, json!({ "text": text }), "{j}.{k}");
    }
    // `previous` is the inner loop's: a fresh inner loop starts without one.
    let second = show(
        &original,
        "phases/outer/iterations/2/inner/iterations/2/draft/exchanges.jsonl",
    );
    assert!(second.contains("Last: c"), "{second}");
    let first = show(
        &original,
        "phases/outer/iterations/2/inner/iterations/1/draft/exchanges.jsonl",
    );
    assert!(!first.contains("Last:"), "{first}");
    drop(server);

    let replay = repo.wfe(&["run", "drafts", "--replay", &original, "--json"]);
    replay.code(0);
    let copy = replay.json()["id"].as_str().unwrap().to_string();
    for (j, k) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
        let path =
            format!("phases/outer/iterations/{j}/inner/iterations/{k}/draft/artifacts/plan.json");
        assert_eq!(show(&copy, &path), show(&original, &path), "{j}.{k}");
    }
}

#[test]
fn cancelling_a_run_waiting_in_an_inner_loop_cancels_what_is_open_at_every_depth() {
    let repo = Repo::new();
    repo.template(
        "held",
        &json!({ "name": "held", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2, "phases": [
                { "id": "inner", "kind": "loop", "max_iters": 2, "phases": [
                    script("work", &[], "true"),
                    { "id": "ok", "kind": "gate", "needs": ["work"] },
                ] }
            ] },
        ]}),
    );
    let first = repo.wfe(&["run", "held", "--json"]);
    first.code(3);
    let id = first.json()["id"].as_str().unwrap().to_string();
    repo.wfe(&["cancel", &id]).code(0);
    let r = format!("refs/wfe/runs/{id}");
    let status = |path: &str| -> Value {
        let state: Value =
            serde_json::from_str(&repo.git(&["show", &format!("{r}:{path}")])).unwrap();
        state["status"].clone()
    };
    assert_eq!(status("phases/outer/state.json"), "cancelled");
    assert_eq!(
        status("phases/outer/iterations/1/inner/state.json"),
        "cancelled"
    );
    assert_eq!(
        status("phases/outer/iterations/1/inner/iterations/1/ok/state.json"),
        "cancelled"
    );
    assert_eq!(
        status("phases/outer/iterations/1/inner/iterations/1/work/state.json"),
        "completed"
    );
}

#[test]
fn a_failing_child_of_an_inner_loop_fails_both_loops_and_the_run() {
    let repo = Repo::new();
    repo.template(
        "broken",
        &json!({ "name": "broken", "phases": [
            { "id": "outer", "kind": "loop", "max_iters": 2, "phases": [
                { "id": "inner", "kind": "loop", "max_iters": 2, "phases": [
                    script("work", &[], "[ \"$WFE_ITERATION\" = 1 ]"),
                ] }
            ] },
            script("ship", &["outer"], "true"),
        ]}),
    );
    let run = repo.wfe(&["run", "broken", "--json"]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["status"], "failed");
    let outer = phase(&doc, "outer");
    assert_eq!(outer["status"], "failed");
    assert_eq!(outer["iteration"], 1);
    let inner = &outer["children"][0];
    assert_eq!(inner["status"], "failed");
    assert_eq!(inner["iteration"], 2);
    assert_eq!(inner["children"][0]["status"], "failed");
    let error = outer["error"].as_str().unwrap();
    assert!(
        error.contains("inner failed in iteration 1")
            && error.contains("work failed in iteration 2"),
        "{error}"
    );
    assert_eq!(phase(&doc, "ship")["status"], "pending");
}
