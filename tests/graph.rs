//! The run page's DAG and timeline, laid out from a run the real binary
//! made: a matrix larger than the fold threshold folds into one node and
//! one timeline row, and unfolds on request; links point at the phases.

use crate::common;

use std::collections::HashMap;

use common::Repo;
use serde_json::json;
use wfe::engine::PhaseStatus;
use wfe::engine::view::{
    LayoutOptions, NodeKind, RunView, layout_run, render_gantt_svg, render_svg, timeline_run,
};
use wfe::store::{GitStore, RunId};

#[test]
fn a_real_run_lays_out_with_its_matrix_folded_and_unfolded() {
    let repo = Repo::new();
    let doc = json!({ "name": "g", "phases": [
        { "id": "build", "kind": "script", "run": "true" },
        { "id": "test", "kind": "script", "needs": ["build"], "matrix": "MATRIX", "run": "true" },
        { "id": "report", "kind": "script", "needs": ["test"], "run": "true" }
    ]});
    let text = serde_json::to_string_pretty(&doc)
        .unwrap()
        .replace("\"MATRIX\"", r#"{ "n": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }"#);
    repo.write(".wfe/templates/g.json", &text);
    repo.wfe(&["run", "g"]).code(0);
    let id = repo.run_id();
    let store = GitStore::discover(repo.path()).unwrap();
    let view = RunView::load(&store, &RunId::parse(&id).unwrap()).unwrap();
    assert_eq!(view.phases.len(), 12);

    let layout = layout_run(&view, &LayoutOptions::default());
    let keys: Vec<&str> = layout.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["build", "test", "report"]);
    let test = &layout.nodes[1];
    assert_eq!(
        (test.kind, test.state),
        (NodeKind::Matrix, PhaseStatus::Completed)
    );
    assert_eq!(test.label, "test ×10");
    assert_eq!(test.counts_line().as_deref(), Some("10 ✓"));
    assert_eq!(layout.edges.len(), 2);
    let svg = render_svg(&layout);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("data-phase=\"build\" data-nav=\"\" tabindex=\"0\""));
    assert!(svg.contains(&format!("<a href=\"/runs/{id}/phases/build\"")));
    assert!(svg.contains(&format!("<a href=\"/runs/{id}?expand=test\"")));
    assert_eq!(
        svg.matches("http").count(),
        1,
        "no external reference, only the xmlns"
    );

    let options = LayoutOptions {
        expanded: ["test".to_string()].into(),
        ..LayoutOptions::default()
    };
    let layout = layout_run(&view, &options);
    assert_eq!(layout.nodes.len(), 12);
    assert_eq!(layout.edges.len(), 20);
    assert!(render_svg(&layout).contains(&format!("/runs/{id}/phases/test%5Bn%3D7%5D")));

    let now = humantime::parse_rfc3339_weak("2026-01-02T03:04:05Z").unwrap();
    let timeline = timeline_run(&view, now, &HashMap::new(), &LayoutOptions::default());
    let rows: Vec<&str> = timeline.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(rows, ["build", "test", "report"]);
    assert_eq!(
        timeline.rows[1].bars.len(),
        10,
        "every combination's attempt"
    );
    assert!(
        render_gantt_svg(&timeline)
            .contains("class=\"row st-completed folded\" data-phase=\"test\"")
    );
}
