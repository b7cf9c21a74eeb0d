//! `wfe serve`: the real server started on a free port in a temporary
//! repository, spoken to over raw HTTP/1.1 (`std::net::TcpStream`, so the
//! Host and Origin headers are the test's to choose). Waits are bounded
//! reads of the server's own output, never sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Repo, mkfifo, read_fifo_line, script, write_fifo_line};

const ANTHROPIC: &str = "sk-ant-FAKEKEYLEAK-0123456789abcdef";
const OPENAI: &str = "sk-FAKEKEYLEAK-openai-0123456789";

/// A running `wfe serve`; killed when dropped.
pub(crate) struct Server {
    child: Child,
    port: u16,
    token: String,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `wfe serve --port 0 ARGS` in `repo` with fake API keys in
    /// its environment, and reads the URL it prints.
    pub(crate) fn start(repo: &Repo, args: &[&str]) -> Server {
        let mut child = repo
            .wfe_cmd()
            .args(["serve", "--port", "0"])
            .args(args)
            .env("ANTHROPIC_API_KEY", ANTHROPIC)
            .env("OPENAI_API_KEY", OPENAI)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("the URL is not on 127.0.0.1: {url:?}"));
        let (port, token) = rest.split_once("/?token=").expect("a token in the URL");
        Server {
            port: port.parse().unwrap(),
            token: token.to_string(),
            url,
            child,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// GET with the token header.
    pub(crate) fn get(&self, path: &str) -> Response {
        let token = self.token.clone();
        self.request("GET", path, &[("X-Wfe-Token", &token)])
    }

    /// GET without any credential.
    fn get_bare(&self, path: &str) -> Response {
        self.request("GET", path, &[])
    }

    /// A request with the right Host and `headers` (a `Host` among them replaces it).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.host()));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        Response::parse(&raw)
    }

    /// Opens `/events?QUERY` and returns the stream, past the headers.
    fn events(&self, query: &str) -> BufReader<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut w = stream.try_clone().unwrap();
        write!(
            w,
            "GET /events?{query} HTTP/1.1\r\nHost: {}\r\nX-Wfe-Token: {}\r\n\r\n",
            self.host(),
            self.token
        )
        .unwrap();
        let mut r = BufReader::new(stream);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {
                    if status.is_empty() {
                        status = line;
                    }
                }
                Err(_) => assert!(Instant::now() < deadline, "no event stream headers"),
            }
        }
        assert!(status.contains(" 200 "), "{status}");
        r
    }
}

/// Reads the event stream until an event named `name` arrives (bounded);
/// returns its data and everything read on the way.
fn next_event(stream: &mut BufReader<TcpStream>, name: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let mut event = String::new();
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line) {
            Ok(0) => panic!("the stream ended before a `{name}` event; read:\n{seen}"),
            Ok(_) => {
                seen.push_str(&line);
                // Chunk-size lines of the chunked encoding are not fields.
                let line = line.trim_end();
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ")
                    && event == name
                {
                    return (d.to_string(), seen);
                }
            }
            Err(_) => assert!(
                Instant::now() < deadline,
                "no `{name}` event within 20 s; read:\n{seen}"
            ),
        }
    }
}

/// An HTTP response, as far as the tests look at it.
pub(crate) struct Response {
    pub(crate) status: u16,
    head: String,
    pub(crate) body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Response {
            status,
            head: head.to_string(),
            body: if chunked {
                dechunk(body)
            } else {
                body.to_string()
            },
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.status, 200, "{}\n{}", self.head, self.body);
        self
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A repository with one completed run: a script phase writing a review
/// (a built-in schema, with markup in its text) and one more phase.
fn repo_with_run() -> (Repo, String) {
    let repo = Repo::new();
    let review = json!({
        "verdict": "approve",
        "summary": "fine <script>alert(1)</script>",
        "findings": [{ "severity": "nit", "message": "rename the <b>thing</b>" }]
    });
    let mut make = script(
        "make",
        &[],
        &format!(
            "echo building; echo 'needle in the log'; echo '{}' > \"$WFE_OUT/review.json\"",
            review
        ),
    );
    make["outputs"] = json!({ "review": "review" });
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [make, script("check", &["make"], "echo checked")] }),
    );
    repo.wfe(&["run", "t"]).code(0);
    let id = repo.run_id();
    (repo, id)
}

