//! `git`: the git CLI in the working tree, as the user would run it.
//!
//! The agent acts like the user here, so this shells out to `git` (the
//! store, which owns wfe's own refs, never does). Only `status`, `diff`,
//! `log`, `show`, `add` and `commit` are allowed, and options that would
//! point git at another repository or directory, read or write files
//! outside the tree, or change git's configuration are refused. Commits
//! carry `Wfe-Run`/`Wfe-Phase` trailers when the toolbox has them, so code
//! can be traced back to the phase that wrote it.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use super::bash::{ran_output, run_failure};
use super::fence::Fence;
use super::input::Args;
use super::process::{self, GIT_LOCATION_VARS};
use super::{ToolResult, Toolbox, spec as tool_spec};
use crate::provider::ToolSpec;
use crate::store::Trailer;

/// The subcommands the tool runs.
const SUBCOMMANDS: &[&str] = &["status", "diff", "log", "show", "add", "commit"];

/// Long options refused after any subcommand. Git accepts any unambiguous
/// abbreviation of a long option, so a prefix of one of these is refused too.
const DENIED_LONG: &[&str] = &[
    "--git-dir",
    "--work-tree",
    "--exec-path",
    "--namespace",
    "--super-prefix",
    "--config-env",
    // Writes the diff to any file.
    "--output",
    // Compares any two paths on disk, in the tree or not.
    "--no-index",
    "--pathspec-from-file",
];

/// Long options of `commit` that read a file, which may be outside the tree.
const DENIED_LONG_COMMIT: &[&str] = &["--file", "--template"];

pub(super) fn spec(tb: &Toolbox) -> ToolSpec {
    let trailers = if tb.trailers.is_some() {
        " Commits get `Wfe-Run` and `Wfe-Phase` trailers added."
    } else {
        ""
    };
    tool_spec(
        "git",
        &format!(
            "Run git in the working tree's root. `args` are git's arguments and must \
             start with one of: status, diff, log, show, add, commit; e.g. \
             [\"commit\", \"-m\", \"Fix the parser\"]. Other commands (push included) and \
             the options -C, -c, --git-dir, --work-tree, --output, --no-index are refused. \
             There is no editor: give commit messages with -m.{trailers} Returns the \
             exit code, stdout and stderr."
        ),
        json!({
            "args": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": "git's arguments, without `git` itself, e.g. [\"diff\", \"--stat\"].",
            },
        }),
        &["args"],
    )
}

/// `git {args}` → `{exit_code, stdout, stderr}` (as `bash`).
pub(super) async fn git(tb: &Toolbox, input: &Value) -> ToolResult {
    let args = Args::parse(input, &["args"])?;
    let args = args.strings("args")?;
    check_args(&args)?;
    let fence = Fence::new(&tb.root)?;
    let mut cmd = Command::new("git");
    cmd.arg(args[0]);
    if let (Some(t), "commit") = (&tb.trailers, args[0]) {
        cmd.arg("--trailer")
            .arg(Trailer::Run.line(&t.run))
            .arg("--trailer")
            .arg(Trailer::Phase.line(&t.phase));
    }
    cmd.args(&args[1..]).current_dir(fence.root());
    for var in GIT_LOCATION_VARS {
        cmd.env_remove(var);
    }
    for var in &tb.env_remove {
        cmd.env_remove(var);
    }
    // Nothing may wait for a person: no credential prompt, no pager, and
    // an editor that fails, so a commit without -m stops with git's "please
    // supply the message using -m" (with `true`, a commit with trailers and
    // no message would be made with the trailers as its message).
    cmd.env("GIT_EDITOR", "false")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat");
    let timeout: Duration = tb.bash_timeout;
    match process::run(cmd, timeout, tb.output_cap).await {
        Ok(ran) => Ok(ran_output(ran, tb.output_cap)),
        Err(e) => Err(run_failure(e, "git", fence.root(), timeout, tb.output_cap)),
    }
}

