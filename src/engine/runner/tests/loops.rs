//! Loops end to end: iterations, `until`, exhaustion, resuming and
//! cancelling mid-loop.

use super::*;

/// A loop `fix` of `children` repeated until `until` (at most `max`).
fn loop_phase(needs: &[&str], until: Option<&str>, max: u32, children: Value) -> Value {
    let mut phase = json!({ "id": "fix", "kind": "loop", "needs": needs, "max_iters": max, "phases": children });
    if let Some(until) = until {
        phase["until"] = json!(until);
    }
    phase
}

/// A child that writes `result` with `passed` true from iteration `from`
/// on, its iteration, and what `previous` held of itself.
fn tester(id: &str, needs: &[&str], from: u32) -> Value {
    let mut p = phase(
        id,
        needs,
        &format!(
            "echo '{{\"passed\": {{{{ (loop.iteration >= {from}) | tojson }}}}, \"iteration\": {{{{ loop.iteration }}}}, \"env\": '$WFE_ITERATION', \"prev\": {{{{ previous.{id}.result.iteration if previous.{id} else 0 }}}}}}' > \"$WFE_OUT/result.json\""
        ),
    );
    p["outputs"] = json!({ "result": "result" });
    p
}

#[tokio::test]
async fn a_loop_repeats_until_its_condition_holds_and_dependants_see_the_last_iteration() {
    let f = Fixture::new();
    let run = f.create(
        json!([
            phase("build", &[], "true"),
            loop_phase(
                &["build"],
                Some("artifacts.test.result.passed"),
                5,
                json!([
                    phase("change", &[], "test \"$WFE_LOOP\" = fix"),
                    tester("test", &["change"], 3),
                ])
            ),
            phase(
                "after",
                &["fix"],
                "test {{ artifacts.test.result.iteration }} = 3 && grep -q '\"iteration\": 3' \"$WFE_IN/test/result.json\""
            ),
        ]),
        json!({}),
    );
    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert_eq!(
        f.ran(),
        [
            "build", "change", "test", "change", "test", "change", "test", "after"
        ]
    );
    let snap = f.snapshot(&run);
    let fix = snap.phase("fix").unwrap();
    assert_eq!(
        (fix.status, fix.iteration, fix.exhausted, fix.attempt),
        (PhaseStatus::Completed, 3, false, 1)
    );
    assert_eq!(f.status(&run, "after"), PhaseStatus::Completed);
    for k in 1..=3u32 {
        let result = snap
            .artifact(&f.store, &layout::child_key("fix", k, "test"), "result")
            .unwrap()
            .unwrap();
        assert_eq!(
            result,
            json!({ "passed": k == 3, "iteration": k, "env": k, "prev": k - 1 }),
            "iteration {k} kept its own artifact; `previous` held the one before"
        );
    }
    let tests = snap.iteration(&f.store, "fix", 2).unwrap();
    assert_eq!(tests[1].iteration, 2);
    assert_eq!(tests[1].status, PhaseStatus::Completed);
    assert_eq!(snap.children["fix"][1].iteration, 3);
    let doc = snap.to_json();
    assert_eq!(doc["phases"][1]["iteration"], 3);
    assert_eq!(doc["phases"][1]["children"][1]["id"], "test");
    assert!(doc["phases"][0].get("iteration").is_none());
    let summaries = summaries(&f, &run);
    assert!(
        summaries.contains(
            &"wfe: fix[1]/test completed (attempt 1); fix iteration 2 of 5 started; fix[2]/change started (attempt 1)".to_string()
        ),
        "the end of an iteration and the start of the next fold into one checkpoint: {summaries:#?}"
    );
    assert!(
        summaries.contains(
            &"wfe: fix[3]/test completed (attempt 1); fix completed after 3 iterations; after started (attempt 1)".to_string()
        ),
        "{summaries:#?}"
    );
    let trailers = f.store.history(&run).unwrap()[1].message.clone();
    assert_eq!(
        trailers.get(crate::store::Trailer::Phase),
        Some("fix/iterations/3/test"),
        "a child's Wfe-Phase is its path under phases/"
    );
}

