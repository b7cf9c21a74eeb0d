//! Real-browser harness: headless Chromium driven through chromedriver
//! (W3C WebDriver, the `fantoccini` client), and `wfe serve` started in a
//! test repository.
//!
//! - [`Browser::start`] starts `chromedriver --port=<free>` in its own
//!   process group with a fresh profile directory, waits (bounded) for its
//!   `/status`, and opens a session with the flags that work headless in a
//!   container. Dropping the [`Browser`] ends the session, then kills
//!   whatever is left of chromedriver and Chromium, so no test leaves a
//!   process behind ([`Browser::leftovers`] says what would be left).
//! - A missing `chromium` or `chromedriver`: with `CI=true` the test fails
//!   with a clear message; otherwise the test prints why it is skipped and
//!   returns early (it never passes silently).
//! - Waiting is bounded polling of a condition in the page
//!   ([`Browser::wait_for`]), never a sleep standing in for synchronisation.
//!
//! This file is also compiled into `benches/web.rs` (through `#[path]`), so
//! it depends on nothing else in `tests/common`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a condition may take to hold before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The window every session opens with (the screenshots' size).
pub const WINDOW: (u32, u32) = (1280, 900);

/// The Chromium flags that work headless in a container (CRATES.md §9).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// Why a browser cannot be had here.
#[derive(Debug)]
pub struct Missing(pub String);