/// Refuses a subcommand not in [`SUBCOMMANDS`] and the options that could
/// leave the tree or change git's configuration.
fn check_args(args: &[&str]) -> Result<(), String> {
    let allowed = SUBCOMMANDS.join(", ");
    let Some(&sub) = args.first() else {
        return Err(format!(
            "field `args` is empty; start it with one of: {allowed}"
        ));
    };
    if !SUBCOMMANDS.contains(&sub) {
        return Err(format!(
            "`git {sub}` is not allowed; the first argument must be one of: {allowed}"
        ));
    }
    let refuse = |arg: &str| {
        Err(format!(
            "option `{arg}` is not allowed in the git tool: it could reach outside the working tree or change git's configuration"
        ))
    };
    let mut rest = args[1..].iter();
    while let Some(&arg) = rest.next() {
        if arg == "--" {
            // Pathspecs follow; git keeps those inside the repository.
            break;
        }
        if sub == "commit" && arg == "--message" {
            // The message may look like an option.
            rest.next();
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let name = format!("--{}", long.split_once('=').map_or(long, |(n, _)| n));
            let commit_only = if sub == "commit" {
                DENIED_LONG_COMMIT
            } else {
                &[]
            };
            if name.len() > 2
                && DENIED_LONG
                    .iter()
                    .chain(commit_only)
                    .any(|denied| denied.starts_with(&name))
            {
                return refuse(arg);
            }
        } else if let Some(cluster) = arg.strip_prefix('-') {
            if cluster.starts_with(['C', 'c']) {
                return refuse(arg);
            }
            if sub == "commit" {
                // Short options cluster (`-aF file`): scan up to the first
                // one that takes a value, which is the rest of the argument
                // or, for a last `m`, the next one (a message may look like
                // an option).
                for (i, c) in cluster.char_indices() {
                    match c {
                        'F' | 't' | 'C' | 'c' => return refuse(arg),
                        'm' if i + 1 == cluster.len() => {
                            rest.next();
                            break;
                        }
                        'm' | 'S' | 'u' => break,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::super::test_support::{Repo, err, git as run_git, ok};
    use super::*;

    fn toolbox(repo: &Repo) -> Toolbox {
        Toolbox::new(repo.root(), &["git".into()])
    }

    #[tokio::test]
    async fn commits_carry_the_trailers() {
        let repo = Repo::git_init();
        repo.write("a.txt", "a\n");
        let tb = toolbox(&repo).with_trailers("01jrun", "build");
        let out = ok(tb
            .call("git", &json!({"args": ["status", "--short"]}))
            .await);
        assert_eq!(
            out,
            json!({"exit_code": 0, "stdout": "?? a.txt\n", "stderr": ""})
        );
        let out = ok(tb.call("git", &json!({"args": ["add", "a.txt"]})).await);
        assert_eq!(out["exit_code"], 0);
        let out = ok(tb
            .call(
                "git",
                &json!({"args": ["commit", "-q", "-m", "Add a", "-m", "Body."]}),
            )
            .await);
        assert_eq!(out["exit_code"], 0, "{out}");
        assert_eq!(
            run_git(repo.root(), &["log", "--format=%B"]),
            "Add a\n\nBody.\n\nWfe-Run: 01jrun\nWfe-Phase: build\n\n"
        );
        let out = ok(tb
            .call("git", &json!({"args": ["log", "--format=%s"]}))
            .await);
        assert_eq!(out["stdout"], "Add a\n");
        // Nothing to commit is a result with git's message, not an error.
        let out = ok(tb
            .call("git", &json!({"args": ["commit", "-m", "again"]}))
            .await);
        assert_eq!(out["exit_code"], 1);
        // Without -m there is no editor to wait for: git gives up at once,
        // rather than commit a message made of the trailers alone.
        repo.write("a.txt", "b\n");
        let out = ok(tb.call("git", &json!({"args": ["commit", "-a"]})).await);
        assert_eq!(out["exit_code"], 1);
        let stderr = out["stderr"].as_str().unwrap();
        assert!(
            stderr.contains("Please supply the message using either -m or -F option"),
            "{stderr}"
        );
        assert_eq!(
            run_git(repo.root(), &["rev-list", "--count", "HEAD"]),
            "1\n"
        );
    }

    #[tokio::test]
    async fn commits_without_trailers_when_none_are_set() {
        let repo = Repo::git_init();
        repo.write("a.txt", "a\n");
        let tb = toolbox(&repo);
        ok(tb.call("git", &json!({"args": ["add", "."]})).await);
        let out = ok(tb
            .call(
                "git",
                &json!({"args": ["commit", "-qm", "-C looks like an option"]}),
            )
            .await);
        assert_eq!(out["exit_code"], 0, "{out}");
        assert_eq!(
            run_git(repo.root(), &["log", "--format=%B"]),
            "-C looks like an option\n\n"
        );
    }

    #[tokio::test]
    async fn refuses_other_commands_and_escaping_options() {
        let repo = Repo::git_init();
        let tb = toolbox(&repo);
        let allowed = "status, diff, log, show, add, commit";
        let cases: &[(&[&str], String)] = &[
            (
                &["push"],
                format!("`git push` is not allowed; the first argument must be one of: {allowed}"),
            ),
            (
                &["push", "origin", "main"],
                format!("`git push` is not allowed; the first argument must be one of: {allowed}"),
            ),
            (
                &["-C", "/tmp", "status"],
                format!("`git -C` is not allowed; the first argument must be one of: {allowed}"),
            ),
            (
                &["-c", "core.pager=evil", "log"],
                format!("`git -c` is not allowed; the first argument must be one of: {allowed}"),
            ),
            (
                &["--git-dir=/tmp/x", "status"],
                format!(
                    "`git --git-dir=/tmp/x` is not allowed; the first argument must be one of: {allowed}"
                ),
            ),
            (
                &["config", "user.name", "x"],
                format!(
                    "`git config` is not allowed; the first argument must be one of: {allowed}"
                ),
            ),
            (
                &[],
                format!("field `args` is empty; start it with one of: {allowed}"),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(
                &err(tb.call("git", &json!({ "args": args })).await),
                expected,
                "{args:?}"
            );
        }
        let options: &[&[&str]] = &[
            &["status", "-C", "/tmp"],
            &["log", "-c"],
            &["diff", "--git-dir=/tmp/x"],
            &["diff", "--work-tree", "/tmp"],
            &["log", "--work-t=/tmp"],
            &["status", "--exec-path=/tmp"],
            &["log", "--namespace=x"],
            &["diff", "--output=/tmp/pwned"],
            &["diff", "--outp=/tmp/pwned"],
            &["diff", "--no-index", "/etc/passwd", "a.txt"],
            &["add", "--pathspec-from-file=/etc/passwd"],
            &["commit", "-F", "/etc/passwd"],
            &["commit", "-aF", "/etc/passwd"],
            &["commit", "--file=/etc/passwd"],
            &["commit", "-t", "/etc/passwd"],
            &["commit", "--template", "/etc/passwd"],
            &["commit", "-C", "HEAD"],
            &["commit", "-m", "msg", "-F", "/etc/passwd"],
            &["commit", "-mmsg", "-F", "/etc/passwd"],
        ];
        for args in options {
            let message = err(tb.call("git", &json!({ "args": args })).await);
            assert!(
                message.ends_with("is not allowed in the git tool: it could reach outside the working tree or change git's configuration"),
                "{args:?}: {message}"
            );
        }
        assert!(!Path::new("/tmp/pwned").exists());
    }

    #[test]
    fn accepts_ordinary_options() {
        let ok_args: &[&[&str]] = &[
            &["status", "--short", "--branch"],
            &["log", "--oneline", "-n", "5", "--name-only", "--stat"],
            &["diff", "--cached", "--name-status", "HEAD~1"],
            &["show", "HEAD:src/main.rs"],
            &["commit", "-am", "Fix -C handling"],
            &["commit", "--message=--output"],
            &["commit", "-m", "--git-dir"],
            &["commit", "-qam", "-c"],
            &["commit", "--message", "-F"],
            &[
                "commit",
                "--amend",
                "--no-edit",
                "--trailer",
                "Reviewed-by: x",
            ],
            &["add", "-A", "--", "-C", "--output"],
        ];
        for args in ok_args {
            assert_eq!(check_args(args), Ok(()), "{args:?}");
        }
    }
}
