//! No phase outlives its runner, and no phase runs twice at once: SIGTERM,
//! SIGHUP and `wfe cancel` stop phases gracefully (their `trap … EXIT`
//! cleanup runs), `kill_grace` bounds how long a phase that ignores
//! SIGTERM lives on, and a runner killed with SIGKILL leaves nothing that
//! races the next runner.
//!
//! Phases signal that they started through a FIFO or a line in a file the
//! test polls with a bound; nothing here sleeps to synchronise.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::json;

/// Sends `signal` to `target` (a pid, or `-pgid` for a group).
fn send_signal(signal: &str, target: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -s {signal} -- {target} 2>/dev/null")])
        .status()
        .unwrap()
        .success()
}

/// Polls `ready` every few milliseconds for at most 20 s.
#[track_caller]
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A phase that reports its process group on `fifo`, cleans up on exit
/// (writing `cleaned` to `marker`), and otherwise runs for ever. dash runs
/// an EXIT trap on `exit`, so SIGTERM is turned into one. It reports only
/// once it waits in the `wait` builtin: a SIGTERM that reached a freshly
/// forked foreground child before it reset dash's traps would be lost,
/// and the shell would wait for that child until the SIGKILL.
fn trapping(fifo: &Path, marker: &Path) -> String {
    format!(
        "trap 'echo cleaned > {marker}' EXIT; trap 'exit 143' TERM; sleep 1000 & sleep 1000 & echo $$ > {fifo}; wait",
        marker = marker.display(),
        fifo = fifo.display()
    )
}

