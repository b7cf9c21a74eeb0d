//! Who waits for whom among one level's phases, asked one pair at a time.
//!
//! Validation asks "is `b` upstream of `a`?" for each artifact reference
//! and each loop hand-over. Computing every phase's full upstream set up
//! front costs the square of the phase count in time and memory (a
//! 10,000-phase chain: 50 million set entries, 1.6 GB). Instead the graph
//! is built once, in time linear in phases + edges, and each question is a
//! depth-first search that stops early:
//!
//! - in an acyclic level each phase has a depth (the longest chain of needs
//!   below it), and only phases deeper than the target can reach it, so a
//!   question about a phase one layer up never looks further;
//! - answers are remembered per target (every phase a failed search saw
//!   cannot reach the target either; every phase on a successful search's
//!   path can), so many phases asking about one far-away phase cost one
//!   walk, not one each.

use std::collections::{HashMap, HashSet};

use super::Phase;

/// The waits-for graph of one level, with remembered answers.
pub(crate) struct Upstream<'t> {
    /// Phase id → node (the last phase with that id, as a map would keep).
    node: HashMap<&'t str, usize>,
    /// Each node's needs among the level's nodes, without repeats; a loop's
    /// `on_exhausted: {"next": …}` target also waits for the loop.
    needs: Vec<Vec<usize>>,
    /// Each node's depth when the level has no cycle: 0 for a phase with no
    /// needs, else one more than its deepest need.
    depth: Option<Vec<usize>>,
    /// (from, target) → whether target is upstream of from.
    known: HashMap<(usize, usize), bool>,
}

impl<'t> Upstream<'t> {
    /// The graph of `phases` (one level: the template's, or a loop's children).
    pub(crate) fn new(phases: &'t [Phase]) -> Self {
        let mut node: HashMap<&'t str, usize> = HashMap::with_capacity(phases.len());
        let mut last: Vec<&'t Phase> = Vec::with_capacity(phases.len());
        for phase in phases {
            match node.get(phase.id.as_str()) {
                Some(&n) => last[n] = phase,
                None => {
                    node.insert(phase.id.as_str(), last.len());
                    last.push(phase);
                }
            }
        }
        let mut needs: Vec<Vec<usize>> = last
            .iter()
            .map(|p| {
                p.needs
                    .iter()
                    .filter_map(|n| node.get(n.as_str()).copied())
                    .collect()
            })
            .collect();
        for phase in phases {
            if let Some(target) = phase.on_exhausted.as_ref().and_then(|o| o.next())
                && let Some(&t) = node.get(target)
                && let Some(&from) = node.get(phase.id.as_str())
            {
                needs[t].push(from);
            }
        }
        for list in &mut needs {
            let mut seen = HashSet::with_capacity(list.len());
            list.retain(|n| seen.insert(*n));
        }
        let depth = depths(&needs);
        Upstream {
            node,
            needs,
            depth,
            known: HashMap::new(),
        }
    }

    /// Whether `target` is upstream of `from`: `from` waits for it,
    /// directly or through others. A phase is its own upstream only in a
    /// cycle. Unknown ids are upstream of nothing.
    pub(crate) fn contains(&mut self, from: &str, target: &str) -> bool {
        let (Some(&from), Some(&target)) = (self.node.get(from), self.node.get(target)) else {
            return false;
        };
        self.reaches(from, target)
    }

    fn reaches(&mut self, from: usize, target: usize) -> bool {
        if let Some(&answer) = self.known.get(&(from, target)) {
            return answer;
        }
        // Only a deeper phase can wait for the target.
        let hopeless = |n: usize| {
            self.depth
                .as_ref()
                .is_some_and(|d| n != target && d[n] <= d[target])
        };
        // (node, index of its next need to follow); `from` itself is not
        // marked seen, so a cycle back to it is found.
        let mut stack: Vec<(usize, usize)> = vec![(from, 0)];
        let mut seen: HashSet<usize> = HashSet::new();
        let mut found = false;
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            let Some(&n) = self.needs[at].get(*next) else {
                stack.pop();
                continue;
            };
            *next += 1;
            if n == target {
                found = true;
                break;
            }
            if hopeless(n) || !seen.insert(n) {
                continue;
            }
            match self.known.get(&(n, target)) {
                Some(true) => {
                    found = true;
                    break;
                }
                Some(false) => {}
                None => stack.push((n, 0)),
            }
        }
        if found {
            // Every phase on the path waits for the target.
            for (at, _) in stack {
                self.known.insert((at, target), true);
            }
        } else {
            // Everything searched is upstream of `from`, so none of it can
            // reach the target either.
            self.known.insert((from, target), false);
            for n in seen {
                self.known.insert((n, target), false);
            }
        }
        found
    }
}

