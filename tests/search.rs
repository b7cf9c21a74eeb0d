//! `wfe search` and `wfe index` end to end: runs made by the real binary in
//! temporary repositories, then searched with filters, phrases and
//! `field:value` on artifact JSON; catch-up with runs from elsewhere,
//! rollback, removed refs, and an index that is missing or damaged.

use crate::common;

use common::Repo;
use common::snapshot::{assert_run, assert_text, command};
use serde_json::{Value, json};

/// A repo with templates `review` (an artifact of the built-in `review`
/// schema, then a `build` phase that logs) and `broken` (fails, logging why).
fn repo() -> Repo {
    let repo = Repo::new();
    repo.write(".wfe/schemas/any.json", "{}");
    repo.write(
        "data/review.json",
        &json!({
            "verdict": "changes_requested",
            "summary": "The parser needs more tests before it ships",
            "findings": [
                { "severity": "major", "message": "no test covers empty input" },
                { "severity": "nit", "message": "rename the tokenizer flag" }
            ]
        })
        .to_string(),
    );
    repo.template(
        "review",
        &json!({
            "name": "review",
            "phases": [
                { "id": "review", "kind": "script",
                  "run": "cp data/review.json \"$WFE_OUT/review.json\"",
                  "outputs": { "review": "review" } },
                { "id": "build", "kind": "script", "needs": ["review"],
                  "run": "echo compiling the widget crate; echo '{\"text\": \"omega artifact\"}' > \"$WFE_OUT/note.json\"",
                  "outputs": { "note": "any" } }
            ]
        }),
    );
    repo.template(
        "broken",
        &json!({
            "name": "broken",
            "phases": [
                { "id": "compile", "kind": "script", "run": "echo 'linker segfault in widget' >&2; exit 3" }
            ]
        }),
    );
    repo
}

/// Runs `template`, returning the run's id; `code` is the expected exit code.
fn run(repo: &Repo, template: &str, code: i32) -> String {
    let out = repo.wfe(&["run", template, "--json"]);
    out.code(code);
    out.json()["id"].as_str().unwrap().to_string()
}

/// `wfe search ARGS --json`: the hits.
fn search(repo: &Repo, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["search"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let out = repo.wfe(&argv);
    out.code(0);
    out.json()["hits"].as_array().unwrap().clone()
}

/// The highlighted pieces of a hit's snippet.
fn highlighted(hit: &Value) -> Vec<String> {
    let snippet: Vec<char> = hit["snippet"].as_str().unwrap().chars().collect();
    hit["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (a, b) = (
                r[0].as_u64().unwrap() as usize,
                r[1].as_u64().unwrap() as usize,
            );
            snippet[a..b].iter().collect()
        })
        .collect()
}

/// `run:path` of each hit, sorted.
fn places(hits: &[Value]) -> Vec<String> {
    let mut places: Vec<String> = hits
        .iter()
        .map(|h| {
            format!(
                "{}:{}",
                &h["run"].as_str().unwrap()[..6],
                h["path"].as_str().unwrap()
            )
        })
        .collect();
    places.sort();
    places
}

const REVIEW: &str = "phases/review/artifacts/review.json";

