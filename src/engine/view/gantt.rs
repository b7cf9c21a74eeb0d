//! The run's timeline (Gantt): one row per phase, a bar per attempt from
//! its start to its end, on a shared time axis.
//!
//! [`timeline_run`] builds it from a [`RunView`]: each phase's current
//! attempt comes from its state (a running one extends to the `now` the
//! caller passes); earlier attempts come from the caller when it has them
//! ([`attempt_spans`] reads them off a [`PhaseView`]'s log). Groups fold
//! as in the DAG: a matrix's combinations larger than the threshold share
//! one row, a loop's children get rows of their own only when shown.
//! [`render_gantt_svg`] draws it. Pure and deterministic like the graph.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::graph::{
    GroupInfo, LayoutOptions, STATE_STYLE, count_states, escape, expand_href, format_duration,
    group_state, matrix_of, phase_href, state_class, state_mark,
};
use super::{PhaseView, RunView};
use crate::engine::{PhaseState, PhaseStatus};

/// Width of the label column.
const LABEL_W: i64 = 200;
/// Width of the time area.
const CHART_W: i64 = 720;
const ROW_H: i64 = 22;
const BAR_H: i64 = 14;
const AXIS_H: i64 = 24;
const MARGIN: i64 = 8;
/// A bar is at least this wide, so an instant attempt still shows.
const MIN_BAR_W: i64 = 2;
/// The shortest span the axis covers.
const MIN_SPAN_MS: i64 = 1_000;
/// Tick steps the axis picks from, the first giving at most ten ticks.
const STEPS_MS: [i64; 18] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];
const LABEL_CHARS: usize = 26;

/// One attempt's time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttemptSpan {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it started.
    pub start_ms: i64,
    /// When it ended; `None` while it runs.
    pub end_ms: Option<i64>,
    /// How it ended (or that it has not).
    pub outcome: PhaseStatus,
}

/// A timeline ready to draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The run's id.
    pub run: String,
    /// The axis' start (the earliest attempt's start), ms since the epoch.
    pub start_ms: i64,
    /// The axis' end (the latest end, running attempts ending at now).
    pub end_ms: i64,
    /// The rows, top to bottom: by first start, phases that never started
    /// last; a loop's children right under it.
    pub rows: Vec<TimelineRow>,
    /// The axis' ticks: offset from the start in ms, and x.
    pub ticks: Vec<(i64, i64)>,
    /// Width of the drawing.
    pub width: i64,
    /// Height of the drawing.
    pub height: i64,
}

/// One row of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    /// The phase's id, or the folded group's.
    pub key: String,
    /// Its text (a loop's child indented).
    pub label: String,
    /// Its page, or for a folded group the run page with it unfolded.
    pub href: String,
    /// Its state (a folded group's: as in the DAG).
    pub state: PhaseStatus,
    /// The group it folds, if it does.
    pub group: Option<GroupInfo>,
    /// Its bars, by start.
    pub bars: Vec<Bar>,
    /// Top edge.
    pub y: i64,
}

/// One attempt drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// The phase it is an attempt of (a folded row holds several).
    pub phase: String,
    /// The attempt and its time.
    pub span: AttemptSpan,
    /// Left edge.
    pub x: i64,
    /// Width.
    pub width: i64,
}

/// Milliseconds since the epoch of an RFC 3339 stamp; `None` if it is not one.
pub fn stamp_ms(stamp: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(stamp).ok()?;
    Some(system_ms(at))
}

/// Milliseconds since the epoch of an instant (0 before it).
pub fn system_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The current (or last) attempt of a phase as its state records it; a
/// running one ends at `now`. `None` before it started.
pub fn current_span(s: &PhaseState, now_ms: i64) -> Option<AttemptSpan> {
    let start = stamp_ms(s.started_at.as_deref()?)?;
    let end = match s.status {
        PhaseStatus::Running | PhaseStatus::Waiting => None,
        _ => s
            .finished_at
            .as_deref()
            .and_then(stamp_ms)
            .or_else(|| s.duration_ms.map(|d| start.saturating_add(d as i64)))
            .or(Some(now_ms)),
    };
    Some(AttemptSpan {
        attempt: s.attempt.max(1),
        start_ms: start,
        end_ms: end,
        outcome: s.status,
    })
}