#[test]
fn pages_and_the_api_answer_with_the_token_and_refuse_without() {
    let (repo, id) = repo_with_run();
    let s = Server::start(&repo, &[]);
    let pages = [
        "/".to_string(),
        "/?status=completed&template=t&q=make".to_string(),
        "/?view=board&template=t".to_string(),
        format!("/runs/{id}"),
        format!("/runs/{id}?fragment=live"),
        format!("/runs/{id}/phases/make"),
        format!("/runs/{id}/phases/make?attempt=1"),
        format!("/diff?a={id}&b={id}"),
        "/search?q=needle".to_string(),
        "/api/runs".to_string(),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/phases/make"),
        format!("/api/runs/{id}/phases/make/log"),
        format!("/api/diff?a={id}&b={id}"),
        "/api/search?q=needle".to_string(),
        "/assets/app.js".to_string(),
        "/assets/app.css".to_string(),
    ];
    for page in &pages {
        s.get(page).ok();
        let bare = s.get_bare(page);
        assert_eq!(bare.status, 401, "{page} without the token: {}", bare.head);
        assert!(!bare.body.contains("make"), "{page}: {}", bare.body);
    }

    // The runs page: the run, its template, its truthful status.
    let runs = s.get("/");
    assert!(runs.body.contains(&id[..10]), "{}", runs.body);
    assert!(runs.body.contains("completed"));
    let filtered = s.get("/?status=failed");
    assert!(!filtered.body.contains(&id[..10]));
    assert_eq!(s.get("/?status=nonsense").status, 400);
    // The board: a column per phase, the run in the `done` column.
    let board = s.get("/?view=board&template=t").body;
    for column in ["make", "check", "done"] {
        assert!(board.contains(&format!("<h2>{column} ")), "{board}");
    }
    // The run page: the DAG drawn as SVG in its container.
    let run = s.get(&format!("/runs/{id}")).body;
    assert!(
        run.contains("<div id=\"dag\" class=\"drawing\"><svg"),
        "{run}"
    );
    assert!(run.contains(&format!("/runs/{id}/phases/check")));
    // The phase page: the review as a card, escaped.
    let phase = s.get(&format!("/runs/{id}/phases/make")).body;
    assert!(phase.contains("badge b-approve"), "{phase}");
    assert!(phase.contains("&lt;script&gt;alert(1)&lt;"), "{phase}");
    assert!(!phase.contains("<script>alert"), "{phase}");
    assert!(phase.contains("rename the &lt;b&gt;thing&lt;"));
    assert_eq!(
        s.get(&format!("/runs/{id}/phases/make?attempt=7")).status,
        404
    );
    assert_eq!(s.get(&format!("/runs/{id}/phases/nope")).status, 404);
    assert_eq!(s.get("/runs/zzzz").status, 404);
    // The log as JSON, numbered for permalinks.
    let log = s.get(&format!("/api/runs/{id}/phases/make/log")).json();
    assert_eq!(log[1]["line"], "needle in the log");
    assert_eq!(log[1]["n"], 1);
    // Search results link to the phase (and the line, when a hit has one).
    let found = s.get("/search?q=needle").body;
    assert!(
        found.contains(&format!("/runs/{id}/phases/make")),
        "{found}"
    );
    assert!(found.contains("<mark>needle</mark>"), "{found}");
    // Assets say what they are and may be cached.
    let js = s.get("/assets/app.js");
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.header("cache-control").unwrap().contains("max-age"));

    // The API answers with the documents `--json` prints.
    let same = |path: &str, args: &[&str]| {
        assert_eq!(s.get(path).json(), repo.wfe(args).code(0).json(), "{path}");
    };
    same("/api/runs", &["list", "--json"]);
    same(&format!("/api/runs/{id}"), &["show", &id, "--json"]);
    same(
        &format!("/api/runs/{id}/phases/make"),
        &["show", &id, "make", "--json"],
    );
    same(
        &format!("/api/diff?a={id}&b={id}"),
        &["diff", &id, &id, "--json"],
    );
    let api = s.get("/api/search?q=needle").json();
    let cli = repo.wfe(&["search", "needle", "--json"]).code(0).json();
    assert_eq!(api["hits"], cli["hits"]);
    assert_eq!(
        s.get("/api/runs/zzzz").json()["error"]
            .as_str()
            .map(|e| e.contains("zzzz")),
        Some(true)
    );
}

