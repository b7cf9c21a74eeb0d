//! The run's DAG laid out for a screen, and drawn as SVG.
//!
//! [`layout_run`] turns a [`RunView`] into boxes and routes: longest-path
//! layers from the roots down (every edge points down), phases of a layer
//! side by side, a bounded number of barycenter sweeps to untangle edges,
//! long edges routed through one bend point per layer they cross. A
//! matrix's combinations, and a loop's children, larger than a threshold
//! become one node with per-state counts unless the caller names them in
//! the expanded set. [`render_svg`] draws a layout as one self-contained
//! SVG the web page inlines.
//!
//! Everything here is a pure function of its input: no store, no clock, no
//! I/O, integer coordinates and stable orders, so the same run gives the
//! same bytes (the snapshot tests rely on it). The cost stays near linear
//! in phases plus edges: sorting a layer is `n log n`, counting crossings
//! uses a Fenwick tree, the sweeps are capped and so are the bend points.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;

use super::RunView;
use crate::engine::{PhaseState, PhaseStatus};
use crate::template::PhaseKind;

/// How many combinations or loop children a node shows one by one before
/// it folds them into counts (unless expanded).
pub const DEFAULT_COLLAPSE_ABOVE: usize = 8;

/// Sweeps of crossing reduction at most (alternating down and up).
const MAX_SWEEPS: usize = 8;
/// Above this many vertices plus edges, fewer sweeps: each is linear-ish,
/// but a 10,000-phase page should not wait on the last percent of tidiness.
const BIG_GRAPH: usize = 50_000;
/// The most bend points all long edges may add together; past it, a long
/// edge is drawn as one curve and does not take part in the ordering.
const MAX_BENDS: usize = 100_000;

/// Node geometry (pixels).
const CHAR_W: i64 = 7;
const NODE_MIN_W: i64 = 120;
const NODE_MAX_W: i64 = 300;
const LINE_H: i64 = 16;
const NODE_PAD: i64 = 10;
const GAP_X: i64 = 24;
const GAP_Y: i64 = 48;
const MARGIN: i64 = 16;
const BEND_W: i64 = 8;
const CHIP_H: i64 = 20;
const CHIP_GAP: i64 = 4;
const CHIP_MIN_W: i64 = 48;
const CHIP_MAX_W: i64 = 160;
const CHIPS_MAX_W: i64 = 480;
/// The most characters of a label before it is cut with `…` (the full id
/// is in the node's `<title>`).
const LABEL_CHARS: usize = 40;

/// What to lay out besides the run itself.
#[derive(Debug, Clone)]
pub struct LayoutOptions {
    /// Groups (a matrix phase's id, a loop's id) shown member by member
    /// even when larger than `collapse_above`.
    pub expanded: BTreeSet<String>,
    /// Groups with more members than this are folded into one node.
    pub collapse_above: usize,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions {
            expanded: BTreeSet::new(),
            collapse_above: DEFAULT_COLLAPSE_ABOVE,
        }
    }
}

/// A laid-out DAG: nodes with boxes, edges with routes, the drawing's size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    /// The run's id (links point into it).
    pub run: String,
    /// Width of the drawing.
    pub width: i64,
    /// Height of the drawing.
    pub height: i64,
    /// The nodes, layer by layer, left to right within a layer.
    pub nodes: Vec<Node>,
    /// The edges, from a need to the phase that needs it.
    pub edges: Vec<Edge>,
    /// How many layers.
    pub layers: usize,
    /// Edge crossings between adjacent layers before the sweeps.
    pub initial_crossings: usize,
    /// Edge crossings between adjacent layers as laid out.
    pub crossings: usize,
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// One phase (a combination of a matrix shown on its own included).
    Phase,
    /// A matrix's combinations folded into one node.
    Matrix,
    /// A loop, its current iteration's children inside it as chips or,
    /// folded, as counts.
    Loop,
}

/// One box of the drawing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The phase's id, or the group's (a matrix phase's id as written).
    pub key: String,
    /// The text on its first line.
    pub label: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The phase's kind (a matrix group: its combinations' kind).
    pub phase_kind: PhaseKind,
    /// Its state; a folded group's is its members' most telling one.
    pub state: PhaseStatus,
    /// How long its last attempt took (a group: summed over members).
    pub duration_ms: Option<u64>,
    /// Its current (or last) attempt's number (a group: summed).
    pub attempts: u32,
    /// Tokens spent over all attempts, when any were.
    pub tokens: Option<u64>,
    /// Cost over all attempts, when known.
    pub cost_usd: Option<f64>,
    /// A loop: its current iteration and most iterations.
    pub iteration: Option<(u32, u32)>,
    /// Where the node links to: the phase's page, or for a folded group
    /// the run page with the group expanded.
    pub href: String,
    /// The group it folds, or belongs to when shown member by member.
    pub group: Option<GroupInfo>,
    /// A loop shown unfolded: its children, drawn inside it.
    pub chips: Vec<Chip>,
    /// Its layer, from 0 at the roots.
    pub layer: usize,
    /// Left edge.
    pub x: i64,
    /// Top edge.
    pub y: i64,
    /// Width.
    pub width: i64,
    /// Height.
    pub height: i64,
}

/// A folded (or unfolded) group of phases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// The group's key (what [`LayoutOptions::expanded`] names).
    pub key: String,
    /// How many members.
    pub members: usize,
    /// Members per state, in [`STATE_ORDER`], zeros left out.
    pub counts: Vec<(PhaseStatus, usize)>,
    /// Whether it is shown member by member.
    pub expanded: bool,
}

/// A loop's child drawn inside the loop's node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chip {
    /// The child's id.
    pub key: String,
    /// Its state.
    pub state: PhaseStatus,
    /// Its page.
    pub href: String,
    /// Left edge, relative to the node.
    pub x: i64,
    /// Top edge, relative to the node.
    pub y: i64,
    /// Width.
    pub width: i64,
}

/// An edge: a need above, the phase that needs it below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The needed node's key.
    pub from: String,
    /// The needing node's key.
    pub to: String,
    /// The needed node's state (a finished need draws differently).
    pub state: PhaseStatus,
    /// The route: the source's bottom, a pair of points per layer crossed,
    /// the target's top.
    pub points: Vec<(i64, i64)>,
}

/// The order states are counted and shown in.
pub const STATE_ORDER: [PhaseStatus; 8] = [
    PhaseStatus::Completed,
    PhaseStatus::Failed,
    PhaseStatus::TimedOut,
    PhaseStatus::Running,
    PhaseStatus::Waiting,
    PhaseStatus::Pending,
    PhaseStatus::Skipped,
    PhaseStatus::Cancelled,
];

