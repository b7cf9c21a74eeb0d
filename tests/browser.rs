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
use crate::common::{Repo, mkfifo, read_fifo_line, script, write_fifo_line};

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

/// A background `wfe run`: ended (SIGTERM, which cancels its phases) if the
/// test fails before it finishes, so a failing test leaves no runner
/// blocked on a FIFO.
struct Runner(Option<std::process::Child>);

impl Runner {
    fn spawn(repo: &Repo, args: &[&str]) -> Runner {
        Runner(Some(repo.spawn(args)))
    }

    /// Waits for the runner; asserts it succeeded.
    fn finish(mut self) {
        let child = self.0.take().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = child.wait();
        }
    }
}

/// Opens the server's URL (sets the token cookie), then `path`.
fn open(browser: &Browser, serve: &Serve, path: &str) {
    browser.goto(&serve.url);
    browser.goto(&serve.at(path));
}

/// The DOM's phase states on a run page, as `id=status` in page order.
/// Read from the SVG drawing: each node's `data-phase` and the state in its
/// link's label (`KEY: STATE`), nodes in document order (layer by layer).
const PHASE_STATES: &str = "Array.from(document.querySelectorAll('#dag svg g.node')).map(g => \
     g.dataset.phase + '=' + g.querySelector(':scope > a').getAttribute('aria-label').split(': ').pop()).join(' ')";

/// A run of `first` → (`work`, `lint`) → `after` whose phase `work` blocks until a line is
/// written to the `go` FIFO; returns the runner and the FIFO.
fn blocked_run(repo: &Repo, name: &str) -> (Runner, PathBuf) {
    let started = repo.path().join(format!("{name}.started"));
    let go = repo.path().join(format!("{name}.go"));
    mkfifo(&started);
    mkfifo(&go);
    let work = format!(
        "echo first line; echo r > {}; read x < {}; echo second line",
        started.display(),
        go.display()
    );
    repo.template(
        name,
        &json!({ "name": name, "phases": [
            script("first", &[], "echo one"),
            script("work", &["first"], &work),
            script("lint", &["first"], "echo two"),
            script("after", &["work", "lint"], "echo three"),
        ]}),
    );
    let runner = Runner::spawn(repo, &["run", name]);
    read_fifo_line(&started);
    (runner, go)
}

