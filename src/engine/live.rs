//! Live output: each running attempt's output, published as it happens to
//! an append-only file `<git-dir>/wfe/live/<run>/<phase-key>/<attempt>.jsonl`
//! that any process can follow (`wfe log RUN PHASE --follow`).
//!
//! The file is a stand-in until the attempt's result is committed: the
//! runner removes it then (the checkpoint's log supersedes it), and a
//! runner starting a run removes what a dead runner left. Lines arrive
//! already masked (they come through [`crate::attempt::AttemptLog`], the
//! same path as the committed log). Writing happens on a thread of its own
//! through a buffer, so a phase printing fast is not slowed by the disk,
//! and the file is capped so a runaway phase cannot fill the disk.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::attempt::{LogLine, LogSink, Stream};

/// What one line of a live file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveKind {
    /// A whole line (as the committed log will have it).
    Line,
    /// More of a line not yet whole: `text` is what was added since the
    /// previous partial of the same stream (the whole line follows as a
    /// [`LiveKind::Line`]).
    Partial,
    /// An agent's tool call: `text` is its JSON.
    Tool,
}

/// One line of a live file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEntry {
    /// When it was produced (RFC 3339).
    pub time: String,
    /// Where it came from.
    pub stream: Stream,
    /// The text (masked).
    pub text: String,
    /// Whole line, partial line, or tool call.
    pub kind: LiveKind,
}

/// `<live-root>/<run>`: every live file of one run.
pub fn run_dir(root: &Path, run: &str) -> PathBuf {
    root.join(run)
}

/// `<live-root>/<run>/<key>/<attempt>.jsonl`: one attempt's live file
/// (`key` is the phase's key, a loop child's under its iteration).
pub fn attempt_file(root: &Path, run: &str, key: &str, attempt: u32) -> PathBuf {
    root.join(run).join(key).join(format!("{attempt}.jsonl"))
}

/// Removes an attempt's live file once its result is committed; a missing
/// file is fine (nothing was published, or it was already removed).
pub fn remove_attempt(root: &Path, run: &str, key: &str, attempt: u32) {
    let _ = std::fs::remove_file(attempt_file(root, run, key, attempt));
}

/// Removes every live file of `run` (a new runner cleans what a dead one
/// left, and a runner that stops cleans up after itself).
pub fn remove_run(root: &Path, run: &str) {
    let _ = std::fs::remove_dir_all(run_dir(root, run));
}

enum Message {
    Line(LogLine, LiveKind),
    Tool(String, String),
}

/// A [`LogSink`] that passes every line on to another sink and also
/// appends it to an attempt's live file, from a writer thread of its own.
pub struct LiveSink {
    inner: Arc<dyn LogSink>,
    /// Where to publish, and the cap, until the writer starts.
    target: Mutex<Option<(PathBuf, u64)>>,
    tx: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Whether the writer was started (see [`LiveSink::published`]).
    published: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSink").finish_non_exhaustive()
    }
}

