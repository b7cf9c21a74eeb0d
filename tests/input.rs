//! Bad input: every case exits 2 with a message naming the file and the
//! JSON path, and writes nothing under refs/wfe/.

use crate::common;

use std::path::PathBuf;

use common::Repo;
use common::snapshot::assert_run;

fn invalid_samples() -> Vec<(PathBuf, Vec<String>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid-templates");
    let mut cases: Vec<(PathBuf, Vec<String>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "yaml"))
        .map(|p| {
            let expected =
                std::fs::read_to_string(p.with_extension("expected")).unwrap_or_default();
            (
                p,
                expected
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from)
                    .collect(),
            )
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_invalid_template_exits_2_naming_file_and_path_and_writes_nothing() {
    let repo = Repo::new();
    let cases = invalid_samples();
    assert!(
        cases.len() >= 10,
        "the samples folder holds the invalid cases"
    );
    for (path, fragments) in cases {
        let run = repo.wfe(&["run", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{}: exit code\n{}", path.display(), run.stderr);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            run.stderr.contains(name),
            "{name}: the message names the file:\n{}",
            run.stderr
        );
        for fragment in &fragments {
            assert!(
                run.stderr.contains(fragment.as_str()),
                "{name}: expected `{fragment}` in:\n{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
        assert_run!(&repo, &format!("invalid_template_{name}"), &run);
        assert!(repo.wfe_refs().is_empty(), "{name}: a ref was created");

        let validate = repo.wfe(&["template", "validate", path.to_str().unwrap()]);
        assert_eq!(validate.code, 2, "{name}: template validate");
    }
}

#[test]
fn bad_args_exit_2_and_write_nothing() {
    let repo = Repo::new();
    // Each case's message is snapshotted as `bad_args_<name>`.
    let cases: &[(&[&str], &str)] = &[
        (&["run", "hello", "--arg", "shout=maybe"], "bad_bool"),
        (&["run", "hello", "--arg", "nobody"], "no_equals"),
        (&["run", "hello", "--arg", "colour=red"], "unknown_arg"),
        (&["run", "no-such-template"], "unknown_template"),
        (
            &["run", "hello", "--args-file", "missing.json"],
            "missing_args_file",
        ),
        (&["run", "hello", "--jobs", "0"], "zero_jobs"),
        (&["show", "zzzz"], "unknown_run"),
        (&["frobnicate"], "unknown_command"),
    ];
    for (args, name) in cases {
        let run = repo.wfe(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_run!(&repo, &format!("bad_args_{name}"), &run);
    }
    assert!(repo.wfe_refs().is_empty());
}

#[test]
fn outside_a_repository_or_without_commits_says_so() {
    let outside = tempfile::tempdir().unwrap();
    let repo = Repo::new();
    let run = repo
        .wfe_cmd()
        .current_dir(outside.path())
        .args(["list"])
        .output()
        .unwrap();
    let run = common::Run::from(run);
    assert_eq!(run.code, 2);
    crate::common::snapshot::settings(&repo).bind(|| {
        let text = common::snapshot::transcript(&run)
            .replace(&outside.path().display().to_string(), "[OUTSIDE]");
        insta::assert_snapshot!("outside_a_repository", text);
    });

    let empty = Repo::empty();
    let run = empty.wfe(&["run", "hello"]);
    assert_eq!(run.code, 2);
    assert_run!(&empty, "without_commits", &run);
    assert!(empty.wfe_refs().is_empty());
}