#[test]
fn filters_phrases_and_field_values() {
    let repo = repo();
    let one = run(&repo, "review", 0);
    let broken = run(&repo, "broken", 1);

    // Words match artifacts (field names too) and logs.
    let hits = search(&repo, &["parser"]);
    assert_eq!(places(&hits), [format!("{}:{REVIEW}", &one[..6])]);
    let hit = &hits[0];
    assert_eq!(hit["run"], one.as_str());
    assert_eq!(hit["template"], "review");
    assert_eq!(hit["phase"], "review");
    assert_eq!(hit["kind"], "artifact");
    assert_eq!(hit["schema"], "review");
    assert_eq!(hit["status"], "completed");
    assert_eq!(hit["attempt"], 1);
    assert_eq!(hit["checkpoint"].as_str().unwrap().len(), 40);
    let snippet = hit["snippet"].as_str().unwrap();
    let [start, end] = [
        hit["highlights"][0][0].as_u64().unwrap(),
        hit["highlights"][0][1].as_u64().unwrap(),
    ];
    let marked: String = snippet
        .chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect();
    assert_eq!(marked, "parser", "character offsets: {hit:#}");
    assert_eq!(
        search(&repo, &["findings", "severity"]).len(),
        1,
        "field names are words too"
    );
    assert_eq!(
        places(&search(&repo, &["widget"])).len(),
        2,
        "a log line of each run"
    );

    // Filters.
    assert_eq!(
        places(&search(&repo, &["widget", "--phase", "build"])),
        [format!("{}:phases/build/log.jsonl", &one[..6])]
    );
    assert_eq!(
        places(&search(&repo, &["widget", "--template", "broken"])),
        [format!("{}:phases/compile/log.jsonl", &broken[..6])]
    );
    assert_eq!(
        places(&search(&repo, &["widget", "--status", "failed"])),
        [format!("{}:phases/compile/log.jsonl", &broken[..6])]
    );
    assert_eq!(
        places(&search(&repo, &["widget", "--run", &broken[..10]])).len(),
        1
    );
    assert_eq!(
        places(&search(&repo, &["*", "--schema", "review"])),
        [format!("{}:{REVIEW}", &one[..6])]
    );
    assert_eq!(
        search(&repo, &["*", "--kind", "error"])[0]["path"],
        "phases/compile/attempts/1/error.json"
    );
    assert_eq!(search(&repo, &["widget", "--since", "2000-01-01"]).len(), 2);
    assert!(search(&repo, &["widget", "--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(search(&repo, &["*", "--limit", "1"]).len(), 1);

    // Phrases, and field:value on the artifact's JSON.
    assert_eq!(search(&repo, &["\"needs more tests\""]).len(), 1);
    assert!(search(&repo, &["\"tests more needs\""]).is_empty());
    assert_eq!(
        places(&search(&repo, &["verdict:changes_requested"])),
        [format!("{}:{REVIEW}", &one[..6])]
    );
    assert!(search(&repo, &["verdict:approve"]).is_empty());
    let hits = search(&repo, &["verdict:changes_requested"]);
    assert_eq!(
        highlighted(&hits[0]),
        ["verdict", "changes", "requested"],
        "{:#}",
        hits[0]
    );
    assert_eq!(
        search(&repo, &["findings.severity:nit"]).len(),
        1,
        "nested, through arrays"
    );
    assert_eq!(search(&repo, &["text:omega", "kind:artifact"]).len(), 1);
}

#[test]
fn human_output_bad_queries_and_bad_filters() {
    let repo = repo();
    run(&repo, "review", 0);
    let out = repo.wfe(&["search", "parser"]);
    out.code(0);
    // A head line (run, template, path, checkpoint), the snippet indented
    // under it, and the count on stderr.
    assert_run!(&repo, "search_human_output", &out);

    let mut session = String::new();
    for args in [
        &["search", "parser AND (tests"][..],
        &["search", "x", "--since", "last week"],
        &["search", "x", "--status", "finished"],
        &["search", "x", "--run", "zzzz"],
        &["search", ""],
    ] {
        let out = repo.wfe(args);
        out.code(2);
        session.push_str(&command(args, &out));
    }
    assert_text!(&repo, "search_bad_queries_and_filters", session);
}

#[test]
fn logs_and_comments_are_searchable() {
    let repo = repo();
    let id = run(&repo, "review", 0);
    repo.wfe(&[
        "comment",
        &id,
        "review",
        "the reviewer wants quokka coverage",
    ])
    .code(0);
    let hits = search(&repo, &["quokka"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["kind"], "comment");
    assert_eq!(hits[0]["phase"], "review");
    assert_eq!(hits[0]["path"], "comments.jsonl");
    assert_eq!(hits[0]["line"], 0);
    assert_eq!(
        search(&repo, &["author:\"test user <test@example.com>\""]).len(),
        1,
        "the comment's JSON, matched as a whole"
    );
    assert!(search(&repo, &["author:test"]).is_empty());
    let hits = search(&repo, &["compiling", "--kind", "log"]);
    assert_eq!(hits[0]["snippet"], "compiling the widget crate");
}

#[test]
fn catches_up_with_runs_made_elsewhere() {
    let repo = repo();
    run(&repo, "review", 0);
    assert_eq!(search(&repo, &["parser"]).len(), 1);
    // Runs made after the index exists, by other processes.
    run(&repo, "review", 0);
    run(&repo, "review", 0);
    assert_eq!(search(&repo, &["parser"]).len(), 3);

    // Runs fetched from another clone.
    let other = self::repo();
    let theirs = run(&other, "broken", 1);
    let path = other.path().to_str().unwrap().to_string();
    repo.git(&["fetch", "-q", &path, "+refs/wfe/*:refs/wfe/*"]);
    let hits = search(&repo, &["segfault"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["run"], theirs.as_str());

    // A removed ref takes its documents with it.
    repo.git(&["update-ref", "-d", &format!("refs/wfe/runs/{theirs}")]);
    assert!(search(&repo, &["segfault"]).is_empty());
}

#[test]
fn rollback_hides_what_the_ref_no_longer_holds() {
    let repo = repo();
    let id = run(&repo, "review", 0);
    assert_eq!(search(&repo, &["omega"]).len(), 1);
    let log = repo.git(&["log", "--format=%H %s", &format!("refs/wfe/runs/{id}")]);
    let target = log
        .lines()
        .find(|l| l.contains("review completed"))
        .unwrap_or_else(|| panic!("no checkpoint after review:\n{log}"))
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    repo.git(&["update-ref", &format!("refs/wfe/runs/{id}"), &target]);
    assert!(
        search(&repo, &["omega"]).is_empty(),
        "the build phase's artifact is gone"
    );
    let hits = search(&repo, &["parser"]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["checkpoint"], target.as_str());
    assert_eq!(hits[0]["status"], "running");
}

#[test]
fn a_missing_or_damaged_index_is_rebuilt_with_a_notice() {
    let repo = repo();
    run(&repo, "review", 0);
    let first = repo.wfe(&["search", "parser"]);
    first.code(0);
    let index = repo.path().join(".git/wfe/index");
    assert!(index.join("meta.json").is_file());

    std::fs::remove_dir_all(&index).unwrap();
    let out = repo.wfe(&["search", "parser"]);
    out.code(0);
    // One notice: there was no index, it is being built.
    assert_run!(&repo, "search_without_an_index", &out);
    assert_eq!(out.stdout, first.stdout);

    // Cut the largest file of the index in half.
    let largest = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(&largest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&largest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = repo.wfe(&["search", "parser"]);
    out.code(0);
    // The index was unreadable: rebuilt, with a notice.
    assert_run!(&repo, "search_with_a_damaged_index", &out);
    assert_eq!(out.stdout, first.stdout);
    // Rebuilt once: no notice any more.
    let again = repo.wfe(&["search", "parser"]);
    assert_run!(&repo, "search_with_a_rebuilt_index", &again);
}

#[test]
fn index_command_and_concurrent_searches() {
    let repo = repo();
    for _ in 0..3 {
        run(&repo, "review", 0);
    }
    let out = repo.wfe(&["index"]);
    out.code(0);
    let rebuilt = repo.wfe(&["index", "--rebuild"]);
    rebuilt.code(0);
    // The documents of 3 runs, then indexed 3 runs again.
    let session = [
        command(&["index"], &out),
        command(&["index", "--rebuild"], &rebuilt),
    ]
    .concat();
    assert_text!(&repo, "index_and_rebuild", session);

    // Two searches and a rebuild at once: all answer, none shows an error.
    let spawn = |args: &[&str]| {
        repo.wfe_cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [
        spawn(&["index", "--rebuild"]),
        spawn(&["search", "parser", "--json"]),
        spawn(&["search", "widget", "--json"]),
    ];
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
    }
    assert_eq!(search(&repo, &["parser"]).len(), 3);
}