impl LiveSink {
    /// Publishes to `path` (created with its directories by the writer
    /// thread), keeping at most about `cap` bytes; every line also goes to
    /// `inner`. A file that cannot be written loses the live view only.
    /// The writer thread starts with the first thing to publish: an
    /// attempt that prints nothing costs no thread and no file.
    pub fn new(inner: Arc<dyn LogSink>, path: PathBuf, cap: u64) -> LiveSink {
        LiveSink {
            inner,
            target: Mutex::new(Some((path, cap))),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            published: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Publishes a tool call (`json`, already masked) at `time`.
    pub fn tool(&self, time: String, json: String) {
        self.send(Message::Tool(time, json));
    }

    fn send(&self, message: Message) {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.is_none() {
            // The first message: start the writer (once; never after `finish`).
            let target = self
                .target
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((path, cap)) = target {
                let (sender, rx) = mpsc::channel();
                let writer = std::thread::Builder::new()
                    .name("wfe-live".into())
                    .spawn(move || write_all(&path, cap, &rx))
                    .ok();
                *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = writer;
                self.published
                    .store(true, std::sync::atomic::Ordering::Release);
                *tx = Some(sender);
            }
        }
        if let Some(tx) = &*tx {
            let _ = tx.send(message);
        }
    }

    /// Whether anything was published: only then may the live file exist
    /// (the writer makes it with the first line), so only then is there a
    /// file to wait for or remove.
    pub fn published(&self) -> bool {
        self.published.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops publishing and waits until everything sent is in the file, so
    /// it is whole before the attempt's result is committed.
    pub fn finish(&self) {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for LiveSink {
    fn drop(&mut self) {
        self.finish();
    }
}

impl LogSink for LiveSink {
    fn line(&self, phase: &str, line: &LogLine) {
        self.inner.line(phase, line);
        self.send(Message::Line(line.clone(), LiveKind::Line));
    }

    fn partial(&self, phase: &str, line: &LogLine) {
        self.inner.partial(phase, line);
        self.send(Message::Line(line.clone(), LiveKind::Partial));
    }
}

/// The writer thread: appends what arrives, flushing whenever it has
/// caught up, so followers see lines promptly and a flood is batched.
fn write_all(path: &Path, cap: u64, rx: &mpsc::Receiver<Message>) {
    // The writer starts with the first message (see `LiveSink::send`):
    // an attempt that prints nothing leaves no file to create and remove
    // (`wfe log --follow` waits for the file to appear).
    let Ok(first) = rx.recv() else { return };
    let Some(file) = path
        .parent()
        .map(std::fs::create_dir_all)
        .and_then(|made| made.ok())
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        })
    else {
        // Nothing can be published; drain so senders never block.
        while rx.recv().is_ok() {}
        return;
    };
    let mut out = Writer {
        out: BufWriter::with_capacity(64 * 1024, file),
        written: 0,
        cap,
        capped: false,
        partial: Vec::new(),
        buf: Vec::with_capacity(256),
    };
    let mut first = Some(first);
    // After the first line of a burst, gather what comes in the next few
    // milliseconds before flushing: one write per burst, not per line,
    // and a follower still sees a line within `FLUSH_EVERY`.
    while let Some(message) = first.take().or_else(|| rx.recv().ok()) {
        out.write(message);
        let until = Instant::now() + FLUSH_EVERY;
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(message) => out.write(message),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = out.out.flush();
                    return;
                }
            }
        }
        let _ = out.out.flush();
    }
    let _ = out.out.flush();
}

/// The longest a published line waits in the writer's buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(5);

struct Writer {
    out: BufWriter<std::fs::File>,
    written: u64,
    cap: u64,
    capped: bool,
    /// Per stream: bytes of the current line already published as partials.
    partial: Vec<(Stream, usize)>,
    buf: Vec<u8>,
}

impl Writer {
    fn write(&mut self, message: Message) {
        if self.capped {
            return;
        }
        let entry = match message {
            Message::Tool(time, text) => LiveEntry {
                time,
                stream: Stream::Model,
                text,
                kind: LiveKind::Tool,
            },
            Message::Line(line, kind) => {
                let slot = match self.partial.iter().position(|(s, _)| *s == line.stream) {
                    Some(i) => i,
                    None => {
                        self.partial.push((line.stream, 0));
                        self.partial.len() - 1
                    }
                };
                let text = if kind == LiveKind::Partial {
                    let shown = self.partial[slot].1;
                    // Each partial extends the previous one; publish the
                    // new end only, so a long streamed line is not
                    // written again with every token.
                    let Some(new) = line.line.get(shown..).filter(|t| !t.is_empty()) else {
                        return;
                    };
                    self.partial[slot].1 = line.line.len();
                    new.to_string()
                } else {
                    self.partial[slot].1 = 0;
                    line.line
                };
                LiveEntry {
                    time: line.time,
                    stream: line.stream,
                    text,
                    kind,
                }
            }
        };
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &entry).is_err() {
            return;
        }
        self.buf.push(b'\n');
        if self.written + self.buf.len() as u64 > self.cap {
            self.capped = true;
            let marker = LiveEntry {
                time: entry.time,
                stream: Stream::Wfe,
                text: format!(
                    "[live output capped at {} bytes: the rest is in the log once the attempt ends]",
                    self.cap
                ),
                kind: LiveKind::Line,
            };
            self.buf.clear();
            if serde_json::to_writer(&mut self.buf, &marker).is_ok() {
                self.buf.push(b'\n');
                let _ = self.out.write_all(&self.buf);
            }
            return;
        }
        self.written += self.buf.len() as u64;
        let _ = self.out.write_all(&self.buf);
    }
}