#[tokio::test]
async fn an_exhausted_loop_fails_or_completes_as_on_exhausted_says() {
    for (on_exhausted, run_status, loop_status) in [
        (None, RunStatus::Failed, PhaseStatus::Failed),
        (Some("fail"), RunStatus::Failed, PhaseStatus::Failed),
        (
            Some("continue"),
            RunStatus::Completed,
            PhaseStatus::Completed,
        ),
    ] {
        let f = Fixture::new();
        let mut fix = loop_phase(
            &[],
            Some("artifacts.test.result.passed"),
            2,
            json!([tester("test", &[], 99)]),
        );
        if let Some(choice) = on_exhausted {
            fix["on_exhausted"] = json!(choice);
        }
        let run = f.create(json!([fix, phase("after", &["fix"], "true")]), json!({}));
        assert_eq!(f.drive(&run).await, run_status, "{on_exhausted:?}");
        let snap = f.snapshot(&run);
        let state = snap.phase("fix").unwrap();
        assert_eq!(state.status, loop_status, "{on_exhausted:?}");
        assert_eq!(state.iteration, 2);
        assert_eq!(
            f.ran(),
            if run_status == RunStatus::Completed {
                vec!["test", "test", "after"]
            } else {
                vec!["test", "test"]
            }
        );
        if loop_status == PhaseStatus::Failed {
            assert_eq!(
                state.error,
                Some(AttemptError::Exhausted {
                    until: "artifacts.test.result.passed".into(),
                    iterations: 2
                })
            );
            assert_eq!(
                snap.record.reason,
                Some(StopReason::PhasesFailed {
                    phases: vec!["fix".into()]
                })
            );
            assert_eq!(f.status(&run, "after"), PhaseStatus::Pending);
            assert!(
                f.store
                    .read(&snap.checkpoint, "phases/fix/attempts/1/error.json")
                    .unwrap()
                    .is_some()
            );
        } else {
            assert!(state.exhausted);
            assert_eq!(state.error, None);
        }
    }
}

#[tokio::test]
async fn a_failing_child_fails_its_loop_unless_it_may_continue() {
    let f = Fixture::new();
    let mut flaky = phase("flaky", &[], "exit 1");
    flaky["on_failure"] = json!("continue");
    let run = f.create(
        json!([
            loop_phase(
                &[],
                None,
                3,
                json!([
                    flaky,
                    phase(
                        "a",
                        &["flaky"],
                        "if [ {{ loop.iteration }} = 2 ]; then exit 4; fi"
                    ),
                    phase("b", &["a"], "true"),
                ])
            ),
            phase("after", &["fix"], "true"),
        ]),
        json!({}),
    );
    assert_eq!(f.drive(&run).await, RunStatus::Failed);
    assert_eq!(f.ran(), ["flaky", "a", "b", "flaky", "a"]);
    let snap = f.snapshot(&run);
    let fix = snap.phase("fix").unwrap();
    assert_eq!((fix.status, fix.iteration), (PhaseStatus::Failed, 2));
    assert_eq!(
        fix.error,
        Some(AttemptError::ChildFailed {
            phase: "a".into(),
            iteration: 2,
            status: "failed".into(),
            message: Some("the script exited with code 4".into()),
        })
    );
    let children: Vec<PhaseStatus> = snap.children["fix"].iter().map(|c| c.status).collect();
    assert_eq!(
        children,
        [
            PhaseStatus::Failed,
            PhaseStatus::Failed,
            PhaseStatus::Pending
        ],
        "b never started"
    );
    assert_eq!(f.status(&run, "after"), PhaseStatus::Pending);
    assert_eq!(
        snap.record.reason,
        Some(StopReason::PhasesFailed {
            phases: vec!["fix".into()]
        })
    );
    assert!(!resumable(&snap));
}

#[tokio::test]
async fn a_loop_without_until_runs_max_iters_even_when_every_child_is_skipped() {
    let f = Fixture::new();
    let mut never = phase("never", &[], "true");
    never["if"] = json!("loop.iteration > 5");
    let run = f.create(json!([loop_phase(&[], None, 3, json!([never]))]), json!({}));
    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert!(f.ran().is_empty());
    let snap = f.snapshot(&run);
    assert_eq!(snap.phase("fix").unwrap().iteration, 3);
    assert!(!snap.phase("fix").unwrap().exhausted);
    assert_eq!(snap.children["fix"][0].status, PhaseStatus::Skipped);
}

