//! `bash`: a shell command in the working tree's root.
//!
//! The command runs as `sh -c` in its own process group (see [`process`]):
//! a timeout, or the call being dropped, kills it with everything it
//! started. It is not fenced: the fence guards the file tools, and a phase
//! that allows `bash` trusts the model with a shell in the working tree.
//! A non-zero exit is an output, not an error: the model reads the code.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use super::clip::{Ends, share};
use super::fence::Fence;
use super::input::Args;
use super::process::{self, GIT_LOCATION_VARS, Ran, RunError};
use super::{Failure, Output, ToolResult, Toolbox, spec as tool_spec};
use crate::provider::ToolSpec;
use crate::retry::DurationSpec;

/// The shell, by absolute path, as for script phases.
const SHELL: &str = "/bin/sh";

/// Room kept in a timeout's message for the text around the partial output.
const MESSAGE_ROOM: usize = 200;

pub(super) fn spec(tb: &Toolbox) -> ToolSpec {
    let max = tb.bash_timeout.as_secs().max(1);
    tool_spec(
        "bash",
        &format!(
            "Run a shell command with `sh -c` in the working tree's root, stdin empty. \
             Returns its exit code, stdout and stderr; a non-zero exit code is a result, \
             not an error. After `timeout_secs` the command and every process it started \
             are killed and the call fails with the output so far. Output beyond {} bytes \
             is cut in the middle. Background processes still holding stdout/stderr 1s \
             after the command exits are killed; redirect their output to keep them running.",
            tb.output_cap
        ),
        json!({
            "command": {"type": "string", "description": "The command line, as for `sh -c`."},
            "timeout_secs": {
                "type": "integer",
                "minimum": 1,
                "maximum": max,
                "description": format!("Kill the command after this many seconds. Default and maximum: {max}."),
            },
        }),
        &["command"],
    )
}

/// `bash {command, timeout_secs?}` → `{exit_code, stdout, stderr}`, plus
/// `signal` when a signal ended it and `note` when background processes
/// were killed.
pub(super) async fn bash(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["command", "timeout_secs"])?;
    let command = args.string("command")?;
    let timeout_secs = args.opt_integer("timeout_secs", 1)?;
    if command.trim().is_empty() {
        return Err("field `command` is empty".into());
    }
    // Longer than allowed is lowered to the limit: the spec says so, and
    // failing would only cost the model a turn.
    let timeout = timeout_secs
        .map(Duration::from_secs)
        .map_or(tb.bash_timeout, |t| t.min(tb.bash_timeout));
    let fence = Fence::new(&tb.root)?;
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(command).current_dir(fence.root());
    for var in GIT_LOCATION_VARS {
        cmd.env_remove(var);
    }
    for var in &tb.env_remove {
        cmd.env_remove(var);
    }
    match process::run(cmd, timeout, tb.output_cap).await {
        Ok(ran) => Ok(ran_output(ran, tb.output_cap)),
        Err(e) => Err(run_failure(
            e,
            "sh -c",
            fence.root(),
            timeout,
            tb.output_cap,
        )),
    }
}

/// The output of a command that ran to its end (`bash` and `git`).
pub(super) fn ran_output(ran: Ran, cap: usize) -> Output {
    let (stdout, stderr, truncated) = fit_both(&ran.stdout, &ran.stderr, cap);
    let mut value = json!({
        "exit_code": ran.status.code(),
        "stdout": stdout,
        "stderr": stderr,
    });
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&ran.status) {
        value["signal"] = json!(signal);
    }
    if ran.killed_holders {
        value["note"] = json!(
            "processes the command started kept stdout/stderr open after it exited and were killed"
        );
    }
    Output::new(value, truncated)
}

/// Why a command did not run to its end, with what it wrote until then.
pub(super) fn run_failure(
    e: RunError,
    what: &str,
    root: &Path,
    timeout: Duration,
    cap: usize,
) -> Failure {
    match e {
        RunError::Spawn(e) => format!("cannot run `{what}` in {}: {e}", root.display()).into(),
        RunError::Wait(e) => {
            format!("lost track of `{what}` ({e}); it was killed with every process it started")
                .into()
        }
        RunError::TimedOut { stdout, stderr } => {
            let (stdout, stderr, truncated) =
                fit_both(&stdout, &stderr, cap.saturating_sub(MESSAGE_ROOM));
            let mut message = format!(
                "timed out after {}: the command and every process it started were killed",
                DurationSpec(timeout)
            );
            for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
                if !text.is_empty() {
                    message.push_str(&format!("\n{name} until then:\n{text}"));
                }
            }
            Failure { message, truncated }
        }
    }
}

