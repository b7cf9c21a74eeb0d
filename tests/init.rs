//! `wfe init` end to end: the starter files it writes, what a second run
//! keeps, what `--force` overwrites, and that a fresh repo then runs.

use crate::common::Repo;
use crate::common::snapshot::assert_run;

/// Every file under `.wfe/`, relative to the repo, sorted.
fn wfe_files(repo: &Repo) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.path().join(".wfe"), repo.path(), &mut out);
    out.sort();
    out
}

#[test]
fn init_writes_the_starter_files_and_a_rerun_keeps_them() {
    let repo = Repo::new();
    let first = repo.wfe(&["init"]);
    assert_run!(&repo, "init_first", &first);
    first.code(0);
    let files = wfe_files(&repo);
    insta::assert_debug_snapshot!("init_files", files);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join(".wfe/config.json")).unwrap(),
    )
    .expect("config.json is JSON");
    assert!(config.is_object(), "{config}");

    // A second run keeps every file, edited or not.
    repo.write(".wfe/templates/hello.json", "{ \"edited\": true }\n");
    let again = repo.wfe(&["init"]);
    assert_run!(&repo, "init_again", &again);
    again.code(0);
    assert_eq!(wfe_files(&repo), files);
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".wfe/templates/hello.json")).unwrap(),
        "{ \"edited\": true }\n"
    );

    // `--force` writes them all again.
    let forced = repo.wfe(&["init", "--force"]);
    forced.code(0);
    assert_eq!(
        forced.stderr, first.stderr,
        "--force says what a first init says"
    );
    assert_ne!(
        std::fs::read_to_string(repo.path().join(".wfe/templates/hello.json")).unwrap(),
        "{ \"edited\": true }\n"
    );
}

#[test]
fn after_init_the_starter_templates_validate_and_hello_runs() {
    let repo = Repo::new();
    repo.wfe(&["init", "-q"]).code(0);
    let list = repo.wfe(&["template", "list"]);
    assert_run!(&repo, "init_template_list", &list);
    list.code(0);
    repo.wfe(&["run", "hello"]).code(0);
}

#[test]
fn init_outside_a_repository_exits_2() {
    let repo = Repo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = repo
        .wfe_cmd()
        .current_dir(elsewhere.path())
        .arg("init")
        .output()
        .unwrap();
    let run = crate::common::Run::from(out);
    run.code(2);
    assert!(!elsewhere.path().join(".wfe").exists());
}