/// The mark `wfe status` shows for a state.
pub fn state_mark(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Pending => "○",
        PhaseStatus::Running => "▶",
        PhaseStatus::Waiting => "⏸",
        PhaseStatus::Completed => "✓",
        PhaseStatus::Failed => "✗",
        PhaseStatus::Skipped => "–",
        PhaseStatus::Cancelled => "⊘",
        PhaseStatus::TimedOut => "⏱",
    }
}

/// A state as a CSS class suffix (`st-timed-out`).
pub fn state_class(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::TimedOut => "timed-out",
        other => other.as_str(),
    }
}

fn kind_class(kind: PhaseKind) -> &'static str {
    match kind {
        PhaseKind::Script => "script",
        PhaseKind::Agent => "agent",
        PhaseKind::Gate => "gate",
        PhaseKind::Loop => "loop",
    }
}

/// The matrix phase a combination id (`test[python=3.11]`) belongs to;
/// phase ids cannot hold `[` otherwise.
pub fn matrix_of(id: &str) -> Option<&str> {
    let open = id.find('[')?;
    id.ends_with(']').then(|| &id[..open])
}

/// Members per state in [`STATE_ORDER`], zeros left out.
pub fn count_states<'a>(
    states: impl IntoIterator<Item = &'a PhaseState>,
) -> Vec<(PhaseStatus, usize)> {
    let mut n = [0usize; STATE_ORDER.len()];
    for s in states {
        if let Some(i) = STATE_ORDER.iter().position(|&o| o == s.status) {
            n[i] += 1;
        }
    }
    STATE_ORDER
        .iter()
        .zip(n)
        .filter(|(_, n)| *n > 0)
        .map(|(&s, n)| (s, n))
        .collect()
}

/// `100 ✓ 15 ✗ 5 ▶`.
pub fn counts_text(counts: &[(PhaseStatus, usize)]) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{n} {}", state_mark(*s)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The state a group shows: something running or waiting first, then a
/// failure, then done when every member is.
pub fn group_state(counts: &[(PhaseStatus, usize)]) -> PhaseStatus {
    let has = |s: PhaseStatus| counts.iter().any(|(c, n)| *c == s && *n > 0);
    let only = |set: &[PhaseStatus]| counts.iter().all(|(c, _)| set.contains(c));
    if has(PhaseStatus::Running) {
        PhaseStatus::Running
    } else if has(PhaseStatus::Waiting) {
        PhaseStatus::Waiting
    } else if has(PhaseStatus::Failed) {
        PhaseStatus::Failed
    } else if has(PhaseStatus::TimedOut) {
        PhaseStatus::TimedOut
    } else if has(PhaseStatus::Pending) {
        // Some done, some not: still going.
        if only(&[PhaseStatus::Pending]) {
            PhaseStatus::Pending
        } else {
            PhaseStatus::Running
        }
    } else if has(PhaseStatus::Cancelled) {
        PhaseStatus::Cancelled
    } else if only(&[PhaseStatus::Skipped]) && !counts.is_empty() {
        PhaseStatus::Skipped
    } else {
        PhaseStatus::Completed
    }
}

/// `/runs/RUN/phases/KEY`, the key percent-encoded.
pub fn phase_href(run: &str, key: &str) -> String {
    format!("/runs/{}/phases/{}", encode(run), encode(key))
}