/// `CI=true`: a missing browser is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The browser and its driver, found on PATH (Debian's `chromium` and
/// `chromium-driver` packages).
pub fn find_browser() -> Result<(PathBuf, PathBuf), Missing> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name));
    let driver = on_path("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => {
            let mut what = Vec::new();
            if c.is_none() {
                what.push("chromium");
            }
            if d.is_none() {
                what.push("chromedriver");
            }
            Err(Missing(format!(
                "{} not found on PATH (Debian: `apt-get install chromium chromium-driver`, which .ci/run does)",
                what.join(" and ")
            )))
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, then released for the driver).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A headless Chromium session.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    port: u16,
    /// The profile directory: every Chromium process of this session names
    /// it on its command line, which is how leftovers are found.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a session, or says why the test is skipped.
    /// With `CI=true`, a missing browser panics (the test fails) instead.
    /// `test` names the test in the skip message.
    /// A browser that is there but does not start fails the test always.
    pub fn start(test: &str) -> Option<Browser> {
        let found = match find_browser() {
            Ok(found) => found,
            Err(Missing(why)) if in_ci() => {
                panic!("browser test {test}: {why}; with CI=true the browser tests must run")
            }
            Err(Missing(why)) => {
                eprintln!("SKIPPED browser test {test}: {why} (with CI=true this fails)");
                return None;
            }
        };
        match Browser::launch(found) {
            Ok(browser) => Some(browser),
            Err(Missing(why)) => panic!("browser test {test}: {why}"),
        }
    }

    /// Starts chromedriver and a session, or says why not.
    pub fn try_start() -> Result<Browser, Missing> {
        Browser::launch(find_browser()?)
    }

    fn launch((chromium, chromedriver): (PathBuf, PathBuf)) -> Result<Browser, Missing> {
        let port = free_port();
        let profile = tempfile::Builder::new()
            .prefix("wfe-chromium-")
            .tempdir()
            .map_err(|e| Missing(format!("cannot make a profile directory: {e}")))?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: Chromium's processes are killed with it.
            .process_group(0)
            .spawn()
            .map_err(|e| Missing(format!("cannot start {}: {e}", chromedriver.display())))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut browser = Browser {
            rt,
            client: None,
            driver,
            port,
            profile,
        };
        browser.wait_for_driver()?;
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
        args.push(format!(
            "--user-data-dir={}",
            browser.profile.path().display()
        ));
        let caps = json!({
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = browser
            .rt
            .block_on(async {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url)
                    .await
            })
            .map_err(|e| Missing(format!("chromedriver could not start Chromium: {e}")))?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// Polls chromedriver's `/status` until it is ready (bounded).
    fn wait_for_driver(&mut self) -> Result<(), Missing> {
        let start = Instant::now();
        loop {
            if let Some(body) = http_get(self.port, "/status")
                && body.contains("\"ready\":true")
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(Missing(format!("chromedriver exited at start: {status}")));
            }
            if start.elapsed() > WAIT {
                return Err(Missing(format!(
                    "chromedriver did not answer /status on port {} within {WAIT:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    /// Runs a future of this browser's client to completion.
    pub fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.block(self.client().goto(url))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The URL shown.
    pub fn url(&self) -> String {
        self.block(self.client().current_url())
            .expect("the current URL")
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.block(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.js("return document.body.innerText", vec![])
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `expr` (a JavaScript expression) is truthy in the page;
    /// fails the test with `what` and the page's text when it never is.
    #[track_caller]
    pub fn wait_for(&self, what: &str, expr: &str) -> Value {
        self.wait_for_within(what, expr, WAIT)
    }

    /// [`Browser::wait_for`] with its own bound.
    #[track_caller]
    pub fn wait_for_within(&self, what: &str, expr: &str, bound: Duration) -> Value {
        let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
        let start = Instant::now();
        loop {
            let value = self.js(&script, vec![]);
            if truthy(&value) {
                return value;
            }
            if start.elapsed() > bound {
                panic!(
                    "never within {bound:?}: {what}\n(condition: {expr})\nURL: {}\n--- page text\n{}",
                    self.url(),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the page's text contains `needle`.
    #[track_caller]
    pub fn wait_for_text(&self, needle: &str) {
        let expr = format!(
            "document.body && document.body.innerText.includes({})",
            json!(needle)
        );
        self.wait_for(&format!("the page shows {needle:?}"), &expr);
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.block(async {
            let el = self.client().find(Locator::Css(css)).await?;
            el.click().await
        })
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Sends keys to the focused element (or the page body).
    pub fn keys(&self, keys: &str) {
        self.block(async {
            let el = self.client().active_element().await?;
            el.send_keys(keys).await
        })
        .unwrap_or_else(|e| panic!("cannot type {keys:?}: {e}"));
    }

    /// A PNG of the viewport, written to `path`; returns its size in bytes.
    pub fn screenshot(&self, path: &Path) -> usize {
        let png = self
            .block(self.client().screenshot())
            .expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, &png).expect("write the screenshot");
        png.len()
    }

    /// Opens a new window (a tab) and switches to it.
    pub fn new_tab(&self) -> fantoccini::wd::WindowHandle {
        self.block(async {
            let made = self.client().new_window(true).await?;
            let handle = made.handle;
            self.client().switch_to_window(handle.clone()).await?;
            Ok::<_, fantoccini::error::CmdError>(handle)
        })
        .expect("a new tab")
    }

    /// Switches to the tab `handle`.
    pub fn switch_to(&self, handle: &fantoccini::wd::WindowHandle) {
        self.block(self.client().switch_to_window(handle.clone()))
            .expect("switch tabs");
    }

    /// The session's tabs.
    pub fn tabs(&self) -> Vec<fantoccini::wd::WindowHandle> {
        self.block(self.client().windows()).expect("the tabs")
    }

    /// The process group chromedriver (and Chromium under it) runs in.
    pub fn pgid(&self) -> u32 {
        self.driver.id()
    }

    /// The profile directory this session's Chromium processes name.
    pub fn profile(&self) -> PathBuf {
        self.profile.path().to_path_buf()
    }

    /// Ends the session and kills what is left; the processes still alive
    /// afterwards (should be none).
    pub fn close(mut self) -> Vec<String> {
        let (pgid, profile) = (self.pgid(), self.profile());
        self.shut_down();
        leftovers(pgid, &profile)
    }

    fn shut_down(&mut self) {
        if let Some(client) = self.client.take() {
            // Chromedriver quits Chromium when the session ends; bounded.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        let pgid = self.driver.id();
        kill_group(pgid, rustix::process::Signal::TERM);
        let start = Instant::now();
        while wfe::testing::process::group_alive(pgid) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_group(pgid, rustix::process::Signal::KILL);
        let _ = self.driver.wait();
        // Anything that left the group but still names the profile.
        for pid in profile_processes(self.profile.path()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn kill_group(pgid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// The live processes of group `pgid` or naming `profile`, as `stat` lines.
pub fn leftovers(pgid: u32, profile: &Path) -> Vec<String> {
    let mut left = wfe::testing::process::live_members(pgid);
    for pid in profile_processes(profile) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && !left.contains(&stat)
            && u32::try_from(pid).is_ok_and(wfe::testing::process::pid_alive)
        {
            left.push(stat);
        }
    }
    left
}

/// The pids whose command line names `profile`.
fn profile_processes(profile: &Path) -> Vec<i32> {
    let needle = profile.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A GET over plain HTTP/1.1 on 127.0.0.1 (bounded); the body on 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let (status, body) = http_request(port, "GET", path, &[])?;
    (status == 200).then_some(body)
}

/// One HTTP/1.1 request on 127.0.0.1:`port` (`Connection: close`, bounded):
/// the status and the body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    // Read until the body is whole (by Content-Length or the last chunk):
    // some servers keep the connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = stream.read(&mut buf).ok()?;
        raw.extend_from_slice(&buf[..n]);
        if n == 0 || response_complete(&raw) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if is_chunked(head) {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn is_chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    if let Some(len) = content_length(&head) {
        return body.len() >= len;
    }
    is_chunked(&head) && body.ends_with(b"0\r\n\r\n")
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

/// `wfe serve --port 0` running in the background; stopped on drop.
pub struct Serve {
    child: Child,
    /// The URL it printed, with its token.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// The token.
    pub token: String,
}

impl Serve {
    /// Starts `cmd` (a hermetic wfe command in its repository) with
    /// `serve --port 0` and `extra` args, and waits (bounded) for the URL.
    pub fn start(mut cmd: Command, extra: &[&str]) -> Serve {
        let mut child = cmd
            .args(["serve", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wfe serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("wfe serve printed no URL within {WAIT:?}");
            }
        };
        let url = line.trim().to_string();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("wfe serve printed {url:?}, not a 127.0.0.1 URL"));
        let (port, token) = rest
            .split_once("/?token=")
            .unwrap_or_else(|| panic!("no token in {url:?}"));
        let port: u16 = port.parse().expect("a port");
        Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            token: token.to_string(),
            url,
        }
    }

    /// `base` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A GET with the token (header), as a script would.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_request(self.port, "GET", path, &[("X-Wfe-Token", &self.token)])
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
