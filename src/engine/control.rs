//! The control channel: requests to a live runner (pause, cancel, approve,
//! continue, auto) as files under `<git-dir>/wfe/control/<run>/`.
//!
//! A request is written atomically (temp file + rename) as
//! `<id>.request.json`; the runner notices it (notify, with polling where
//! watching is impossible), acts at its next safe point, commits a
//! checkpoint naming who asked, and answers with `<id>.reply.json`. Files
//! rather than sockets: they need no daemon, survive the runner dying
//! (the sender then acts on the ref itself), and work across worktrees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bounded;
use tokio::sync::mpsc;

use crate::engine::CheckpointEvent;

/// How often the control directory is polled when it cannot be watched.
const POLL: Duration = Duration::from_millis(250);

/// How long an ending runner waits for its last replies to be taken
/// before it removes the control directory (a sender that died never
/// takes its reply; the directory then stays until a later command tidies).
pub const REPLY_PICKUP: Duration = Duration::from_millis(500);

/// What a person asks a run to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start nothing new; pause once running phases end.
    Pause,
    /// Kill running phases and stop for good.
    Cancel,
    /// Approve a waiting phase, optionally with its artifact.
    Approve {
        /// The waiting phase.
        phase: String,
        /// The artifact to record (validated against the phase's output schema).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<Value>,
        /// For a phase paused at a budget's soft share: how to raise the budget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<crate::budget::Raise>,
    },
    /// With auto mode off: go on past the current wait.
    Continue,
    /// Switch auto mode.
    Auto {
        /// On or off.
        on: bool,
    },
}

impl Action {
    /// The event of the checkpoint the action makes.
    pub fn event(&self) -> CheckpointEvent {
        match self {
            Action::Pause => CheckpointEvent::PauseRequested,
            Action::Cancel => CheckpointEvent::CancelRequested,
            Action::Approve { .. } => CheckpointEvent::PhaseApproved,
            Action::Continue => CheckpointEvent::ContinueRequested,
            Action::Auto { on: true } => CheckpointEvent::AutoOn,
            Action::Auto { on: false } => CheckpointEvent::AutoOff,
        }
    }
}

/// A request as written to the control directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Unique, sortable: requests are handled in the order they were made.
    pub id: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Who asked: `Name <email>` and the process.
    pub by: String,
}

/// The runner's answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the runner did what was asked.
    pub ok: bool,
    /// What happened, for the person who asked.
    pub message: String,
}

/// The control directory of one run.
#[derive(Debug, Clone)]
pub struct ControlDir {
    dir: PathBuf,
}

impl ControlDir {
    /// `<wfe_dir>/control/<run>`.
    pub fn new(wfe_dir: &Path, run: &str) -> Self {
        ControlDir {
            dir: wfe_dir.join("control").join(run),
        }
    }