#[tokio::test]
async fn resuming_mid_loop_reruns_only_the_child_that_was_running() {
    let f = Fixture::new();
    let run = f.create(
        json!([loop_phase(
            &[],
            Some("artifacts.b.result.passed"),
            5,
            json!([phase("a", &[], "true"), tester("b", &["a"], 3)])
        )]),
        json!({}),
    );
    // What a runner killed inside iteration 2's `b` leaves behind.
    let key = |k, id| layout::child_key("fix", k, id);
    use PhaseStatus::{Completed, Running};
    forge(
        &f,
        &run,
        &[
            (layout::state("fix"), forged_state("fix", Running, 1, 2)),
            (
                layout::state(&key(1, "a")),
                forged_state("a", Completed, 1, 1),
            ),
            (
                layout::state(&key(1, "b")),
                forged_state("b", Completed, 1, 1),
            ),
            (
                layout::artifact(&key(1, "b"), "result"),
                json!({ "passed": false, "iteration": 1 }),
            ),
            (
                layout::state(&key(2, "a")),
                forged_state("a", Completed, 1, 2),
            ),
            (
                layout::state(&key(2, "b")),
                forged_state("b", Running, 1, 2),
            ),
        ],
    );

    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert_eq!(
        f.ran(),
        ["b", "a", "b"],
        "iteration 2's a completed before the crash and never runs again"
    );
    let snap = f.snapshot(&run);
    assert_eq!(snap.phase("fix").unwrap().iteration, 3);
    let second = snap.iteration(&f.store, "fix", 2).unwrap();
    assert_eq!((second[1].status, second[1].attempt), (Completed, 2));
    let result = snap
        .artifact(&f.store, &key(2, "b"), "result")
        .unwrap()
        .unwrap();
    assert_eq!(result["prev"], 1, "`previous` was rebuilt from iteration 1");
    let archived = f
        .store
        .read(
            &snap.checkpoint,
            "phases/fix/iterations/2/b/attempts/1/error.json",
        )
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&archived).contains("interrupted"));
}

#[tokio::test]
async fn a_loop_sent_back_to_pending_starts_over_and_keeps_its_old_iterations() {
    let f = Fixture::new();
    let run = f.create(
        json!([loop_phase(&[], None, 2, json!([phase("a", &[], "true")]))]),
        json!({}),
    );
    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    // What `wfe retry RUN fix` leaves: the loop pending, its attempt
    // and (here) its iteration as they were, the run paused.
    let snap = f.snapshot(&run);
    let fix = PhaseState {
        status: PhaseStatus::Pending,
        ..snap.phase("fix").unwrap().clone()
    };
    let mut record = snap.record.clone();
    record.status = RunStatus::Paused;
    forge(
        &f,
        &run,
        &[
            (layout::state("fix"), serde_json::to_value(&fix).unwrap()),
            (
                layout::RUN.to_string(),
                serde_json::to_value(&record).unwrap(),
            ),
        ],
    );
    assert!(
        f.snapshot(&run).children.is_empty(),
        "a pending loop shows no iteration"
    );

    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert_eq!(f.ran(), ["a", "a", "a", "a"]);
    let snap = f.snapshot(&run);
    let fix = snap.phase("fix").unwrap();
    assert_eq!((fix.attempt, fix.iteration), (2, 2));
    for k in 1..=2 {
        let old = format!("phases/fix/attempts/1/iterations/{k}/a/state.json");
        assert!(
            f.store.read(&snap.checkpoint, &old).unwrap().is_some(),
            "{old}"
        );
    }
    let summaries = summaries(&f, &run);
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("fix: iterations of attempt 1 moved under attempts/1/")),
        "{summaries:#?}"
    );
}

