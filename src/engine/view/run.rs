//! The run view: a run's record and every phase's state at its tip, with
//! the DAG's layers, as `wfe status` and `wfe show RUN` present them.

use crate::budget::{Budget, Spend};
use serde::{Serialize, Serializer};

use super::super::{
    Comment, Dag, EngineError, PhaseState, PhaseStatus, RunRecord, RunSnapshot, operations,
};
use crate::attempt::AttemptUsage;
use crate::engine::worker::claim::{Claim, claims};
use crate::store::{RunId, RunStore};
use crate::template::{Phase, PhaseKind};
use std::collections::BTreeMap;

/// A run at one checkpoint: its record and its phases.
///
/// Serialises as the run document of `wfe status --json` (and `wfe run
/// --json`): `id`, `template`, `status`, `checkpoint`, `base_commit`,
/// `created_at`, `finished_at`, `reason`, `args` and `phases[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// The checkpoint read.
    pub checkpoint: String,
    /// `run.json`: id, template name and source, status, reason, timestamps.
    pub record: RunRecord,
    /// The top-level phases, in template order.
    pub phases: Vec<PhaseRow>,
    /// The DAG's layers from the roots on: indexes into `phases`, each
    /// layer needing only phases of earlier ones.
    pub layers: Vec<Vec<usize>>,
}

/// One top-level phase of a [`RunView`].
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseRow {
    /// Its `state.json`.
    pub state: PhaseState,
    /// The phases it needs, by id.
    pub needs: Vec<String>,
    /// A loop: the most iterations it may run (1 when the template says
    /// nothing); `None` for any other phase.
    pub max_iters: Option<u32>,
    /// A loop that has started: its children's states in its current (or
    /// last) iteration, in template order; empty otherwise.
    pub children: Vec<PhaseState>,
    /// An agent's budget: as a person raised it, else the template's.
    pub budget: Option<Budget>,
    /// The loops inside it that have started in that iteration: their
    /// most iterations and their children's states in their current (or
    /// last) iteration, by loop id.
    pub nested: BTreeMap<String, (u32, Vec<PhaseState>)>,
    /// The `wfe worker` claim on it at this checkpoint, if any: the
    /// phase runs on that worker while the claim is live.
    pub claim: Option<ClaimView>,
}

/// A worker's claim on a phase as views show it (`claims/<phase>.json`),
/// judged live or lapsed against the wall clock when the view was read
/// (leases are wall-clock times shared between machines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimView {
    /// The worker's id.
    pub worker: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When the lease ends unless renewed (RFC 3339).
    pub expires: String,
    /// Whether the lease had ended when the view was read: the worker
    /// stopped renewing it, and another worker may take the phase over.
    pub lapsed: bool,
}

impl ClaimView {
    /// `claim` as seen at `now_ms` (milliseconds since the Unix epoch).
    pub fn new(claim: &Claim, now_ms: u64) -> Self {
        ClaimView {
            worker: claim.worker.clone(),
            host: claim.host.clone(),
            pid: claim.pid,
            expires: crate::time::format_stamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(claim.expires_ms),
            ),
            lapsed: !claim.live(now_ms),
        }
    }

    /// `worker@host`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.worker, self.host)
    }
}

impl PhaseRow {
    /// The phase's status as it truly is: a pending phase a worker holds
    /// by a live claim is running there.
    pub fn shown_status(&self) -> PhaseStatus {
        match &self.claim {
            Some(c) if !c.lapsed && self.state.status == PhaseStatus::Pending => {
                PhaseStatus::Running
            }
            _ => self.state.status,
        }
    }
}

/// How many top-level phases of a run ended which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseCounts {
    /// Every top-level phase.
    pub total: usize,
    /// Completed.
    pub completed: usize,
    /// Failed.
    pub failed: usize,
    /// Timed out.
    pub timed_out: usize,
    /// Skipped.
    pub skipped: usize,
    /// Cancelled.
    pub cancelled: usize,
}

