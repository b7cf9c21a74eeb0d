//! `--help` of every command and subcommand, as snapshots: found by walking
//! the "Commands:" lists from `wfe --help` down, so a new command is
//! snapshotted without anyone listing it here.

use crate::common::snapshot::assert_run;
use crate::common::{Repo, Run};

/// The subcommand names a help text lists under "Commands:", `help` aside.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| {
            // A command's line starts with its name after two spaces; a
            // wrapped description starts further in.
            let rest = line.strip_prefix("  ")?;
            (!rest.starts_with(' ')).then(|| rest.split_whitespace().next())?
        })
        .map(str::to_string)
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_command_has_a_help_snapshot() {
    let repo = Repo::new();
    let mut queue = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let run: Run = repo.wfe(&args);
        run.code(0);
        let name = std::iter::once("wfe")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("_");
        assert_run!(&repo, &name, &run);
        for sub in subcommands(&run.stdout) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(name);
    }
    // The walk found the tree, not just the top: some known leaves.
    for name in ["wfe_run", "wfe_schema_show", "wfe_provider_set-key"] {
        assert!(seen.iter().any(|s| s == name), "{name} not in {seen:?}");
    }
}

#[test]
fn help_lists_every_top_level_command() {
    let repo = Repo::new();
    let run = repo.wfe(&["--help"]);
    let commands = subcommands(&run.code(0).stdout);
    for expected in ["init", "run", "show", "schema", "template", "provider"] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} not in {commands:?}"
        );
    }
}