/// Reads a live file as it grows: [`Follower::read`] returns the entries
/// whole since the last call (a line still being written waits).
#[derive(Debug)]
pub struct Follower {
    file: std::fs::File,
    pending: Vec<u8>,
}

impl Follower {
    /// Opens an attempt's live file; `None` when there is none (yet, or
    /// any more). Once open, it stays readable even after the runner
    /// removes it.
    pub fn open(path: &Path) -> Option<Follower> {
        std::fs::File::open(path).ok().map(|file| Follower {
            file,
            pending: Vec::new(),
        })
    }

    /// The entries written since the last call.
    pub fn read(&mut self) -> Vec<LiveEntry> {
        use std::io::Read;
        let mut chunk = Vec::new();
        let _ = self.file.read_to_end(&mut chunk);
        self.pending.extend_from_slice(&chunk);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let whole: Vec<u8> = self.pending.drain(..=end).collect();
        whole
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl LogSink for Nothing {
        fn line(&self, _: &str, _: &LogLine) {}
    }

    fn line(text: &str) -> LogLine {
        LogLine {
            time: "2026-01-01T00:00:00Z".into(),
            attempt: 1,
            stream: Stream::Model,
            line: text.into(),
        }
    }

    #[test]
    fn partials_publish_only_what_is_new_and_the_whole_line_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = attempt_file(dir.path(), "r", "p", 1);
        let sink = LiveSink::new(Arc::new(Nothing), path.clone(), 1 << 20);
        sink.partial("p", &line("hel"));
        sink.partial("p", &line("hello"));
        sink.line("p", &line("hello world"));
        sink.tool("t".into(), "{}".into());
        sink.finish();
        let mut follower = Follower::open(&path).expect("the file is there");
        let got: Vec<(LiveKind, String)> = follower
            .read()
            .into_iter()
            .map(|e| (e.kind, e.text))
            .collect();
        assert_eq!(
            got,
            [
                (LiveKind::Partial, "hel".to_string()),
                (LiveKind::Partial, "lo".to_string()),
                (LiveKind::Line, "hello world".to_string()),
                (LiveKind::Tool, "{}".to_string()),
            ]
        );
        assert!(follower.read().is_empty());
    }

    #[test]
    fn an_attempt_that_prints_nothing_makes_no_file_and_no_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = attempt_file(dir.path(), "r", "p", 1);
        let sink = LiveSink::new(Arc::new(Nothing), path.clone(), 1000);
        sink.finish();
        // Nothing after the end is published either.
        sink.line("p", &line("late"));
        // So the runner has no file to remove.
        assert!(!sink.published());
        drop(sink);
        assert!(!path.exists());
        assert!(!run_dir(dir.path(), "r").exists());
    }

    #[test]
    fn a_sink_that_published_says_so_after_it_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = attempt_file(dir.path(), "r", "p", 1);
        let sink = LiveSink::new(Arc::new(Nothing), path.clone(), 1000);
        assert!(!sink.published());
        sink.line("p", &line("one"));
        sink.finish();
        assert!(sink.published());
        assert!(path.exists());
    }

    #[test]
    fn the_file_is_capped_with_one_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = attempt_file(dir.path(), "r", "p", 1);
        let sink = LiveSink::new(Arc::new(Nothing), path.clone(), 1000);
        for n in 0..1000 {
            sink.line("p", &line(&format!("line {n}")));
        }
        sink.finish();
        let size = std::fs::metadata(&path).expect("the file").len();
        assert!(size <= 1000 + 200, "{size}");
        let entries = Follower::open(&path).expect("file").read();
        assert!(entries.last().is_some_and(|e| e.text.contains("capped")));
    }
}
