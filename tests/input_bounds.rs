//! Bounded inputs that need a run to show: a script's output file that is a
//! symbolic link is refused and never followed, and a phase's committed log
//! is capped while its whole output still streams live. The refusals of bad
//! files and flags (exit 2, nothing written) are cases in `tests/corpus/`.

use crate::common;

use common::{Repo, script};
use serde_json::json;

/// Every object in the repository, as `git cat-file --batch` prints them.
fn all_objects(repo: &Repo) -> String {
    let out = repo.git_output(&["cat-file", "--batch-all-objects", "--batch", "--unordered"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_output_that_is_a_symlink_is_refused_and_not_followed() {
    let repo = Repo::new();
    // A file outside the repository the user can read, standing for /etc/passwd.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("passwd");
    std::fs::write(&secret, "root:x:0:0:CANARY-7f3a:/root:/bin/sh\n").unwrap();
    let mut phase = script(
        "build",
        &[],
        &format!("ln -s '{}' \"$WFE_OUT/report.json\"", secret.display()),
    );
    phase["outputs"] = json!({ "report": "build-report" });
    repo.template("t", &json!({ "name": "t", "phases": [phase] }));

    let run = repo.wfe(&["run", "t"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("$WFE_OUT/report.json is a symbolic link, not a regular file"),
        "{}",
        run.stderr
    );
    let id = repo.run_id();
    let error = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/build/state.json"),
    ]);
    assert!(error.contains("symbolic link"), "{error}");
    assert!(
        !all_objects(&repo).contains("CANARY-7f3a"),
        "the linked file was committed"
    );
}

#[test]
fn a_huge_output_is_capped_in_the_log_but_shown_whole() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{ "max_log_bytes": 65536 }"#);
    // 40,000 numbered lines of ~100 bytes: about 4 MB.
    let run_script = "seq -f 'line %06g ......................................................................................' 1 40000";
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [script("noisy", &[], run_script)] }),
    );
    let run = repo.wfe(&["run", "t"]);
    run.code(0);
    // Live output: every line reached the terminal.
    assert!(run.stderr.contains("line 000001 "), "first line shown");
    assert!(run.stderr.contains("line 020000 "), "middle line shown");
    assert!(run.stderr.contains("line 040000 "), "last line shown");

    let id = repo.run_id();
    let log = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/noisy/log.jsonl"),
    ]);
    assert!(
        log.len() < 200_000,
        "the committed log is capped: {} bytes",
        log.len()
    );
    assert!(log.contains("line 000001 "), "the head is kept");
    assert!(log.contains("line 040000 "), "the tail is kept");
    assert!(!log.contains("line 020000 "), "the middle is cut");
    let marker = log
        .lines()
        .find(|l| l.contains("[truncated "))
        .expect("a truncation marker");
    assert!(marker.contains("\"stream\": \"wfe\"") || marker.contains("\"stream\":\"wfe\""));
    assert!(marker.contains(" bytes ("), "{marker}");
}

#[test]
fn args_from_standard_input_are_read_and_bounded() {
    use std::io::Write;
    let repo = Repo::new();
    repo.template(
        "t",
        &json!({
            "name": "t",
            "args": { "type": "object", "properties": { "who": { "type": "string" } }, "required": ["who"] },
            "phases": [script("hi", &[], "echo \"hi $WFE_ARG_WHO\"")]
        }),
    );
    let feed = |bytes: Vec<u8>| {
        let mut child = repo
            .wfe_cmd()
            .args(["run", "t", "--args-file", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The reader may stop early (over the limit): a broken pipe is fine.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let out = common::Run::from(child.wait_with_output().unwrap());
        writer.join().unwrap();
        out
    };
    let ok = feed(br#"{"who": "stdin"}"#.to_vec());
    ok.code(0);
    let log = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{}:phases/hi/log.jsonl", repo.run_id()),
    ]);
    assert!(log.contains("hi stdin"), "{log}");

    let big = feed(vec![b' '; 5 * 1024 * 1024]);
    big.code(2);
    assert!(
        big.stderr.contains("standard input is") && big.stderr.contains("over the limit of 4 MiB"),
        "{}",
        big.stderr
    );
    assert_eq!(
        repo.wfe_refs().len(),
        1,
        "nothing written for the refused run"
    );
}
