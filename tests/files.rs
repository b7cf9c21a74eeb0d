//! File artifacts end to end: a script phase keeps a binary file, a
//! directory and `$WFE_OUT/files/` as blobs under `phases/<p>/files/`;
//! `show --file` gives the bytes back exactly, `export` writes them out,
//! `diff` compares them by size and hash, search finds text files and
//! skips binary ones; the size cap, links and bad paths are refused.

use crate::common;

use std::os::unix::fs::symlink;

use common::snapshot::assert_run;
use common::{Repo, script};
use serde_json::{Value, json};

/// Bytes 0..=255: every byte value once, no valid UTF-8.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// A repo whose `build` phase copies `data/blob.bin` to `dist/blob.bin`,
/// writes a coverage directory, and a text note under `$WFE_OUT/files/`.
/// The note holds `$WFE_ARG_V`, so two runs can differ.
fn repo() -> Repo {
    let repo = Repo::new();
    let data = repo.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("blob.bin"), all_bytes()).unwrap();
    repo.template(
        "files",
        &json!({ "name": "files", "phases": [
            { "id": "build", "kind": "script",
              "run": "mkdir -p dist htmlcov/css \"$WFE_OUT/files/notes\" && cp data/blob.bin dist/blob.bin && echo '<h1>coverage 97%</h1>' > htmlcov/index.html && echo 'body{}' > htmlcov/css/site.css && echo \"release notes: zanzibar v$WFE_ARG_V\" > \"$WFE_OUT/files/notes/notes.txt\"",
              "outputs": { "wheel": { "file": "dist/*.bin" }, "coverage": { "dir": "htmlcov" } } },
            script("after", &["build"], "echo done"),
        ]}),
    );
    repo
}

fn run(repo: &Repo, template: &str, args: &[&str], code: i32) -> String {
    let mut argv = vec!["run", template, "--json"];
    argv.extend_from_slice(args);
    let out = repo.wfe(&argv);
    out.code(code);
    out.json()["id"].as_str().unwrap().to_string()
}

/// `wfe ARGS` with stdout as raw bytes.
fn raw(repo: &Repo, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = repo.wfe_cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn files_are_blobs_in_the_checkpoint_and_come_back_byte_exact() {
    let repo = repo();
    let id = run(&repo, "files", &["--arg", "v=1"], 0);
    let at = format!("refs/wfe/runs/{id}");

    // git sees the blobs at phases/build/files/...
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &at, "phases/build/files"]);
    assert_eq!(
        tree.lines().collect::<Vec<_>>(),
        [
            "phases/build/files/coverage/css/site.css",
            "phases/build/files/coverage/index.html",
            "phases/build/files/notes/notes.txt",
            "phases/build/files/wheel/blob.bin",
        ]
    );
    let blob = repo
        .git_cmd(&[
            "cat-file",
            "blob",
            &format!("{at}:phases/build/files/wheel/blob.bin"),
        ])
        .output()
        .unwrap();
    assert!(blob.status.success());
    assert_eq!(blob.stdout, all_bytes());

    // show --file: by path, and by output name when it kept one file.
    for name in ["wheel/blob.bin", "wheel"] {
        let (code, bytes, stderr) = raw(&repo, &["show", &id, "build", "--file", name]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(bytes, all_bytes(), "--file {name}");
    }
    let (code, bytes, _) = raw(
        &repo,
        &["show", &id, "build", "--file", "coverage/index.html"],
    );
    assert_eq!(
        (code, bytes.as_slice()),
        (0, &b"<h1>coverage 97%</h1>\n"[..])
    );
    // An output with several files, or a name that is not there, is named.
    let out = repo.wfe(&["show", &id, "build", "--file", "coverage"]);
    out.code(2);
    assert!(
        out.stderr.contains(
            "has no file artifact `coverage`; it has: coverage/css/site.css, coverage/index.html"
        ),
        "{}",
        out.stderr
    );

    // show lists the files with size and hash; --json has them too.
    let out = repo.wfe(&["show", &id, "build"]);
    out.code(0);
    assert!(
        out.stdout
            .contains("file       wheel/blob.bin  256 bytes  sha256:40aff2e9d2d8  (binary)"),
        "{}",
        out.stdout
    );
    let doc = repo.wfe(&["show", &id, "build", "--json"]).json();
    let files: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 4);
    assert_eq!(doc["files"][3]["size"], 256);
    assert_eq!(
        doc["files"][3]["sha256"],
        "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880"
    );
}