/// `/runs/RUN?expand=KEY`: the run page with a group unfolded.
pub fn expand_href(run: &str, key: &str) -> String {
    format!("/runs/{}?expand={}", encode(run), encode(key))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Tokens a phase spent over its attempts (else in its last one).
fn tokens_of(s: &PhaseState) -> Option<u64> {
    s.spend
        .as_ref()
        .map(|sp| sp.tokens)
        .or_else(|| s.usage.as_ref().map(|u| u.input_tokens + u.output_tokens))
        .filter(|&t| t > 0)
}

fn cost_of(s: &PhaseState) -> Option<f64> {
    s.spend
        .as_ref()
        .and_then(|sp| sp.cost_usd)
        .or_else(|| s.usage.as_ref().and_then(|u| u.cost_usd))
}

fn add_opt<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `1.2s`, `850ms`, `3m 05s`, `1h 02m`.
pub fn format_duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn format_tokens(t: u64) -> String {
    if t < 1_000 {
        format!("{t} tok")
    } else if t < 1_000_000 {
        format!("{:.1}k tok", t as f64 / 1e3)
    } else {
        format!("{:.1}M tok", t as f64 / 1e6)
    }
}

fn format_cost(c: f64) -> String {
    if c >= 0.01 || c == 0.0 {
        format!("${c:.2}")
    } else {
        format!("${c:.4}")
    }
}

impl Node {
    /// The second line: state, duration, attempts, tokens, cost.
    pub fn detail(&self) -> String {
        let mut parts = vec![format!(
            "{} {}",
            state_mark(self.state),
            self.state.as_str()
        )];
        if let Some((it, max)) = self.iteration {
            parts.push(format!("iter {it}/{max}"));
        }
        if let Some(ms) = self.duration_ms {
            parts.push(format_duration(ms));
        }
        if self.attempts > 1 && self.kind == NodeKind::Phase {
            parts.push(format!("{} attempts", self.attempts));
        }
        if let Some(t) = self.tokens {
            parts.push(format_tokens(t));
        }
        if let Some(c) = self.cost_usd {
            parts.push(format_cost(c));
        }
        parts.join(" · ")
    }

    /// The third line of a folded group: its counts.
    pub fn counts_line(&self) -> Option<String> {
        self.group
            .as_ref()
            .filter(|g| !g.expanded && self.kind != NodeKind::Phase)
            .map(|g| counts_text(&g.counts))
    }
}

/// A node before placement, with the phases (indexes into the view) it
/// stands for.
struct Unit {
    node: Node,
    members: Vec<usize>,
}

/// Lays out `view`'s DAG with `options`' groups unfolded.
pub fn layout_run(view: &RunView, options: &LayoutOptions) -> Layout {
    let run = view.record.id.as_str();
    let (units, edges) = units_of(view, options);
    place(run, units, &edges)
}

/// The nodes before placement and the edges between them (deduplicated,
/// in first-seen order).
fn units_of(view: &RunView, options: &LayoutOptions) -> (Vec<Unit>, Vec<(usize, usize)>) {
    let run = view.record.id.as_str();
    let mut group_size: HashMap<&str, usize> = HashMap::new();
    for p in &view.phases {
        if let Some(of) = matrix_of(&p.state.id) {
            *group_size.entry(of).or_default() += 1;
        }
    }
    let folded = |of: &str| {
        group_size.get(of).copied().unwrap_or(0) > options.collapse_above
            && !options.expanded.contains(of)
    };
    let mut units: Vec<Unit> = Vec::new();
    let mut unit_of_phase = vec![0usize; view.phases.len()];
    let mut unit_of_group: HashMap<&str, usize> = HashMap::new();
    for (i, row) in view.phases.iter().enumerate() {
        let s = &row.state;
        let of = matrix_of(&s.id);
        if let Some(of) = of.filter(|of| folded(of)) {
            let u = *unit_of_group.entry(of).or_insert_with(|| {
                units.push(Unit {
                    node: blank(
                        of.to_string(),
                        NodeKind::Matrix,
                        s.kind,
                        expand_href(run, of),
                    ),
                    members: Vec::new(),
                });
                units.len() - 1
            });
            units[u].members.push(i);
            unit_of_phase[i] = u;
            continue;
        }
        let mut node = blank(
            s.id.clone(),
            NodeKind::Phase,
            s.kind,
            phase_href(run, &s.id),
        );
        node.state = row.shown_status();
        node.duration_ms = s.duration_ms;
        node.attempts = s.attempt;
        node.tokens = tokens_of(s);
        node.cost_usd = cost_of(s);
        if let Some(of) = of {
            // A combination shown on its own still says which group it is
            // in, so the page can fold it back.
            node.group = Some(GroupInfo {
                key: of.to_string(),
                members: group_size.get(of).copied().unwrap_or(1),
                counts: Vec::new(),
                expanded: true,
            });
        }
        if let Some(max) = row.max_iters {
            node.kind = NodeKind::Loop;
            node.iteration = (s.iteration > 0).then_some((s.iteration, max));
            if !row.children.is_empty() {
                let expanded = row.children.len() <= options.collapse_above
                    || options.expanded.contains(&s.id);
                node.group = Some(GroupInfo {
                    key: s.id.clone(),
                    members: row.children.len(),
                    counts: count_states(&row.children),
                    expanded,
                });
                if expanded {
                    node.chips = row
                        .children
                        .iter()
                        .map(|c| Chip {
                            key: c.id.clone(),
                            state: c.status,
                            href: phase_href(run, &c.id),
                            x: 0,
                            y: 0,
                            width: 0,
                        })
                        .collect();
                }
            }
        }
        unit_of_phase[i] = units.len();
        units.push(Unit {
            node,
            members: vec![i],
        });
    }
    for u in &mut units {
        if u.node.kind != NodeKind::Matrix {
            continue;
        }
        let states = u.members.iter().map(|&i| &view.phases[i].state);
        let counts = count_states(states.clone());
        let n = &mut u.node;
        n.state = group_state(&counts);
        n.label = format!("{} ×{}", n.key, u.members.len());
        for s in states {
            n.duration_ms = add_opt(n.duration_ms, s.duration_ms);
            n.attempts += s.attempt;
            n.tokens = add_opt(n.tokens, tokens_of(s));
            n.cost_usd = add_opt(n.cost_usd, cost_of(s));
        }
        n.group = Some(GroupInfo {
            key: n.key.clone(),
            members: u.members.len(),
            counts,
            expanded: false,
        });
    }
    let index: HashMap<&str, usize> = view
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (p.state.id.as_str(), i))
        .collect();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut edges = Vec::new();
    for (i, row) in view.phases.iter().enumerate() {
        for need in &row.needs {
            let Some(&n) = index.get(need.as_str()) else {
                continue;
            };
            let e = (unit_of_phase[n], unit_of_phase[i]);
            if e.0 != e.1 && seen.insert(e) {
                edges.push(e);
            }
        }
    }
    (units, edges)
}

fn blank(key: String, kind: NodeKind, phase_kind: PhaseKind, href: String) -> Node {
    Node {
        label: key.clone(),
        key,
        kind,
        phase_kind,
        state: PhaseStatus::Pending,
        duration_ms: None,
        attempts: 0,
        tokens: None,
        cost_usd: None,
        iteration: None,
        href,
        group: None,
        chips: Vec::new(),
        layer: 0,
        x: 0,
        y: 0,
        width: 0,
        height: 0,
    }
}

/// Cuts `text` to `max` characters, the last one `…`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Sizes a node and places its chips.
fn size(node: &mut Node) {
    let label_chars = node.label.chars().count().min(LABEL_CHARS);
    let detail_chars = node.detail().chars().count();
    let counts_chars = node.counts_line().map_or(0, |c| c.chars().count());
    let text_chars = label_chars.max(detail_chars).max(counts_chars) as i64;
    let mut width = (text_chars * CHAR_W + 2 * NODE_PAD).clamp(NODE_MIN_W, NODE_MAX_W);
    let lines = if node.counts_line().is_some() { 3 } else { 2 };
    let mut height = lines * LINE_H + NODE_PAD;
    if !node.chips.is_empty() {
        let longest = node
            .chips
            .iter()
            .map(|c| c.key.chars().count().min(LABEL_CHARS))
            .max()
            .unwrap_or(0) as i64;
        // The mark and a space, then the id.
        let chip_w = ((longest + 2) * CHAR_W + 12).clamp(CHIP_MIN_W, CHIP_MAX_W);
        let n = node.chips.len() as i64;
        let cols = ((CHIPS_MAX_W - NODE_PAD) / (chip_w + CHIP_GAP)).clamp(1, n);
        width = width.max(cols * (chip_w + CHIP_GAP) - CHIP_GAP + 2 * NODE_PAD);
        let top = height;
        for (k, chip) in node.chips.iter_mut().enumerate() {
            let (row, col) = (k as i64 / cols, k as i64 % cols);
            chip.x = NODE_PAD + col * (chip_w + CHIP_GAP);
            chip.y = top + row * (CHIP_H + CHIP_GAP);
            chip.width = chip_w;
        }
        let rows = (n + cols - 1) / cols;
        height = top + rows * (CHIP_H + CHIP_GAP) + NODE_PAD - CHIP_GAP;
    }
    node.width = width;
    node.height = height;
}

/// A vertex of the proper graph: a unit, or a bend point of a long edge.
struct Vertex {
    layer: usize,
    width: i64,
    up: Vec<usize>,
    down: Vec<usize>,
}