/// Both streams fitted into `cap` together; true if either was cut.
fn fit_both(stdout: &Ends, stderr: &Ends, cap: usize) -> (String, String, bool) {
    let (out_cap, err_cap) = share(stdout.len(), stderr.len(), cap);
    let (stdout, out_cut) = stdout.fit(out_cap);
    let (stderr, err_cut) = stderr.fit(err_cap);
    (stdout, stderr, out_cut || err_cut)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::super::test_support::{Repo, err, live_members, ok};
    use super::*;

    fn toolbox(repo: &Repo) -> Toolbox {
        Toolbox::new(repo.root(), &["bash".into()])
    }

    #[tokio::test]
    async fn runs_in_the_root_and_reports_the_exit_code() {
        let repo = Repo::new();
        repo.write("a.txt", "hello\n");
        let tb = toolbox(&repo);
        let out = ok(tb
            .call(
                "bash",
                &json!({"command": "pwd -P; cat a.txt; echo oops >&2; exit 3"}),
            )
            .await);
        assert_eq!(
            out,
            json!({
                "exit_code": 3,
                "stdout": format!("{}\nhello\n", repo.root().display()),
                "stderr": "oops\n",
            })
        );
        let out = ok(tb
            .call("bash", &json!({"command": "read x; echo \"[$x]\""}))
            .await);
        assert_eq!(out["stdout"], "[]\n", "stdin is empty");
        let out = ok(tb.call("bash", &json!({"command": "kill -TERM $$"})).await);
        assert_eq!(
            (out["exit_code"].clone(), out["signal"].clone()),
            (Value::Null, json!(15))
        );
        assert_eq!(
            err(tb.call("bash", &json!({"command": "  "})).await),
            "field `command` is empty"
        );
    }

    #[tokio::test]
    async fn removed_variables_are_not_inherited() {
        let repo = Repo::new();
        // HOME stands in for a provider key: it is set in the test process.
        let tb = toolbox(&repo).without_env(&["HOME".into()]);
        let out = ok(tb
            .call(
                "bash",
                &json!({"command": "printenv HOME || echo no-home; env | grep -c '^HOME=' || true"}),
            )
            .await);
        assert_eq!(out["stdout"], "no-home\n0\n");
        let kept = ok(toolbox(&repo)
            .call(
                "bash",
                &json!({"command": "test -n \"$HOME\" && echo home"}),
            )
            .await);
        assert_eq!(kept["stdout"], "home\n");
    }

    #[tokio::test]
    async fn output_over_the_cap_is_cut_and_flagged() {
        let repo = Repo::new();
        let tb = toolbox(&repo).with_limits(100, Duration::from_secs(30));
        let out = tb
            .call("bash", &json!({"command": "seq 1 10000; echo err >&2"}))
            .await;
        assert!(out.truncated);
        let out = ok(out);
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.starts_with("1\n2\n3\n"), "{stdout}");
        assert!(stdout.ends_with("9999\n10000\n"), "{stdout}");
        assert!(stdout.contains(" bytes left out …]"), "{stdout}");
        assert_eq!(out["stderr"], "err\n");
        assert_eq!(out["exit_code"], 0);
        let small = tb.call("bash", &json!({"command": "echo hi"})).await;
        assert!(!small.truncated);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let repo = Repo::new();
        let tb = toolbox(&repo).with_limits(1000, Duration::from_secs(1));
        let started = Instant::now();
        // Asks for more than the limit: lowered to 1s. The pid of the shell
        // (the group id) and of a background child are recorded.
        let out = tb
            .call(
                "bash",
                &json!({
                    "command": "echo $$ > pgid; sleep 1000 & echo $! > child; echo started; sleep 1000; wait",
                    "timeout_secs": 500,
                }),
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            err(out),
            "timed out after 1s: the command and every process it started were killed\nstdout until then:\nstarted\n"
        );
        let pgid: u32 = std::fs::read_to_string(repo.path("pgid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let child = std::fs::read_to_string(repo.path("child")).unwrap();
        assert_eq!(
            live_members(pgid),
            Vec::<String>::new(),
            "background child {child}"
        );
    }

    #[tokio::test]
    async fn dropping_the_call_kills_the_whole_group() {
        let repo = Repo::new();
        let tb = toolbox(&repo);
        let input = json!({"command": "sleep 1000 & echo $$ > pgid.tmp; mv pgid.tmp pgid; sleep 1000; wait"});
        let call = tb.call("bash", &input);
        // Poll the call until the shell has recorded its group, then drop it.
        let pgid_file = repo.path("pgid");
        tokio::select! {
            _ = call => panic!("the command ended by itself"),
            () = async {
                while !pgid_file.exists() {
                    tokio::task::yield_now().await;
                }
            } => {}
        }
        let pgid: u32 = std::fs::read_to_string(&pgid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL was sent on drop; dying takes the kernel a moment, so
        // check until the group is dead, bounded.
        let gone = tokio::time::timeout(Duration::from_secs(5), async {
            while !live_members(pgid).is_empty() {
                tokio::task::yield_now().await;
            }
        });
        assert!(gone.await.is_ok(), "{:?}", live_members(pgid));
    }

    #[tokio::test]
    async fn a_background_child_holding_stdout_is_killed_after_the_exit() {
        let repo = Repo::new();
        let tb = toolbox(&repo);
        let out = ok(tb
            .call(
                "bash",
                &json!({"command": "echo $$ > pgid; sleep 1000 & echo done"}),
            )
            .await);
        assert_eq!(out["stdout"], "done\n");
        assert_eq!(out["exit_code"], 0);
        assert!(out["note"].as_str().unwrap().contains("were killed"));
        let pgid: u32 = std::fs::read_to_string(repo.path("pgid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(live_members(pgid), Vec::<String>::new());
        // A background process that lets go of the pipes is left running.
        let out = ok(tb
            .call(
                "bash",
                &json!({"command": "sleep 0 > /dev/null 2>&1 & echo quick"}),
            )
            .await);
        assert!(out.get("note").is_none());
    }
}
