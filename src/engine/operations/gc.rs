//! `wfe gc`: which runs go to the trash and which trash entries are
//! emptied, decided from the runs' tips and the trash refs' ages alone.
//!
//! Planning writes nothing (it is all `--dry-run` shows); the caller then
//! moves each planned run with [`super::remove()`] under the run's lock, as
//! `wfe rm` does, empties the planned entries and repacks. A run a live
//! runner holds is never planned: it is listed apart as held.

use crate::engine::EngineError;
use crate::engine::view::{ListFilter, RunRow, list_runs};
use crate::store::{GitStore, LockHolder, RunId, TrashAge};

/// Which runs and trash entries `wfe gc` lets go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcPolicy {
    /// Keep the newest N runs whatever else matches.
    pub keep: Option<usize>,
    /// Only runs whose last checkpoint is at least this many seconds old.
    pub older_than: Option<i64>,
    /// Only runs with one of these statuses (empty: any status).
    pub statuses: Vec<String>,
    /// Trash entries set aside at least this many seconds ago are deleted.
    pub trash_older_than: i64,
}

impl GcPolicy {
    /// Whether the policy selects runs at all: with no criterion, `wfe gc`
    /// only empties old trash and repacks.
    pub fn selects_runs(&self) -> bool {
        self.keep.is_some() || self.older_than.is_some() || !self.statuses.is_empty()
    }
}

/// What `wfe gc` would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcPlan {
    /// Runs to move to the trash, newest first.
    pub runs: Vec<RunRow>,
    /// Runs that match but a live runner holds: left alone.
    pub held: Vec<(RunId, LockHolder)>,
    /// Trash entries to delete.
    pub trash: Vec<TrashAge>,
}

/// Plans `wfe gc` at `now` (seconds since the Unix epoch).
pub fn plan_gc(store: &GitStore, policy: &GcPolicy, now: i64) -> Result<GcPlan, EngineError> {
    let mut plan = GcPlan::default();
    if policy.selects_runs() {
        let rows = list_runs(store, &ListFilter::default())?;
        for row in rows.into_iter().skip(policy.keep.unwrap_or(0)) {
            if !matches(policy, &row, now) {
                continue;
            }
            let Some(run) = RunId::parse(&row.id) else {
                continue;
            };
            match store.lock_holder(&run)? {
                Some(holder) => plan.held.push((run, holder)),
                None => plan.runs.push(row),
            }
        }
    }
    plan.trash = store
        .trash_ages()?
        .into_iter()
        .filter(|t| now.saturating_sub(t.trashed_at) >= policy.trash_older_than)
        .collect();
    Ok(plan)
}

/// Whether `row` matches the policy's age and status criteria.
fn matches(policy: &GcPolicy, row: &RunRow, now: i64) -> bool {
    let old = policy
        .older_than
        .is_none_or(|age| now.saturating_sub(row.updated) >= age);
    let status = policy.statuses.is_empty()
        || row
            .status
            .as_ref()
            .is_some_and(|s| policy.statuses.contains(s));
    old && status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, updated: i64) -> RunRow {
        RunRow {
            id: "01kaxz00000000000000000001".into(),
            template: None,
            status: Some(status.into()),
            checkpoint: "a".repeat(40),
            updated,
            summary: String::new(),
            failed_phases: Vec::new(),
            phase: None,
        }
    }

    #[test]
    fn age_and_status_must_both_match() {
        let day = 86_400;
        let policy = GcPolicy {
            older_than: Some(30 * day),
            statuses: vec!["failed".into(), "cancelled".into()],
            ..GcPolicy::default()
        };
        let now = 100 * day;
        assert!(matches(&policy, &row("failed", 70 * day), now));
        assert!(
            !matches(&policy, &row("failed", 71 * day), now),
            "too young"
        );
        assert!(!matches(&policy, &row("completed", 0), now), "other status");
        let any = GcPolicy {
            keep: Some(3),
            ..GcPolicy::default()
        };
        assert!(any.selects_runs());
        assert!(matches(&any, &row("running", now), now));
        assert!(!GcPolicy::default().selects_runs());
    }
}
