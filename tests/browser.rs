//! The web view in a real browser: headless Chromium through chromedriver
//! ([`crate::common::browser`]) against the real `wfe serve --port 0` in a
//! temporary repository. Without a browser these tests print why they are
//! skipped; with `CI=true` a missing browser fails them.
//!
//! Phases that must stay running block on FIFOs; the page is waited on by
//! bounded polling of a condition, never by sleeping.

use std::path::PathBuf;

use serde_json::json;

use crate::common::browser::{Browser, Serve};
use crate::common::{Repo, script};

/// Where the tests save screenshots: under the target directory.
fn shots_dir() -> PathBuf {
    // CARGO_BIN_EXE_wfe is <target>/<profile>/wfe.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wfe"));
    bin.parent()
        .and_then(|p| p.parent())
        .map(|t| t.join("browser-shots"))
        .unwrap_or_else(std::env::temp_dir)
}

/// A repository with one finished run of a two-phase template.
fn repo_with_a_run() -> Repo {
    let repo = Repo::new();
    repo.template(
        "hello",
        &json!({
            "name": "hello",
            "phases": [script("build", &[], "echo building"), script("test", &["build"], "echo testing")]
        }),
    );
    repo.wfe(&["run", "hello"]).code(0);
    repo
}

#[test]
fn the_harness_leaves_no_process_behind() {
    let Some(browser) = Browser::start("the_harness_leaves_no_process_behind") else {
        return;
    };
    browser.goto("about:blank");
    let profile = browser.profile();
    let pgid = browser.pgid();
    assert!(
        !crate::common::browser::leftovers(pgid, &profile).is_empty(),
        "the session's processes are found while it runs"
    );
    let left = browser.close();
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

#[test]
fn the_runs_page_lists_runs() {
    let repo = repo_with_a_run();
    let run = repo.run_id();
    let Some(browser) = Browser::start("the_runs_page_lists_runs") else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    // The printed URL sets the cookie and drops the token from the address.
    browser.goto(&serve.url);
    browser.wait_for(
        "the runs table",
        "document.querySelector('table.runs tbody tr')",
    );
    assert!(
        !browser.url().contains("token="),
        "token left in {}",
        browser.url()
    );
    let text = browser.text();
    assert!(text.contains("hello"), "template shown:\n{text}");
    assert!(text.contains("completed"), "status shown:\n{text}");
    let link = browser.js(
        "return document.querySelector('table.runs a').getAttribute('href')",
        vec![],
    );
    assert_eq!(link, json!(format!("/runs/{run}")));
    browser.screenshot(&shots_dir().join("runs.png"));
}