/// Every attempt of `view`'s phase: the earlier ones from when their log
/// lines were written (first to last), the current one from its state.
/// An earlier attempt that logged nothing has no span.
pub fn attempt_spans(view: &PhaseView, now_ms: i64) -> Vec<AttemptSpan> {
    let current = view.state.attempt;
    let mut by_attempt: HashMap<u32, (i64, i64)> = HashMap::new();
    for line in &view.log {
        if line.attempt >= current {
            continue;
        }
        if let Some(t) = stamp_ms(&line.time) {
            let e = by_attempt.entry(line.attempt).or_insert((t, t));
            e.0 = e.0.min(t);
            e.1 = e.1.max(t);
        }
    }
    let mut out: Vec<AttemptSpan> = by_attempt
        .into_iter()
        .map(|(attempt, (start, end))| {
            let timed_out = view
                .attempts
                .iter()
                .find(|a| a.number == attempt.to_string())
                .and_then(|a| a.error.as_ref())
                .is_some_and(|e| matches!(e, crate::attempt::AttemptError::TimedOut { .. }));
            AttemptSpan {
                attempt,
                start_ms: start,
                end_ms: Some(end),
                outcome: if timed_out {
                    PhaseStatus::TimedOut
                } else {
                    PhaseStatus::Failed
                },
            }
        })
        .collect();
    out.extend(current_span(&view.state, now_ms));
    out.sort_by_key(|s| (s.start_ms, s.attempt));
    out
}

/// A row before placement: its first start orders it.
struct Pending {
    row: TimelineRow,
    spans: Vec<(String, AttemptSpan)>,
    children: Vec<Pending>,
}