#[test]
fn a_run_page_shows_the_dag_with_live_states() {
    let repo = Repo::new();
    let (runner, go) = blocked_run(&repo, "three");
    let run = repo.run_id();
    let Some(browser) = Browser::start("a_run_page_shows_the_dag_with_live_states") else {
        write_fifo_line(&go, "go");
        runner.finish();
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    open(&browser, &serve, &format!("/runs/{run}"));
    browser.wait_for(
        "four phase nodes",
        "document.querySelectorAll('#dag svg g.node').length === 4",
    );
    let states = browser.js(&format!("return {PHASE_STATES}"), vec![]);
    assert_eq!(
        states,
        json!("first=completed work=running lint=completed after=pending"),
        "the DAG's states while `work` runs"
    );
    // The same states the CLI gives.
    let doc = repo.wfe(&["status", &run, "--json"]).json();
    assert_eq!(doc["status"], "running", "{doc:#}");
    // Parallel phases side by side: one layer per step of the chain here.
    let layers = browser.js(
        "return new Set(Array.from(document.querySelectorAll('#dag svg g.node')).map(g => g.getBoundingClientRect().top)).size",
        vec![],
    );
    assert_eq!(layers, json!(3));
    let side_by_side = browser.js(
        "const top = g => g.getBoundingClientRect().top; \
         const work = document.querySelector('#dag g.node[data-phase=work]'); \
         return Array.from(document.querySelectorAll('#dag svg g.node')).filter(g => top(g) === top(work)).map(g => g.dataset.phase).join(' ')",
        vec![],
    );
    assert_eq!(
        side_by_side,
        json!("work lint"),
        "parallel phases share a layer"
    );
    browser.screenshot(&shots_dir().join("run-running.png"));
    // The run moves on: the page follows without a reload.
    browser.js("window.__notReloaded = true; return 1", vec![]);
    write_fifo_line(&go, "go");
    runner.finish();
    browser.wait_for(
        "every phase completed, live",
        &format!(
            "({PHASE_STATES}) === 'first=completed work=completed lint=completed after=completed'"
        ),
    );
    assert_eq!(
        browser.js("return window.__notReloaded === true", vec![]),
        json!(true)
    );
    browser.wait_for_text("4 of 4 completed");
    browser.screenshot(&shots_dir().join("run.png"));
}

#[test]
fn a_running_phase_log_is_followed_live() {
    let repo = Repo::new();
    let started = repo.path().join("started");
    let (go1, go2) = (repo.path().join("go1"), repo.path().join("go2"));
    for f in [&started, &go1, &go2] {
        mkfifo(f);
    }
    let talk = format!(
        "echo alpha-line; echo r > {s}; read x < {g1}; echo beta-line; echo gamma-line; echo r > {s}; read x < {g2}; echo omega-line",
        s = started.display(),
        g1 = go1.display(),
        g2 = go2.display()
    );
    repo.template(
        "talk",
        &json!({ "name": "talk", "phases": [script("talk", &[], &talk)] }),
    );
    let runner = Runner::spawn(&repo, &["run", "talk"]);
    read_fifo_line(&started);
    let run = repo.run_id();
    let release = || {
        write_fifo_line(&go1, "go");
        read_fifo_line(&started);
        write_fifo_line(&go2, "go");
    };
    let Some(browser) = Browser::start("a_running_phase_log_is_followed_live") else {
        release();
        runner.finish();
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    open(&browser, &serve, &format!("/runs/{run}/phases/talk"));
    let log_text = "document.querySelector('#log').innerText";
    browser.wait_for(
        "the first line, already written",
        &format!("{log_text}.includes('alpha-line')"),
    );
    browser.js("window.__notReloaded = true; return 1", vec![]);
    write_fifo_line(&go1, "go");
    browser.wait_for(
        "lines written after the page opened",
        &format!("{log_text}.includes('beta-line') && {log_text}.includes('gamma-line')"),
    );
    // Each line has a permalink, numbered in order.
    browser.wait_for(
        "line 3 is gamma",
        "document.querySelector('#L3').innerText.includes('gamma-line')",
    );
    browser.screenshot(&shots_dir().join("phase-live.png"));
    read_fifo_line(&started);
    write_fifo_line(&go2, "go");
    browser.wait_for(
        "the last line",
        &format!("{log_text}.includes('omega-line')"),
    );
    assert_eq!(
        browser.js("return window.__notReloaded === true", vec![]),
        json!(true),
        "no reload"
    );
    runner.finish();
    browser.wait_for_text("completed");
    // The log header follows: every line counted, no longer `live`.
    browser.wait_for(
        "the header says 4 lines, not live",
        "document.querySelector('[data-log-count]').textContent === '4' \
         && document.querySelector('[data-log-live]').textContent === ''",
    );
    browser.screenshot(&shots_dir().join("phase.png"));
}

#[test]
fn search_finds_a_line_and_opens_the_phase_at_it() {
    let repo = Repo::new();
    repo.template(
        "hay",
        &json!({ "name": "hay", "phases": [
            script("stack", &[], "echo straw; echo more straw; echo a zebracorn hides here; echo straw again"),
        ]}),
    );
    repo.wfe(&["run", "hay"]).code(0);
    let run = repo.run_id();
    let Some(browser) = Browser::start("search_finds_a_line_and_opens_the_phase_at_it") else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    open(&browser, &serve, "/search");
    // `/` focuses the query box; typing and Enter search.
    browser.wait_for("the search page", "document.querySelector('form.filters')");
    browser.keys("/");
    browser.wait_for(
        "the query box focused",
        "document.activeElement.matches('main input[name=q]')",
    );
    browser.keys("zebracorn\u{E007}");
    browser.wait_for("a result", "document.querySelector('.hits li a')");
    assert!(browser.url().contains("/search?"), "{}", browser.url());
    browser.click(".hits li a");
    browser.wait_for("the phase page", "document.querySelector('#log .log-row')");
    let url = browser.url();
    assert!(url.contains(&format!("/runs/{run}/phases/stack")), "{url}");
    // A log hit names its line when the index knows it; otherwise the
    // log's own filter (`/` on the phase page) finds it.
    if !url.ends_with("#L3") {
        browser.keys("/");
        browser.wait_for(
            "the log filter focused",
            "document.activeElement.matches('[data-log-filter]')",
        );
        browser.keys("zebracorn");
        browser.wait_for(
            "only the matching line shown",
            "document.querySelectorAll('#log .log-row').length === 1 && document.querySelector('#log .log-row').id === 'L3'",
        );
        browser.click("#L3 a.ln");
    }
    browser.wait_for(
        "line 3 highlighted, with its permalink in the address",
        "location.hash === '#L3' && document.querySelector('#L3.hl') && document.querySelector('#L3').innerText.includes('zebracorn')",
    );
}

#[test]
fn keyboard_j_k_and_enter_on_the_run_page() {
    let repo = Repo::new();
    repo.template(
        "chain",
        &json!({ "name": "chain", "phases": [
            script("one", &[], "true"), script("two", &["one"], "true"), script("three", &["two"], "true"),
        ]}),
    );
    repo.wfe(&["run", "chain"]).code(0);
    let run = repo.run_id();
    let Some(browser) = Browser::start("keyboard_j_k_and_enter_on_the_run_page") else {
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    open(&browser, &serve, &format!("/runs/{run}"));
    browser.wait_for(
        "the DAG",
        "document.querySelectorAll('#dag svg g.node').length === 3",
    );
    let selected = "(document.querySelector('[data-nav].sel') || {dataset: {}}).dataset.phase";
    browser.keys("j");
    browser.wait_for(
        "j selects the first phase",
        &format!("{selected} === 'one'"),
    );
    browser.keys("jj");
    browser.wait_for("j j moves down twice", &format!("{selected} === 'three'"));
    browser.keys("k");
    browser.wait_for("k moves up", &format!("{selected} === 'two'"));
    browser.keys("\u{E007}");
    browser.wait_for(
        "Enter opens the phase",
        "location.pathname.endsWith('/phases/two') && document.querySelector('h1')",
    );
    browser.keys("\u{E00C}");
}

#[test]
fn ten_tabs_on_live_runs_all_update() {
    let repo = Repo::new();
    let (runner_a, go_a) = blocked_run(&repo, "alpha");
    let run_a = repo.run_id();
    let (runner_b, go_b) = blocked_run(&repo, "beta");
    let run_b = repo
        .wfe_refs()
        .iter()
        .map(|r| r.trim_start_matches("refs/wfe/runs/").to_string())
        .find(|r| *r != run_a)
        .unwrap();
    let release = || {
        write_fifo_line(&go_a, "go");
        write_fifo_line(&go_b, "go");
    };
    let Some(browser) = Browser::start("ten_tabs_on_live_runs_all_update") else {
        release();
        runner_a.finish();
        runner_b.finish();
        return;
    };
    let serve = Serve::start(repo.wfe_cmd(), &[]);
    browser.goto(&serve.url);
    // Ten tabs, alternating between the two runs: with one stream per
    // visible tab, the seventh and later tabs load like the first.
    let mut tabs = Vec::new();
    for i in 0..10 {
        let tab = if i == 0 {
            browser.tabs()[0].clone()
        } else {
            browser.new_tab()
        };
        let run = if i % 2 == 0 { &run_a } else { &run_b };
        let started = std::time::Instant::now();
        browser.goto(&serve.at(&format!("/runs/{run}")));
        browser.wait_for(
            &format!("tab {} shows `work` running", i + 1),
            &format!("({PHASE_STATES}).includes('work=running')"),
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "tab {} took {:?} to load",
            i + 1,
            started.elapsed()
        );
        browser.wait_for(
            "the tab's stream open",
            "window.wfe && window.wfe.streamOpen()",
        );
        tabs.push(tab);
    }
    release();
    runner_a.finish();
    runner_b.finish();
    // Every tab shows the runs done, the last one first (it is in front).
    for (i, tab) in tabs.iter().enumerate().rev() {
        browser.switch_to(tab);
        browser.wait_for(
            &format!("tab {} shows the run completed", i + 1),
            &format!("({PHASE_STATES}) === 'first=completed work=completed lint=completed after=completed'"),
        );
    }
}
