//! The behaviour every [`RunStore`] must share, as one test suite run
//! against each implementation (the git store and the memory store).

use super::{
    Change, CheckpointId, EntryKind, Message, RunId, RunStore, StoreError, Trailer, Trashed,
};

/// Makes a fresh, empty store.
pub(crate) type Factory<'a> = &'a dyn Fn() -> Box<dyn RunStore>;

/// Runs every contract check, each against a fresh store.
pub(crate) fn check_all(fresh: Factory<'_>) {
    chain_of_checkpoints(&*fresh());
    compare_and_swap(&*fresh());
    removes_and_nesting(&*fresh());
    files_and_directories_replace_each_other(&*fresh());
    listing_and_resolving_runs(&*fresh());
    invalid_paths_write_nothing(&*fresh());
    unknown_checkpoints(&*fresh());
    reset_trashes_the_old_tip_and_undo_restores_it(&*fresh());
    undo_keeps_checkpoints_made_after_a_rollback(&*fresh());
    contains_only_the_runs_own_checkpoints(&*fresh());
}

/// A run id whose last characters are `suffix` (Crockford base32, lowercase).
pub(crate) fn run_id(suffix: &str) -> RunId {
    let base = "01jf3k0000000000000000000";
    let text = format!("{}{suffix}", &base[..26 - suffix.len()]);
    RunId::parse(&text).unwrap_or_else(|| panic!("{text} is not a valid run id"))
}

/// A message like the engine writes.
pub(crate) fn message(run: &RunId, summary: &str) -> Message {
    Message::new(summary)
        .trailer(Trailer::Run, run.as_str())
        .trailer(Trailer::Event, "test")
}

fn file(store: &dyn RunStore, at: &CheckpointId, path: &str) -> Option<String> {
    store
        .read(at, path)
        .expect("read")
        .map(|b| String::from_utf8(b).expect("utf-8"))
}

fn names(entries: &[(String, EntryKind)]) -> Vec<&str> {
    entries.iter().map(|(n, _)| n.as_str()).collect()
}

fn chain_of_checkpoints(store: &dyn RunStore) {
    let run = run_id("1");
    assert_eq!(store.tip(&run).expect("tip"), None);
    assert!(store.history(&run).expect("history").is_empty());

    let c1 = store
        .commit(
            &run,
            None,
            &[
                Change::write("run.json", "{}"),
                Change::write("phases/a/state.json", "1"),
            ],
            &message(&run, "one"),
            100,
        )
        .expect("first");
    let c2 = store
        .commit(
            &run,
            Some(&c1),
            &[Change::write("phases/a/state.json", "2")],
            &message(&run, "two"),
            200,
        )
        .expect("second");
    let c3 = store
        .commit(
            &run,
            Some(&c2),
            &[Change::write("phases/b/state.json", "b")],
            &message(&run, "three"),
            300,
        )
        .expect("third");
    assert_eq!(c1.0.len(), 40);
    assert!(
        c1.0.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(store.tip(&run).expect("tip"), Some(c3.clone()));

    let history = store.history(&run).expect("history");
    let ids: Vec<_> = history.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![c3.clone(), c2.clone(), c1.clone()]);
    assert_eq!(history[0].parent, Some(c2.clone()));
    assert_eq!(history[2].parent, None);
    assert_eq!(
        history.iter().map(|c| c.time).collect::<Vec<_>>(),
        vec![300, 200, 100]
    );
    assert_eq!(history[1].message, message(&run, "two"));
    assert_eq!(history[1].message.get(Trailer::Run), Some(run.as_str()));

    // Every checkpoint keeps the whole state as of its commit.
    assert_eq!(
        file(store, &c1, "phases/a/state.json").as_deref(),
        Some("1")
    );
    assert_eq!(
        file(store, &c2, "phases/a/state.json").as_deref(),
        Some("2")
    );
    assert_eq!(
        file(store, &c3, "phases/a/state.json").as_deref(),
        Some("2")
    );
    assert_eq!(file(store, &c3, "run.json").as_deref(), Some("{}"));
    assert_eq!(file(store, &c2, "phases/b/state.json"), None);
    assert_eq!(
        file(store, &c3, "phases/b/state.json").as_deref(),
        Some("b")
    );

    // A commit without changes is still a checkpoint (a pure state event).
    let c4 = store
        .commit(&run, Some(&c3), &[], &message(&run, "four"), 400)
        .expect("empty change set");
    assert_ne!(c4, c3);
    assert_eq!(
        file(store, &c4, "phases/b/state.json").as_deref(),
        Some("b")
    );
}