#[test]
fn the_token_in_the_url_sets_a_strict_cookie_and_goes_away() {
    let (repo, _) = repo_with_run();
    let s = Server::start(&repo, &[]);
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    let path = s.url.trim_start_matches(&format!("http://{}", s.host()));
    let first = s.get_bare(path);
    assert_eq!(first.status, 303, "{}", first.head);
    assert_eq!(first.header("location").as_deref(), Some("/"));
    let cookie = first.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    s.request("GET", "/", &[("Cookie", &pair)]).ok();
    // A wrong token is refused, in the URL or in the cookie.
    assert_eq!(s.get_bare("/?token=nope").status, 401);
    let wrong = format!("wfe_token_{}=nope", s.port);
    assert_eq!(s.request("GET", "/", &[("Cookie", &wrong)]).status, 401);
    // Another server has another token.
    let other = Server::start(&repo, &[]);
    assert_ne!(other.token, s.token);
}

#[test]
fn changes_need_the_token_and_this_servers_origin_and_hosts_are_checked() {
    let (repo, id) = repo_with_run();
    let s = Server::start(&repo, &[]);
    let token = s.token.clone();
    let own = format!("http://{}", s.host());
    let path = format!("/runs/{id}");
    // No token: refused, whatever the origin.
    assert_eq!(s.request("POST", &path, &[("Origin", &own)]).status, 401);
    // Token but no Origin, or a foreign one: refused.
    assert_eq!(
        s.request("POST", &path, &[("X-Wfe-Token", &token)]).status,
        403
    );
    let foreign = s.request(
        "POST",
        &path,
        &[("X-Wfe-Token", &token), ("Origin", "http://evil.example")],
    );
    assert_eq!(foreign.status, 403);
    let other_port = format!("http://127.0.0.1:{}", s.port.wrapping_add(1));
    assert_eq!(
        s.request(
            "POST",
            &path,
            &[("X-Wfe-Token", &token), ("Origin", &other_port)]
        )
        .status,
        403
    );
    // Token and own origin: past the guard (this route takes no POST).
    let passed = s.request("POST", &path, &[("X-Wfe-Token", &token), ("Origin", &own)]);
    assert_eq!(passed.status, 405, "{}", passed.head);

    // DNS rebinding: any other Host is refused, even with the token.
    let port = s.port.to_string();
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost:{}", s.port.wrapping_add(1)),
        format!("0.0.0.0:{port}"),
    ] {
        let r = s.request("GET", "/", &[("Host", &host), ("X-Wfe-Token", &token)]);
        assert_eq!(r.status, 403, "Host {host}: {}", r.head);
    }
    s.request(
        "GET",
        "/",
        &[
            ("Host", &format!("localhost:{port}")),
            ("X-Wfe-Token", &token),
        ],
    )
    .ok();

    // --public-read: pages without the token, changes still refused.
    let open = Server::start(&repo, &["--public-read"]);
    open.get_bare("/").ok();
    open.get_bare("/api/runs").ok();
    let own = format!("http://{}", open.host());
    assert_eq!(open.request("POST", "/", &[("Origin", &own)]).status, 401);
    let r = open.request("GET", "/", &[("Host", "evil.example")]);
    assert_eq!(r.status, 403);
}

#[test]
fn the_server_listens_on_loopback_only() {
    let (repo, _) = repo_with_run();
    let s = Server::start(&repo, &[]);
    // The machine's address on its default route, if it has one.
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("192.0.2.1:9").map(|()| u))
        .and_then(|u| u.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = outward {
        let refused = TcpStream::connect_timeout(
            &std::net::SocketAddr::new(ip, s.port),
            Duration::from_secs(2),
        );
        assert!(refused.is_err(), "the server answered on {ip}");
    }
    // Not on the IPv6 loopback either: 127.0.0.1 only.
    assert!(TcpStream::connect(("::1", s.port)).is_err());
    s.get("/").ok();
}

