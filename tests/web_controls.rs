//! The web view's controls against a real `wfe serve --port 0`: each one
//! changes the run as its CLI verb does (checked with `wfe show --json`
//! and git), bad input answers 422 with the CLI's message and writes
//! nothing, a change without the token or from a foreign Origin is
//! refused, a started run's runner outlives the server, templates are
//! edited with validation on save, and a provider key never comes back.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Repo, mkfifo, script, write_fifo_line};
use serde_json::{Value, json};

/// A running `wfe serve --port 0` in a test repository.
struct Web {
    child: Child,
    port: u16,
    token: String,
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Web {
    fn start(repo: &Repo) -> Web {
        let mut child = repo
            .wfe_cmd()
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // http://127.0.0.1:PORT/?token=TOKEN
        let rest = line.trim().trim_start_matches("http://127.0.0.1:");
        let (port, token) = rest.split_once("/?token=").expect(&line);
        Web {
            child,
            port: port.parse().unwrap(),
            token: token.to_string(),
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Answer {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[("X-Wfe-Token", self.token.clone())], "")
    }

    /// A form POST as a page sends it: token, Origin, urlencoded body.
    fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        self.request("POST", path, &self.change_headers(false), &form(pairs))
    }

    /// The same, asking for JSON.
    fn post_json(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        self.request("POST", path, &self.change_headers(true), &form(pairs))
    }

    fn change_headers(&self, json: bool) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("X-Wfe-Token", self.token.clone()),
            ("Origin", self.origin()),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        if json {
            h.push(("Accept", "application/json".to_string()));
        }
        h
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// HTML text as read.
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `wfe show ID --json`.
fn show(repo: &Repo, id: &str) -> Value {
    repo.wfe(&["show", id, "--json"]).json()
}

fn phase_status(doc: &Value, id: &str) -> String {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap().to_string())
        .unwrap()
}

/// Polls `wfe show` until `done` holds (bounded: a minute).
fn wait_for(repo: &Repo, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = show(repo, id);
        if done(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tip(repo: &Repo, id: &str) -> String {
    repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")])
}

fn args_template(repo: &Repo, fifo: &std::path::Path) {
    repo.template(
        "greet",
        &json!({
            "name": "greet",
            "args": {
                "type": "object",
                "required": ["who"],
                "properties": {
                    "who": { "type": "string", "description": "whom to greet" },
                    "times": { "type": "integer", "default": 1 },
                    "tone": { "enum": ["warm", "dry"] }
                }
            },
            "phases": [
                script("wait", &[], &format!("read x < {}", fifo.display())),
                script("hello", &["wait"], "echo hello {{ args.who }}"),
            ]
        }),
    );
}

#[test]
fn a_run_started_from_the_form_keeps_going_when_the_server_is_killed() {
    let repo = Repo::new();
    let fifo = repo.path().join("go.fifo");
    mkfifo(&fifo);
    args_template(&repo, &fifo);
    let web = Web::start(&repo);

    // The form is generated from the args schema.
    let page = web.get("/runs/new?template=greet");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"name="arg.who""#), "{}", page.body);
    assert!(page.body.contains("whom to greet"));
    assert!(
        page.body
            .contains(r#"<select id="f-arg.tone" name="arg.tone""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"value="1""#),
        "the default shows: {}",
        page.body
    );

    let started = web.post(
        "/runs",
        &[
            ("template", "greet"),
            ("arg.who", "web"),
            ("arg.times", "2"),
        ],
    );
    assert_eq!(started.status, 303, "{}", started.body);
    let to = started.header("location").unwrap().to_string();
    let id = to.trim_start_matches("/runs/").to_string();
    assert_eq!(repo.run_id(), id);
    let doc = show(&repo, &id);
    assert_eq!(doc["args"], json!({ "who": "web", "times": 2 }));

    // The runner is not the server: kill the server, then let the phase go on.
    let mut web = web;
    web.child.kill().unwrap();
    web.child.wait().unwrap();
    write_fifo_line(&fifo, "go");
    let done = wait_for(&repo, &id, "the run completing", |d| {
        d["status"] == "completed"
    });
    assert_eq!(phase_status(&done, "hello"), "completed");
    let log = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/hello/log.jsonl"),
    ]);
    assert!(log.contains("hello web"), "{log}");
    // Its output went to the runner's log file, not to the server's.
    assert!(
        repo.path()
            .join(".git/wfe/detached")
            .join(format!("{id}.log"))
            .exists()
    );
}

#[test]
fn bad_args_answer_422_with_the_cli_message_and_start_nothing() {
    let repo = Repo::new();
    let fifo = repo.path().join("go.fifo");
    mkfifo(&fifo);
    args_template(&repo, &fifo);
    repo.write("bad.json", r#"{"who": "x", "times": "lots"}"#);
    let cli = repo.wfe(&["run", "greet", "--args-file", "bad.json"]);
    cli.code(2);
    let web = Web::start(&repo);

    let page = web.post(
        "/runs",
        &[
            ("template", "greet"),
            ("arg.who", "x"),
            ("arg.times", "lots"),
        ],
    );
    assert_eq!(page.status, 422, "{}", page.body);
    // The CLI's message (its JSON path included), on the re-shown form
    // with what was typed.
    let line = cli
        .stderr
        .lines()
        .find(|l| l.contains("/times"))
        .unwrap_or_else(|| panic!("{}", cli.stderr))
        .trim()
        .to_string();
    assert!(
        unescape(&page.body).contains(&line),
        "{line}\n{}",
        page.body
    );
    assert!(page.body.contains(r#"value="lots""#), "{}", page.body);
    assert!(
        page.body.contains("field-error"),
        "the field is marked: {}",
        page.body
    );

    let as_json = web.post_json("/runs", &[("template", "greet"), ("arg.times", "1")]);
    assert_eq!(as_json.status, 422);
    let doc = as_json.json();
    assert_eq!(doc["ok"], false);
    assert!(doc["error"].as_str().unwrap().contains("who"), "{doc}");
    let unknown = web.post_json("/runs", &[("template", "nope")]);
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert!(
        repo.wfe_refs().is_empty(),
        "nothing was started: {:?}",
        repo.wfe_refs()
    );
}

fn gated(repo: &Repo) -> String {
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
    first.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn approve_retry_rollback_undo_and_comment_change_the_run_as_the_cli_does() {
    let repo = Repo::new();
    let id = gated(&repo);
    let web = Web::start(&repo);

    // The panel offers what applies: approving the waiting gate, with a
    // form from its output schema.
    let panel = web.get(&format!("/runs/{id}/controls"));
    assert_eq!(panel.status, 200, "{}", panel.body);
    assert!(panel.body.contains(r#"name="art.text""#), "{}", panel.body);
    assert!(panel.body.contains("Approve ok"));
    assert!(
        !panel.body.contains(r#"data-verb="pause""#),
        "no runner: no pause"
    );

    // A bad approval: 422, the CLI's message, nothing written.
    let before = tip(&repo, &id);
    let bad = web.post(
        &format!("/runs/{id}/approve"),
        &[
            ("phase", "ok"),
            ("output", "note"),
            ("artifact_json", r#"{"txt": 1}"#),
        ],
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("control-error"), "{}", bad.body);
    assert!(bad.body.contains("text"), "{}", bad.body);
    assert_eq!(tip(&repo, &id), before);

    // Approved through the generated form: the run goes on (a runner is started).
    let ok = web.post(
        &format!("/runs/{id}/approve"),
        &[
            ("phase", "ok"),
            ("output", "note"),
            ("art.text", "ship it"),
            ("back", "/runs/x/controls"),
        ],
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/runs/x/controls"));
    let done = wait_for(&repo, &id, "the approved run completing", |d| {
        d["status"] == "completed"
    });
    assert_eq!(phase_status(&done, "ok"), "completed");
    let log = repo.git(&["show", &format!("refs/wfe/runs/{id}:phases/ship/log.jsonl")]);
    assert!(log.contains("ship it"), "{log}");

    // Comment, on the run and on a phase (JSON answers).
    let c = web.post_json(&format!("/runs/{id}/comment"), &[("text", "looks good")]);
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.json()["ok"], true);
    let empty = web.post_json(&format!("/runs/{id}/comment"), &[("text", " ")]);
    assert_eq!(empty.status, 422);
    assert!(
        empty.json()["error"]
            .as_str()
            .unwrap()
            .contains("the comment is empty")
    );
    let comments = repo.git(&["show", &format!("refs/wfe/runs/{id}:comments.jsonl")]);
    assert!(comments.contains("looks good"), "{comments}");

    // Retry a phase: attempt 2, driven by a runner the server starts.
    let r = web.post_json(&format!("/runs/{id}/retry"), &[("phase", "ship")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let retried = wait_for(&repo, &id, "the retry completing", |d| {
        d["status"] == "completed"
            && d["phases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == "ship" && p["attempts"] == 2)
    });
    assert_eq!(phase_status(&retried, "ship"), "completed");
    let script_override = web.post_json(
        &format!("/runs/{id}/retry"),
        &[("phase", "ship"), ("model", "m")],
    );
    assert_eq!(script_override.status, 422, "{}", script_override.body);
    assert!(
        script_override.json()["error"]
            .as_str()
            .unwrap()
            .contains("--model")
    );

    // Roll back to the gate's approval checkpoint, then undo.
    let before = tip(&repo, &id);
    let to = repo
        .git(&["log", "--format=%H %s", &format!("refs/wfe/runs/{id}")])
        .lines()
        .find(|l| l.contains("ok") && l.contains("approved"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .unwrap_or_else(|| {
            panic!(
                "{}",
                repo.git(&["log", "--oneline", &format!("refs/wfe/runs/{id}")])
            )
        });
    let rb = web.post(&format!("/runs/{id}/rollback"), &[("to", &to)]);
    assert_eq!(rb.status, 303, "{}", rb.body);
    // At the checkpoint, or one on top of it carrying the comment made after it.
    let now = tip(&repo, &id);
    let parent = repo.git(&["rev-parse", &format!("{}^", now.trim())]);
    assert!(
        now.trim() == to || parent.trim() == to,
        "{now} {parent} {to}"
    );
    let un = web.post(&format!("/runs/{id}/undo"), &[]);
    assert_eq!(un.status, 303, "{}", un.body);
    assert_eq!(tip(&repo, &id), before);

    let nope = web.post_json(&format!("/runs/{id}/explode"), &[]);
    assert_eq!(nope.status, 404);
}

#[test]
fn auto_skip_cancel_and_accept_act_like_their_verbs() {
    let repo = Repo::new();
    let id = gated(&repo);
    let web = Web::start(&repo);
    let off = web.post_json(&format!("/runs/{id}/auto"), &[("mode", "off")]);
    assert_eq!(off.status, 200, "{}", off.body);
    let record: Value =
        serde_json::from_str(&repo.git(&["show", &format!("refs/wfe/runs/{id}:run.json")]))
            .unwrap();
    assert_eq!(record["auto"], false);
    let bad = web.post_json(&format!("/runs/{id}/auto"), &[("mode", "sometimes")]);
    assert_eq!(bad.status, 404);
    let waiting = web.post(&format!("/runs/{id}/skip"), &[("phase", "ok")]);
    assert_eq!(waiting.status, 422, "{}", waiting.body);
    assert!(
        unescape(&waiting.body).contains("cannot skip phase `ok`"),
        "{}",
        waiting.body
    );
    let skip = web.post(&format!("/runs/{id}/skip"), &[("phase", "ship")]);
    assert_eq!(skip.status, 303, "{}", skip.body);
    assert_eq!(phase_status(&show(&repo, &id), "ship"), "skipped");
    let accept = web.post_json(&format!("/runs/{id}/accept"), &[("phase", "build")]);
    assert_eq!(
        accept.status, 422,
        "a completed phase has nothing to accept: {}",
        accept.body
    );
    let cancel = web.post(&format!("/runs/{id}/cancel"), &[]);
    assert_eq!(cancel.status, 303, "{}", cancel.body);
    assert_eq!(show(&repo, &id)["status"], "cancelled");
    let again = web.post_json(&format!("/runs/{id}/cancel"), &[]);
    assert!(again.status == 422 || again.status == 409, "{}", again.body);
}

#[test]
fn a_change_without_the_token_or_from_a_foreign_origin_is_refused_and_writes_nothing() {
    let repo = Repo::new();
    let id = gated(&repo);
    let web = Web::start(&repo);
    let before = tip(&repo, &id);
    let body = form(&[("text", "sneaky")]);
    let ct = (
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    );
    let no_token = web.request(
        "POST",
        &format!("/runs/{id}/comment"),
        &[ct.clone(), ("Origin", web.origin())],
        &body,
    );
    assert_eq!(no_token.status, 401);
    let foreign = web.request(
        "POST",
        &format!("/runs/{id}/comment"),
        &[
            ct.clone(),
            ("Origin", "http://evil.example".into()),
            ("X-Wfe-Token", web.token.clone()),
        ],
        &body,
    );
    assert_eq!(foreign.status, 403);
    let start = web.request(
        "POST",
        "/runs",
        &[
            ct,
            ("Origin", "http://evil.example".into()),
            ("X-Wfe-Token", web.token.clone()),
        ],
        &form(&[("template", "gated")]),
    );
    assert_eq!(start.status, 403);
    assert_eq!(tip(&repo, &id), before);
    assert_eq!(repo.wfe_refs().len(), 1);
}

#[test]
fn an_artifact_edited_in_the_browser_is_validated_before_it_is_committed() {
    let repo = Repo::new();
    repo.template(
        "noted",
        &json!({ "name": "noted", "phases": [
            { "id": "ok", "kind": "gate", "outputs": { "note": "message" } },
        ]}),
    );
    let first = repo.wfe(&["run", "noted", "--json"]);
    let id = first.json()["id"].as_str().unwrap().to_string();
    repo.wfe(&["approve", &id, "ok"]).code(0);
    repo.write("n.json", r#"{"text": "first"}"#);
    let web = Web::start(&repo);
    let panel = web.get(&format!("/runs/{id}/controls?edit=ok/note"));
    assert_eq!(panel.status, 200, "{}", panel.body);
    assert!(panel.body.contains(r#"name="json""#), "{}", panel.body);

    let before = tip(&repo, &id);
    let typed = r#"{"txt": "oops"}"#;
    let bad = web.post(
        &format!("/runs/{id}/edit"),
        &[("phase", "ok"), ("artifact", "note"), ("json", typed)],
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body.contains("still invalid; nothing committed"),
        "{}",
        bad.body
    );
    assert!(
        unescape(&bad.body).contains(typed),
        "what was typed comes back: {}",
        bad.body
    );
    assert_eq!(tip(&repo, &id), before);

    let good = web.post(
        &format!("/runs/{id}/edit"),
        &[
            ("phase", "ok"),
            ("artifact", "note"),
            ("json", r#"{"text": "edited"}"#),
        ],
    );
    assert_eq!(good.status, 303, "{}", good.body);
    let note = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/ok/artifacts/note.json"),
    ]);
    assert!(note.contains("edited"), "{note}");
}

#[test]
fn templates_are_listed_validated_cloned_and_edited_with_validation_on_save() {
    let repo = Repo::new();
    repo.template(
        "mine",
        &json!({ "name": "mine", "phases": [script("a", &[], "true"), script("b", &["a"], "true")] }),
    );
    let web = Web::start(&repo);
    let list = web.get("/templates");
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(r#"href="/templates/mine""#),
        "{}",
        list.body
    );
    let shown = web.get("/templates/mine");
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(
        shown
            .body
            .contains("<div id=\"dag\" class=\"drawing\"><svg")
            && shown.body.contains("<g class=\"node st-pending"),
        "the DAG preview, every phase pending: {}",
        shown.body
    );
    let valid = web.post("/templates/mine/validate", &[]);
    assert_eq!(valid.status, 200, "{}", valid.body);
    assert!(
        valid.body.contains(r#"data-validated="true""#),
        "{}",
        valid.body
    );

    // Clone, as `wfe template new copy --from mine`.
    let cloned = web.post("/templates/mine/clone", &[("name", "copy")]);
    assert_eq!(cloned.status, 303, "{}", cloned.body);
    assert_eq!(cloned.header("location"), Some("/templates/copy/edit"));
    let path = repo.path().join(".wfe/templates/copy.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let bad_name = web.post_json("/templates/mine/clone", &[("name", "Bad Name")]);
    assert_eq!(bad_name.status, 422);

    // An edit with an error: 422 with the CLI's message (naming the
    // file and the JSON path), nothing written.
    let broken = original.replace(
        "\"needs\": [\n        \"a\"\n      ]",
        "\"needs\": [\"zzz\"]",
    );
    assert_ne!(broken, original, "{original}");
    let bad = web.post("/templates/copy/edit", &[("text", &broken)]);
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.body.contains(".wfe/templates/copy.json"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("zzz"), "{}", bad.body);
    assert!(
        !bad.body.contains(".git/wfe/web"),
        "the scratch path is not shown: {}",
        bad.body
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    let cli = repo.write(".git/wfe-test-broken.json", &broken);
    let said = repo.wfe(&["template", "validate", cli.to_str().unwrap()]);
    said.code(2);

    // Fixed: saved.
    let fixed = original.replace("\"true\"", "\"echo fixed\"");
    let good = web.post("/templates/copy/edit", &[("text", &fixed)]);
    assert_eq!(good.status, 303, "{}", good.body);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), fixed);
    let builtin = web.get("/templates/nope/edit");
    assert_eq!(builtin.status, 404);
}

#[test]
fn a_provider_key_set_in_the_browser_is_stored_and_never_shown() {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "main": { "kind": "anthropic", "api_key_env": "MAIN_KEY" } },
            "roles": { "coder": { "provider": "main", "model": "m1" } }
        }))
        .unwrap(),
    );
    let web = Web::start(&repo);
    let page = web.get("/providers");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("missing"), "{}", page.body);

    let key = "sk-fake-0123456789abcdef";
    let set = web.post("/providers/main/key", &[("key", key)]);
    assert_eq!(set.status, 303, "{}", set.body);
    let set_json = web.post_json("/providers/main/key", &[("key", key)]);
    assert_eq!(set_json.status, 200);
    assert!(!set_json.body.contains(key));
    let empty = web.post_json("/providers/main/key", &[("key", "")]);
    assert_eq!(empty.status, 422);
    // Stored where `wfe provider set-key` stores it.
    let listed = repo.wfe(&["provider", "list", "--json"]).json();
    assert_eq!(listed["providers"][0]["key"]["status"], "file", "{listed}");

    // Add a provider and change a role's model, as the CLI does.
    let add = web.post(
        "/providers/add",
        &[
            ("name", "local"),
            ("kind", "openai-compatible"),
            ("base_url", "http://127.0.0.1:9/v1"),
        ],
    );
    assert_eq!(add.status, 303, "{}", add.body);
    let role = web.post("/roles/coder", &[("provider", "local"), ("model", "m2")]);
    assert_eq!(role.status, 303, "{}", role.body);
    let listed = repo.wfe(&["provider", "list", "--json"]).json();
    assert_eq!(
        listed["roles"][0],
        json!({ "role": "coder", "provider": "local", "model": "m2" })
    );
    let bad_kind = web.post_json("/providers/add", &[("name", "x"), ("kind", "nope")]);
    assert_eq!(bad_kind.status, 422, "{}", bad_kind.body);

    // The key is in no page.
    for path in ["/providers", "/", "/templates", "/runs/new"] {
        let a = web.get(path);
        assert!(!a.body.contains(key), "{path} shows the key");
        assert!(!a.body.contains("sk-fake"), "{path} shows part of the key");
    }
    let page = web.get("/providers");
    assert!(
        page.body.contains("present (credentials file)"),
        "{}",
        page.body
    );
}
