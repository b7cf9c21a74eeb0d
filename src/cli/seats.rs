//! Who plays agent phases in this process: `.wfe/config.json`, the user's
//! keys, and `--replay`, turned into the engine's [`Seats`]; and the check
//! that they can all be filled, made before a run (or an attempt) starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{CliError, seat_hint};
use crate::agent::Seat;
use crate::engine::{SeatRequest, SeatRole, Seats, layout};
use crate::provider::config::ProviderKind;
use crate::provider::registry::{Registry, SeatProblem};
use crate::provider::replay::{ReplayProvider, load_dir, parse_exchanges};
use crate::provider::{Exchange, ProviderError, ProviderErrorKind};
use crate::store::{GitStore, RunId, RunStore};
use crate::template::{PhaseKind, Template};

/// The recorded exchanges of a run, by phase key (a loop's child by
/// `LOOP/iterations/K/CHILD`): what a replay answers from.
pub(super) type Recorded = BTreeMap<String, Vec<Exchange>>;

/// Seats from config, or from a recorded run for every phase (`--replay`).
#[derive(Debug)]
pub(super) struct ConfigSeats {
    registry: Registry,
    root: PathBuf,
    /// `--replay RUN`: every agent phase answers from RUN's exchanges.
    replay: Option<(String, Recorded)>,
    /// Replay providers of the config whose `from` is a run, loaded up front.
    recorded_runs: BTreeMap<String, Recorded>,
    /// Each phase's `pass_env`: provider keys its `cli` agent keeps.
    pass_env: BTreeMap<String, Vec<String>>,
}

impl ConfigSeats {
    /// Seats for `template`'s agent phases: from the config and the
    /// environment's keys, or all from run `replay` when given.
    pub(super) fn new(
        registry: Registry,
        root: &Path,
        store: &GitStore,
        template: &Template,
        replay: Option<&RunId>,
    ) -> Result<ConfigSeats, ProviderError> {
        let replay = match replay {
            Some(run) => Some((
                format!("run {}", run.as_str()),
                recorded(store, run, template)?,
            )),
            None => None,
        };
        let mut recorded_runs = BTreeMap::new();
        for (name, entry) in &registry.config().providers {
            let Some(from) = entry.from.as_deref() else {
                continue;
            };
            if entry.kind != ProviderKind::Replay || root.join(from).is_dir() {
                continue;
            }
            let run = store.resolve(from).map_err(|e| {
                ProviderError::new(
                    ProviderErrorKind::Config,
                    format!(
                        "provider `{name}`: `from: {from}` is neither a directory (relative to {}) nor a run: {e}",
                        root.display()
                    ),
                )
            })?;
            recorded_runs.insert(from.to_string(), recorded(store, &run, template)?);
        }
        let pass_env = template
            .all_phases()
            .into_iter()
            .map(|p| (p.id.clone(), p.pass_env.clone()))
            .collect();
        Ok(ConfigSeats {
            pass_env,
            registry,
            root: root.to_path_buf(),
            replay,
            recorded_runs,
        })
    }

    /// A replay seat answering `phase` from `exchanges`, with the model and
    /// `max_tokens` the recording used (requests must match exactly).
    fn replay_seat(
        &self,
        label: &str,
        phase: &str,
        seat: SeatRole,
        exchanges: Vec<Exchange>,
    ) -> Seat {
        let wanted = |e: &&Exchange| match seat {
            SeatRole::Primary => e.conversation == "primary",
            SeatRole::Reviewer => e.conversation.starts_with("review-"),
        };
        let first = exchanges.iter().find(wanted);
        let model = first.map_or_else(|| "replay".to_string(), |e| e.model.clone());
        let max_tokens = first.map_or(8192, |e| e.max_tokens);
        Seat {
            provider_name: "replay".into(),
            provider: Arc::new(ReplayProvider::new(
                format!("{label}, phase {phase}"),
                exchanges,
            )),
            model_info: self.registry.model_info(&model),
            model,
            max_tokens,
        }
    }
}