/// A run with the comments people left on it and on its phases, as
/// `wfe show RUN` presents it; serialises as the run document plus
/// `comments`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    /// The run.
    pub run: RunView,
    /// Every comment, oldest first.
    pub comments: Vec<Comment>,
}

impl RunView {
    /// The run at its tip.
    pub fn load(store: &dyn RunStore, run: &RunId) -> Result<Self, EngineError> {
        let snap = RunSnapshot::load_tip(store, run)?;
        Self::from_snapshot(&snap).with_claims(store, run)
    }

    /// The view with the workers' claims at its checkpoint read in.
    pub fn with_claims(mut self, store: &dyn RunStore, run: &RunId) -> Result<Self, EngineError> {
        let at = crate::store::CheckpointId(self.checkpoint.clone());
        let now = crate::engine::worker::now_ms();
        for (phase, claim) in claims(store, run, &at)? {
            if let Some(row) = self.phases.iter_mut().find(|p| p.state.id == phase) {
                row.claim = Some(ClaimView::new(&claim, now));
            }
        }
        Ok(self)
    }

    /// The run's status as it truly is: a queued (pending) run a worker
    /// has claimed a phase of is running.
    pub fn shown_status(&self) -> super::super::RunStatus {
        match self.record.status {
            super::super::RunStatus::Pending if self.claimed() => super::super::RunStatus::Running,
            s => s,
        }
    }

    /// Whether a worker holds one of its phases by a live claim: the run
    /// is being worked on elsewhere, not interrupted.
    pub fn claimed(&self) -> bool {
        self.phases
            .iter()
            .any(|p| p.claim.as_ref().is_some_and(|c| !c.lapsed))
    }

    /// The run as `snap` read it.
    pub fn from_snapshot(snap: &RunSnapshot) -> Self {
        let dag = Dag::new(&snap.template.phases);
        let phases = snap
            .template
            .phases
            .iter()
            .zip(&snap.phases)
            .enumerate()
            .map(|(i, (spec, state))| PhaseRow {
                state: state.clone(),
                needs: dag
                    .needs(i)
                    .iter()
                    .map(|&d| dag.id(d).to_string())
                    .collect(),
                max_iters: (spec.kind == PhaseKind::Loop).then(|| spec.max_iters.unwrap_or(1)),
                children: snap.children.get(&spec.id).cloned().unwrap_or_default(),
                budget: state.budget.clone().or_else(|| spec.budget.clone()),
                nested: nested_of(snap, spec),
                claim: None,
            })
            .collect();
        RunView {
            checkpoint: snap.checkpoint.0.clone(),
            record: snap.record.clone(),
            phases,
            layers: dag.layers(),
        }
    }

    /// How many top-level phases will not run again by themselves.
    pub fn done(&self) -> usize {
        self.phases
            .iter()
            .filter(|p| p.state.status.is_final())
            .count()
    }

    /// The top-level phases by how they ended (or that they have not).
    pub fn counts(&self) -> PhaseCounts {
        let mut c = PhaseCounts {
            total: self.phases.len(),
            ..PhaseCounts::default()
        };
        for p in &self.phases {
            match p.state.status {
                PhaseStatus::Completed => c.completed += 1,
                PhaseStatus::Failed => c.failed += 1,
                PhaseStatus::TimedOut => c.timed_out += 1,
                PhaseStatus::Skipped => c.skipped += 1,
                PhaseStatus::Cancelled => c.cancelled += 1,
                PhaseStatus::Pending | PhaseStatus::Running | PhaseStatus::Waiting => {}
            }
        }
        c
    }

    /// The phases (top-level, and loops' current children) that failed or
    /// timed out, in template order: a run that went on past them
    /// (`on_failure: continue`) still completes, and these say it was not clean.
    pub fn failed_phases(&self) -> Vec<&str> {
        self.states()
            .filter(|p| p.status.is_unclean_end())
            .map(|p| p.id.as_str())
            .collect()
    }

