//! Crash anywhere: a 30-phase template with parallel branches and a loop,
//! its runner killed with SIGKILL at 20 moments of a seeded schedule and
//! resumed each time. Nothing may be lost or done twice.
//!
//! A kill moment is "after 1–3 new checkpoints, plus 0–15 ms", drawn from
//! a seeded generator: the runner is always killed in the middle of work
//! (mid-phase, mid-commit), and a failure replays with the same schedule.

use crate::common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::Repo;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Each phase appends `phase:attempt` to `side.log` (its side effect) and
/// writes one artifact naming itself.
fn work(side: &str) -> String {
    format!(
        "echo \"$WFE_PHASE:${{WFE_ITERATION:-0}}:$WFE_ATTEMPT\" >> {side}; echo \"{{\\\"text\\\": \\\"$WFE_PHASE\\\"}}\" > \"$WFE_OUT/out.json\""
    )
}

fn template(side: &str) -> Value {
    let phase = |id: String, needs: Vec<String>| json!({ "id": id, "kind": "script", "needs": needs, "run": work(side), "outputs": { "out": "message" } });
    let mut phases = vec![phase("start".into(), vec![])];
    // Three parallel branches of eight phases each.
    for b in ["a", "b", "c"] {
        for n in 1..=8 {
            let need = if n == 1 {
                "start".to_string()
            } else {
                format!("{b}{}", n - 1)
            };
            phases.push(phase(format!("{b}{n}"), vec![need]));
        }
    }
    phases.push(phase(
        "join".into(),
        vec!["a8".into(), "b8".into(), "c8".into()],
    ));
    // A loop of two children that is done on its third iteration.
    phases.push(json!({
        "id": "polish", "kind": "loop", "needs": ["join"], "max_iters": 5,
        "until": "artifacts.check.verdict.text == 'pass'",
        "phases": [
            { "id": "edit", "kind": "script", "run": work(side), "outputs": { "out": "message" } },
            { "id": "check", "kind": "script", "needs": ["edit"], "outputs": { "verdict": "message" },
              "run": format!("echo \"$WFE_PHASE:${{WFE_ITERATION:-0}}:$WFE_ATTEMPT\" >> {side}; if [ {{{{ loop.iteration }}}} -ge 3 ]; then v=pass; else v=again; fi; echo \"{{\\\"text\\\": \\\"$v\\\"}}\" > \"$WFE_OUT/verdict.json\"") }
        ]
    }));
    phases.push(phase("publish".into(), vec!["polish".into()]));
    phases.push(phase("done".into(), vec!["publish".into()]));
    json!({ "name": "crashy", "phases": phases })
}

#[test]
fn kill_9_at_twenty_moments_then_resume_loses_nothing_and_repeats_nothing() {
    let repo = Repo::new();
    let side = repo.path().join("side.log");
    let t = template(&side.display().to_string());
    let top_level = t["phases"].as_array().unwrap().len();
    assert_eq!(
        top_level + 2 - 1,
        30,
        "30 phases: 29 top-level minus the loop, plus its two children"
    );
    repo.template("crashy", &t);

    let mut rng = Rng(0x5eed_2026);
    // The first runner is killed as soon as the run exists; every later
    // one at a moment of the seeded schedule.
    let mut child = repo
        .wfe_cmd()
        .args(["run", "crashy", "--no-output"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = loop {
        if let Some(r) = repo.wfe_refs().first() {
            break r.trim_start_matches("refs/wfe/runs/").to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first runner ended before creating the run"
        );
        std::thread::yield_now();
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let tip = |repo: &Repo| repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]);
    let mut kills = 1;
    let mut progressed = 0;
    while kills < 20 {
        let before = tip(&repo);
        let mut child = repo
            .wfe_cmd()
            .args(["resume", &id, "--no-output"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(repo.path().join("resume.err")).unwrap())
            .spawn()
            .unwrap();
        // The moment: after 1 to 3 new checkpoints, plus up to 15 ms, so
        // kills land anywhere in the work (mid-phase, mid-commit), not only
        // while a runner starts up.
        let wanted = 1 + rng.next() % 3;
        let extra = Duration::from_millis(rng.next() % 15);
        let mut seen = before.clone();
        let mut changes = 0;
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            let now = tip(&repo);
            if now != seen {
                seen = now;
                changes += 1;
                if changes >= wanted {
                    std::thread::sleep(extra);
                    break child.try_wait().unwrap();
                }
            }
        };
        if let Some(status) = exited {
            // It finished before its moment: nothing left to kill.
            assert_eq!(
                status.code(),
                Some(0),
                "the run ended with {status:?} between kills: {}",
                std::fs::read_to_string(repo.path().join("resume.err")).unwrap_or_default()
            );
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        progressed += usize::from(tip(&repo) != before);
    }
    let last = repo.wfe(&["resume", &id, "--json", "--no-output"]);
    assert!(last.code == 0, "final resume: {}", last.stderr);
    let doc = last.json();
    assert_eq!(doc["status"], "completed", "{doc:#}");

    // Every final attempt of every completed unit happened exactly once.
    let log = std::fs::read_to_string(&side).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        *seen.entry(line.to_string()).or_default() += 1;
    }
    let r = format!("refs/wfe/runs/{id}");
    let state = |path: &str| -> Value {
        serde_json::from_str(&repo.git(&["show", &format!("{r}:{path}")])).unwrap()
    };
    // (phase id, iteration or 0, directory in the tree)
    let mut units: Vec<(String, u64, String)> = Vec::new();
    for p in doc["phases"].as_array().unwrap() {
        let pid = p["id"].as_str().unwrap().to_string();
        if p["kind"] == "loop" {
            let iterations = state(&format!("phases/{pid}/state.json"))["iteration"]
                .as_u64()
                .unwrap();
            assert_eq!(iterations, 3, "the loop ends on its third iteration");
            for k in 1..=iterations {
                for child in ["edit", "check"] {
                    units.push((
                        child.to_string(),
                        k,
                        format!("phases/{pid}/iterations/{k}/{child}"),
                    ));
                }
            }
        } else {
            units.push((pid.clone(), 0, format!("phases/{pid}")));
        }
    }
    assert_eq!(units.len(), 28 + 6);
    for (pid, iteration, dir) in &units {
        let s = state(&format!("{dir}/state.json"));
        assert_eq!(s["status"], "completed", "{dir}: {s}");
        let key = format!("{pid}:{iteration}:{}", s["attempt"]);
        assert_eq!(
            seen.get(&key),
            Some(&1),
            "{dir}: the completed attempt's side effect happened once ({key})"
        );
        let artifacts = repo.git(&["ls-tree", "--name-only", &format!("{r}:{dir}/artifacts")]);
        assert_eq!(
            artifacts.lines().count(),
            1,
            "{dir}: exactly one artifact: {artifacts}"
        );
    }

    let fsck = repo.git_output(&["fsck", "--full", "--strict", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    for reference in repo
        .git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/wfe/",
        ])
        .lines()
    {
        let object = reference.split(' ').nth(1).unwrap();
        assert!(
            repo.git_output(&["cat-file", "-e", object])
                .status
                .success(),
            "{reference} points to a missing object"
        );
    }
    assert!(
        kills >= 10,
        "the schedule killed the runner often enough ({kills} kills)"
    );
    assert!(
        progressed + 1 >= kills,
        "runners were killed in the middle of the work, not only at start ({progressed} of {kills} made progress)"
    );
}