/// Each node's depth (Kahn's algorithm over the needs), or None when the
/// needs form a cycle.
fn depths(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut needed_by: Vec<Vec<usize>> = vec![Vec::new(); needs.len()];
    for (n, list) in needs.iter().enumerate() {
        for &m in list {
            needed_by[m].push(n);
        }
    }
    let mut depth = vec![0usize; needs.len()];
    let mut ready: Vec<usize> = (0..needs.len()).filter(|&n| waiting[n] == 0).collect();
    let mut done = 0;
    while let Some(m) = ready.pop() {
        done += 1;
        for &n in &needed_by[m] {
            depth[n] = depth[n].max(depth[m] + 1);
            waiting[n] -= 1;
            if waiting[n] == 0 {
                ready.push(n);
            }
        }
    }
    (done == needs.len()).then_some(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(spec: &[(&str, &[&str])]) -> Vec<Phase> {
        spec.iter()
            .map(|(id, needs)| {
                serde_json::from_value(serde_json::json!({
                    "id": id, "kind": "script", "run": "true", "needs": needs
                }))
                .expect("a phase")
            })
            .collect()
    }

    /// The upstream sets by brute force, to compare with.
    fn closure(spec: &[(&str, &[&str])], from: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(id) = todo.pop() {
            for (p, needs) in spec {
                if *p == id {
                    for n in *needs {
                        if seen.insert(n.to_string()) {
                            todo.push(n.to_string());
                        }
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn answers_match_the_transitive_closure() {
        let specs: Vec<Vec<(&str, &[&str])>> = vec![
            vec![("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["a"])],
            vec![
                ("a", &[]),
                ("b", &[]),
                ("c", &["a", "b"]),
                ("d", &["c"]),
                ("e", &["b"]),
                ("f", &["d", "e"]),
            ],
            // Cycles: a phase is its own upstream only there.
            vec![("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &["c"])],
            vec![("a", &["a"]), ("b", &["a", "zz"])],
        ];
        for spec in specs {
            let list = phases(&spec);
            let mut up = Upstream::new(&list);
            // Ask in both orders so remembered answers are exercised.
            let ids: Vec<&str> = spec.iter().map(|(id, _)| *id).collect();
            for order in [ids.clone(), ids.iter().rev().copied().collect()] {
                for from in &order {
                    let expected = closure(&spec, from);
                    for target in &order {
                        assert_eq!(
                            up.contains(from, target),
                            expected.contains(*target),
                            "{from} ← {target} in {spec:?}"
                        );
                    }
                }
            }
            assert!(!up.contains("nope", "a"));
        }
    }

    #[test]
    fn a_long_chain_is_answered_without_quadratic_work() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("p{i}")).collect();
        let list: Vec<Phase> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let needs: Vec<&String> = if i == 0 { vec![] } else { vec![&ids[i - 1]] };
                serde_json::from_value(serde_json::json!({
                    "id": id, "kind": "script", "run": "true", "needs": needs
                }))
                .expect("a phase")
            })
            .collect();
        let mut up = Upstream::new(&list);
        // Everyone asks about the first phase, and about its predecessor.
        for i in 1..ids.len() {
            assert!(up.contains(&ids[i], &ids[0]));
            assert!(up.contains(&ids[i], &ids[i - 1]));
            assert!(!up.contains(&ids[i - 1], &ids[i]));
        }
        // Remembered answers stay linear in the chain.
        assert!(up.known.len() < 4 * ids.len(), "{}", up.known.len());
    }
}
