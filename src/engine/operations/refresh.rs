//! `wfe retry --refresh-template`: the repo's current template taken for
//! the retried phase and every phase downstream of it, when the run can
//! follow the change.
//!
//! A run's checkpoints, states and frozen schemas are laid out by its
//! DAG, so the refreshed template must have the run's shape: the same
//! phases in the same order, each with the same kind, `needs`, `outputs`,
//! `matrix` and (for a loop) children of that same shape, and a second
//! opinion (`review`) only where the run already froze its schema.
//! Everything else of a taken phase may change (its prompt, script,
//! tools, timeout, retry policy, …). Phases upstream of the retried one
//! already ran: they keep their frozen definitions, as do the template's
//! `args`, `defaults` and `env`, which the run's earlier phases used.

use std::collections::{BTreeMap, BTreeSet};

use crate::template::{Phase, Template, expand};

/// The frozen template with the current definitions of the phases it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    /// The template the run goes on with.
    pub template: Template,
    /// The template phases whose current definitions were taken, in order.
    pub taken: Vec<String>,
}

/// Builds the template a retry of `phase` (an id of the run's DAG: a
/// template phase, or one combination of a matrix phase) goes on with,
/// or says why the run cannot follow `current`.
/// `frozen_schemas` names the schemas the run froze.
pub fn refresh_template(
    frozen: &Template,
    current: &Template,
    phase: &str,
    frozen_schemas: &BTreeMap<String, String>,
) -> Result<Refreshed, String> {
    let frozen_ids: Vec<&str> = frozen.phases.iter().map(|p| p.id.as_str()).collect();
    let current_ids: Vec<&str> = current.phases.iter().map(|p| p.id.as_str()).collect();
    if frozen_ids != current_ids {
        return Err(format!(
            "its phases are [{}] but the run's are [{}]",
            current_ids.join(", "),
            frozen_ids.join(", ")
        ));
    }
    for (old, new) in frozen.phases.iter().zip(&current.phases) {
        same_shape(old, new, &old.id)?;
    }
    // The retried phase as the template writes it.
    let root = expand(frozen)
        .phases
        .iter()
        .find(|p| p.id == phase)
        .map(|p| {
            p.combination
                .as_ref()
                .map_or(p.id.clone(), |c| c.of.clone())
        })
        .ok_or_else(|| format!("the run's template has no phase `{phase}`"))?;
    let mut taken: BTreeSet<String> = BTreeSet::from([root]);
    // Template order is a topological order of `needs`, so one pass finds
    // every phase downstream.
    for p in &frozen.phases {
        if p.needs.iter().any(|n| taken.contains(n)) {
            taken.insert(p.id.clone());
        }
    }
    let mut template = frozen.clone();
    for (slot, new) in template.phases.iter_mut().zip(&current.phases) {
        if taken.contains(&slot.id) {
            *slot = new.clone();
        }
    }
    let reviewed = |t: &Template| {
        t.phases
            .iter()
            .flat_map(|p| std::iter::once(p).chain(&p.phases))
            .any(|p| p.review.is_some())
    };
    if reviewed(&template)
        && !reviewed(frozen)
        && !frozen_schemas.contains_key(crate::engine::REVIEW_SCHEMA)
    {
        return Err(
            "it adds a second opinion (`review`), whose schema the run did not freeze".into(),
        );
    }
    let taken = frozen
        .phases
        .iter()
        .filter(|p| taken.contains(&p.id))
        .map(|p| p.id.clone())
        .collect();
    Ok(Refreshed { template, taken })
}

/// Refuses a phase whose change the run's layout cannot follow; `at`
/// names it (`loop/child` inside a loop).
fn same_shape(old: &Phase, new: &Phase, at: &str) -> Result<(), String> {
    if old.kind != new.kind {
        return Err(format!(
            "phase `{at}` is a {} phase now, the run's is a {} phase",
            new.kind.as_str(),
            old.kind.as_str()
        ));
    }
    if old.needs != new.needs {
        return Err(format!(
            "phase `{at}` needs [{}] now, the run's needs [{}]",
            new.needs.join(", "),
            old.needs.join(", ")
        ));
    }
    if old.outputs != new.outputs {
        return Err(format!(
            "phase `{at}` has other outputs now ({}), the run's are ({}); their schemas were frozen when the run started",
            outputs(new),
            outputs(old)
        ));
    }
    if old.matrix != new.matrix {
        return Err(format!("phase `{at}` has another matrix now"));
    }
    let old_children: Vec<&str> = old.phases.iter().map(|p| p.id.as_str()).collect();
    let new_children: Vec<&str> = new.phases.iter().map(|p| p.id.as_str()).collect();
    if old_children != new_children {
        return Err(format!(
            "loop `{at}` has the phases [{}] now, the run's has [{}]",
            new_children.join(", "),
            old_children.join(", ")
        ));
    }
    for (o, n) in old.phases.iter().zip(&new.phases) {
        same_shape(o, n, &format!("{at}/{}", o.id))?;
    }
    Ok(())
}

/// `name: schema` pairs of a phase's outputs, for a message.
fn outputs(phase: &Phase) -> String {
    if phase.outputs.is_empty() {
        return "none".into();
    }
    phase
        .outputs
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn template(value: serde_json::Value) -> Template {
        serde_json::from_value(value).unwrap()
    }

    fn three(run_b: &str, needs_c: &[&str]) -> Template {
        template(json!({
            "name": "t",
            "phases": [
                { "id": "a", "kind": "script", "run": "echo a" },
                { "id": "b", "kind": "script", "needs": ["a"], "run": run_b },
                { "id": "c", "kind": "script", "needs": needs_c, "run": "echo c" },
                { "id": "d", "kind": "script", "run": "echo d" }
            ]
        }))
    }

    #[test]
    fn takes_the_phase_and_what_follows_and_keeps_the_rest() {
        let frozen = three("echo b", &["b"]);
        let mut current = three("echo fixed", &["b"]);
        current.phases[0].run = Some("echo changed a".into());
        current.phases[3].run = Some("echo changed d".into());
        current.phases[2].run = Some("echo changed c".into());
        let out = refresh_template(&frozen, &current, "b", &BTreeMap::new()).unwrap();
        assert_eq!(out.taken, ["b", "c"]);
        assert_eq!(out.template.phases[0].run.as_deref(), Some("echo a"));
        assert_eq!(out.template.phases[1].run.as_deref(), Some("echo fixed"));
        assert_eq!(
            out.template.phases[2].run.as_deref(),
            Some("echo changed c")
        );
        assert_eq!(out.template.phases[3].run.as_deref(), Some("echo d"));
    }

    #[test]
    fn refuses_a_changed_shape() {
        let frozen = three("echo b", &["b"]);
        let e =
            refresh_template(&frozen, &three("echo b", &["a"]), "b", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("phase `c` needs [a] now"), "{e}");
        let mut fewer = three("echo b", &["b"]);
        fewer.phases.pop();
        let e = refresh_template(&frozen, &fewer, "b", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("its phases are [a, b, c]"), "{e}");
        let mut outputs = three("echo b", &["b"]);
        outputs.phases[1]
            .outputs
            .schemas
            .insert("report".into(), "message".into());
        let e = refresh_template(&frozen, &outputs, "b", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("other outputs"), "{e}");
    }

    #[test]
    fn an_unknown_phase_is_named() {
        let frozen = three("echo b", &["b"]);
        let e = refresh_template(&frozen, &frozen, "zz", &BTreeMap::new()).unwrap_err();
        assert!(e.contains("no phase `zz`"), "{e}");
    }
}
