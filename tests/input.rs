//! Bad input: every case exits 2 with a message naming the file and the
//! JSON path, and writes nothing under refs/wfe/.

use crate::common;

use std::path::PathBuf;

use common::Repo;

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
        assert!(repo.wfe_refs().is_empty(), "{name}: a ref was created");

        let validate = repo.wfe(&["template", "validate", path.to_str().unwrap()]);
        assert_eq!(validate.code, 2, "{name}: template validate");
    }
}

#[test]
fn bad_args_exit_2_and_write_nothing() {
    let repo = Repo::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "hello", "--arg", "shout=maybe"], "shout"),
        (&["run", "hello", "--arg", "nobody"], "NAME=VALUE"),
        (&["run", "hello", "--arg", "colour=red"], "colour"),
        (&["run", "no-such-template"], "no-such-template"),
        (
            &["run", "hello", "--args-file", "missing.json"],
            "missing.json",
        ),
        (&["run", "hello", "--jobs", "0"], "jobs"),
        (&["show", "zzzz"], "no run zzzz"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, fragment) in cases {
        let run = repo.wfe(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(fragment),
            "{args:?}: expected `{fragment}` in:\n{}",
            run.stderr
        );
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
    assert!(
        run.stderr.contains("not a git repository"),
        "{}",
        run.stderr
    );

    let empty = Repo::empty();
    let run = empty.wfe(&["run", "hello"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no commits"), "{}", run.stderr);
    assert!(empty.wfe_refs().is_empty());
}
