//! Checkpointing: transitions wait in [`Pending`] and are committed
//! together as one checkpoint, rebased over comments other writers added.

use std::time::Instant;

use super::{Runner, Unit};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, Event, Noted, PhaseState, PhaseStatus,
    RunStatus, StopReason, layout, to_file_bytes,
};
use crate::store::{Change, StoreError};

/// Changes and transitions waiting to be committed together.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) changes: Vec<Change>,
    pub(super) record_dirty: bool,
    pub(super) dirty: Vec<Unit>,
    /// Human summaries, joined into the commit's first line.
    pub(super) summaries: Vec<String>,
    /// What happened, in order, with the phase keys it happened to.
    pub(super) events: Vec<Noted>,
    /// Who asked for the control actions in this checkpoint.
    pub(super) requested_by: Vec<String>,
    /// When everything pending is steps that may wait for the next
    /// checkpoint (see [`Runner::defer_step`]): how many changes and
    /// events they are. Anything else added since makes the counts differ.
    pub(super) deferred: Option<(usize, usize)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.changes.is_empty()
            && self.dirty.is_empty()
            && !self.record_dirty
            && self.requested_by.is_empty()
    }

    /// Whether all that is pending may wait for the next checkpoint.
    fn only_deferred(&self) -> bool {
        self.deferred == Some((self.changes.len(), self.events.len()))
            && self.dirty.is_empty()
            && !self.record_dirty
            && self.requested_by.is_empty()
    }
}