impl Seats for ConfigSeats {
    fn seat(
        &self,
        phase: &str,
        seat: SeatRole,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<Seat, ProviderError> {
        // A loop's child is asked for by key (`fix/iterations/2/test`);
        // its template entry is the last part.
        let id = phase.rsplit('/').next().unwrap_or(phase);
        if let Some((label, recorded)) = &self.replay {
            let exchanges = recorded.get(phase).cloned().unwrap_or_default();
            return Ok(self.replay_seat(label, phase, seat, exchanges));
        }
        let (name, model) = self.registry.seat(role, provider, model)?;
        let entry = self.registry.entry(&name)?;
        if entry.kind == ProviderKind::Replay {
            let from = entry.from.clone().unwrap_or_default();
            let exchanges = match self.recorded_runs.get(&from) {
                Some(recorded) => recorded.get(phase).cloned().unwrap_or_default(),
                None => load_dir(&self.root.join(&from), phase)?,
            };
            return Ok(self.replay_seat(&format!("provider `{name}`"), phase, seat, exchanges));
        }
        Ok(Seat {
            provider: self
                .registry
                .build_keeping(&name, self.pass_env.get(id).map_or(&[][..], Vec::as_slice))?,
            max_tokens: self.registry.role_max_tokens(role, &name),
            model_info: self.registry.model_info(&model),
            provider_name: name,
            model,
        })
    }
}

/// Adds the key of agent `phase` (its files under `key`), or for a loop
/// that of every agent child in each iteration it ran (a nested loop's in
/// each iteration of the loops around it).
fn agent_keys(
    store: &GitStore,
    tip: &crate::store::CheckpointId,
    phase: &crate::template::Phase,
    key: &str,
    keys: &mut Vec<String>,
) -> Result<(), crate::store::StoreError> {
    match phase.kind {
        PhaseKind::Agent => keys.push(key.to_string()),
        PhaseKind::Loop => {
            // Listing iterations costs a tree read: skip loops with no agent.
            let mut inside = Vec::new();
            collect_kinds(&phase.phases, &mut inside);
            if !inside.contains(&PhaseKind::Agent) {
                return Ok(());
            }
            for (k, _) in store.list_dir(tip, &layout::iterations(key))? {
                let Ok(k) = k.parse::<u32>() else { continue };
                for child in &phase.phases {
                    agent_keys(
                        store,
                        tip,
                        child,
                        &layout::child_key(key, k, &child.id),
                        keys,
                    )?;
                }
            }
        }
        PhaseKind::Script | PhaseKind::Gate => {}
    }
    Ok(())
}

/// The kinds of `phases` and of their children, at any depth.
fn collect_kinds(phases: &[crate::template::Phase], out: &mut Vec<PhaseKind>) {
    for p in phases {
        out.push(p.kind);
        collect_kinds(&p.phases, out);
    }
}

/// The exchanges of every agent phase of `template` as run `run` recorded
/// them: top-level ones by id, a loop's agent children per iteration (of
/// the loop's last attempt) by key.
fn recorded(store: &GitStore, run: &RunId, template: &Template) -> Result<Recorded, ProviderError> {
    let fail = |message: String| ProviderError::new(ProviderErrorKind::Config, message);
    let unreadable =
        |e: crate::store::StoreError| fail(format!("cannot read run {}: {e}", run.as_str()));
    let tip = store
        .tip(run)
        .map_err(unreadable)?
        .ok_or_else(|| fail(format!("no run {}", run.as_str())))?;
    let mut keys: Vec<String> = Vec::new();
    for phase in &template.phases {
        agent_keys(store, &tip, phase, &phase.id, &mut keys).map_err(unreadable)?;
    }
    let mut recorded = Recorded::new();
    for key in keys {
        let bytes = store
            .read(&tip, &layout::exchanges(&key))
            .map_err(unreadable)?
            .unwrap_or_default();
        let origin = format!("run {}: {}", run.as_str(), layout::exchanges(&key));
        let exchanges = parse_exchanges(&String::from_utf8_lossy(&bytes), &origin)?;
        recorded.insert(key, exchanges);
    }
    Ok(recorded)
}

/// Checks that `registry` (the config and the user's keys) can fill every
/// seat of `requests`, made for template `template`: every role, provider
/// and model resolves and every provider has the key its kind needs.
/// Reports every problem at once, each with the phase it belongs to, as
/// one bad-input error whose hint says how to fix each.
pub(super) fn check(
    registry: &Registry,
    template: &str,
    requests: &[SeatRequest],
) -> Result<(), CliError> {
    let problems: Vec<(&SeatRequest, SeatProblem)> = requests
        .iter()
        .flat_map(|r| {
            registry
                .check_seat(r.role.as_deref(), r.provider.as_deref(), r.model.as_deref())
                .into_iter()
                .map(move |p| (r, p))
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    let mut message = format!(
        "the agent phases of template `{template}` cannot be set up ({n} problem{})",
        if n == 1 { "" } else { "s" }
    );
    for (request, problem) in &problems {
        let seat = match request.seat {
            SeatRole::Primary => "",
            SeatRole::Reviewer => " reviewer",
        };
        message.push_str(&format!(
            "\n  {} (phase `{}`{seat}): {problem}",
            request.path, request.phase
        ));
    }
    let error = CliError::input(message);
    Err(match seat_hint(problems.iter().map(|(_, p)| p)) {
        Some(hint) => error.hint(hint),
        None => error,
    })
}