#[test]
fn no_api_key_reaches_a_page_the_api_or_the_event_stream() {
    let (repo, id) = repo_with_run();
    let s = Server::start(&repo, &[]);
    let mut events = s.events(&format!("run={id}&phase=make"));
    let mut everything = String::new();
    for page in [
        "/".to_string(),
        format!("/runs/{id}"),
        format!("/runs/{id}/phases/make"),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/phases/make"),
        "/search?q=needle".to_string(),
        "/api/search?q=sk".to_string(),
        "/assets/app.js".to_string(),
    ] {
        let r = s.get(&page);
        everything.push_str(&r.head);
        everything.push_str(&r.body);
    }
    repo.wfe(&["comment", &id, "a comment"]).code(0);
    let (_, seen) = next_event(&mut events, "run");
    everything.push_str(&seen);
    for key in [ANTHROPIC, OPENAI, "FAKEKEYLEAK"] {
        assert!(!everything.contains(key), "`{key}` was sent");
    }
}

#[test]
fn the_event_stream_announces_a_moved_ref_and_live_log_lines() {
    let repo = Repo::new();
    let (ready, go) = (repo.path().join("ready"), repo.path().join("go"));
    mkfifo(&ready);
    mkfifo(&go);
    repo.write(".wfe/config.json", r#"{ "secrets": ["DEPLOY_TOKEN"] }"#);
    let mut talk = script(
        "talk",
        &[],
        &format!(
            "echo \"first $DEPLOY_TOKEN\"; echo r > {}; read x < {}; echo second",
            ready.display(),
            go.display()
        ),
    );
    talk["secrets"] = json!(["DEPLOY_TOKEN"]);
    repo.template("t", &json!({ "name": "t", "phases": [talk] }));
    let mut runner = repo
        .wfe_cmd()
        .env("DEPLOY_TOKEN", "tok-SSELEAK-42")
        .args(["run", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    read_fifo_line(&ready);
    let id = repo.run_id();
    let s = Server::start(&repo, &[]);

    // A running phase: its live output so far, masked, then new lines.
    let mut events = s.events(&format!("run={id}&phase=talk"));
    let (data, _) = next_event(&mut events, "log");
    let entries: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(entries[0]["text"], "first ***", "{data}");
    // The runs page says running: a runner holds the run.
    assert!(s.get("/").body.contains("s-running"));
    let page = s.get(&format!("/runs/{id}/phases/talk")).body;
    assert!(
        page.contains("data-phase=\"talk\""),
        "the page follows the live phase"
    );

    write_fifo_line(&go, "go");
    let mut seen = String::new();
    loop {
        let (data, all) = next_event(&mut events, "log");
        seen.push_str(&all);
        if data.contains("second") {
            break;
        }
    }
    // The phase ends: its checkpoint moves the ref.
    let (data, all) = next_event(&mut events, "run");
    seen.push_str(&all);
    assert!(data.contains(&id), "{data}");
    assert!(runner.wait().unwrap().success());
    assert!(!seen.contains("SSELEAK"), "{seen}");

    // A comment moves the ref again: one more `run` event, and `runs`.
    repo.wfe(&["comment", &id, "seen live"]).code(0);
    let tip = repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]);
    // Events of the run's end may still be queued before it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (data, _) = next_event(&mut events, "run");
        if data.contains(tip.trim()) {
            break;
        }
        assert!(Instant::now() < deadline, "no `run` event with tip {tip}");
    }
    // The fragment the page re-fetches shows the comment.
    let fragment = s.get(&format!("/runs/{id}?fragment=live")).body;
    assert!(fragment.contains("seen live"), "{fragment}");
    assert!(!fragment.contains("<html"), "a fragment, not a page");
}