impl Runner<'_> {
    /// Removes the live files of attempts whose results are committed.
    fn remove_live(&mut self) {
        let done = std::mem::take(&mut self.live_done);
        if let Some(root) = &self.settings.live {
            for (key, attempt) in done {
                crate::engine::live::remove_attempt(root, self.run.as_str(), &key, attempt);
            }
        }
    }

    pub(super) fn mark(&mut self, u: Unit) {
        if !self.pending.dirty.contains(&u) {
            self.pending.dirty.push(u);
        }
    }

    pub(super) fn note(&mut self, u: Option<Unit>, event: CheckpointEvent, summary: String) {
        let phase = u.map(|u| self.key(u));
        self.pending.events.push(Noted { phase, event });
        self.pending.summaries.push(summary);
    }

    pub(super) fn set_status(&mut self, status: RunStatus, reason: Option<StopReason>) {
        if self.record.status == status && self.record.reason == reason {
            return;
        }
        let event = CheckpointEvent::run(status);
        let summary = match (&status, &reason) {
            (RunStatus::Running, _) if self.record.status == RunStatus::Pending => {
                "run started".to_string()
            }
            (RunStatus::Running, _) => "run resumed".to_string(),
            (_, Some(reason)) => format!("run {}: {reason}", status.as_str()),
            (_, None) => format!("run {}", status.as_str()),
        };
        let now = self.settings.clock.stamp();
        self.record.set_status(status, reason, &now);
        self.pending.record_dirty = true;
        self.note(None, event, summary);
    }

    /// The phases (top-level, and each loop's children in its last
    /// iteration, nested loops' after their loop's) that failed or timed
    /// out, in the order `wfe status` shows them, when the run completed:
    /// the `Wfe-Failed` trailers that let `wfe list` say the run was not
    /// clean.
    fn failed_phases(&self) -> Vec<String> {
        if self.record.status != RunStatus::Completed {
            return Vec::new();
        }
        let mut states = Vec::new();
        for (i, state) in self.states.iter().enumerate() {
            states.push(state);
            self.collect_children(Unit::Top(i), &mut states);
        }
        states
            .into_iter()
            .filter(|s| s.status.is_unclean_end())
            .map(|s| s.id.clone())
            .collect()
    }

    /// The states of loop `u`'s children in its last iteration, each
    /// followed by its own children's when it is a loop that ran.
    fn collect_children<'s>(&'s self, u: Unit, out: &mut Vec<&'s PhaseState>) {
        let Some(s) = self.slot(u) else { return };
        if self.state(u).status == PhaseStatus::Pending {
            return;
        }
        for (child, state) in self.loops[s].states.iter().enumerate() {
            out.push(state);
            self.collect_children(Unit::Child { parent: s, child }, out);
        }
    }

    /// After a conflict: if every checkpoint another writer added since our
    /// tip only appended comments (which a live run accepts), moves our tip
    /// onto theirs and returns true; the runner's changes are whole files it
    /// alone writes, so they apply unchanged on top.
    pub(super) fn rebase_over_comments(&mut self) -> Result<bool, EngineError> {
        let Some(theirs) = self.store.tip(&self.run)? else {
            return Ok(false);
        };
        let mut next = Some(theirs.clone());
        while let Some(id) = next {
            if id == self.tip {
                self.tip = theirs;
                return Ok(true);
            }
            let checkpoint = self.store.checkpoint(&id)?;
            let message = CheckpointMessage::parse(&checkpoint.message);
            if message.events.first().map(|n| &n.event) != Some(&CheckpointEvent::Comment) {
                return Ok(false);
            }
            next = checkpoint.parent;
        }
        Ok(false)
    }

    /// Notes that what was just added to the pending checkpoint may wait
    /// for the next one (`was_quiet`: nothing else was pending before it).
    /// A read-only tool call is such a step: it changed nothing, so a
    /// runner killed before committing it loses only a call the resumed
    /// agent makes again, harmlessly, before it asks the model anything.
    /// Folding it into the checkpoint of the turn's exchange halves the
    /// checkpoints of an agent that reads.
    pub(super) fn defer_step(&mut self, was_quiet: bool) {
        self.pending.deferred =
            was_quiet.then_some((self.pending.changes.len(), self.pending.events.len()));
    }

    /// Whether nothing is pending but steps that may wait.
    pub(super) fn quiet(&self) -> bool {
        self.pending.is_empty() || self.pending.only_deferred()
    }

    /// When what is pending must be committed: none when nothing is (or
    /// only steps that may wait for the next checkpoint); at once when an
    /// agent waits for its steps to be in git, or when the last
    /// checkpoint is older than the interval
    /// ([`crate::engine::Settings::checkpoint_interval`]); otherwise that
    /// long after it, so a burst's transitions fold into one commit.
    pub(super) fn commit_due(&self) -> Option<Instant> {
        if self.quiet() {
            return None;
        }
        let interval = self.settings.checkpoint_interval;
        match self.last_commit {
            Some(last) if !interval.is_zero() && self.acks.is_empty() => Some(last + interval),
            _ => Some(Instant::now()),
        }
    }

    /// Commits everything pending as one checkpoint (nothing if nothing
    /// changed, or if all that changed may wait: see [`Runner::defer_step`]).
    pub(super) fn flush(&mut self) -> Result<(), EngineError> {
        if self.pending.only_deferred() {
            return Ok(());
        }
        if self.pending.events.is_empty()
            && self.pending.changes.is_empty()
            && self.pending.dirty.is_empty()
        {
            for ack in self.acks.drain(..) {
                let _ = ack.send(());
            }
            self.remove_live();
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut changes = pending.changes;
        if pending.record_dirty {
            // The runner holds secret args' values; git gets them masked
            // as whole strings too (a short value escapes byte masking).
            let mut record = self.record.clone();
            self.settings.masker.mask_json(&mut record.args);
            changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
        }
        for u in pending.dirty {
            changes.push(Change::write(
                layout::state(&self.key(u)),
                to_file_bytes(self.state(u)),
            ));
        }
        let message = CheckpointMessage {
            failed: self.failed_phases(),
            events: pending.events,
            requested_by: pending.requested_by,
            status: Some(self.record.status),
            ..CheckpointMessage::new(
                self.run.as_str(),
                &self.record.template,
                pending.summaries.join("; "),
            )
        }
        .to_message();
        // Nothing committed holds a secret: every file and the message are
        // masked here, the one place checkpoints are written from.
        let masker = &self.settings.masker;
        let mut message = message;
        if !masker.is_empty() {
            for change in &mut changes {
                if let Change::Write { bytes, .. } = change
                    && let std::borrow::Cow::Owned(masked) = masker.mask_bytes(bytes)
                {
                    *bytes = masked;
                }
            }
            message.summary = masker.mask_str(&message.summary).into_owned();
            for (_, value) in &mut message.trailers {
                *value = masker.mask_str(value).into_owned();
            }
        }
        let id = loop {
            let time = self.settings.clock.epoch_seconds();
            match self
                .store
                .commit(&self.run, Some(&self.tip), &changes, &message, time)
            {
                Err(StoreError::Conflict { .. }) if self.rebase_over_comments()? => continue,
                other => break other?,
            }
        };
        self.observer.event(&Event::Checkpoint {
            id: &id,
            summary: &message.summary,
        });
        self.tip = id;
        self.last_commit = Some(Instant::now());
        // The attempts' results are committed: their live files are superseded.
        self.remove_live();
        // The agents' steps are in git now: they may go on.
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
        Ok(())
    }
}