/// The timeline of `view` at `now`, with earlier attempts from `history`
/// (phase id → its spans, the current one included or not) and groups
/// folded as `options` says.
pub fn timeline_run(
    view: &RunView,
    now: SystemTime,
    history: &HashMap<String, Vec<AttemptSpan>>,
    options: &LayoutOptions,
) -> Timeline {
    let run = view.record.id.as_str();
    let now_ms = system_ms(now);
    let spans_of = |s: &PhaseState| -> Vec<(String, AttemptSpan)> {
        let mut spans: Vec<AttemptSpan> = history.get(&s.id).cloned().unwrap_or_default();
        if let Some(c) = current_span(s, now_ms)
            && !spans.iter().any(|h| h.attempt == c.attempt)
        {
            spans.push(c);
        }
        spans.sort_by_key(|s| (s.start_ms, s.attempt));
        spans.into_iter().map(|sp| (s.id.clone(), sp)).collect()
    };
    let row = |key: &str, label: String, href: String, state: PhaseStatus| TimelineRow {
        key: key.to_string(),
        label,
        href,
        state,
        group: None,
        bars: Vec::new(),
        y: 0,
    };
    let mut group_size: HashMap<&str, usize> = HashMap::new();
    for p in &view.phases {
        if let Some(of) = matrix_of(&p.state.id) {
            *group_size.entry(of).or_default() += 1;
        }
    }
    let mut rows: Vec<Pending> = Vec::new();
    let mut group_row: HashMap<&str, (usize, Vec<&PhaseState>)> = HashMap::new();
    for p in &view.phases {
        let s = &p.state;
        if let Some(of) = matrix_of(&s.id).filter(|of| {
            group_size.get(of).copied().unwrap_or(0) > options.collapse_above
                && !options.expanded.contains(*of)
        }) {
            let entry = group_row.entry(of).or_insert_with(|| {
                rows.push(Pending {
                    row: row(
                        of,
                        format!("{of} ×{}", group_size.get(of).copied().unwrap_or(0)),
                        expand_href(run, of),
                        PhaseStatus::Pending,
                    ),
                    spans: Vec::new(),
                    children: Vec::new(),
                });
                (rows.len() - 1, Vec::new())
            });
            entry.1.push(s);
            rows[entry.0].spans.extend(spans_of(s));
            continue;
        }
        let mut pending = Pending {
            row: row(&s.id, s.id.clone(), phase_href(run, &s.id), s.status),
            spans: spans_of(s),
            children: Vec::new(),
        };
        if p.max_iters.is_some() && !p.children.is_empty() {
            let shown =
                p.children.len() <= options.collapse_above || options.expanded.contains(&s.id);
            pending.row.group = Some(GroupInfo {
                key: s.id.clone(),
                members: p.children.len(),
                counts: count_states(&p.children),
                expanded: shown,
            });
            if shown {
                pending.children = p
                    .children
                    .iter()
                    .map(|c| Pending {
                        row: row(
                            &c.id,
                            format!("  {}", c.id),
                            phase_href(run, &c.id),
                            c.status,
                        ),
                        spans: spans_of(c),
                        children: Vec::new(),
                    })
                    .collect();
            }
        }
        rows.push(pending);
    }
    for (_, (at, members)) in group_row {
        let counts = count_states(members.iter().copied());
        let r = &mut rows[at].row;
        r.state = group_state(&counts);
        r.group = Some(GroupInfo {
            key: r.key.clone(),
            members: members.len(),
            counts,
            expanded: false,
        });
    }
    // Rows by first start, those that never started after, ties in
    // template order (the sort is stable).
    rows.sort_by_key(|p| {
        p.spans
            .iter()
            .map(|(_, s)| s.start_ms)
            .min()
            .map_or((1, 0), |t| (0, t))
    });
    let all = rows.iter().flat_map(|p| {
        p.spans
            .iter()
            .chain(p.children.iter().flat_map(|c| &c.spans))
    });
    let start_ms = all.clone().map(|(_, s)| s.start_ms).min().unwrap_or(now_ms);
    let end_ms = all
        .map(|(_, s)| s.end_ms.unwrap_or(now_ms).max(s.start_ms))
        .max()
        .unwrap_or(start_ms)
        .max(start_ms + MIN_SPAN_MS);
    let span = end_ms - start_ms;
    let x_of = |t: i64| -> i64 {
        let off = i128::from(t.clamp(start_ms, end_ms) - start_ms);
        LABEL_W + i64::try_from(off * i128::from(CHART_W) / i128::from(span)).unwrap_or(CHART_W)
    };
    let mut out_rows = Vec::new();
    let mut y = MARGIN + AXIS_H;
    let push = |p: Pending, y: &mut i64, out: &mut Vec<TimelineRow>| {
        let mut r = p.row;
        r.y = *y;
        r.bars = p
            .spans
            .into_iter()
            .map(|(phase, s)| {
                let x = x_of(s.start_ms);
                let end = x_of(s.end_ms.unwrap_or(now_ms).max(s.start_ms));
                Bar {
                    phase,
                    span: s,
                    x,
                    width: (end - x).max(MIN_BAR_W),
                }
            })
            .collect();
        r.bars.sort_by_key(|b| (b.span.start_ms, b.span.attempt));
        *y += ROW_H;
        out.push(r);
    };
    for mut p in rows {
        let children = std::mem::take(&mut p.children);
        push(p, &mut y, &mut out_rows);
        for c in children {
            push(c, &mut y, &mut out_rows);
        }
    }
    let step = STEPS_MS
        .iter()
        .copied()
        .find(|s| span / s <= 10)
        .unwrap_or_else(|| (span / 10 / 86_400_000 + 1) * 86_400_000);
    let ticks = (0..=span / step)
        .map(|k| (k * step, x_of(start_ms + k * step)))
        .collect();
    Timeline {
        run: run.to_string(),
        start_ms,
        end_ms,
        rows: out_rows,
        ticks,
        width: LABEL_W + CHART_W + 2 * MARGIN + 40,
        height: y + MARGIN,
    }
}

