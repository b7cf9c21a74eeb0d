//! The run-summary cache (`<git-dir>/wfe/cache/runs-2`): made by the first
//! listing, never trusted over the refs. Refs moved behind its back (`git
//! update-ref`, `wfe rm`, `wfe pull`), a stale copy put back, a damaged
//! file: every listing stays right, with no error, and the file is mended.

use crate::common;

use common::{Repo, script};
use serde_json::json;

fn two_phases(repo: &Repo) {
    repo.template(
        "two",
        &json!({ "name": "two", "phases": [
            script("a", &[], "echo a"),
            script("b", &["a"], "echo b"),
        ]}),
    );
}

fn cache_file(repo: &Repo) -> std::path::PathBuf {
    repo.path().join(".git/wfe/cache/runs-2")
}

/// `wfe list --json` as (id, checkpoint, status) rows, newest first.
fn listed(repo: &Repo) -> Vec<(String, String, String)> {
    let run = repo.wfe(&["list", "--json"]);
    run.code(0);
    assert_eq!(run.stderr, "", "a listing warns of nothing");
    run.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["id"].as_str().expect("an id").to_string(),
                row["checkpoint"]
                    .as_str()
                    .expect("a checkpoint")
                    .to_string(),
                row["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// What git says the runs are: (id, tip, Wfe-Status of the tip), newest first.
fn truth(repo: &Repo) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = repo
        .git(&[
            "for-each-ref",
            "--format=%(refname:lstrip=3) %(objectname) %(trailers:key=Wfe-Status,valueonly,separator=)",
            "refs/wfe/runs/",
        ])
        .lines()
        .map(|line| {
            let mut words = line.split(' ');
            let mut next = || words.next().unwrap_or_default().to_string();
            (next(), next(), next())
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    rows
}

#[test]
fn the_cache_is_made_by_list_and_follows_refs_moved_behind_its_back() {
    let repo = Repo::new();
    two_phases(&repo);
    repo.wfe(&["run", "two"]).code(0);
    repo.wfe(&["run", "two"]).code(0);
    let _ = std::fs::remove_file(cache_file(&repo));

    let first = listed(&repo);
    assert_eq!(first.len(), 2);
    assert_eq!(first, truth(&repo));
    let text = std::fs::read_to_string(cache_file(&repo)).expect("list made the cache");
    assert!(text.starts_with("wfe-runs 2 "), "{text}");
    for (id, tip, _) in &first {
        assert!(text.contains(&format!("{id} {tip} ")), "{text}");
    }
    let stale = text;

    // An older checkpoint of the older run, set by plain git.
    let (old_id, old_tip, _) = first[1].clone();
    let start = repo
        .git(&["rev-list", "--reverse", &format!("refs/wfe/runs/{old_id}")])
        .lines()
        .next()
        .expect("a first checkpoint")
        .to_string();
    assert_ne!(start, old_tip);
    repo.git(&["update-ref", &format!("refs/wfe/runs/{old_id}"), &start]);
    let moved = listed(&repo);
    assert_eq!(moved, truth(&repo));
    assert_eq!(moved[1].1, start);
    assert_ne!(moved[1].2, "completed", "the first checkpoint's status");

    // The stale file put back is checked against the refs, not believed.
    std::fs::write(cache_file(&repo), &stale).unwrap();
    assert_eq!(listed(&repo), truth(&repo));

    // A damaged file is rebuilt without a word.
    for damage in [
        "garbage",
        "",
        "wfe-runs 1 0000000000000000\nnot a line\n",
        "wfe-runs 2 0000000000000000\nnot a line\n",
    ] {
        std::fs::write(cache_file(&repo), damage).unwrap();
        assert_eq!(listed(&repo), truth(&repo), "after {damage:?}");
        let mended = std::fs::read_to_string(cache_file(&repo)).unwrap();
        assert!(mended.starts_with("wfe-runs 2 "), "{mended}");
    }
    // So is one cut short halfway (a torn write by some other tool).
    let whole = std::fs::read_to_string(cache_file(&repo)).unwrap();
    std::fs::write(cache_file(&repo), &whole[..whole.len() / 2]).unwrap();
    assert_eq!(listed(&repo), truth(&repo));

    // `latest` and a full id agree with the refs.
    let latest = repo.wfe(&["show", "latest", "--json"]);
    latest.code(0);
    assert_eq!(latest.json()["id"], first[0].0.as_str());
    let by_id = repo.wfe(&["show", &old_id, "--json"]);
    by_id.code(0);
    assert_eq!(by_id.json()["id"], old_id.as_str());
    assert_eq!(by_id.json()["status"], moved[1].2.as_str());

    // A removed run leaves the list (and the cache).
    let newest = first[0].0.clone();
    repo.wfe(&["rm", &newest]).code(0);
    let left = listed(&repo);
    assert_eq!(left, truth(&repo));
    assert_eq!(left.len(), 1);
    let text = std::fs::read_to_string(cache_file(&repo)).unwrap();
    assert!(!text.contains(&newest), "{text}");
    let latest = repo.wfe(&["show", "latest", "--json"]);
    assert_eq!(latest.json()["id"], old_id.as_str());
}

#[test]
fn a_pulled_run_appears_in_a_list_made_from_the_cache() {
    let origin = Repo::new();
    two_phases(&origin);
    let here = Repo::new();
    two_phases(&here);
    here.wfe(&["run", "two"]).code(0);
    assert_eq!(listed(&here).len(), 1);
    assert!(cache_file(&here).is_file());

    // Both repos' wfe seed their run ids alike: skip a few so the ids differ.
    for _ in 0..5 {
        origin.wfe(&["list"]).code(0);
    }
    origin.wfe(&["run", "two"]).code(0);
    let theirs = origin.run_id();
    here.git(&["remote", "add", "origin", &origin.path().to_string_lossy()]);
    here.wfe(&["pull", "origin"]).code(0);
    let rows = listed(&here);
    assert_eq!(rows, truth(&here));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.0 == theirs), "{rows:?}");
    let prefix = &theirs[..theirs.len() - 3];
    let shown = here.wfe(&["show", prefix, "--json"]);
    shown.code(0);
    assert_eq!(shown.json()["id"], theirs.as_str());
}

#[test]
fn a_read_only_cache_directory_costs_speed_not_answers() {
    let repo = Repo::new();
    two_phases(&repo);
    repo.wfe(&["run", "two"]).code(0);
    // A directory where the file should be: it can be neither read nor replaced.
    let _ = std::fs::remove_file(cache_file(&repo));
    std::fs::create_dir_all(cache_file(&repo)).unwrap();
    assert_eq!(listed(&repo), truth(&repo));
    assert!(cache_file(&repo).is_dir());
}