#[test]
fn several_repositories_are_switched_with_repo_n() {
    let (a, id_a) = repo_with_run();
    let b = Repo::new();
    // Seeds are per repository: two calls first, so b's run id is not a's.
    b.wfe(&["list"]).code(0);
    b.wfe(&["list"]).code(0);
    b.template(
        "other",
        &json!({ "name": "other", "phases": [script("only", &[], "echo hi")] }),
    );
    b.wfe(&["run", "other"]).code(0);
    let id_b = b.run_id();
    let s = Server::start(
        &a,
        &[
            "--repo",
            a.path().to_str().unwrap(),
            "--repo",
            b.path().to_str().unwrap(),
        ],
    );
    let first = s.get("/").body;
    assert!(first.contains(&id_a[..10]) && !first.contains(&id_b[..10]));
    let second = s.get("/?repo=1").body;
    assert!(
        second.contains(&id_b[..10]) && !second.contains(&id_a[..10]),
        "{second}"
    );
    // Links keep to the repository.
    assert!(second.contains(&format!("/runs/{id_b}?repo=1")), "{second}");
    s.get(&format!("/runs/{id_b}?repo=1")).ok();
    assert_eq!(s.get(&format!("/runs/{id_b}")).status, 404);
    assert_eq!(s.get("/?repo=2").status, 404);
    assert_eq!(s.get("/?repo=x").status, 400);
    assert_eq!(s.get("/api/runs?repo=1").json()[0]["id"], id_b);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let (repo, _) = repo_with_run();
    let s = Server::start(&repo, &[]);
    let port = s.port.to_string();
    let out = repo.wfe(&["serve", "--port", &port]);
    out.code(2);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

#[test]
fn the_run_page_draws_the_dag_unfolds_groups_and_shows_the_timeline() {
    let repo = Repo::new();
    let doc = json!({ "name": "g", "phases": [
        { "id": "build", "kind": "script", "run": "true" },
        { "id": "test", "kind": "script", "needs": ["build"], "matrix": "M", "run": "true" },
        { "id": "lint", "kind": "script", "needs": ["build"], "matrix": "M", "run": "true" }
    ]});
    let text = serde_json::to_string_pretty(&doc)
        .unwrap()
        .replace("\"M\"", r#"{ "n": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }"#);
    repo.write(".wfe/templates/g.json", &text);
    repo.wfe(&["run", "g"]).code(0);
    let id = repo.run_id();
    let s = Server::start(&repo, &[]);

    // Folded: one node per matrix, each linking to its unfolding.
    let page = s.get(&format!("/runs/{id}")).body;
    assert_eq!(page.matches("<g class=\"node ").count(), 3, "{page}");
    assert!(
        page.contains(&format!("href=\"/runs/{id}?expand=test\"")),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/runs/{id}/phases/build\"")));

    // Unfolding `test` keeps it unfolded when `lint` unfolds too.
    let page = s.get(&format!("/runs/{id}?expand=test")).body;
    assert_eq!(page.matches("<g class=\"node ").count(), 12, "{page}");
    assert!(
        page.contains(&format!("href=\"/runs/{id}?expand=lint&amp;expand=test\"")),
        "{page}"
    );
    let page = s.get(&format!("/runs/{id}?expand=test&expand=lint")).body;
    assert_eq!(page.matches("<g class=\"node ").count(), 21, "{page}");
    assert!(page.contains("fold groups"));
    // The live fragment (what SSE refreshes fetch) honours the same query.
    let live = s.get(&format!("/runs/{id}?expand=test&fragment=live")).body;
    assert_eq!(live.matches("<g class=\"node ").count(), 12, "{live}");

    // The timeline: a Gantt drawing, reached from a tab on the page.
    let page = s.get(&format!("/runs/{id}")).body;
    assert!(page.contains(&format!("href=\"/runs/{id}?view=timeline\"")));
    let gantt = s.get(&format!("/runs/{id}?view=timeline")).body;
    assert!(
        gantt.contains("class=\"row st-completed folded\" data-phase=\"test\""),
        "{gantt}"
    );
    assert!(!gantt.contains("<g class=\"node "), "{gantt}");

    // Another repository's links carry `repo=N`.
    let other = Repo::new();
    let here = repo.path().to_str().unwrap();
    let s2 = Server::start(
        &repo,
        &["--repo", other.path().to_str().unwrap(), "--repo", here],
    );
    let page = s2.get(&format!("/runs/{id}?repo=1")).body;
    assert!(
        page.contains(&format!("href=\"/runs/{id}/phases/build?repo=1\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"/runs/{id}?expand=test&amp;repo=1\"")),
        "{page}"
    );

    // The template page previews the same drawing, every phase pending, no links.
    let t = s.get("/templates/g").body;
    assert_eq!(t.matches("<g class=\"node st-pending").count(), 3, "{t}");
    assert!(!t.contains("href=\"/runs/g"), "{t}");
}