    /// The run's spend over all its phases and attempts.
    pub fn spend(&self) -> Spend {
        crate::engine::runner::run_spend(
            &self
                .phases
                .iter()
                .map(|p| p.state.clone())
                .collect::<Vec<_>>(),
        )
    }

    /// Every phase's state, top-level phases and loops' current children.
    pub fn states(&self) -> impl Iterator<Item = &PhaseState> {
        self.phases
            .iter()
            .flat_map(|p| std::iter::once(&p.state).chain(&p.children))
    }
}

impl RunDetail {
    /// The run at its tip, with its comments.
    pub fn load(store: &dyn RunStore, run: &RunId) -> Result<Self, EngineError> {
        let snap = RunSnapshot::load_tip(store, run)?;
        let comments = operations::comments(store, &snap)?;
        Ok(RunDetail {
            run: RunView::from_snapshot(&snap).with_claims(store, run)?,
            comments,
        })
    }
}

/// The loops inside loop `spec` that have started in its current
/// iteration (at any depth), with their most iterations and current
/// children.
fn nested_of(snap: &RunSnapshot, spec: &Phase) -> BTreeMap<String, (u32, Vec<PhaseState>)> {
    let mut out = BTreeMap::new();
    for inner in spec.all_loops() {
        if let Some(children) = snap.children.get(&inner.id) {
            out.insert(
                inner.id.clone(),
                (inner.max_iters.unwrap_or(1), children.clone()),
            );
        }
    }
    out
}

/// A phase in the run document; a loop adds `iteration`, `exhausted` and
/// its current iteration's `children` (the same fields each).
#[derive(Serialize)]
struct PhaseJson<'a> {
    id: &'a str,
    kind: PhaseKind,
    status: PhaseStatus,
    attempts: u32,
    artifacts: &'a [String],
    duration_ms: Option<u64>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iteration: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exhausted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a AttemptUsage>,
    /// An agent's spend over all its attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<&'a Spend>,
    /// An agent's budget (per attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<&'a Budget>,
    /// The `wfe worker` that ran it (`id@host`), when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<&'a str>,
    /// The worker claim on it: `{worker, host, pid, expires, lapsed}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    claim: Option<&'a ClaimView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    children: Option<Vec<PhaseJson<'a>>>,
}

impl<'a> PhaseJson<'a> {
    /// `p`, with `children` when it is a loop, and the children of the
    /// loops among them from `nested`.
    fn new(
        p: &'a PhaseState,
        children: Option<&'a [PhaseState]>,
        budget: Option<&'a Budget>,
        nested: &'a BTreeMap<String, (u32, Vec<PhaseState>)>,
    ) -> Self {
        let is_loop = p.kind == PhaseKind::Loop;
        PhaseJson {
            id: &p.id,
            kind: p.kind,
            status: p.status,
            attempts: p.attempt,
            artifacts: &p.artifacts,
            duration_ms: p.duration_ms,
            error: p.error.as_ref().map(|e| e.to_string()),
            iteration: is_loop.then_some(p.iteration),
            exhausted: is_loop.then_some(p.exhausted),
            usage: p.usage.as_ref(),
            spend: p.spend.as_ref(),
            budget: budget.or(p.budget.as_ref()),
            worker: p.worker.as_deref(),
            claim: None,
            children: children.filter(|_| is_loop).map(|c| {
                c.iter()
                    .map(|c| {
                        let inner = nested.get(&c.id).map(|(_, states)| states.as_slice());
                        PhaseJson::new(c, inner, None, nested)
                    })
                    .collect()
            }),
        }
    }
}

/// The run document.
#[derive(Serialize)]
struct RunJson<'a> {
    id: &'a str,
    template: &'a str,
    status: super::super::RunStatus,
    checkpoint: &'a str,
    base_commit: &'a str,
    created_at: &'a str,
    finished_at: Option<&'a str>,
    /// The reason as a sentence: scripts read a string here.
    reason: Option<String>,
    args: &'a serde_json::Value,
    /// The run's spend over all its phases (absent when nothing was spent
    /// and no budget applies: a run of scripts).
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<Spend>,
    /// The run's budget, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<&'a Budget>,
    phases: Vec<PhaseJson<'a>>,
}