#[test]
fn loops_of_scripts_agents_gates_and_loops_are_runnable_two_deep() {
    let template = |fix: Value| -> Template {
        serde_json::from_value(json!({ "name": "t", "phases": [fix] })).unwrap()
    };
    let ok = loop_phase(&[], None, 2, json!([phase("a", &[], "true")]));
    assert!(ensure_runnable(&template(ok.clone())).is_ok());
    let agent = json!([{ "id": "fix", "kind": "agent", "prompt": "fix it" }]);
    assert!(ensure_runnable(&template(loop_phase(&[], None, 2, agent))).is_ok());
    let gate = json!([{ "id": "g", "kind": "gate" }]);
    assert!(ensure_runnable(&template(loop_phase(&[], None, 2, gate))).is_ok());
    let mut approved = ok.clone();
    approved["phases"][0]["approval"] = json!("after");
    assert!(ensure_runnable(&template(approved)).is_ok());
    // A loop inside a loop runs.
    let nested = loop_phase(&[], None, 2, json!([ok.clone()]));
    assert!(ensure_runnable(&template(nested)).is_ok());
    let mut handing = ok.clone();
    handing["on_exhausted"] = json!({ "next": "elsewhere" });
    let mut timed = ok.clone();
    timed["timeout"] = json!("1m");
    let cases = [
        (
            loop_phase(
                &[],
                None,
                2,
                json!([loop_phase(&[], None, 2, json!([ok.clone()]))]),
            ),
            "phase `fix` cannot run: it is a loop inside loop `fix`, itself inside a loop",
        ),
        (
            loop_phase(&[], None, 2, json!([handing])),
            "phase `fix` cannot run: it is a loop inside a loop with `on_exhausted: next`",
        ),
        (
            timed,
            "phase `fix` cannot run: `timeout` on a loop is not supported",
        ),
    ];
    for (fix, expected) in cases {
        let message = ensure_runnable(&template(fix)).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{message}");
    }
}

#[tokio::test]
async fn an_interrupt_inside_a_loop_pauses_the_run_and_resume_goes_on_in_that_iteration() {
    let f = Fixture::new();
    let fifo = f.dir.path().join("running.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let block = format!(
        "if [ $WFE_ITERATION = 2 ] && [ $WFE_ATTEMPT = 1 ]; then echo go > {}; sleep 1000; fi",
        fifo.display()
    );
    let run = f.create(
        json!([loop_phase(
            &[],
            None,
            2,
            json!([phase("a", &[], "true"), phase("b", &["a"], &block)])
        )]),
        json!({}),
    );
    let (tx, rx) = watch::channel(false);
    let (status, ()) = tokio::join!(
        drive(&f.store, &run, &f.settings, Arc::new(Quiet), rx),
        async {
            let fifo = fifo.clone();
            tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo))
                .await
                .unwrap()
                .unwrap();
            tx.send(true).unwrap();
        }
    );
    assert_eq!(status.unwrap(), RunStatus::Paused);
    let snap = f.snapshot(&run);
    let fix = snap.phase("fix").unwrap();
    assert_eq!((fix.status, fix.iteration), (PhaseStatus::Running, 2));
    let b = &snap.children["fix"][1];
    assert_eq!(
        (b.status, b.attempt),
        (PhaseStatus::Pending, 1),
        "the killed child goes back to pending"
    );

    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert_eq!(f.ran(), ["a", "b", "a", "b", "b"]);
    let snap = f.snapshot(&run);
    assert_eq!(snap.children["fix"][1].attempt, 2);
}

#[tokio::test]
async fn cancelling_a_run_without_its_runner_cancels_the_loop_and_its_open_children() {
    let f = Fixture::new();
    let run = f.create(
        json!([loop_phase(
            &[],
            None,
            3,
            json!([phase("a", &[], "true"), phase("b", &["a"], "true")])
        )]),
        json!({}),
    );
    let key = |id| layout::child_key("fix", 2, id);
    use PhaseStatus::{Completed, Running};
    forge(
        &f,
        &run,
        &[
            (layout::state("fix"), forged_state("fix", Running, 1, 2)),
            (
                layout::state(&layout::child_key("fix", 1, "a")),
                forged_state("a", Completed, 1, 1),
            ),
            (
                layout::state(&layout::child_key("fix", 1, "b")),
                forged_state("b", Completed, 1, 1),
            ),
            (layout::state(&key("a")), forged_state("a", Completed, 1, 2)),
            (layout::state(&key("b")), forged_state("b", Running, 1, 2)),
        ],
    );
    crate::engine::operations::control_offline(
        &f.store,
        &run,
        &Action::Cancel,
        "me",
        &Clock::system(),
    )
    .unwrap();
    let snap = f.snapshot(&run);
    assert_eq!(snap.record.status, RunStatus::Cancelled);
    assert_eq!(snap.phase("fix").unwrap().status, PhaseStatus::Cancelled);
    let children: Vec<PhaseStatus> = snap.children["fix"].iter().map(|c| c.status).collect();
    assert_eq!(children, [Completed, PhaseStatus::Cancelled]);
}
