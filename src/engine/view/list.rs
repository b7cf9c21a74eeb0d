//! The list view: one row per run, read from the runs' tip commits and
//! their trailers alone (no trees), so listing stays fast with many runs.

use serde::Serialize;

use crate::store::{BrokenRun, RunHead, RunStore, StoreError, Trailer};

/// Which runs to list; an unset field lets every run through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only runs with this status, as trailers spell it (`failed`, `waiting`, …).
    pub status: Option<String>,
    /// Only runs of this template.
    pub template: Option<String>,
}

/// One run in the list; serialises as an element of `wfe list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// The run's id.
    pub id: String,
    /// Its template, from the tip's `Wfe-Template` trailer.
    pub template: Option<String>,
    /// Its status, from the tip's `Wfe-Status` trailer.
    pub status: Option<String>,
    /// Its tip commit.
    pub checkpoint: String,
    /// When the tip was committed, seconds since the Unix epoch.
    pub updated: i64,
    /// The tip's summary line.
    pub summary: String,
    /// Phases that failed or timed out in a run that completed anyway
    /// (`on_failure: continue`), from the tip's `Wfe-Failed` trailers;
    /// empty for runs written before those trailers existed.
    pub failed_phases: Vec<String>,
    /// The phase the tip's last event is about (`Wfe-Phase`), where the
    /// run stands; not in `wfe list --json`.
    #[serde(skip)]
    pub phase: Option<String>,
}

impl ListFilter {
    /// Whether `row` passes.
    pub fn admits(&self, row: &RunRow) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        is(&self.status, &row.status) && is(&self.template, &row.template)
    }
}

/// The list: the rows `filter` admits and, apart, the runs whose ref is
/// broken (no row can be made of them; every one is given, whatever the filter).
#[derive(Debug, Default)]
pub struct Listing {
    /// The rows, newest run id first.
    pub rows: Vec<RunRow>,
    /// Runs skipped because their tip cannot be read, newest first.
    pub broken: Vec<BrokenRun>,
}

/// The runs `filter` admits, newest run id first; broken runs are left out.
pub fn list_runs(store: &dyn RunStore, filter: &ListFilter) -> Result<Vec<RunRow>, StoreError> {
    Ok(list_all(store, filter)?.rows)
}

/// The runs `filter` admits, and the broken runs skipped.
pub fn list_all(store: &dyn RunStore, filter: &ListFilter) -> Result<Listing, StoreError> {
    // A row at a time: each tip is freed as soon as its row is made.
    let mut rows = Vec::new();
    let broken = store.scan_each(&mut |head| {
        let row = row(head);
        if filter.admits(&row) {
            rows.push(row);
        }
    })?;
    Ok(Listing { rows, broken })
}

/// The row of `head`, its strings moved, not copied: at 10,000 runs the
/// copies were a tenth of `wfe list`.
fn row(head: RunHead) -> RunRow {
    let RunHead { run, tip } = head;
    let mut row = RunRow {
        id: run.into_string(),
        template: None,
        status: None,
        checkpoint: tip.id.0,
        updated: tip.time,
        summary: tip.message.summary,
        failed_phases: Vec::new(),
        phase: None,
    };
    for (key, value) in tip.message.trailers {
        if Trailer::Template.is(&key) {
            row.template.get_or_insert(value);
        } else if Trailer::Status.is(&key) {
            row.status.get_or_insert(value);
        } else if Trailer::Failed.is(&key) {
            row.failed_phases.push(value);
        } else if Trailer::Phase.is(&key) {
            // The last one: where the run stands.
            row.phase = Some(value);
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    #[test]
    fn rows_come_from_the_tips_and_filter_by_status_and_template() {
        let f = Fixture::new();
        let failed = f.failed_run();
        let looped = f.loop_run();
        let all = list_runs(&f.store, &ListFilter::default()).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [looped.as_str(), failed.as_str()], "newest first");
        assert_eq!(all[1].template.as_deref(), Some("failing"));
        assert_eq!(all[1].status.as_deref(), Some("failed"));
        assert_eq!(all[1].summary, "wfe: boom failed (attempt 2)");
        let tip = f.store.tip(&failed).unwrap().unwrap();
        assert_eq!(all[1].checkpoint, tip.0);

        let by = |status: Option<&str>, template: Option<&str>| {
            let filter = ListFilter {
                status: status.map(String::from),
                template: template.map(String::from),
            };
            list_runs(&f.store, &filter)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(by(Some("failed"), None).len(), 2);
        assert_eq!(by(None, Some("failing")), [failed.to_string()]);
        assert_eq!(by(Some("completed"), None), Vec::<String>::new());
        assert_eq!(by(Some("failed"), Some("loopy")), [looped.to_string()]);
    }

    #[test]
    fn a_row_serialises_with_nulls_for_missing_trailers() {
        let row = RunRow {
            id: "r".into(),
            template: None,
            status: Some("failed".into()),
            checkpoint: "c".into(),
            updated: 7,
            summary: "s".into(),
            failed_phases: Vec::new(),
            phase: None,
        };
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            serde_json::json!({
                "id": "r", "template": null, "status": "failed",
                "checkpoint": "c", "updated": 7, "summary": "s",
                "failed_phases": [],
            })
        );
    }
}
