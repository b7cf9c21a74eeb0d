//! The web view's controls in a real browser (headless Chromium, see
//! [`crate::common::browser`]): start a run from its form and watch its
//! phases complete without a reload; approve a gate through its form,
//! retry a phase, roll back and undo; edit a template with an error, then
//! fixed. Without a browser these are skipped (with `CI=true` they fail).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::browser::{Browser, Serve};
use crate::common::{Repo, mkfifo, script, write_fifo_line};

/// Sets the value of the form field matching `css`.
fn fill(browser: &Browser, css: &str, value: &str) {
    browser.js(
        "var el = document.querySelector(arguments[0]); el.value = arguments[1]; return true;",
        vec![json!(css), json!(value)],
    );
}

/// Clicks the element matching `css` in one step (a live refresh of the
/// panel may swap it between finding it and clicking it).
fn click_now(browser: &Browser, css: &str) {
    browser.wait_for(
        &format!("an element {css}"),
        &format!("document.querySelector({})", json!(css)),
    );
    browser.js(
        "document.querySelector(arguments[0]).click(); return true;",
        vec![json!(css)],
    );
}

/// The status a phase row of the control panel shows.
fn row_status(phase: &str) -> String {
    format!("(document.querySelector('[data-phase-row={phase}] .status') || {{}}).textContent")
}

fn tip(repo: &Repo, id: &str) -> String {
    repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")])
}

#[test]
fn a_run_started_from_the_form_completes_live_on_the_page() {
    let repo = Repo::new();
    let fifo = repo.path().join("go.fifo");
    mkfifo(&fifo);
    repo.template(
        "greet",
        &json!({
            "name": "greet",
            "args": { "type": "object", "required": ["who"], "properties": { "who": { "type": "string" } } },
            "phases": [
                script("wait", &[], &format!("read x < {}", fifo.display())),
                script("hello", &["wait"], "echo hello {{ args.who }}"),
            ]
        }),
    );
    let Some(browser) = Browser::start("a_run_started_from_the_form_completes_live_on_the_page")
    else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    browser.goto(&serve.url);
    browser.goto(&serve.at("/runs/new?template=greet"));
    browser.wait_for(
        "the args form",
        "document.querySelector('input[name=\"arg.who\"]')",
    );
    fill(&browser, "input[name='arg.who']", "browser");
    browser.click("button[data-verb=start]");
    browser.wait_for("the run's page", "location.pathname.startsWith('/runs/0')");
    let id = repo.run_id();
    assert!(browser.url().contains(&id), "{}", browser.url());

    browser.goto(&serve.at(&format!("/runs/{id}/controls")));
    browser.wait_for(
        "the running phase",
        &format!("{} === 'running'", row_status("wait")),
    );
    browser.js("window.__notReloaded = true; return true;", vec![]);
    write_fifo_line(&fifo, "go");
    browser.wait_for(
        "both phases completed, without a reload",
        &format!(
            "{} === 'completed' && {} === 'completed' && window.__notReloaded === true",
            row_status("wait"),
            row_status("hello")
        ),
    );
}

#[test]
fn a_gate_approved_a_phase_retried_then_rolled_back_and_undone_in_the_browser() {
    let repo = Repo::new();
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            script("build", &[], "echo built"),
            { "id": "ok", "kind": "gate", "needs": ["build"], "outputs": { "note": "message" } },
            script("ship", &["ok"], "cat \"$WFE_IN/ok/note.json\""),
        ]}),
    );
    let first = repo.wfe(&["run", "gated", "--json"]);
    first.code(3);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let Some(browser) = Browser::start(
        "a_gate_approved_a_phase_retried_then_rolled_back_and_undone_in_the_browser",
    ) else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    browser.goto(&serve.url);
    browser.goto(&serve.at(&format!("/runs/{id}/controls")));

    // Approve through the form generated from the gate's output schema.
    browser.wait_for(
        "the approval form",
        "document.querySelector('input[name=\"art.text\"]')",
    );
    fill(&browser, "input[name='art.text']", "ship it");
    click_now(&browser, "button[data-verb=approve]");
    browser.wait_for(
        "the approved run completing",
        &format!("{} === 'completed'", row_status("ship")),
    );
    let log = repo.git(&["show", &format!("refs/wfe/runs/{id}:phases/ship/log.jsonl")]);
    assert!(log.contains("ship it"), "{log}");

    // Retry a phase: its attempt 2 completes on the page.
    // Opened and clicked at once: a live refresh may swap the panel between two steps.
    browser.wait_for(
        "the retry form",
        "document.querySelector('[data-phase-row=ship] form.retry')",
    );
    browser.js(
        "var f = document.querySelector('[data-phase-row=ship] form.retry'); f.closest('details').open = true; f.querySelector('button').click(); return true;",
        vec![],
    );
    browser.wait_for(
        "attempt 2 of ship completed",
        &format!(
            "document.querySelector('[data-phase-row=ship] td:nth-child(4)').textContent.trim() === '2' && {} === 'completed'",
            row_status("ship")
        ),
    );

    // Roll back one checkpoint, then undo.
    let before = tip(&repo, &id);
    click_now(&browser, "button[data-verb=rollback]");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tip(&repo, &id) == before {
        assert!(
            Instant::now() < deadline,
            "the rollback never moved the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    click_now(&browser, "button[data-verb=undo]");
    while tip(&repo, &id) != before {
        assert!(
            Instant::now() < deadline,
            "the undo never brought the run back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_template_saved_with_an_error_is_refused_then_saved_when_fixed() {
    let repo = Repo::new();
    let path = repo.template(
        "mine",
        &json!({ "name": "mine", "phases": [script("a", &[], "true"), script("b", &["a"], "true")] }),
    );
    let original = std::fs::read_to_string(&path).unwrap();
    let Some(browser) =
        Browser::start("a_template_saved_with_an_error_is_refused_then_saved_when_fixed")
    else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    browser.goto(&serve.url);
    browser.goto(&serve.at("/templates/mine/edit"));
    browser.wait_for(
        "the editor",
        "document.querySelector('textarea[name=text]')",
    );
    let broken = original.replace("\"a\"\n      ]", "\"zzz\"\n      ]");
    assert_ne!(broken, original);
    fill(&browser, "textarea[name=text]", &broken);
    browser.click("button[data-verb=save]");
    browser.wait_for(
        "the validation error",
        "(document.querySelector('.control-error') || {}).textContent",
    );
    let said = browser.js(
        "return document.querySelector('.control-error').textContent",
        vec![],
    );
    let said = said.as_str().unwrap();
    assert!(
        said.contains(".wfe/templates/mine.json") && said.contains("zzz"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "nothing written"
    );

    let fixed = original.replace("\"true\"", "\"echo fixed\"");
    fill(&browser, "textarea[name=text]", &fixed);
    browser.click("button[data-verb=save]");
    browser.wait_for(
        "the template page",
        "location.pathname === '/templates/mine'",
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), fixed);
}