    /// Writes a request; returns its id.
    pub fn send(&self, action: Action, by: &str) -> std::io::Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("{nanos:024}-{}", std::process::id());
        let request = Request {
            id: id.clone(),
            action,
            by: by.to_string(),
        };
        self.write_atomically(
            &format!("{id}.request.json"),
            &serde_json::to_vec_pretty(&request).unwrap_or_default(),
        )?;
        Ok(id)
    }

    /// The requests waiting, oldest first; unreadable files are dropped.
    pub fn pending(&self) -> Vec<Request> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut requests: Vec<Request> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".request.json"))
            .filter_map(|e| {
                let parsed = bounded::read(&e.path(), bounded::SMALL_LIMIT)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if parsed.is_none() {
                    // Half-written requests never appear (rename); anything else unreadable is junk.
                    let _ = std::fs::remove_file(e.path());
                }
                parsed
            })
            .collect();
        requests.sort_by(|a, b| a.id.cmp(&b.id));
        requests
    }

    /// Answers a request and removes it.
    pub fn reply(&self, id: &str, reply: &Reply) {
        let _ = self.write_atomically(
            &format!("{id}.reply.json"),
            &serde_json::to_vec_pretty(reply).unwrap_or_default(),
        );
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.request.json")));
    }

    /// Takes the reply to request `id`, if there is one yet.
    pub fn take_reply(&self, id: &str) -> Option<Reply> {
        let path = self.dir.join(format!("{id}.reply.json"));
        let reply = bounded::read(&path, bounded::SMALL_LIMIT)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let _ = std::fs::remove_file(&path);
        Some(reply)
    }

    /// Withdraws request `id`; true if it was still unhandled.
    pub fn withdraw(&self, id: &str) -> bool {
        std::fs::remove_file(self.dir.join(format!("{id}.request.json"))).is_ok()
    }

    /// Wakes the receiver whenever something in the directory changes
    /// (notify), or every 250 ms when the directory cannot be watched.
    pub fn watch(&self) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = std::fs::create_dir_all(&self.dir);
        let notify_tx = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = notify_tx.send(());
            }
        })
        .and_then(|mut w| {
            use notify::Watcher;
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        let poller = match &watcher {
            Ok(_) => None,
            Err(_) => Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(POLL);
                loop {
                    tick.tick().await;
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            })),
        };
        Watch {
            rx,
            _watcher: watcher.ok(),
            poller,
        }
    }

    /// Waits (at most [`REPLY_PICKUP`]) for the senders to take the
    /// replies still in the directory (they poll every 20 ms), then
    /// removes it if empty: what a runner does as it ends, e.g. right
    /// after answering a cancel.
    pub async fn tidy_when_answered(&self) {
        let deadline = std::time::Instant::now() + REPLY_PICKUP;
        while self.has_replies() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.tidy();
    }

    fn has_replies(&self) -> bool {
        std::fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".reply.json"))
        })
    }

    /// Removes the directory when it is empty, so finished runs leave
    /// nothing behind. Only whoever holds the run's lock may call this (the
    /// runner as it ends, a sender acting alone): a live runner watches
    /// the directory, and a watch on a removed directory hears nothing.
    pub fn tidy(&self) {
        // Not empty (a request still waiting) or already gone: both fine.
        let _ = std::fs::remove_dir(&self.dir);
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        // The ending runner may remove the empty directory between our
        // create and write: create it again then (a few times at most).
        let mut tries = 0;
        loop {
            std::fs::create_dir_all(&self.dir)?;
            match std::fs::write(&tmp, bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
                written => break written?,
            }
        }
        std::fs::rename(&tmp, self.dir.join(name))
    }
}

/// A live watch of a control directory.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Waits for the next change (returns at once if changes queued up).
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_some() {
            while self.rx.try_recv().is_ok() {}
        } else {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(poller) = &self.poller {
            poller.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_in_order_and_replies_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlDir::new(dir.path(), "01run");
        let first = control.send(Action::Pause, "me").unwrap();
        let second = control
            .send(
                Action::Approve {
                    phase: "gate".into(),
                    artifact: Some(serde_json::json!({"ok": true})),
                    budget: None,
                },
                "me",
            )
            .unwrap();
        let pending = control.pending();
        assert_eq!(
            pending.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [first.clone(), second.clone()]
        );
        assert_eq!(
            pending[1].action,
            Action::Approve {
                phase: "gate".into(),
                artifact: Some(serde_json::json!({"ok": true})),
                budget: None,
            }
        );
        control.reply(
            &first,
            &Reply {
                ok: true,
                message: "pausing".into(),
            },
        );
        assert_eq!(control.pending().len(), 1);
        assert_eq!(control.take_reply(&first).unwrap().message, "pausing");
        assert!(control.take_reply(&first).is_none());
        assert!(control.withdraw(&second));
        assert!(!control.withdraw(&second));
    }

    #[tokio::test]
    async fn a_watch_wakes_on_a_new_request() {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlDir::new(dir.path(), "01run");
        let mut watch = control.watch();
        control.send(Action::Cancel, "me").unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .expect("woken");
        assert_eq!(control.pending()[0].action, Action::Cancel);
    }
}