/// `0s`, `30s`, `1m`, `1m30s`, `2h`, `2h15m`.
fn tick_label(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        if s % 3600 == 0 {
            format!("{}h", s / 3600)
        } else {
            format!("{}h{:02}m", s / 3600, (s / 60) % 60)
        }
    } else if s >= 60 {
        if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{}m{:02}s", s / 60, s % 60)
        }
    } else {
        format!("{s}s")
    }
}

const GANTT_STYLE: &str = "\
.wfe-gantt{font:12px ui-sans-serif,system-ui,sans-serif;--text:#1f2328;--dim:#59636e;--grid:#d0d7de}\
@media (prefers-color-scheme:dark){.wfe-gantt{--text:#e6edf3;--dim:#9198a1;--grid:#30363d}}\
.wfe-gantt text{fill:var(--text)}\
.wfe-gantt .tick text{fill:var(--dim)}\
.wfe-gantt .tick line{stroke:var(--grid)}\
.wfe-gantt .bar{fill:var(--fill);stroke:var(--stroke);stroke-width:1}\
.wfe-gantt .bar.open{stroke-dasharray:3 2}\
.wfe-gantt .folded .bar{fill-opacity:.6}\
.wfe-gantt [data-nav]:focus{outline:none}\
.wfe-gantt [data-nav]:focus text,.wfe-gantt [data-nav]:hover text{text-decoration:underline}";