/// Runs a template whose first phase traps EXIT, stops the runner with
/// `stop` once that phase runs, and returns the repository, the runner's
/// output (which holds the trap's marker file) and the marker.
fn stopped_run(stop: impl FnOnce(&Repo, &std::process::Child)) -> (Repo, common::Run, PathBuf) {
    let repo = Repo::new();
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    let marker = repo.path().join("cleaned.txt");
    repo.template(
        "long",
        &json!({ "name": "long", "phases": [
            script("work", &[], &trapping(&fifo, &marker)),
            script("after", &["work"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "long", "--json"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    stop(&repo, &runner);
    let out = common::Run::from(runner.wait_with_output().unwrap());
    assert!(
        !common::group_alive(pgid),
        "the phase's process group is gone once the runner exits"
    );
    (repo, out, marker)
}

#[test]
fn sigterm_stops_the_runner_like_ctrl_c_and_the_phase_cleans_up() {
    let (_repo, out, marker) = stopped_run(|_, runner| {
        assert!(send_signal("TERM", &runner.id().to_string()));
    });
    out.code(3);
    let doc = out.json();
    assert_eq!(doc["status"], "paused");
    assert_eq!(
        doc["phases"][0]["status"], "pending",
        "the interrupted phase goes back to pending"
    );
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "cleaned\n",
        "the phase's EXIT trap ran"
    );
}

#[test]
fn sighup_and_sigint_stop_the_runner_the_same_way() {
    for signal in ["HUP", "INT"] {
        let (_repo, out, marker) = stopped_run(|_, runner| {
            assert!(send_signal(signal, &runner.id().to_string()));
        });
        out.code(3);
        assert_eq!(out.json()["status"], "paused", "{signal}");
        assert!(marker.exists(), "{signal}: the phase's EXIT trap ran");
    }
}

#[test]
fn cancel_lets_the_phase_clean_up() {
    let (_repo, out, marker) = stopped_run(|repo, _| {
        repo.wfe(&["cancel", &repo.run_id()]).code(0);
    });
    out.code(3);
    assert_eq!(out.json()["status"], "cancelled");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "cleaned\n",
        "the phase's EXIT trap ran"
    );
}

#[test]
fn cancel_after_a_kill_9_ends_what_the_dead_runner_left() {
    let repo = Repo::new();
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    // No stderr: with the runner dead nobody reads the pipe.
    let marker = repo.path().join("cleaned.txt");
    let run = format!("exec 2>/dev/null; {}", trapping(&fifo, &marker));
    repo.template(
        "long",
        &json!({ "name": "long", "phases": [script("work", &[], &run)] }),
    );
    let mut runner = repo.spawn(&["run", "long"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    wait_for("the group to be recorded", || recorded(&repo, pgid));
    // The guardian would end the phase at once: kill it too, so the
    // cancel's own sweep (the second line of defence) is what is tested.
    common::kill_9_with_guardian(&mut runner);
    assert!(
        common::group_alive(pgid),
        "kill -9 of the runner and its guardian leaves the phase running"
    );

    let cancel = repo.wfe(&["cancel", &repo.run_id()]);
    cancel.code(0);
    assert!(
        cancel
            .stderr
            .contains("ended 3 leftover process(es) of work attempt 1"),
        "{}",
        cancel.stderr
    );
    assert!(!common::group_alive(pgid));
    assert!(marker.exists(), "the phase's EXIT trap ran");
    let doc = repo.wfe(&["show", &repo.run_id(), "--json"]).code(0).json();
    assert_eq!(doc["status"], "cancelled");
}

#[test]
fn a_phase_that_ignores_sigterm_is_killed_after_its_kill_grace() {
    let repo = Repo::new();
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    repo.template(
        "stubborn",
        &json!({ "name": "stubborn", "defaults": { "kill_grace": "30s" }, "phases": [{
            "id": "stubborn", "kind": "script", "kill_grace": "300ms",
            // Ignored signals stay ignored across exec: `sleep` ignores it too.
            "run": format!("trap '' TERM; echo $$ > {}; sleep 1000", fifo.display())
        }]}),
    );
    let runner = repo.spawn(&["run", "stubborn"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    let sent = Instant::now();
    assert!(send_signal("TERM", &runner.id().to_string()));
    let out = common::Run::from(runner.wait_with_output().unwrap());
    let took = sent.elapsed();
    out.code(3);
    assert!(!common::group_alive(pgid));
    // The phase's grace, not the template's 30s nor the default 10s.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
}

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

/// A phase that counts the executions of itself running at once with a
/// `flock`-protected list of their pids (entering adds its pid, leaving —
/// normally or on SIGTERM — removes it, which may safely happen twice),
/// writes a line to `violations` if it ever sees another, logs
/// `phase attempt pgid` to `started.log`, and sleeps: 3 s if it is the
/// `held`-th start of the round (the one the test kills its runner in, so
/// it is surely still alive when the resume looks for leftovers, however
/// loaded the machine), else 0.25 s. Only shell builtins
/// run while the lock is held, so a signal cannot tear the list. Its
/// stderr goes to a file: once its runner is killed nobody reads its
/// pipes, and dash reporting "Terminated" (its `sleep` killed by SIGTERM)
/// to a broken pipe would die of SIGPIPE before its trap could run.
fn counting(dir: &Path, held: usize) -> String {
    let d = dir.display();
    format!(
        r#"exec 2>>{d}/stderr.$WFE_PHASE; C={d}/count.$WFE_PHASE; exec 9>>{d}/lock.$WFE_PHASE
leave() {{ flock 9; : >> $C; while read p; do [ "$p" = "$$" ] || echo "$p"; done < $C > $C.tmp; mv $C.tmp $C; flock -u 9; }}
trap 'leave; exit 143' TERM
flock 9; echo $$ >> $C; n=0; while read p; do n=$((n+1)); done < $C
[ $n -le 1 ] || echo "$WFE_PHASE attempt $WFE_ATTEMPT saw $n running" >> {d}/violations
flock -u 9
echo "$WFE_PHASE $WFE_ATTEMPT $$" >> {d}/started.log
n=0; while read l; do n=$((n+1)); done < {d}/started.log
if [ $n -eq {held} ]; then sleep 3; else sleep 0.25; fi
leave"#
    )
}

/// The `started.log` lines of a round: `(phase, attempt, pgid)`.
fn started(dir: &Path) -> Vec<(String, u32, i32)> {
    std::fs::read_to_string(dir.join("started.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Whether the runner has recorded process group `pgid` in the attempt
/// registry (a `+{...}` line in `<git-dir>/wfe/procs/<run>/<pid>.log`).
fn recorded(repo: &Repo, pgid: i32) -> bool {
    let procs = repo.path().join(".git/wfe/procs");
    let needle = format!("\"pgid\":{pgid},");
    std::fs::read_dir(procs)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|run| {
            std::fs::read_dir(run.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .any(|log| {
            std::fs::read_to_string(log.path()).is_ok_and(|text| {
                text.lines()
                    .any(|l| l.starts_with('+') && l.contains(&needle))
            })
        })
}

/// `rounds` seeded kill -9s of a runner mid-phase, each followed at once by
/// `wfe resume`: no phase ever sees a second copy of itself running, and
/// nothing of a killed runner's phases is alive once the resumed run ends.
/// In even rounds the runner's guardian is killed with it, and the resume
/// ends what the runner left (the second line of defence); in odd rounds
/// the guardian ends it all before any resume, which finds nothing left.
fn kill_9_then_resume(rounds: u64, seed: u64) {
    let repo = Repo::new();
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let dir = repo.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("count{round}");
        // Kill once the k-th phase has started and been recorded, a few
        // milliseconds into its work.
        let k = 1 + (rng.next() % 3) as usize;
        let delay = Duration::from_millis(rng.next() % 40);
        repo.template(
            &name,
            &json!({ "name": name, "phases": [
                script("a", &[], &counting(&dir, k)),
                script("b", &[], &counting(&dir, k)),
                script("c", &["a", "b"], &counting(&dir, k)),
            ]}),
        );
        let mut runner = repo.spawn(&["run", &name]);
        wait_for(&format!("round {round}: phase {k} to start"), || {
            started(&dir).len() >= k
        });
        let (phase, _, pgid) = started(&dir)[k - 1].clone();
        wait_for(&format!("round {round}: {phase} to be recorded"), || {
            recorded(&repo, pgid)
        });
        std::thread::sleep(delay);
        let guarded = round % 2 == 1;
        if guarded {
            runner.kill().unwrap();
            runner.wait().unwrap();
            for (phase, attempt, pgid) in started(&dir) {
                wait_for(
                    &format!("round {round}: the guardian to end {phase} attempt {attempt}"),
                    || !common::group_alive(pgid),
                );
            }
        } else {
            common::kill_9_with_guardian(&mut runner);
        }

        let resumed = repo.wfe(&["resume", "latest"]);
        resumed.code(0);
        // With its guardian killed too, the resume ends what the runner
        // left. With the guardian alive, every phase seen starting was
        // ended above without a resume; the resume may still end one the
        // runner forked an instant before its death, still between fork
        // and exec (untagged) while the guardian looked.
        if !guarded {
            assert!(
                resumed.stderr.contains("leftover process(es) of"),
                "round {round}: the resume ended what the killed runner left\n{}",
                resumed.stderr
            );
        }
        let violations = std::fs::read_to_string(dir.join("violations")).unwrap_or_default();
        assert!(
            violations.is_empty(),
            "round {round} (k={k}, delay={delay:?}): {violations}\n{}\n{:?}",
            resumed.stderr,
            std::fs::read_to_string(dir.join("started.log"))
        );
        for (phase, attempt, pgid) in started(&dir) {
            assert!(
                !common::group_alive(pgid),
                "round {round}: {phase} attempt {attempt} (group {pgid}) is still alive"
            );
        }
        let ran: Vec<String> = started(&dir).into_iter().map(|s| s.0).collect();
        for phase in ["a", "b", "c"] {
            assert!(ran.iter().any(|p| p == phase), "round {round}: {ran:?}");
        }
    }
}

/// The issue's 50 seeded rounds (about a minute; it runs in CI too).
#[test]
fn kill_9_fifty_times_then_resume_never_runs_a_phase_twice_at_once() {
    kill_9_then_resume(50, 0x5eed_1234_abcd_0050);
}

/// A repository whose one agent phase may use `bash`, played by `server`.
fn agent_repo(server: &wfe::testing::llm::FakeServer) -> Repo {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": server.url() } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo.template(
        "agentic",
        &json!({ "name": "agentic", "phases": [{
            "id": "plan", "kind": "agent", "kill_grace": "2s",
            "prompt": "Work, then submit a plan.",
            "tools": ["bash"],
            "outputs": { "plan": "message" }
        }]}),
    );
    repo
}

#[test]
fn kill_9_of_a_runner_whose_agent_bash_call_sleeps_then_resume_ends_the_call() {
    use wfe::testing::llm::{FakeServer, Part, Reply};
    let server = FakeServer::spawn(Vec::new());
    let repo = agent_repo(&server);
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    let marker = repo.path().join("cleaned.txt");
    // Only the first call sleeps: a resumed attempt that runs it again
    // finds the marker's sibling and returns at once.
    let command = format!(
        "if [ -e {fifo}.done ]; then echo again; else touch {fifo}.done; exec 2>/dev/null; {}; fi",
        trapping(&fifo, &marker),
        fifo = fifo.display()
    );
    let submit = || Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "done" }))]);
    server.push(vec![Reply::anthropic(vec![Part::Tool(
        "bash",
        json!({ "command": command }),
    )])]);
    let wfe = |args: &[&str]| {
        let mut cmd = repo.wfe_cmd();
        cmd.env("ANTHROPIC_API_KEY", "sk-test-0000000000")
            .args(args);
        cmd
    };
    let mut runner = wfe(&["run", "agentic"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    wait_for("the bash call's group to be recorded", || {
        recorded(&repo, pgid)
    });
    common::kill_9_with_guardian(&mut runner);
    assert!(
        common::group_alive(pgid),
        "kill -9 leaves the tool call running"
    );

    server.push((0..4).map(|_| submit()).collect());
    let resumed = common::Run::from(wfe(&["resume", "latest"]).output().unwrap());
    resumed.code(0);
    assert!(
        resumed
            .stderr
            .contains("ended 3 leftover process(es) of plan attempt 1"),
        "{}",
        resumed.stderr
    );
    assert!(!common::group_alive(pgid));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "cleaned\n",
        "the call's EXIT trap ran: it was ended gracefully"
    );
    assert!(
        !repo
            .path()
            .join(".git/wfe/procs")
            .join(repo.run_id())
            .exists(),
        "nothing left recorded"
    );
}

/// Whether process `pid` runs (exists and is not a zombie).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
    })
}

/// Starts `wfe run` of a phase (its script starting with `prefix`) whose
/// grandchild leaves the phase's process group and session and lets go of
/// its pipes, so neither the group kill nor the pipes reach it; returns
/// the runner, the phase's group and the grandchild's pid.
fn run_with_setsid_grandchild(repo: &Repo, prefix: &str) -> (std::process::Child, i32, i32) {
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    let escaped = repo.path().join("escaped");
    let run = format!(
        "{prefix}setsid sh -c 'echo $$ > {e}.tmp; mv {e}.tmp {e}; exec sleep 1000' >/dev/null 2>&1 </dev/null & \
         while [ ! -e {e} ]; do sleep 0.01; done; echo $$ > {fifo}; wait",
        e = escaped.display(),
        fifo = fifo.display()
    );
    repo.template(
        "escape",
        &json!({ "name": "escape", "phases": [script("work", &[], &run)] }),
    );
    let runner = repo.spawn(&["run", "escape"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    let grandchild: i32 = std::fs::read_to_string(&escaped)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (runner, pgid, grandchild)
}

#[test]
fn a_setsid_grandchild_of_a_phase_does_not_outlive_a_stopped_runner() {
    for signal in ["TERM", "INT"] {
        let repo = Repo::new();
        let (runner, pgid, grandchild) = run_with_setsid_grandchild(&repo, "");
        assert!(process_alive(grandchild));
        assert!(send_signal(signal, &runner.id().to_string()));
        let out = common::Run::from(runner.wait_with_output().unwrap());
        let gone = !process_alive(grandchild);
        // Not left running whatever the assertions say.
        send_signal("KILL", &grandchild.to_string());
        out.code(3);
        assert!(!common::group_alive(pgid), "{signal}");
        assert!(gone, "{signal}: the setsid grandchild outlived its runner");
        assert!(
            out.stderr
                .contains("ended 1 process(es) that outlived their phases"),
            "{signal}: {}",
            out.stderr
        );
    }
}

#[test]
fn after_a_kill_9_resume_ends_a_setsid_grandchild_and_spares_another_clones_run() {
    // Two repositories with the same seeded run id: ending one run's
    // leftovers must not reach the other's processes.
    // No stderr: with the runner dead nobody reads the pipe.
    let setup = |repo: &Repo| run_with_setsid_grandchild(repo, "exec 2>/dev/null; ");
    let repo = Repo::new();
    let other = Repo::new();
    let (mut runner, pgid, grandchild) = setup(&repo);
    let (mut other_runner, other_pgid, other_grandchild) = setup(&other);
    assert_eq!(repo.run_id(), other.run_id(), "the same run id in both");
    common::kill_9_with_guardian(&mut runner);
    assert!(process_alive(grandchild), "kill -9 leaves the grandchild");

    let cancel = repo.wfe(&["cancel", &repo.run_id()]);
    let gone = !process_alive(grandchild);
    let other_alive = process_alive(other_grandchild) && common::group_alive(other_pgid);
    // Not left running whatever the assertions say.
    send_signal("KILL", &grandchild.to_string());
    other_runner.kill().unwrap();
    other_runner.wait().unwrap();
    send_signal("KILL", &other_grandchild.to_string());
    send_signal("KILL", &format!("-{other_pgid}"));
    cancel.code(0);
    assert!(!common::group_alive(pgid));
    assert!(
        gone,
        "the setsid grandchild outlived a cancel after kill -9"
    );
    assert!(other_alive, "the other clone's run was touched");
    assert!(
        cancel
            .stderr
            .contains("leftover process(es) of work attempt 1"),
        "{}",
        cancel.stderr
    );
}

#[test]
fn kill_9_of_a_runner_whose_cli_agent_runs_then_resume_ends_the_agent() {
    let repo = Repo::new();
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    let marker = repo.path().join("cleaned.txt");
    // The first time it runs for ever; the resumed attempt answers at once.
    let agent = repo.write(
        "agent.sh",
        &format!(
            "#!/bin/sh\nif [ -e {fifo}.done ]; then cat >/dev/null; echo '{{\"plan\": {{\"text\": \"done\"}}}}'; exit 0; fi\ntouch {fifo}.done; exec 2>/dev/null; {}\n",
            trapping(&fifo, &marker),
            fifo = fifo.display()
        ),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&agent)
        .status()
        .unwrap();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "local": { "kind": "cli", "command": [agent] } },
            "roles": { "primary": { "provider": "local", "model": "any" } }
        }))
        .unwrap(),
    );
    repo.template(
        "cli",
        &json!({ "name": "cli", "phases": [{
            "id": "plan", "kind": "agent", "kill_grace": "2s",
            "prompt": "Submit a plan.",
            "outputs": { "plan": "message" }
        }]}),
    );
    let mut runner = repo.spawn(&["run", "cli"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    wait_for("the agent's group to be recorded", || recorded(&repo, pgid));
    common::kill_9_with_guardian(&mut runner);
    assert!(
        common::group_alive(pgid),
        "kill -9 leaves the agent running"
    );

    let resumed = repo.wfe(&["resume", "latest"]);
    resumed.code(0);
    assert!(
        resumed
            .stderr
            .contains("ended 3 leftover process(es) of plan attempt 1"),
        "{}",
        resumed.stderr
    );
    assert!(!common::group_alive(pgid));
    assert!(marker.exists(), "the agent's EXIT trap ran");
}