#[test]
fn export_writes_json_and_files_and_never_overwrites_without_force() {
    let repo = repo();
    let id = run(&repo, "files", &["--arg", "v=1"], 0);
    let out_dir = repo.path().join("out");
    let dir = out_dir.display().to_string();
    repo.wfe(&["export", &id, "build", &dir]).code(0);
    assert_eq!(
        std::fs::read(out_dir.join("files/wheel/blob.bin")).unwrap(),
        all_bytes()
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("files/notes/notes.txt")).unwrap(),
        "release notes: zanzibar v1\n"
    );
    assert!(out_dir.join("files/coverage/css/site.css").is_file());

    // Again: refused, nothing changed; --force replaces.
    std::fs::write(out_dir.join("files/notes/notes.txt"), "mine").unwrap();
    let again = repo.wfe(&["export", &id, "build", &dir]);
    again.code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("files/notes/notes.txt")).unwrap(),
        "mine"
    );
    repo.wfe(&["export", &id, "build", &dir, "--force"]).code(0);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("files/notes/notes.txt")).unwrap(),
        "release notes: zanzibar v1\n"
    );

    // A link in the way is refused even with --force, and not written through.
    let outside = repo.path().join("outside.txt");
    std::fs::write(&outside, "untouched").unwrap();
    std::fs::remove_file(out_dir.join("files/notes/notes.txt")).unwrap();
    symlink(&outside, out_dir.join("files/notes/notes.txt")).unwrap();
    let linked = repo.wfe(&["export", &id, "build", &dir, "--force"]);
    linked.code(2);
    assert!(linked.stderr.contains("symbolic link"), "{}", linked.stderr);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched");

    // A phase's JSON artifacts come along as artifacts/<name>.json.
    repo.template(
        "json",
        &json!({ "name": "json", "phases": [
            { "id": "make", "kind": "script", "outputs": { "report": "message" },
              "run": "echo '{\"text\": \"hi\"}' > \"$WFE_OUT/report.json\"" } ] }),
    );
    let j = run(&repo, "json", &[], 0);
    let jdir = repo.path().join("jout");
    repo.wfe(&["export", &j, "make", &jdir.display().to_string()])
        .code(0);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(jdir.join("artifacts/report.json")).unwrap())
            .unwrap();
    assert_eq!(doc, json!({"text": "hi"}));
}