impl<'a> RunJson<'a> {
    fn new(view: &'a RunView) -> Self {
        let r = &view.record;
        RunJson {
            id: &r.id,
            template: &r.template,
            status: view.shown_status(),
            checkpoint: &view.checkpoint,
            base_commit: &r.base_commit,
            created_at: &r.created_at,
            finished_at: r.finished_at.as_deref(),
            reason: r.reason.as_ref().map(ToString::to_string),
            args: &r.args,
            spend: (r.budget.is_some() || view.phases.iter().any(|p| p.state.spend.is_some()))
                .then(|| view.spend()),
            budget: r.budget.as_ref(),
            phases: view
                .phases
                .iter()
                .map(|p| {
                    let mut json =
                        PhaseJson::new(&p.state, Some(&p.children), p.budget.as_ref(), &p.nested);
                    json.status = p.shown_status();
                    json.claim = p.claim.as_ref();
                    json
                })
                .collect(),
        }
    }
}

impl Serialize for RunView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RunJson::new(self).serialize(serializer)
    }
}

impl Serialize for RunDetail {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct DetailJson<'a> {
            #[serde(flatten)]
            run: RunJson<'a>,
            comments: &'a [Comment],
        }
        DetailJson {
            run: RunJson::new(&self.run),
            comments: &self.comments,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Fixture;
    use super::*;
    use crate::engine::RunStatus;

    #[test]
    fn a_run_view_has_every_phase_in_template_order_with_its_needs_and_layers() {
        let f = Fixture::new();
        let run = f.loop_run();
        let view = RunView::load(&f.store, &run).unwrap();
        assert_eq!(view.record.template, "loopy");
        assert_eq!(view.record.status, RunStatus::Failed);
        let ids: Vec<&str> = view.phases.iter().map(|p| p.state.id.as_str()).collect();
        assert_eq!(ids, ["build", "repair", "ship"]);
        assert_eq!(view.phases[1].needs, ["build"]);
        assert_eq!(view.phases[2].needs, ["repair"]);
        assert_eq!(view.layers, [vec![0], vec![1], vec![2]]);
        assert_eq!(view.phases[0].max_iters, None);
        assert_eq!(view.phases[1].max_iters, Some(3));
        let children: Vec<&str> = view.phases[1]
            .children
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(children, ["fix", "test"], "the loop's current iteration");
        assert_eq!(view.done(), 2);
        let counts = view.counts();
        assert_eq!(
            (
                counts.total,
                counts.completed,
                counts.failed,
                counts.skipped
            ),
            (3, 1, 1, 0),
            "{counts:?}"
        );
        assert_eq!(view.failed_phases(), ["repair", "test"]);
        assert_eq!(view.states().count(), 5);
    }

    #[test]
    fn a_run_view_serialises_as_the_snapshot_document() {
        let f = Fixture::new();
        for run in [f.loop_run(), f.failed_run()] {
            let snap = RunSnapshot::load_tip(&f.store, &run).unwrap();
            let view = RunView::from_snapshot(&snap);
            assert_eq!(serde_json::to_value(&view).unwrap(), snap.to_json());
        }
    }

    #[test]
    fn a_run_detail_adds_the_comments_to_the_run_document() {
        let f = Fixture::new();
        let run = f.failed_run();
        let detail = RunDetail::load(&f.store, &run).unwrap();
        assert_eq!(detail.comments.len(), 2);
        let doc = serde_json::to_value(&detail).unwrap();
        let mut expected = serde_json::to_value(&detail.run).unwrap();
        expected["comments"] = json!(detail.comments);
        assert_eq!(doc, expected);
        assert_eq!(doc["comments"][1]["phase"], "boom");
    }
}
