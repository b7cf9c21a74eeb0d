//! The DAG of a template's top-level phases: readiness, ancestry, layers.
//!
//! Pure functions over indices; the template has already been validated, so
//! every `needs` names a phase and there is no cycle.

use std::collections::HashMap;

use crate::template::Phase;

/// Phases by index with their edges both ways.
#[derive(Debug, Clone)]
pub struct Dag {
    ids: Vec<String>,
    /// Id → index (the first phase with the id), so building the DAG and
    /// looking a phase up stay linear in a 10,000-phase template.
    positions: HashMap<String, usize>,
    needs: Vec<Vec<usize>>,
    dependants: Vec<Vec<usize>>,
}

impl Dag {
    /// Builds the DAG of `phases`; needs that name no phase are ignored
    /// (validation reports them before a DAG is ever built). A phase that
    /// a sibling loop hands over to (`on_exhausted: {"next": …}`) needs
    /// that loop, as if it said so: it starts once the loop has ended.
    pub fn new(phases: &[Phase]) -> Self {
        let ids: Vec<String> = phases.iter().map(|p| p.id.clone()).collect();
        let mut positions: HashMap<String, usize> = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            positions.entry(id.clone()).or_insert(i);
        }
        let index = |id: &str| positions.get(id).copied();
        let mut needs: Vec<Vec<usize>> = phases
            .iter()
            .map(|p| p.needs.iter().filter_map(|n| index(n)).collect())
            .collect();
        for (l, phase) in phases.iter().enumerate() {
            let target = phase.on_exhausted.as_ref().and_then(|o| o.next());
            if let Some(t) = target.and_then(index)
                && t != l
                && !needs[t].contains(&l)
            {
                needs[t].push(l);
            }
        }
        let mut dependants = vec![Vec::new(); ids.len()];
        for (i, ns) in needs.iter().enumerate() {
            for &n in ns {
                dependants[n].push(i);
            }
        }
        Dag {
            ids,
            positions,
            needs,
            dependants,
        }
    }

    /// How many phases.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no phases.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of phase `i`.
    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The index of a phase id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.positions.get(id).copied()
    }

    /// The direct needs of phase `i`.
    pub fn needs(&self, i: usize) -> &[usize] {
        &self.needs[i]
    }

    /// The phases that directly need phase `i`.
    pub fn dependants(&self, i: usize) -> &[usize] {
        &self.dependants[i]
    }

    /// Every phase `i` transitively needs, in index order. A bitmap, not a
    /// set: this runs for every phase that starts, so in a 1000-phase
    /// chain it visits half a million ancestors over the run.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.len()];
        let mut found = Vec::new();
        let mut stack: Vec<usize> = self.needs[i].clone();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut seen[n], true) {
                found.push(n);
                stack.extend(&self.needs[n]);
            }
        }
        found.sort_unstable();
        found
    }

    /// Phases whose needs are all `satisfied` and that `waiting` says are still to start.
    pub fn ready(
        &self,
        waiting: impl Fn(usize) -> bool,
        satisfied: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| waiting(i) && self.needs[i].iter().all(|&n| satisfied(n)))
            .collect()
    }

    /// Phases grouped by depth: layer 0 needs nothing, layer k needs something in layer k-1.
    pub fn layers(&self) -> Vec<Vec<usize>> {
        let mut depth = vec![0usize; self.len()];
        // Index order is not topological in general, so relax until stable;
        // a validated DAG settles within `len` passes.
        for _ in 0..self.len() {
            let mut changed = false;
            for i in 0..self.len() {
                let d = self.needs[i]
                    .iter()
                    .map(|&n| depth[n] + 1)
                    .max()
                    .unwrap_or(0);
                if d != depth[i] {
                    depth[i] = d;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut layers = vec![Vec::new(); depth.iter().max().map_or(0, |d| d + 1)];
        for (i, d) in depth.into_iter().enumerate() {
            layers[d].push(i);
        }
        layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::PhaseKind;

    fn dag(spec: &[(&str, &[&str])]) -> Dag {
        let phases: Vec<Phase> = spec
            .iter()
            .map(|(id, needs)| {
                serde_json::from_value(serde_json::json!({
                    "id": id, "kind": PhaseKind::Script, "run": "true", "needs": needs
                }))
                .unwrap()
            })
            .collect();
        Dag::new(&phases)
    }

    fn ids(d: &Dag, v: &[usize]) -> Vec<String> {
        v.iter().map(|&i| d.id(i).to_string()).collect()
    }

    #[test]
    fn ready_follows_needs() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["a"]),
            (&["a"], &["b", "c"]),
            (&["a", "b"], &["c"]),
            (&["a", "b", "c"], &["d"]),
        ];
        for (done, want) in cases {
            let is_done = |i: usize| done.contains(&d.id(i));
            let got = d.ready(|i| !is_done(i), is_done);
            assert_eq!(ids(&d, &got), *want, "done = {done:?}");
        }
    }

    #[test]
    fn a_fallback_needs_the_loop_that_hands_over_to_it() {
        let phases: Vec<Phase> = serde_json::from_value(serde_json::json!([
            { "id": "fix", "kind": "loop", "max_iters": 2, "until": "false",
              "on_exhausted": { "next": "replan" },
              "phases": [{ "id": "x", "kind": "script", "run": "true" }] },
            { "id": "replan", "kind": "script", "run": "true" },
            { "id": "report", "kind": "script", "run": "true", "needs": ["replan"] }
        ]))
        .unwrap();
        let d = Dag::new(&phases);
        assert_eq!(ids(&d, d.needs(1)), ["fix"]);
        assert_eq!(ids(&d, &d.ancestors(2)), ["fix", "replan"]);
        assert_eq!(ids(&d, d.dependants(0)), ["replan"]);
    }

    #[test]
    fn ancestors_are_transitive() {
        let d = dag(&[
            ("a", &[]),
            ("b", &["a"]),
            ("x", &[]),
            ("c", &["b"]),
            ("d", &["c", "x"]),
        ]);
        assert_eq!(ids(&d, &d.ancestors(4)), ["a", "b", "x", "c"]);
        assert!(d.ancestors(0).is_empty());
        assert_eq!(ids(&d, d.dependants(0)), ["b"]);
    }

    #[test]
    fn layers_group_by_depth_even_out_of_order() {
        let d = dag(&[
            ("d", &["b", "c"]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("a", &[]),
            ("e", &[]),
        ]);
        let layers: Vec<Vec<String>> = d.layers().iter().map(|l| ids(&d, l)).collect();
        assert_eq!(layers, vec![vec!["a", "e"], vec!["b", "c"], vec!["d"]]);
    }
}