#[test]
fn diff_reports_changed_files_by_size_and_hash() {
    let repo = repo();
    let one = run(&repo, "files", &["--arg", "v=1"], 0);
    let two = run(&repo, "files", &["--arg", "v=22"], 0);
    let out = repo.wfe(&["diff", &one, &two]);
    out.code(0);
    assert!(
        out.stdout
            .contains("phase build\n  ~ files/notes/notes.txt 27 bytes sha256:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(" → 28 bytes sha256:"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("blob.bin"),
        "unchanged files are not listed: {}",
        out.stdout
    );
    let doc = repo.wfe(&["diff", &one, &two, "--json"]).json();
    let files = &doc["phases"][0]["files"];
    assert_eq!(files.as_array().unwrap().len(), 1);
    assert_eq!(files[0]["path"], "notes/notes.txt");
    assert_eq!(files[0]["kind"], "changed");
    assert_eq!(files[0]["from"]["size"], 27);
    assert_eq!(files[0]["to"]["size"], 28);
}

#[test]
fn a_phase_over_the_size_limit_fails_naming_the_file_and_the_limit() {
    let repo = Repo::new();
    repo.template(
        "big",
        &json!({ "name": "big", "phases": [
            { "id": "make", "kind": "script", "max_files_bytes": 1000,
              "run": "mkdir -p out && head -c 600 /dev/zero > out/a.bin && head -c 600 /dev/zero > out/b.bin",
              "outputs": { "out": { "dir": "out" } } } ] }),
    );
    let out = repo.wfe(&["run", "big"]);
    out.code(1);
    assert!(
        out.stderr.contains("too large: `out/b.bin` (600 bytes) takes the phase's file artifacts over the limit of 1000 bytes (max_files_bytes)"),
        "{}",
        out.stderr
    );
    let id = repo.run_id();
    let tree = repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(!tree.contains("/files/"), "nothing kept: {tree}");

    // The repo-wide default comes from config.
    repo.write(".wfe/config.json", r#"{"max_files_bytes": 100}"#);
    repo.template(
        "cfg",
        &json!({ "name": "cfg", "phases": [
            { "id": "make", "kind": "script",
              "run": "head -c 200 /dev/zero > \"$WFE_OUT/files/z.bin\" || { mkdir -p \"$WFE_OUT/files\" && head -c 200 /dev/zero > \"$WFE_OUT/files/z.bin\"; }" } ] }),
    );
    let out = repo.wfe(&["run", "cfg"]);
    out.code(1);
    assert!(
        out.stderr.contains("the limit of 100 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_symlink_output_is_refused_and_not_followed() {
    let repo = Repo::new();
    let secret = repo.path().join("..").join("outside-secret.txt");
    std::fs::write(&secret, "do not copy me").unwrap();
    repo.template(
        "link",
        &json!({ "name": "link", "phases": [
            { "id": "make", "kind": "script",
              "run": format!("mkdir -p dist && ln -sf {} dist/leak.txt", secret.display()),
              "outputs": { "d": { "file": "dist/*.txt" } } } ] }),
    );
    let out = repo.wfe(&["run", "link"]);
    out.code(1);
    assert!(
        out.stderr.contains("`dist/leak.txt` is a symbolic link; file artifacts must be regular files and links are never followed"),
        "{}",
        out.stderr
    );
    let id = repo.run_id();
    let all = repo.git_output(&[
        "grep",
        "-c",
        "do not copy me",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(
        all.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&all.stdout)
    );
    let tree = repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(!tree.contains("/files/"), "nothing kept: {tree}");
}

#[test]
fn file_outputs_are_checked_when_the_template_is() {
    let repo = Repo::new();
    repo.template(
        "bad",
        &json!({ "name": "bad", "phases": [
            { "id": "make", "kind": "script", "run": "true",
              "outputs": { "a": { "file": "../x/*.whl" }, "b": { "dir": "/etc" }, "c": { "file": "x", "dir": "y" } } },
            { "id": "g", "kind": "gate", "outputs": { "d": { "dir": "out" } } } ] }),
    );
    let out = repo.wfe(&["run", "bad"]);
    out.code(2);
    assert_run!(&repo, "files_bad_outputs", &out);
    assert!(repo.wfe_refs().is_empty(), "nothing written");
}

#[test]
fn search_finds_text_files_but_not_binary_ones() {
    let repo = repo();
    // The binary file holds a word too; it must not be found there.
    let mut bytes = all_bytes();
    bytes.extend_from_slice(b" quetzalcoatl ");
    std::fs::write(repo.path().join("data/blob.bin"), bytes).unwrap();
    let id = run(&repo, "files", &["--arg", "v=1"], 0);
    let hits = search(&repo, "zanzibar");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["run"], id.as_str());
    assert_eq!(hits[0]["path"], "phases/build/files/notes/notes.txt");
    assert!(search(&repo, "quetzalcoatl").is_empty());
}

fn search(repo: &Repo, query: &str) -> Vec<Value> {
    let out = repo.wfe(&["search", query, "--json"]);
    out.code(0);
    out.json()["hits"].as_array().unwrap().clone()
}

#[test]
fn retry_sets_files_aside_and_rollback_brings_them_back() {
    let repo = repo();
    let id = run(&repo, "files", &["--arg", "v=1"], 0);
    let at = format!("refs/wfe/runs/{id}");
    let before = repo.git(&["rev-parse", &at]);
    repo.wfe(&["retry", &id, "build", "--no-run"]).code(0);
    let tree = repo.git(&["ls-tree", "-r", "--name-only", &at, "phases/build"]);
    assert!(
        !tree.contains("phases/build/files/"),
        "current files removed: {tree}"
    );
    assert!(
        tree.contains("phases/build/attempts/1/files/wheel/blob.bin"),
        "set aside with the attempt: {tree}"
    );
    let retried = repo.git(&["rev-parse", &at]);
    repo.wfe(&["rollback", &id, "--to", before.trim()]).code(0);
    let (code, bytes, stderr) = raw(&repo, &["show", &id, "build", "--file", "wheel"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(bytes, all_bytes());
    // Undo brings back the retried tip, files set aside as they were.
    repo.wfe(&["undo", &id]).code(0);
    assert_eq!(repo.git(&["rev-parse", &at]), retried);
    repo.wfe(&["show", &id, "build", "--file", "wheel"]).code(2);
    // And the retry runs again, keeping its own files.
    repo.wfe(&["resume", &id]).code(0);
    let (code, bytes, _) = raw(&repo, &["show", &id, "build", "--file", "wheel"]);
    assert_eq!((code, bytes), (0, all_bytes()));
    repo.wfe(&["fsck", &id]).code(0);
}

#[test]
fn a_binary_file_holding_a_secret_fails_and_a_text_one_is_masked() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{"secrets": ["DEPLOY_TOKEN"]}"#);
    repo.template(
        "sec",
        &json!({ "name": "sec", "phases": [
            { "id": "text", "kind": "script",
              "run": "mkdir -p \"$WFE_OUT/files\" && echo \"token=$DEPLOY_TOKEN\" > \"$WFE_OUT/files/t.txt\"" },
            { "id": "bin", "kind": "script", "needs": ["text"],
              "run": "mkdir -p \"$WFE_OUT/files\" && { printf '\\000'; echo \"$DEPLOY_TOKEN\"; } > \"$WFE_OUT/files/b.bin\"" } ] }),
    );
    let out = repo
        .wfe_cmd()
        .env("DEPLOY_TOKEN", "s3cr3t-value-123")
        .args(["run", "sec"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a binary file holds a secret value, and binary files are never masked"),
        "{stderr}"
    );
    let id = repo.run_id();
    let (code, bytes, _) = raw(&repo, &["show", &id, "text", "--file", "t.txt"]);
    assert_eq!((code, bytes.as_slice()), (0, &b"token=***\n"[..]));
    let all = repo.git_output(&["grep", "-a", "s3cr3t", &format!("refs/wfe/runs/{id}")]);
    assert!(
        all.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&all.stdout)
    );
}

#[test]
fn binary_is_not_written_to_a_terminal() {
    let repo = repo();
    let id = run(&repo, "files", &["--arg", "v=1"], 0);
    // util-linux `script` gives the command a pseudo-terminal as stdout.
    let on_tty = |file: &str| {
        let mut cmd = std::process::Command::new("script");
        repo.hermetic(&mut cmd);
        let line = format!(
            "{} show {id} build --file {file}",
            env!("CARGO_BIN_EXE_wfe")
        );
        let out = cmd
            .current_dir(repo.path())
            .env("WFE_NOW", common::NOW)
            .args(["-qec", &line, "/dev/null"])
            .output()
            .expect("util-linux `script` runs the command on a terminal");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = on_tty("wheel");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("file artifact `wheel` is binary (256 bytes); not writing it to a terminal"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "redirect it: `wfe show {id} build --file wheel > FILE`"
        )),
        "{text}"
    );
    // Text goes to a terminal as it is.
    let (code, text) = on_tty("notes/notes.txt");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("release notes: zanzibar v1"), "{text}");
}