fn compare_and_swap(store: &dyn RunStore) {
    let run = run_id("2");
    let c1 = store
        .commit(
            &run,
            None,
            &[Change::write("a", "1")],
            &message(&run, "one"),
            1,
        )
        .expect("create");
    let c2 = store
        .commit(
            &run,
            Some(&c1),
            &[Change::write("a", "2")],
            &message(&run, "two"),
            2,
        )
        .expect("advance");

    // A writer still holding c1 loses and changes nothing.
    match store.commit(
        &run,
        Some(&c1),
        &[Change::write("a", "stale")],
        &message(&run, "stale"),
        3,
    ) {
        Err(StoreError::Conflict {
            run: r,
            expected,
            found,
        }) => {
            assert_eq!(r, run);
            assert_eq!(expected, c1.0);
            assert_eq!(found, c2.0);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.tip(&run).expect("tip"), Some(c2.clone()));
    assert_eq!(file(store, &c2, "a").as_deref(), Some("2"));

    // Creating a run that exists is a conflict, even with identical content.
    for attempt in [("a", "1", 1), ("b", "other", 9)] {
        match store.commit(
            &run,
            None,
            &[Change::write(attempt.0, attempt.1)],
            &message(&run, "one"),
            attempt.2,
        ) {
            Err(StoreError::Conflict {
                expected, found, ..
            }) => {
                assert_eq!(expected, "none");
                assert_eq!(found, c2.0);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(store.tip(&run).expect("tip"), Some(c2.clone()));

    // Advancing a run that does not exist is a conflict too.
    let missing = run_id("3");
    match store.commit(&missing, Some(&c2), &[], &message(&missing, "x"), 4) {
        Err(StoreError::Conflict { found, .. }) => assert_eq!(found, "none"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.tip(&missing).expect("tip"), None);

    // A parent that is not even a checkpoint id is a conflict, not a crash.
    let bogus = CheckpointId("not-hex".into());
    assert!(matches!(
        store.commit(&run, Some(&bogus), &[], &message(&run, "x"), 5),
        Err(StoreError::Conflict { .. })
    ));
}

fn removes_and_nesting(store: &dyn RunStore) {
    let run = run_id("4");
    let c1 = store
        .commit(
            &run,
            None,
            &[
                Change::write("phases/x/state.json", "x"),
                Change::write("phases/y/state.json", "y"),
                Change::write("phases/y/attempts/1/error.json", "e"),
                Change::write("phases/y/artifacts/report.json", "r"),
                Change::write("comments.jsonl", ""),
            ],
            &message(&run, "one"),
            1,
        )
        .expect("nested writes");
    let root = store.list_dir(&c1, "").expect("root");
    assert_eq!(
        root,
        vec![
            ("comments.jsonl".to_string(), EntryKind::File),
            ("phases".to_string(), EntryKind::Dir)
        ]
    );
    let y = store.list_dir(&c1, "phases/y").expect("list y");
    assert_eq!(names(&y), vec!["artifacts", "attempts", "state.json"]);
    assert_eq!(y[2].1, EntryKind::File);
    assert_eq!(y[1].1, EntryKind::Dir);
    assert_eq!(store.list_dir(&c1, "phases/y/").expect("trailing slash"), y);
    assert!(
        store
            .list_dir(&c1, "phases/nope")
            .expect("missing dir")
            .is_empty()
    );
    assert!(
        store
            .list_dir(&c1, "phases/x/state.json")
            .expect("a file is no dir")
            .is_empty()
    );
    assert_eq!(store.read(&c1, "phases/y").expect("read a dir"), None);
    assert_eq!(store.read(&c1, "").expect("read the root"), None);
    assert_eq!(file(store, &c1, "comments.jsonl").as_deref(), Some(""));

    // Remove one file, a whole subtree, and something that is not there.
    let c2 = store
        .commit(
            &run,
            Some(&c1),
            &[
                Change::Remove {
                    path: "phases/y/state.json".into(),
                },
                Change::Remove {
                    path: "phases/y/attempts".into(),
                },
                Change::Remove {
                    path: "phases/nope/never.json".into(),
                },
            ],
            &message(&run, "two"),
            2,
        )
        .expect("removes");
    assert_eq!(
        names(&store.list_dir(&c2, "phases/y").expect("list y")),
        vec!["artifacts"]
    );
    assert_eq!(
        store
            .read(&c2, "phases/y/attempts/1/error.json")
            .expect("read"),
        None
    );
    assert_eq!(
        file(store, &c2, "phases/x/state.json").as_deref(),
        Some("x")
    );
    // The parent checkpoint is untouched.
    assert_eq!(
        file(store, &c1, "phases/y/attempts/1/error.json").as_deref(),
        Some("e")
    );

    // Removing the last file of a directory removes the directory.
    let c3 = store
        .commit(
            &run,
            Some(&c2),
            &[Change::Remove {
                path: "phases/y/artifacts/report.json".into(),
            }],
            &message(&run, "3"),
            3,
        )
        .expect("remove last file");
    assert_eq!(
        names(&store.list_dir(&c3, "phases").expect("list")),
        vec!["x"]
    );

    // Removing everything leaves an empty root.
    let c4 = store
        .commit(
            &run,
            Some(&c3),
            &[
                Change::Remove {
                    path: "phases".into(),
                },
                Change::Remove {
                    path: "comments.jsonl".into(),
                },
            ],
            &message(&run, "4"),
            4,
        )
        .expect("remove all");
    assert!(store.list_dir(&c4, "").expect("root").is_empty());

    // Later changes in one commit win over earlier ones.
    let c5 = store
        .commit(
            &run,
            Some(&c4),
            &[
                Change::write("a/b", "1"),
                Change::Remove { path: "a".into() },
                Change::write("a/c", "2"),
            ],
            &message(&run, "5"),
            5,
        )
        .expect("ordered changes");
    assert_eq!(names(&store.list_dir(&c5, "a").expect("list")), vec!["c"]);
}

fn files_and_directories_replace_each_other(store: &dyn RunStore) {
    let run = run_id("5");
    let c1 = store
        .commit(
            &run,
            None,
            &[Change::write("w/inner/f", "f"), Change::write("v", "file")],
            &message(&run, "1"),
            1,
        )
        .expect("create");
    let c2 = store
        .commit(
            &run,
            Some(&c1),
            &[
                Change::write("w", "now a file"),
                Change::write("v/now", "a dir"),
            ],
            &message(&run, "2"),
            2,
        )
        .expect("swap kinds");
    assert_eq!(
        store.list_dir(&c2, "").expect("root"),
        vec![
            ("v".to_string(), EntryKind::Dir),
            ("w".to_string(), EntryKind::File)
        ]
    );
    assert_eq!(file(store, &c2, "w").as_deref(), Some("now a file"));
    assert_eq!(file(store, &c2, "v/now").as_deref(), Some("a dir"));
    assert_eq!(store.read(&c2, "w/inner/f").expect("read"), None);

    // Names that sort differently as git tree entries still list by name.
    let c3 = store
        .commit(
            &run,
            Some(&c2),
            &[Change::write("v.json", "1"), Change::write("v-x", "2")],
            &message(&run, "3"),
            3,
        )
        .expect("siblings");
    assert_eq!(
        names(&store.list_dir(&c3, "").expect("root")),
        vec!["v", "v-x", "v.json", "w"]
    );
}

fn listing_and_resolving_runs(store: &dyn RunStore) {
    assert!(store.runs().expect("no runs").is_empty());
    assert!(matches!(
        store.resolve("latest"),
        Err(StoreError::NoSuchRun { .. })
    ));

    let ids = [run_id("a1"), run_id("a2"), run_id("b3")];
    for (n, run) in ids.iter().enumerate() {
        store
            .commit(
                run,
                None,
                &[Change::write("run.json", format!("{n}"))],
                &message(run, "start"),
                n as i64,
            )
            .expect("create");
    }
    let tip = store.tip(&ids[1]).expect("tip").expect("exists");
    let advanced = store
        .commit(&ids[1], Some(&tip), &[], &message(&ids[1], "later"), 50)
        .expect("advance");

    let runs = store.runs().expect("runs");
    let listed: Vec<_> = runs.iter().map(|h| h.run.clone()).collect();
    assert_eq!(listed, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    assert_eq!(runs[1].tip.id, advanced);
    assert_eq!(runs[1].tip.message.summary, "later");
    assert_eq!(runs[1].tip.time, 50);

    assert_eq!(store.resolve("latest").expect("latest"), ids[2]);
    assert_eq!(store.resolve(ids[0].as_str()).expect("full id"), ids[0]);
    assert_eq!(
        store
            .resolve(&ids[0].as_str().to_uppercase())
            .expect("any case"),
        ids[0]
    );
    assert_eq!(
        store
            .resolve(&ids[2].as_str()[..25])
            .expect("unique prefix"),
        ids[2]
    );
    match store.resolve(&ids[0].as_str()[..25]) {
        Err(StoreError::AmbiguousRun { candidates, .. }) => {
            assert_eq!(candidates, vec![ids[0].to_string(), ids[1].to_string()]);
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert!(matches!(
        store.resolve("7zzz"),
        Err(StoreError::NoSuchRun { .. })
    ));
}

fn invalid_paths_write_nothing(store: &dyn RunStore) {
    let run = run_id("6");
    for bad in ["", "/abs", "a//b", "../up", "x/.git/config"] {
        match store.commit(
            &run,
            None,
            &[Change::write("ok.json", "1"), Change::write(bad, "x")],
            &message(&run, "bad"),
            1,
        ) {
            Err(StoreError::InvalidPath { path, .. }) => assert_eq!(path, bad),
            other => panic!("expected an invalid path error for {bad:?}, got {other:?}"),
        }
    }
    assert!(matches!(
        store.commit(
            &run,
            None,
            &[Change::Remove {
                path: "a/../b".into()
            }],
            &message(&run, "bad"),
            1
        ),
        Err(StoreError::InvalidPath { .. })
    ));
    assert_eq!(store.tip(&run).expect("tip"), None);
}

fn unknown_checkpoints(store: &dyn RunStore) {
    let unknown = CheckpointId("0123456789abcdef0123456789abcdef01234567".into());
    assert!(matches!(
        store.checkpoint(&unknown),
        Err(StoreError::NoSuchCheckpoint { .. })
    ));
    assert!(matches!(
        store.read(&unknown, "run.json"),
        Err(StoreError::NoSuchCheckpoint { .. })
    ));
    assert!(matches!(
        store.list_dir(&unknown, ""),
        Err(StoreError::NoSuchCheckpoint { .. })
    ));
    let garbage = CheckpointId("zz".into());
    assert!(matches!(
        store.checkpoint(&garbage),
        Err(StoreError::NoSuchCheckpoint { .. })
    ));
}

/// A run with `n` checkpoints (each writing `step`); oldest first.
fn chain(store: &dyn RunStore, run: &RunId, n: usize) -> Vec<CheckpointId> {
    let mut ids: Vec<CheckpointId> = Vec::new();
    for k in 0..n {
        let id = store
            .commit(
                run,
                ids.last(),
                &[Change::write("step", format!("{k}"))],
                &message(run, &format!("step {k}")),
                k as i64,
            )
            .expect("commit");
        ids.push(id);
    }
    ids
}

fn reset_trashes_the_old_tip_and_undo_restores_it(store: &dyn RunStore) {
    let run = run_id("7");
    let c = chain(store, &run, 3);
    assert!(store.trashed(&run).expect("trashed").is_empty());
    match store.undo(&run, &c[2], "undo", 9) {
        Err(StoreError::NothingTrashed { run: r }) => assert_eq!(r, run),
        other => panic!("expected NothingTrashed, got {other:?}"),
    }

    let first = store
        .reset(&run, &c[2], &c[0], "rollback", 10)
        .expect("reset");
    let one = Trashed {
        number: 1,
        checkpoint: c[2].clone(),
    };
    assert_eq!(first, one);
    assert_eq!(store.tip(&run).expect("tip"), Some(c[0].clone()));
    assert_eq!(store.history(&run).expect("history").len(), 1);
    assert_eq!(store.trashed(&run).expect("trashed"), vec![one.clone()]);
    assert_eq!(file(store, &c[0], "step").as_deref(), Some("0"));

    // A stale writer (still at the old tip) changes nothing, trash included.
    assert!(matches!(
        store.reset(&run, &c[2], &c[1], "stale", 11),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.undo(&run, &c[2], "stale", 11),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.reset(&run, &CheckpointId("not-hex".into()), &c[1], "bogus", 11),
        Err(StoreError::Conflict { .. })
    ));
    // A target that is no checkpoint changes nothing either.
    let unknown = CheckpointId("0123456789abcdef0123456789abcdef01234567".into());
    assert!(matches!(
        store.reset(&run, &c[0], &unknown, "nowhere", 11),
        Err(StoreError::NoSuchCheckpoint { .. })
    ));
    assert_eq!(store.tip(&run).expect("tip"), Some(c[0].clone()));
    assert_eq!(store.trashed(&run).expect("trashed"), vec![one.clone()]);

    // Undo: the exact previous tip, and the entry is used up.
    let undone = store.undo(&run, &c[0], "undo", 12).expect("undo");
    assert_eq!(undone.restored, one);
    assert_eq!(
        undone.trashed, None,
        "c0 is inside c2's history: nothing to keep"
    );
    assert_eq!(store.tip(&run).expect("tip"), Some(c[2].clone()));
    assert!(store.trashed(&run).expect("trashed").is_empty());
    assert_eq!(store.history(&run).expect("history").len(), 3);

    // Entries are numbered upwards; undo takes the highest.
    store.reset(&run, &c[2], &c[1], "r1", 13).expect("reset");
    let second = store.reset(&run, &c[1], &c[0], "r2", 14).expect("reset");
    assert_eq!(second.number, 2);
    assert_eq!(second.checkpoint, c[1]);
    let undone = store.undo(&run, &c[0], "undo", 15).expect("undo");
    assert_eq!(undone.restored.number, 2);
    assert_eq!(store.tip(&run).expect("tip"), Some(c[1].clone()));
    let undone = store.undo(&run, &c[1], "undo", 16).expect("undo");
    assert_eq!(undone.restored.number, 1);
    assert_eq!(store.tip(&run).expect("tip"), Some(c[2].clone()));
    assert!(store.trashed(&run).expect("trashed").is_empty());

    // A reset of a run that does not exist is a conflict.
    let missing = run_id("8");
    assert!(matches!(
        store.reset(&missing, &c[2], &c[0], "x", 17),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.tip(&missing).expect("tip"), None);
    assert!(store.trashed(&missing).expect("trashed").is_empty());
}

fn undo_keeps_checkpoints_made_after_a_rollback(store: &dyn RunStore) {
    let run = run_id("9");
    let c = chain(store, &run, 3);
    store
        .reset(&run, &c[2], &c[0], "rollback", 10)
        .expect("reset");
    // The run goes on from the rolled-back tip.
    let later = store
        .commit(
            &run,
            Some(&c[0]),
            &[Change::write("step", "later")],
            &message(&run, "later"),
            11,
        )
        .expect("commit after rollback");
    let undone = store.undo(&run, &later, "undo", 12).expect("undo");
    assert_eq!(undone.restored.checkpoint, c[2]);
    let kept = undone.trashed.expect("the later checkpoint is kept");
    assert_eq!(kept.checkpoint, later);
    assert_eq!(kept.number, 2);
    assert_eq!(store.tip(&run).expect("tip"), Some(c[2].clone()));
    assert_eq!(store.trashed(&run).expect("trashed"), vec![kept]);

    // Undoing again swaps back: nothing is ever lost.
    let again = store.undo(&run, &c[2], "undo", 13).expect("undo again");
    assert_eq!(again.restored.checkpoint, later);
    assert_eq!(
        again.trashed.map(|t| (t.number, t.checkpoint)),
        Some((3, c[2].clone()))
    );
    assert_eq!(store.tip(&run).expect("tip"), Some(later));
}

fn contains_only_the_runs_own_checkpoints(store: &dyn RunStore) {
    let (a, b) = (run_id("a7"), run_id("b7"));
    let ca = chain(store, &a, 2);
    let cb = chain(store, &b, 1);
    assert!(store.contains(&a, &ca[0]).expect("contains"));
    assert!(store.contains(&a, &ca[1]).expect("contains"));
    assert!(!store.contains(&a, &cb[0]).expect("contains"));
    assert!(!store.contains(&run_id("c7"), &ca[0]).expect("no such run"));
    // After a rollback the abandoned tip is no longer part of the run.
    store
        .reset(&a, &ca[1], &ca[0], "rollback", 5)
        .expect("reset");
    assert!(!store.contains(&a, &ca[1]).expect("contains"));
    assert!(store.reaches(&ca[1], &ca[0]).expect("reaches"));
    assert!(!store.reaches(&ca[0], &ca[1]).expect("reaches"));
}
