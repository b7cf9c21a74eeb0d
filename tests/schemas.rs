//! Artifact schemas end to end: the built-in library, `$ref`s frozen into a
//! run, remote references refused, strict parsing of what phases write.

use crate::common;

use common::Repo;
use common::snapshot::assert_run;
use serde_json::json;

#[test]
fn a_run_freezes_referenced_schemas_and_resumes_against_them() {
    let repo = Repo::new();
    // The repo's `decision` shadows the built-in one that the built-in
    // `decision-log` refers to.
    repo.write(
        ".wfe/schemas/decision.json",
        &json!({ "type": "object", "required": ["id"] }).to_string(),
    );
    // First attempt: interrupt the runner (as Ctrl-C would) so the run
    // pauses; the resumed attempt writes the artifact.
    let run = "if [ -f decided ]; then \
                 echo '{\"decisions\": [{\"id\": \"D1\"}]}' > \"$WFE_OUT/log.json\"; \
               else touch decided; kill -s INT $PPID; sleep 10; fi";
    repo.template(
        "decide",
        &json!({ "name": "decide", "phases": [{
            "id": "decide", "kind": "script", "run": run,
            "outputs": { "log": "decision-log" }
        }]}),
    );
    repo.wfe(&["run", "decide"]).code(3);
    let r = repo.wfe_refs()[0].clone();
    let frozen = repo.git(&["ls-tree", "--name-only", &format!("{r}:schemas")]);
    let mut files: Vec<&str> = frozen.lines().collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0], "decision-log.json");
    assert!(
        files[1].starts_with("https___wfe_local_schemas_decision-"),
        "{files:?}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{r}:run.json")])).unwrap();
    assert_eq!(
        record["schemas"]["https://wfe.local/schemas/decision.json"],
        format!("schemas/{}", files[1])
    );

    // The repo's schema changes; the run keeps validating with its frozen copy.
    repo.write(
        ".wfe/schemas/decision.json",
        &json!({ "type": "object", "required": ["id", "owner"] }).to_string(),
    );
    let id = r.trim_start_matches("refs/wfe/runs/");
    let doc = repo.wfe(&["resume", id, "--json"]).code(0).json();
    assert_eq!(doc["status"], "completed");
    let artifact = repo.git(&["show", &format!("{r}:phases/decide/artifacts/log.json")]);
    assert!(artifact.contains("D1"), "{artifact}");
}

#[test]
fn a_remote_reference_is_refused_before_anything_is_written() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/remote.json",
        &json!({ "properties": { "a": { "$ref": "https://example.com/a.json" } } }).to_string(),
    );
    repo.template(
        "remote",
        &json!({ "name": "remote", "phases": [{
            "id": "a", "kind": "script", "run": "true", "outputs": { "o": "remote" }
        }]}),
    );
    let out = repo.wfe(&["run", "remote"]);
    out.code(2);
    // The schema, the reference, and that remote references are not fetched.
    assert_run!(&repo, "a_remote_reference", &out);
    assert!(repo.wfe_refs().is_empty(), "no run was created");
}

#[test]
fn repo_schemas_refer_to_their_siblings() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/release.json",
        &json!({ "type": "object", "required": ["notes"],
                 "properties": { "notes": { "$ref": "note.json" } } })
        .to_string(),
    );
    repo.write(
        ".wfe/schemas/note.json",
        &json!({ "type": "string", "minLength": 5 }).to_string(),
    );
    repo.template(
        "release",
        &json!({ "name": "release", "phases": [{
            "id": "a", "kind": "script",
            "run": "echo '{\"notes\": \"ok\"}' > \"$WFE_OUT/r.json\"",
            "outputs": { "r": "release" }
        }]}),
    );
    repo.wfe(&["template", "validate", "release"]).code(0);
    let out = repo.wfe(&["run", "release"]);
    out.code(1);
    // `/notes` is too short for `note.json`.
    assert_run!(&repo, "a_sibling_schema_refused", &out);
}

#[test]
fn an_artifact_with_a_duplicate_key_is_rejected() {
    let repo = Repo::new();
    repo.template(
        "dup",
        &json!({ "name": "dup", "phases": [{
            "id": "a", "kind": "script",
            "run": "printf '{\"ok\": false,\\n \"ok\": true}' > \"$WFE_OUT/report.json\"",
            "outputs": { "report": "build-report" }
        }]}),
    );
    let out = repo.wfe(&["run", "dup"]);
    out.code(1);
    // `duplicate key `ok` at line 2 column 5`.
    assert_run!(&repo, "an_artifact_with_a_duplicate_key", &out);
}

#[test]
fn schema_list_shows_the_builtins_and_the_repos_own() {
    let repo = Repo::new();
    let before = repo.wfe(&["schema", "list"]);
    assert_run!(&repo, "schema_list_builtins", &before);
    before.code(0);
    repo.write(
        ".wfe/schemas/ticket.json",
        &json!({ "type": "object", "required": ["id"] }).to_string(),
    );
    let after = repo.wfe(&["schema", "list"]);
    // `ticket` among the built-ins.
    assert_run!(&repo, "schema_list_with_repo_schema", &after);
    after.code(0);
}

#[test]
fn schema_show_prints_a_schema_and_refuses_an_unknown_name() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/ticket.json",
        &json!({ "type": "object", "required": ["id"] }).to_string(),
    );
    let shown = repo.wfe(&["schema", "show", "ticket"]);
    assert_run!(&repo, "schema_show_repo", &shown);
    shown.code(0);
    let builtin = repo.wfe(&["schema", "show", "decision"]);
    builtin.code(0);
    let parsed: serde_json::Value = serde_json::from_str(&builtin.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", builtin.stdout));
    assert!(parsed.is_object());
    let unknown = repo.wfe(&["schema", "show", "no-such-schema"]);
    assert_run!(&repo, "schema_show_unknown", &unknown);
    unknown.code(2);
}