/// Draws `timeline` as one self-contained SVG: the axis on top, then a
/// `<g class="row st-STATE" data-phase="KEY" data-nav tabindex="0">` per
/// row with its label linking to the phase and a `<rect class="bar
/// st-OUTCOME">` per attempt. Every text is escaped.
pub fn render_gantt_svg(t: &Timeline) -> String {
    let mut s = String::with_capacity(512 + t.rows.len() * 400);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"wfe-gantt\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Timeline of run {run}\">",
        w = t.width,
        h = t.height,
        run = escape(&t.run),
    );
    let _ = write!(
        s,
        "<style>{STATE_STYLE}{GANTT_STYLE}</style><g class=\"axis\">"
    );
    for (off, x) in &t.ticks {
        let _ = write!(
            s,
            "<g class=\"tick\"><line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{bottom}\"/><text x=\"{tx}\" y=\"{ty}\">+{label}</text></g>",
            top = MARGIN + AXIS_H - 4,
            bottom = t.height - MARGIN,
            tx = x + 2,
            ty = MARGIN + 12,
            label = tick_label(*off),
        );
    }
    s.push_str("</g><g class=\"rows\">");
    for r in &t.rows {
        let folded = r.group.as_ref().is_some_and(|g| !g.expanded);
        let group_attrs = match &r.group {
            Some(g) => format!(
                " data-group=\"{}\" data-expanded=\"{}\"",
                escape(&g.key),
                g.expanded
            ),
            None => String::new(),
        };
        let mut label: String = r.label.chars().take(LABEL_CHARS).collect();
        if r.label.chars().count() > LABEL_CHARS {
            label.pop();
            label.push('…');
        }
        let _ = write!(
            s,
            "<g class=\"row st-{st}{folded}\" data-phase=\"{key}\"{group_attrs} data-nav=\"\" tabindex=\"0\"><a href=\"{href}\"><title>{key}: {state}</title><text x=\"{MARGIN}\" y=\"{ty}\">{mark} {label}</text></a>",
            st = state_class(r.state),
            folded = if folded { " folded" } else { "" },
            key = escape(&r.key),
            href = escape(&r.href),
            state = r.state.as_str(),
            ty = r.y + 15,
            mark = state_mark(r.state),
            label = escape(&label),
        );
        for b in &r.bars {
            let took = b
                .span
                .end_ms
                .map(|e| format_duration((e - b.span.start_ms).max(0) as u64));
            let _ = write!(
                s,
                "<rect class=\"bar st-{st}{open}\" data-attempt=\"{n}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{BAR_H}\" rx=\"2\"><title>{phase} attempt {n}: {state}{took}</title></rect>",
                st = state_class(b.span.outcome),
                open = if b.span.end_ms.is_none() { " open" } else { "" },
                n = b.span.attempt,
                x = b.x,
                y = r.y + (ROW_H - BAR_H) / 2,
                w = b.width,
                phase = escape(&b.phase),
                state = b.span.outcome.as_str(),
                took = took.map(|t| format!(", {t}")).unwrap_or_default(),
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</g></svg>");
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::synthetic_view;
    use super::*;
    use PhaseStatus::{Completed, Failed, Pending, Running};

    const T0: &str = "2026-01-02T03:00:00Z";

    fn at(secs: u64) -> String {
        crate::time::format_stamp(
            humantime::parse_rfc3339_weak(T0).unwrap() + Duration::from_secs(secs),
        )
    }

    fn now(secs: u64) -> SystemTime {
        humantime::parse_rfc3339_weak(T0).unwrap() + Duration::from_secs(secs)
    }

    /// `a` 0–10s, `b` 10–20s (its second attempt; the first 2–8s from
    /// history), `c` pending, `d` running since 15s, listed out of order.
    fn view() -> RunView {
        let mut v = synthetic_view(&[
            ("c", Pending, &["b"]),
            ("d", Running, &[]),
            ("b", Completed, &["a"]),
            ("a", Completed, &[]),
        ]);
        let set = |v: &mut RunView, i: usize, start: u64, end: Option<u64>, attempt: u32| {
            let s = &mut v.phases[i].state;
            s.started_at = Some(at(start));
            s.finished_at = end.map(at);
            s.attempt = attempt;
        };
        set(&mut v, 1, 15, None, 1);
        set(&mut v, 2, 10, Some(20), 2);
        set(&mut v, 3, 0, Some(10), 1);
        v
    }

    fn history() -> HashMap<String, Vec<AttemptSpan>> {
        let t0 = stamp_ms(T0).unwrap();
        [(
            "b".to_string(),
            vec![AttemptSpan {
                attempt: 1,
                start_ms: t0 + 2_000,
                end_ms: Some(t0 + 8_000),
                outcome: Failed,
            }],
        )]
        .into()
    }

    #[test]
    fn rows_go_by_start_and_bars_scale_to_the_axis() {
        let t = timeline_run(&view(), now(30), &history(), &LayoutOptions::default());
        let keys: Vec<&str> = t.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["a", "b", "d", "c"],
            "by first start, never-started last"
        );
        assert_eq!(t.end_ms - t.start_ms, 30_000, "the running one reaches now");
        // 30 s over 720 px: 24 px a second.
        let bars = |k: &str| -> Vec<(i64, i64, u32, PhaseStatus)> {
            t.rows
                .iter()
                .find(|r| r.key == k)
                .unwrap()
                .bars
                .iter()
                .map(|b| (b.x - LABEL_W, b.width, b.span.attempt, b.span.outcome))
                .collect()
        };
        assert_eq!(bars("a"), [(0, 240, 1, Completed)]);
        assert_eq!(bars("b"), [(48, 144, 1, Failed), (240, 240, 2, Completed)]);
        assert_eq!(bars("d"), [(360, 360, 1, Running)]);
        assert!(bars("c").is_empty());
        let ys: Vec<i64> = t.rows.iter().map(|r| r.y).collect();
        assert!(ys.windows(2).all(|w| w[0] + ROW_H == w[1]), "{ys:?}");
        // Ticks every 5 s: 0 … 30 s.
        assert_eq!(t.ticks.len(), 7);
        assert_eq!(t.ticks[1], (5_000, LABEL_W + 120));
        let svg = render_gantt_svg(&t);
        assert!(
            svg.contains("class=\"bar st-running open\" data-attempt=\"1\""),
            "{svg}"
        );
        assert!(svg.contains(">+30s</text>"));
        assert!(svg.contains("<title>b attempt 1: failed, 6.0s</title>"));
        assert_eq!(
            svg,
            render_gantt_svg(&timeline_run(
                &view(),
                now(30),
                &history(),
                &LayoutOptions::default()
            ))
        );
    }

    #[test]
    fn a_large_matrix_shares_one_row_and_loop_children_get_theirs() {
        let ids: Vec<String> = (0..10).map(|i| format!("t[n={i}]")).collect();
        let spec: Vec<(&str, PhaseStatus, &[&str])> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), if i < 7 { Completed } else { Failed }, &[][..]))
            .chain([("repair", Running, &[][..])])
            .collect();
        let mut v = synthetic_view(&spec);
        for (i, p) in v.phases.iter_mut().enumerate() {
            p.state.started_at = Some(at(i as u64));
            p.state.finished_at = Some(at(i as u64 + 3));
        }
        let lp = v.phases.last_mut().unwrap();
        lp.max_iters = Some(3);
        lp.state.kind = crate::template::PhaseKind::Loop;
        lp.state.finished_at = None;
        let mut fix = PhaseState::pending("fix", crate::template::PhaseKind::Script);
        fix.status = Running;
        fix.started_at = Some(at(11));
        lp.children = vec![fix];
        let t = timeline_run(&v, now(20), &HashMap::new(), &LayoutOptions::default());
        let keys: Vec<&str> = t.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["t", "repair", "fix"]);
        let t_row = &t.rows[0];
        assert_eq!(t_row.label, "t ×10");
        assert_eq!(t_row.state, Failed);
        assert_eq!(t_row.bars.len(), 10);
        assert_eq!(t_row.href, "/runs/01bbbbbbbbbbbbbbbbbbbbbbbb?expand=t");
        assert_eq!(t.rows[2].label, "  fix");
        assert!(render_gantt_svg(&t).contains("class=\"row st-failed folded\" data-phase=\"t\" data-group=\"t\" data-expanded=\"false\""));
        let options = LayoutOptions {
            expanded: ["t".to_string()].into(),
            ..LayoutOptions::default()
        };
        let t = timeline_run(&v, now(20), &HashMap::new(), &options);
        assert_eq!(t.rows.len(), 12);
    }

    #[test]
    fn earlier_attempts_come_from_their_log_lines() {
        use crate::attempt::{LogLine, Stream};
        let mut state = PhaseState::pending("b", crate::template::PhaseKind::Script);
        state.status = Completed;
        state.attempt = 2;
        state.started_at = Some(at(10));
        state.finished_at = Some(at(20));
        let line = |attempt, secs| LogLine {
            time: at(secs),
            attempt,
            stream: Stream::Stdout,
            line: "x".into(),
        };
        let view = PhaseView {
            run: "r".into(),
            phase: "b".into(),
            key: "b".into(),
            within: None,
            address: "b".into(),
            state,
            loop_spec: None,
            iterations: Vec::new(),
            attempts: Vec::new(),
            expected_schemas: Default::default(),
            exchanges: None,
            tool_calls: None,
            comments: Vec::new(),
            log: vec![line(1, 2), line(1, 8), line(1, 5), line(2, 11)],
            files: Vec::new(),
        };
        let spans = attempt_spans(&view, 0);
        let t0 = stamp_ms(T0).unwrap();
        assert_eq!(
            spans,
            [
                AttemptSpan {
                    attempt: 1,
                    start_ms: t0 + 2_000,
                    end_ms: Some(t0 + 8_000),
                    outcome: Failed
                },
                AttemptSpan {
                    attempt: 2,
                    start_ms: t0 + 10_000,
                    end_ms: Some(t0 + 20_000),
                    outcome: Completed
                },
            ]
        );
    }

    #[test]
    fn labels_are_escaped() {
        let mut v = synthetic_view(&[("<b>&\"", Completed, &[])]);
        v.phases[0].state.started_at = Some("not a time".into());
        let svg = render_gantt_svg(&timeline_run(
            &v,
            now(0),
            &HashMap::new(),
            &LayoutOptions::default(),
        ));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;&amp;&quot;"));
        assert!(
            !svg.contains("data-attempt"),
            "a stamp that does not parse draws no bar"
        );
    }
}
