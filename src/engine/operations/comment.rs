//! `wfe comment`: a note on a run or one of its phases, appended to
//! `comments.jsonl`.

use super::{base_message, commit_on, require_phase};
use crate::engine::snapshot::parse;
use crate::engine::{CheckpointEvent, Comment, EngineError, Refusal, RunSnapshot, layout};
use crate::store::{Change, CheckpointId, RunId, RunStore, StoreError};
use crate::template::PhaseKind;
use crate::time::Clock;

/// How often a comment is retried when another writer moves the tip.
const COMMENT_RETRIES: usize = 10;

/// Appends a comment to the run (about `phase` if given). `for_agent`
/// sends it to the next attempt of `phase`, which must be an agent phase:
/// its prompt carries the comment.
pub fn comment(
    store: &dyn RunStore,
    run: &RunId,
    phase: Option<&str>,
    author: &str,
    text: &str,
    for_agent: bool,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let mut last = None;
    for _ in 0..COMMENT_RETRIES {
        let snap = RunSnapshot::load_tip(store, run)?;
        let mut for_attempt = None;
        if let Some(phase) = phase {
            let spec = require_phase(&snap, phase)?;
            if for_agent {
                if spec.kind != PhaseKind::Agent {
                    return Err(EngineError::Refused {
                        action: "send a comment to",
                        run: run.to_string(),
                        phase: phase.to_string(),
                        reason: Refusal::NotAnAgent(spec.kind.as_str()),
                    });
                }
                // The attempt after the current (or last) one; a phase not
                // yet run starts with attempt 1.
                let attempt = snap
                    .phases
                    .iter()
                    .find(|s| s.id == phase)
                    .map_or(0, |s| s.attempt);
                for_attempt = Some(attempt.saturating_add(1));
            }
        }
        let line = Comment {
            time: clock.stamp(),
            author: author.to_string(),
            phase: phase.map(String::from),
            text: text.to_string(),
            for_attempt,
        };
        let mut bytes = store
            .read(&snap.checkpoint, layout::COMMENTS)?
            .unwrap_or_default();
        // One JSON object per line; plain strings cannot fail to serialise.
        bytes.extend(serde_json::to_vec(&line).unwrap_or_default());
        bytes.push(b'\n');
        let about = phase.map_or_else(|| "the run".to_string(), |p| format!("phase {p}"));
        let message = base_message(
            &snap,
            &format!("comment on {about}"),
            phase,
            CheckpointEvent::Comment,
        );
        match commit_on(
            store,
            run,
            &snap,
            &[Change::write(layout::COMMENTS, bytes)],
            &message,
            clock,
        ) {
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            other => return Ok(other?),
        }
    }
    Err(last.map_or_else(
        || {
            EngineError::Store(StoreError::NoSuchRun {
                run: run.to_string(),
            })
        },
        EngineError::Store,
    ))
}

/// Every comment on the run, oldest first.
pub fn comments(store: &dyn RunStore, snap: &RunSnapshot) -> Result<Vec<Comment>, EngineError> {
    let bytes = store
        .read(&snap.checkpoint, layout::COMMENTS)?
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            parse(
                &snap.record.id,
                &snap.checkpoint,
                layout::COMMENTS,
                l.as_bytes(),
            )
        })
        .collect()
}