/// Writes `n` runs of template `feature` (two completed phases each)
/// straight through the run store, the newest last; every seventh one
/// `failed`.
fn many_runs(repo: &Repo, n: usize) {
    use wfe::store::{Change, GitStore, Message, RunId, RunStore, Trailer};
    // No background `git gc --auto` packing the refs while the server lists them.
    repo.git(&["config", "gc.auto", "0"]);
    let store = GitStore::discover(repo.path()).unwrap();
    let template = json!({ "name": "feature", "phases": [
        { "id": "a", "kind": "script", "run": "true" },
        { "id": "b", "kind": "script", "run": "true", "needs": ["a"] }
    ]});
    for i in 0..n {
        let millis = 1_767_225_600_000u64 + i as u64;
        let crockford = b"0123456789abcdefghjkmnpqrstvwxyz";
        let id: String = (0..10)
            .rev()
            .map(|k| crockford[((millis >> (k * 5)) & 31) as usize] as char)
            .chain((0..16).map(|k| crockford[(i * 7 + k * 13) % 32] as char))
            .collect();
        let run = RunId::parse(&id).unwrap();
        let status = if i % 7 == 0 { "failed" } else { "completed" };
        let record = json!({
            "id": id, "template": "feature", "status": status, "args": {},
            "template_source": ".wfe/templates/feature.json", "template_digest": "0",
            "auto": true, "base_commit": "0".repeat(40),
            "schemas": {}, "created_at": "2026-01-01T00:00:00.000Z"
        });
        let mut changes = vec![
            Change::write("run.json", record.to_string().into_bytes()),
            Change::write("template.json", template.to_string().into_bytes()),
        ];
        for p in ["a", "b"] {
            let state = json!({ "id": p, "kind": "script", "status": "completed", "attempt": 1 });
            changes.push(Change::write(
                format!("phases/{p}/state.json"),
                state.to_string().into_bytes(),
            ));
        }
        let message = Message::new("wfe: phases completed")
            .trailer(Trailer::Run, &id)
            .trailer(Trailer::Template, "feature")
            .trailer(Trailer::Status, status);
        store
            .commit(&run, None, &changes, &message, 1_767_225_600 + i as i64)
            .unwrap();
    }
}

/// Paging links are escaped by the template engine (`/` as `&#x2f;`).
#[test]
fn the_runs_page_pages_a_hundred_at_a_time_and_board_columns_are_capped() {
    let repo = Repo::new();
    many_runs(&repo, 205);
    let s = Server::start(&repo, &[]);
    let rows = |body: &str| body.matches("<tr data-nav>").count();

    let first = s.get("/").body;
    assert_eq!(rows(&first), 100, "{first}");
    assert!(first.contains("Runs 1–100 of 205 · page 1 of 3"), "{first}");
    assert!(first.contains("href=\"&#x2f;?page=2\""), "{first}");
    assert!(!first.contains("rel=\"prev\""));
    let last = s.get("/?page=3").body;
    assert_eq!(rows(&last), 5, "{last}");
    assert!(last.contains("Runs 201–205 of 205"), "{last}");
    assert!(last.contains("href=\"&#x2f;?page=2\""), "{last}");
    assert!(!last.contains("rel=\"next\""));
    // Past the end: the last page.
    let past = s.get("/?page=99").body;
    assert_eq!(rows(&past), 5, "{past}");
    // Pages are newest first: page 1 and page 3 share no run.
    let first_ids: Vec<&str> = first
        .split("<td><a href=\"/runs/")
        .skip(1)
        .map(|t| &t[..26])
        .collect();
    assert_eq!(first_ids.len(), 100);
    assert!(first_ids.iter().all(|id| !last.contains(id)));
    // Filters apply over every run before paging, and paging links keep them.
    let failed = s.get("/?status=failed").body;
    assert_eq!(rows(&failed), 30, "{failed}");
    assert!(failed.contains("Runs 1–30 of 30"), "{failed}");
    let done = s.get("/?status=completed&page=2").body;
    assert_eq!(rows(&done), 75, "{done}");
    assert!(
        done.contains("href=\"&#x2f;?status=completed\"") && done.contains("Runs 101–175 of 175"),
        "{done}"
    );
    // The board: every run counted, the first 50 of a column shown.
    let board = s.get("/?view=board&template=feature").body;
    assert!(
        board.contains("<h2>done <span class=\"count\">205</span>"),
        "{board}"
    );
    assert_eq!(board.matches("class=\"card\"").count(), 50);
    assert!(board.contains("and 155 more"), "{board}");
}