/// Longest-path layers of `n` units (Kahn's order); a unit on a cycle
/// (which validation rules out) goes below what it needs that was placed.
fn layering(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        indegree[b] += 1;
        out[a].push(b);
    }
    let mut layer = vec![0usize; n];
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut done = vec![false; n];
    let mut cursor = 0;
    loop {
        while let Some(u) = queue.pop_front() {
            if done[u] {
                continue;
            }
            done[u] = true;
            for &v in &out[u] {
                layer[v] = layer[v].max(layer[u] + 1);
                indegree[v] -= 1;
                if indegree[v] == 0 {
                    queue.push_back(v);
                }
            }
        }
        // A cycle leaves units with needs never met: release the first.
        while cursor < n && done[cursor] {
            cursor += 1;
        }
        if cursor == n {
            break;
        }
        queue.push_back(cursor);
    }
    layer
}

/// Crossings between each pair of adjacent layers, by counting inversions
/// with a Fenwick tree: `O(E log V)`.
fn crossings(order: &[Vec<usize>], pos: &[usize], vertices: &[Vertex]) -> usize {
    let mut total = 0;
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for layer in order.iter().skip(1) {
        pairs.clear();
        for &v in layer {
            for &u in &vertices[v].up {
                pairs.push((pos[u], pos[v]));
            }
        }
        if pairs.len() < 2 {
            continue;
        }
        pairs.sort_unstable();
        let size = layer.len() + 1;
        let mut tree = vec![0usize; size + 1];
        for (seen, &(_, lower)) in pairs.iter().enumerate() {
            // Edges seen so far whose lower end is right of this one cross it.
            let mut i = lower + 1;
            let mut not_greater = 0;
            while i > 0 {
                not_greater += tree[i];
                i &= i - 1;
            }
            total += seen - not_greater;
            let mut i = lower + 1;
            while i <= size {
                tree[i] += 1;
                i += i & i.wrapping_neg();
            }
        }
    }
    total
}

/// Reorders one layer by the mean position of each vertex's neighbours in
/// the layer above (`down` false) or below; a vertex without any keeps its
/// place. Stable, so ties keep the previous order.
fn sweep_layer(layer: &mut [usize], pos: &mut [usize], vertices: &[Vertex], below: bool) {
    let mut keyed: Vec<(f64, usize, usize)> = layer
        .iter()
        .map(|&v| {
            let ns = if below {
                &vertices[v].down
            } else {
                &vertices[v].up
            };
            let bary = if ns.is_empty() {
                pos[v] as f64
            } else {
                ns.iter().map(|&u| pos[u] as f64).sum::<f64>() / ns.len() as f64
            };
            (bary, pos[v], v)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (k, (_, _, v)) in keyed.into_iter().enumerate() {
        layer[k] = v;
        pos[v] = k;
    }
}

/// Places `units` joined by `edges`: layers, order, coordinates, routes.
fn place(run: &str, mut units: Vec<Unit>, edges: &[(usize, usize)]) -> Layout {
    for u in &mut units {
        size(&mut u.node);
    }
    let n = units.len();
    let layer_of = layering(n, edges);
    let layers = layer_of.iter().max().map_or(0, |m| m + 1);
    let mut vertices: Vec<Vertex> = units
        .iter()
        .zip(&layer_of)
        .map(|(u, &layer)| Vertex {
            layer,
            width: u.node.width,
            up: Vec::new(),
            down: Vec::new(),
        })
        .collect();
    // Each edge's chain of vertices; `None`: drawn as one curve.
    let mut chains: Vec<Option<Vec<usize>>> = Vec::with_capacity(edges.len());
    let mut bends = 0usize;
    for &(a, b) in edges {
        let (la, lb) = (layer_of[a], layer_of[b]);
        if lb <= la || bends + (lb - la - 1) > MAX_BENDS {
            chains.push(None);
            continue;
        }
        let mut chain = vec![a];
        for layer in la + 1..lb {
            vertices.push(Vertex {
                layer,
                width: BEND_W,
                up: Vec::new(),
                down: Vec::new(),
            });
            chain.push(vertices.len() - 1);
            bends += 1;
        }
        chain.push(b);
        for w in chain.windows(2) {
            vertices[w[0]].down.push(w[1]);
            vertices[w[1]].up.push(w[0]);
        }
        chains.push(Some(chain));
    }
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (v, vx) in vertices.iter().enumerate() {
        order[vx.layer].push(v);
    }
    let mut pos = vec![0usize; vertices.len()];
    for layer in &order {
        for (k, &v) in layer.iter().enumerate() {
            pos[v] = k;
        }
    }
    // A first top-down pass puts bend points beside their edges' sources
    // before anything is counted.
    let size_of_graph = vertices.len() + vertices.iter().map(|v| v.up.len()).sum::<usize>();
    let sweeps = if size_of_graph > BIG_GRAPH {
        2
    } else {
        MAX_SWEEPS
    };
    let initial_crossings = crossings(&order, &pos, &vertices);
    let mut best = (initial_crossings, order.clone());
    for s in 0..sweeps {
        if best.0 == 0 {
            break;
        }
        let below = s % 2 == 1;
        if below {
            for l in (0..layers.saturating_sub(1)).rev() {
                sweep_layer(&mut order[l], &mut pos, &vertices, true);
            }
        } else {
            for layer in order.iter_mut().skip(1) {
                sweep_layer(layer, &mut pos, &vertices, false);
            }
        }
        let c = crossings(&order, &pos, &vertices);
        if c < best.0 {
            best = (c, order.clone());
        }
    }
    let (final_crossings, order) = best;
    for layer in &order {
        for (k, &v) in layer.iter().enumerate() {
            pos[v] = k;
        }
    }
    let cx = coordinates(&order, &vertices);
    // Layer bands.
    let mut band_h = vec![LINE_H; layers];
    for (u, &l) in units.iter().zip(&layer_of) {
        band_h[l] = band_h[l].max(u.node.height);
    }
    let mut band_y = vec![MARGIN; layers];
    for l in 1..layers {
        band_y[l] = band_y[l - 1] + band_h[l - 1] + GAP_Y;
    }
    let left = vertices
        .iter()
        .enumerate()
        .map(|(v, vx)| cx[v] - vx.width / 2)
        .min()
        .unwrap_or(0);
    let shift = MARGIN - left;
    let right = vertices
        .iter()
        .enumerate()
        .map(|(v, vx)| cx[v] + shift + vx.width - vx.width / 2)
        .max()
        .unwrap_or(0);
    let height = if layers == 0 {
        2 * MARGIN
    } else {
        band_y[layers - 1] + band_h[layers - 1] + MARGIN
    };
    for (v, u) in units.iter_mut().enumerate() {
        let l = layer_of[v];
        u.node.layer = l;
        u.node.x = cx[v] + shift - u.node.width / 2;
        u.node.y = band_y[l];
    }
    let out_edges: Vec<Edge> = edges
        .iter()
        .zip(&chains)
        .map(|(&(a, b), chain)| {
            let (na, nb) = (&units[a].node, &units[b].node);
            let mut points = vec![(na.x + na.width / 2, na.y + na.height)];
            if let Some(chain) = chain {
                for &d in &chain[1..chain.len() - 1] {
                    let l = vertices[d].layer;
                    let x = cx[d] + shift;
                    points.push((x, band_y[l]));
                    points.push((x, band_y[l] + band_h[l]));
                }
            }
            points.push((nb.x + nb.width / 2, nb.y));
            Edge {
                from: na.key.clone(),
                to: nb.key.clone(),
                state: na.state,
                points,
            }
        })
        .collect();
    // Nodes in reading order: layer by layer, left to right.
    let mut reading: Vec<usize> = order.iter().flatten().copied().filter(|&v| v < n).collect();
    reading.sort_by_key(|&v| (layer_of[v], pos[v]));
    let mut slots: Vec<Option<Node>> = units.into_iter().map(|u| Some(u.node)).collect();
    let nodes = reading
        .into_iter()
        .filter_map(|v| slots[v].take())
        .collect();
    Layout {
        run: run.to_string(),
        width: right + MARGIN,
        height,
        nodes,
        edges: out_edges,
        layers,
        initial_crossings,
        crossings: final_crossings,
    }
}

/// Horizontal centres: each layer packed in its order, each vertex pulled
/// towards the mean of its neighbours in the layer just placed, a layer
/// shifted as a whole so it sits centred on where its vertices wanted to
/// be. Down, up, down again; each pass linear in the layer's size.
fn coordinates(order: &[Vec<usize>], vertices: &[Vertex]) -> Vec<i64> {
    let mut cx = vec![0i64; vertices.len()];
    if order.is_empty() {
        return cx;
    }
    // Start packed.
    for layer in order {
        let mut right = 0;
        for &v in layer {
            let w = vertices[v].width;
            cx[v] = right + w / 2;
            right += w + GAP_X;
        }
    }
    let passes: [(bool, bool); 3] = [(false, false), (true, true), (false, false)];
    for (below, reverse) in passes {
        let ls: Vec<usize> = if reverse {
            (0..order.len().saturating_sub(1)).rev().collect()
        } else {
            (1..order.len()).collect()
        };
        for l in ls {
            let layer = &order[l];
            let want: Vec<Option<i64>> = layer
                .iter()
                .map(|&v| {
                    let ns = if below {
                        &vertices[v].down
                    } else {
                        &vertices[v].up
                    };
                    (!ns.is_empty())
                        .then(|| ns.iter().map(|&u| cx[u]).sum::<i64>() / ns.len() as i64)
                })
                .collect();
            let mut prev_right: Option<i64> = None;
            let mut drift = 0i64;
            let mut pulled = 0i64;
            for (&v, want) in layer.iter().zip(&want) {
                let w = vertices[v].width;
                let least = prev_right.map(|r| r + GAP_X + w / 2);
                let x = match (want, least) {
                    (Some(d), Some(m)) => (*d).max(m),
                    (Some(d), None) => *d,
                    (None, Some(m)) => m,
                    (None, None) => w / 2,
                };
                if let Some(d) = want {
                    drift += x - d;
                    pulled += 1;
                }
                cx[v] = x;
                prev_right = Some(x + w - w / 2);
            }
            if pulled > 0 {
                let back = drift / pulled;
                for &v in layer {
                    cx[v] -= back;
                }
            }
        }
    }
    cx
}

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The inline style both drawings share: a colour per state, light and
/// dark; the page's own CSS may override any of it.
pub(super) const STATE_STYLE: &str = "\
.st-pending{--fill:#f6f8fa;--stroke:#8c959f}\
.st-running{--fill:#fff8c5;--stroke:#bf8700}\
.st-waiting{--fill:#ddf4ff;--stroke:#0969da}\
.st-completed{--fill:#dafbe1;--stroke:#1a7f37}\
.st-failed{--fill:#ffebe9;--stroke:#cf222e}\
.st-timed-out{--fill:#ffebe9;--stroke:#cf222e}\
.st-skipped{--fill:#f6f8fa;--stroke:#d0d7de}\
.st-cancelled{--fill:#f6f8fa;--stroke:#6e7781}\
@media (prefers-color-scheme:dark){\
.st-pending{--fill:#161b22;--stroke:#6e7681}\
.st-running{--fill:#3b2e00;--stroke:#d29922}\
.st-waiting{--fill:#0c2d6b;--stroke:#58a6ff}\
.st-completed{--fill:#0f2e1b;--stroke:#3fb950}\
.st-failed{--fill:#3d1214;--stroke:#f85149}\
.st-timed-out{--fill:#3d1214;--stroke:#f85149}\
.st-skipped{--fill:#161b22;--stroke:#30363d}\
.st-cancelled{--fill:#161b22;--stroke:#8b949e}}";

const DAG_STYLE: &str = "\
.wfe-dag{font:12px ui-sans-serif,system-ui,sans-serif;--text:#1f2328;--dim:#59636e;--edge:#8c959f}\
@media (prefers-color-scheme:dark){.wfe-dag{--text:#e6edf3;--dim:#9198a1;--edge:#6e7681}}\
.wfe-dag text{fill:var(--text)}\
.wfe-dag .detail,.wfe-dag .counts{fill:var(--dim)}\
.wfe-dag .label{font-weight:600}\
.wfe-dag .box,.wfe-dag .chip rect{fill:var(--fill);stroke:var(--stroke);stroke-width:1.5}\
.wfe-dag .edge{fill:none;stroke:var(--edge);stroke-width:1.5}\
.wfe-dag .edge.st-completed{stroke:var(--stroke)}\
.wfe-dag .arrow{fill:var(--edge)}\
.wfe-dag .group .box{stroke-dasharray:4 2}\
.wfe-dag [data-nav]:focus{outline:none}\
.wfe-dag [data-nav]:focus>a>rect,.wfe-dag [data-nav]:hover>a>rect{stroke-width:3}\
@media (prefers-reduced-motion:no-preference){.wfe-dag .node.st-running>a>.box{animation:wfe-pulse 1.6s ease-in-out infinite}}\
@keyframes wfe-pulse{50%{stroke-opacity:.35}}";

/// Draws `layout` as one self-contained SVG: a `<g class="node st-STATE"
/// data-phase="KEY" data-nav tabindex="0">` per node around an `<a>` to
/// its page, a loop's children as nested `chip` groups of the same shape,
/// edges as `<path class="edge st-STATE">`. Every text is escaped.
pub fn render_svg(layout: &Layout) -> String {
    let mut s = String::with_capacity(256 + layout.nodes.len() * 600 + layout.edges.len() * 120);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"wfe-dag\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"DAG of run {run}\">",
        w = layout.width,
        h = layout.height,
        run = escape(&layout.run),
    );
    let _ = write!(s, "<style>{STATE_STYLE}{DAG_STYLE}</style>");
    s.push_str("<defs><marker id=\"wfe-dag-arrow\" viewBox=\"0 0 8 8\" refX=\"8\" refY=\"4\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path class=\"arrow\" d=\"M0,0L8,4L0,8z\"/></marker></defs>");
    s.push_str("<g class=\"edges\">");
    for e in &layout.edges {
        let _ = write!(
            s,
            "<path class=\"edge st-{}\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#wfe-dag-arrow)\"/>",
            state_class(e.state),
            escape(&e.from),
            escape(&e.to),
            path_d(&e.points),
        );
    }
    s.push_str("</g><g class=\"nodes\">");
    for n in &layout.nodes {
        render_node(&mut s, n);
    }
    s.push_str("</g></svg>");
    s
}

/// The `d` of a route: straight down through a layer, a cubic curve
/// between layers.
fn path_d(points: &[(i64, i64)]) -> String {
    let mut d = String::new();
    let Some(&(x0, y0)) = points.first() else {
        return d;
    };
    let _ = write!(d, "M{x0},{y0}");
    for w in points.windows(2) {
        let ((ax, ay), (bx, by)) = (w[0], w[1]);
        if ax == bx {
            let _ = write!(d, "L{bx},{by}");
        } else {
            let my = (ay + by) / 2;
            let _ = write!(d, "C{ax},{my} {bx},{my} {bx},{by}");
        }
    }
    d
}

fn render_node(s: &mut String, n: &Node) {
    let group_attrs = match &n.group {
        Some(g) => format!(
            " data-group=\"{}\" data-expanded=\"{}\"",
            escape(&g.key),
            g.expanded
        ),
        None => String::new(),
    };
    let folded = n.kind == NodeKind::Matrix || n.counts_line().is_some();
    let _ = write!(
        s,
        "<g class=\"node st-{st} kind-{kind}{group}\" data-phase=\"{key}\"{group_attrs} data-nav=\"\" tabindex=\"0\" transform=\"translate({x},{y})\">",
        st = state_class(n.state),
        kind = kind_class(n.phase_kind),
        group = if folded { " group" } else { "" },
        key = escape(&n.key),
        x = n.x,
        y = n.y,
    );
    let detail = n.detail();
    let _ = write!(
        s,
        "<a href=\"{href}\" aria-label=\"{key}: {state}\"><title>{key}\n{detail}</title><rect class=\"box\" width=\"{w}\" height=\"{h}\" rx=\"6\"/>",
        href = escape(&n.href),
        key = escape(&n.key),
        state = n.state.as_str(),
        detail = escape(&detail),
        w = n.width,
        h = n.height,
    );
    let max_chars = ((n.width - 2 * NODE_PAD) / CHAR_W).max(4) as usize;
    let _ = write!(
        s,
        "<text class=\"label\" x=\"{NODE_PAD}\" y=\"{}\">{}</text>",
        NODE_PAD + 11,
        escape(&cut(&n.label, max_chars.min(LABEL_CHARS)))
    );
    let _ = write!(
        s,
        "<text class=\"detail\" x=\"{NODE_PAD}\" y=\"{}\">{}</text>",
        NODE_PAD + 11 + LINE_H,
        escape(&cut(&detail, max_chars))
    );
    if let Some(counts) = n.counts_line() {
        let _ = write!(
            s,
            "<text class=\"counts\" x=\"{NODE_PAD}\" y=\"{}\">{}</text>",
            NODE_PAD + 11 + 2 * LINE_H,
            escape(&cut(&counts, max_chars))
        );
    }
    s.push_str("</a>");
    for c in &n.chips {
        let chars = ((c.width - 12) / CHAR_W).max(3) as usize;
        let _ = write!(
            s,
            "<g class=\"chip st-{st}\" data-phase=\"{key}\" data-nav=\"\" tabindex=\"0\"><a href=\"{href}\" aria-label=\"{key}: {state}\"><title>{key}: {state}</title><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{CHIP_H}\" rx=\"4\"/><text x=\"{tx}\" y=\"{ty}\">{mark} {label}</text></a></g>",
            st = state_class(c.state),
            key = escape(&c.key),
            href = escape(&c.href),
            state = c.state.as_str(),
            x = c.x,
            y = c.y,
            w = c.width,
            tx = c.x + 6,
            ty = c.y + 14,
            mark = state_mark(c.state),
            label = escape(&cut(&c.key, chars.saturating_sub(2).max(3))),
        );
    }
    s.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::super::testing::synthetic_view;
    use super::*;
    use PhaseStatus::{Completed, Failed, Pending, Running};

    fn node<'a>(l: &'a Layout, key: &str) -> &'a Node {
        l.nodes
            .iter()
            .find(|n| n.key == key)
            .unwrap_or_else(|| panic!("no node {key} in {:?}", keys(l)))
    }

    fn keys(l: &Layout) -> Vec<&str> {
        l.nodes.iter().map(|n| n.key.as_str()).collect()
    }

    /// Every edge runs from a higher layer to a lower one, its route going
    /// down all the way.
    fn assert_downward(l: &Layout) {
        for e in &l.edges {
            let (a, b) = (node(l, &e.from), node(l, &e.to));
            assert!(
                a.layer < b.layer,
                "{} → {}: layers {} → {}",
                e.from,
                e.to,
                a.layer,
                b.layer
            );
            assert!(a.y + a.height < b.y, "{} → {}", e.from, e.to);
            for w in e.points.windows(2) {
                assert!(
                    w[0].1 <= w[1].1,
                    "{} → {} goes up: {:?}",
                    e.from,
                    e.to,
                    e.points
                );
            }
        }
    }

    /// No two nodes of a layer overlap, nor a node and the drawing's edge.
    fn assert_no_overlap(l: &Layout) {
        for layer in 0..l.layers {
            let mut row: Vec<&Node> = l.nodes.iter().filter(|n| n.layer == layer).collect();
            row.sort_by_key(|n| n.x);
            for w in row.windows(2) {
                assert!(
                    w[0].x + w[0].width + GAP_X <= w[1].x,
                    "{} and {} overlap in layer {layer}",
                    w[0].key,
                    w[1].key
                );
            }
        }
        for n in &l.nodes {
            assert!(
                n.x >= MARGIN && n.x + n.width <= l.width - MARGIN,
                "{} outside",
                n.key
            );
            assert!(
                n.y >= MARGIN && n.y + n.height <= l.height - MARGIN,
                "{} outside",
                n.key
            );
        }
    }

    #[test]
    fn layers_follow_the_longest_path_and_every_edge_goes_down() {
        // `late` needs both `a` (layer 0) and `c` (layer 2): layer 3, with
        // the long edge from `a` bent through layers 1 and 2.
        let view = synthetic_view(&[
            ("late", Pending, &["a", "c"]),
            ("a", Completed, &[]),
            ("b", Completed, &["a"]),
            ("c", Running, &["b"]),
            ("lone", Pending, &[]),
        ]);
        let l = layout_run(&view, &LayoutOptions::default());
        let layer = |k: &str| node(&l, k).layer;
        assert_eq!(
            [
                layer("a"),
                layer("b"),
                layer("c"),
                layer("late"),
                layer("lone")
            ],
            [0, 1, 2, 3, 0]
        );
        assert_eq!(l.layers, 4);
        assert_downward(&l);
        assert_no_overlap(&l);
        let long = l
            .edges
            .iter()
            .find(|e| e.from == "a" && e.to == "late")
            .unwrap();
        assert_eq!(
            long.points.len(),
            2 + 2 * 2,
            "two bend pairs: {:?}",
            long.points
        );
        assert_eq!(
            keys(&l)[..2],
            ["a", "lone"],
            "reading order: by layer, then x"
        );
    }

    #[test]
    fn a_wide_layer_has_no_overlapping_nodes() {
        let mut spec: Vec<(String, Vec<String>)> = vec![("root".into(), vec![])];
        for i in 0..40 {
            // Ids of very different lengths make boxes of different widths.
            let id = format!("p{i}-{}", "x".repeat(i % 7 * 6));
            spec.push((id, vec!["root".into()]));
        }
        let ids: Vec<String> = spec[1..].iter().map(|s| s.0.clone()).collect();
        spec.push(("join".into(), ids));
        let owned: Vec<(&str, PhaseStatus, Vec<&str>)> = spec
            .iter()
            .map(|(id, needs)| {
                (
                    id.as_str(),
                    Completed,
                    needs.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let borrowed: Vec<(&str, PhaseStatus, &[&str])> = owned
            .iter()
            .map(|(a, b, c)| (*a, *b, c.as_slice()))
            .collect();
        let l = layout_run(&synthetic_view(&borrowed), &LayoutOptions::default());
        assert_eq!(l.nodes.iter().filter(|n| n.layer == 1).count(), 40);
        assert_no_overlap(&l);
        assert_downward(&l);
        // The root sits over the middle of its children, not at the left.
        let root = node(&l, "root");
        assert!(root.x > l.width / 4, "root at {} of {}", root.x, l.width);
    }

    #[test]
    fn sweeps_remove_a_crossing() {
        // In template order `c` (needs b) is left of `d` (needs a): the
        // edges cross once until the layer below is reordered.
        let view = synthetic_view(&[
            ("a", Completed, &[]),
            ("b", Completed, &[]),
            ("c", Pending, &["b"]),
            ("d", Pending, &["a"]),
        ]);
        let l = layout_run(&view, &LayoutOptions::default());
        assert_eq!(l.initial_crossings, 1);
        assert_eq!(l.crossings, 0);
        assert!(node(&l, "d").x < node(&l, "c").x, "{:?}", keys(&l));
        // A denser one: a 4×4 bipartite graph wired in reverse.
        let view = synthetic_view(&[
            ("a", Completed, &[]),
            ("b", Completed, &[]),
            ("c", Completed, &[]),
            ("d", Completed, &[]),
            ("w", Pending, &["d"]),
            ("x", Pending, &["c"]),
            ("y", Pending, &["b"]),
            ("z", Pending, &["a"]),
        ]);
        let l = layout_run(&view, &LayoutOptions::default());
        assert_eq!((l.initial_crossings, l.crossings), (6, 0));
    }

    fn matrix_view() -> RunView {
        let mut spec: Vec<(String, PhaseStatus, Vec<String>)> =
            vec![("build".into(), Completed, vec![])];
        for i in 0..12 {
            let status = match i {
                0..8 => Completed,
                8..11 => Failed,
                _ => Running,
            };
            spec.push((format!("test[n={i}]"), status, vec!["build".into()]));
        }
        for i in 0..3 {
            spec.push((format!("lint[os={i}]"), Completed, vec!["build".into()]));
        }
        let all: Vec<String> = spec[1..].iter().map(|s| s.0.clone()).collect();
        spec.push(("report".into(), Pending, all));
        let owned: Vec<(&str, PhaseStatus, Vec<&str>)> = spec
            .iter()
            .map(|(id, st, needs)| (id.as_str(), *st, needs.iter().map(String::as_str).collect()))
            .collect();
        let borrowed: Vec<(&str, PhaseStatus, &[&str])> = owned
            .iter()
            .map(|(a, b, c)| (*a, *b, c.as_slice()))
            .collect();
        synthetic_view(&borrowed)
    }

    #[test]
    fn a_large_matrix_folds_into_one_node_with_counts() {
        let l = layout_run(&matrix_view(), &LayoutOptions::default());
        assert_eq!(
            keys(&l),
            [
                "build",
                "test",
                "lint[os=0]",
                "lint[os=1]",
                "lint[os=2]",
                "report"
            ],
            "12 combinations fold, 3 do not"
        );
        let t = node(&l, "test");
        assert_eq!(t.kind, NodeKind::Matrix);
        assert_eq!(t.label, "test ×12");
        assert_eq!(t.state, Running, "one combination still runs");
        let g = t.group.as_ref().unwrap();
        assert_eq!(g.counts, [(Completed, 8), (Failed, 3), (Running, 1)]);
        assert!(!g.expanded);
        assert_eq!(t.counts_line().as_deref(), Some("8 ✓ 3 ✗ 1 ▶"));
        assert_eq!(t.href, "/runs/01bbbbbbbbbbbbbbbbbbbbbbbb?expand=test");
        assert_eq!(t.attempts, 12);
        let into_test: Vec<_> = l.edges.iter().filter(|e| e.to == "test").collect();
        assert_eq!(into_test.len(), 1, "12 edges from build become one");
        assert_eq!(
            l.edges.len(),
            1 + 3 + 1 + 3,
            "build→test, build→lint×3, →report"
        );
        let svg = render_svg(&l);
        assert!(svg.contains("data-phase=\"test\" data-group=\"test\" data-expanded=\"false\""));
        assert!(svg.contains(">8 ✓ 3 ✗ 1 ▶</text>"));
        // The small one's combinations keep saying which group they are in.
        let lint = node(&l, "lint[os=1]").group.as_ref().unwrap();
        assert_eq!((lint.key.as_str(), lint.expanded), ("lint", true));
        assert_eq!(
            node(&l, "lint[os=1]").href,
            "/runs/01bbbbbbbbbbbbbbbbbbbbbbbb/phases/lint%5Bos%3D1%5D"
        );
    }

    #[test]
    fn an_expanded_matrix_shows_every_combination() {
        let options = LayoutOptions {
            expanded: ["test".to_string()].into(),
            ..LayoutOptions::default()
        };
        let l = layout_run(&matrix_view(), &options);
        assert_eq!(l.nodes.len(), 1 + 12 + 3 + 1);
        assert!(l.nodes.iter().all(|n| n.kind == NodeKind::Phase));
        assert_eq!(node(&l, "test[n=9]").state, Failed);
        assert_eq!(l.edges.len(), 15 + 15);
        assert_no_overlap(&l);
        assert_downward(&l);
        // A lower threshold folds the small one too.
        let l = layout_run(
            &matrix_view(),
            &LayoutOptions {
                collapse_above: 2,
                ..options
            },
        );
        assert_eq!(node(&l, "lint").label, "lint ×3");
    }

    fn loop_view(children: usize) -> RunView {
        let mut view =
            synthetic_view(&[("build", Completed, &[]), ("repair", Running, &["build"])]);
        let row = &mut view.phases[1];
        row.state.kind = PhaseKind::Loop;
        row.state.iteration = 2;
        row.max_iters = Some(5);
        row.children = (0..children)
            .map(|i| {
                let mut s = PhaseState::pending(&format!("step-{i}"), PhaseKind::Script);
                s.status = if i == 0 {
                    Running
                } else if i % 3 == 0 {
                    Failed
                } else {
                    Completed
                };
                s
            })
            .collect();
        view
    }

    #[test]
    fn a_loop_shows_its_children_as_chips_until_there_are_too_many() {
        let l = layout_run(&loop_view(4), &LayoutOptions::default());
        let r = node(&l, "repair");
        assert_eq!(r.kind, NodeKind::Loop);
        assert_eq!(r.iteration, Some((2, 5)));
        assert_eq!(r.chips.len(), 4);
        assert!(r.detail().contains("iter 2/5"), "{}", r.detail());
        for c in &r.chips {
            assert!(
                c.x >= NODE_PAD && c.x + c.width <= r.width - NODE_PAD + 1,
                "{c:?} in {}",
                r.width
            );
            assert!(c.y + CHIP_H <= r.height, "{c:?}");
        }
        let svg = render_svg(&l);
        assert!(svg.contains("<g class=\"chip st-running\" data-phase=\"step-0\" data-nav=\"\" tabindex=\"0\"><a href=\"/runs/01bbbbbbbbbbbbbbbbbbbbbbbb/phases/step-0\""));

        let l = layout_run(&loop_view(20), &LayoutOptions::default());
        let r = node(&l, "repair");
        assert!(r.chips.is_empty());
        assert_eq!(r.counts_line().as_deref(), Some("13 ✓ 6 ✗ 1 ▶"));
        assert_eq!(r.href, "/runs/01bbbbbbbbbbbbbbbbbbbbbbbb/phases/repair");

        let options = LayoutOptions {
            expanded: ["repair".to_string()].into(),
            ..LayoutOptions::default()
        };
        let l = layout_run(&loop_view(20), &options);
        let r = node(&l, "repair");
        assert_eq!(r.chips.len(), 20);
        assert!(r.counts_line().is_none());
        assert!(r.height > 4 * CHIP_H, "chips wrap onto rows: {}", r.height);
    }

    #[test]
    fn phase_ids_are_escaped_everywhere() {
        let evil = "<script>alert(\"x&y\")</script>";
        let view = synthetic_view(&[("ok", Completed, &[]), (evil, Failed, &["ok"])]);
        let svg = render_svg(&layout_run(&view, &LayoutOptions::default()));
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("\"x&y\""));
        assert!(svg.contains("&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;"));
        assert!(svg.contains("/phases/%3Cscript%3Ealert%28%22x%26y%22%29%3C%2Fscript%3E"));
    }

    #[test]
    fn the_same_run_draws_the_same_bytes() {
        let a = render_svg(&layout_run(&matrix_view(), &LayoutOptions::default()));
        for _ in 0..3 {
            let b = render_svg(&layout_run(&matrix_view(), &LayoutOptions::default()));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn big_runs_lay_out_without_blowing_up() {
        // A 10,000-phase chain and a 5,000-wide fan-out: linear-ish, so
        // even a debug build finishes; the bench times the release build.
        let ids: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
        let needs: Vec<Vec<&str>> = (0..10_000)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                }
            })
            .collect();
        let spec: Vec<(&str, PhaseStatus, &[&str])> = (0..10_000)
            .map(|i| (ids[i].as_str(), Completed, needs[i].as_slice()))
            .collect();
        let l = layout_run(&synthetic_view(&spec), &LayoutOptions::default());
        assert_eq!((l.layers, l.crossings), (10_000, 0));
        assert_eq!(
            node(&l, "p9999").x,
            node(&l, "p0").x,
            "a chain is one straight column"
        );

        let root = ["root"];
        let spec: Vec<(&str, PhaseStatus, &[&str])> = std::iter::once(("root", Completed, &[][..]))
            .chain((1..5_000).map(|i| (ids[i].as_str(), Pending, &root[..])))
            .collect();
        let l = layout_run(&synthetic_view(&spec), &LayoutOptions::default());
        assert_eq!(l.layers, 2);
        assert_no_overlap(&l);
    }

    #[test]
    fn a_small_run_draws_as_expected() {
        let mut view = synthetic_view(&[
            ("build", Completed, &[]),
            ("lint", Failed, &["build"]),
            ("test", Running, &["build"]),
            ("ship", Pending, &["lint", "test", "build"]),
        ]);
        view.phases[0].state.duration_ms = Some(1_500);
        view.phases[1].state.attempt = 3;
        view.phases[2].state.usage = Some(crate::attempt::AttemptUsage {
            input_tokens: 12_000,
            output_tokens: 345,
            cost_usd: Some(0.042),
            ..Default::default()
        });
        let svg = render_svg(&layout_run(&view, &LayoutOptions::default()));
        // One element a line, so the snapshot's diff says what moved.
        insta::assert_snapshot!(svg.replace("><", ">\n<"));
    }
}
