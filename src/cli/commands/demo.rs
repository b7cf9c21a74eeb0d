//! `wfe demo`: a scratch repository, the `hello` template run in it (or,
//! with `--agent`, the bundled `examples/agent-replay` replayed from its
//! recording; with `--template NAME`, a built-in pipeline run offline on
//! `examples/sample-app` from its recording), and the commands to try next.
//! Every command it prints is one a test runs as printed.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::layout;
use crate::store::{GitStore, RunStore, WORKSPACE};

/// `examples/sample-app` with its recordings, compiled in: (path in the
/// scratch repository, text). `tests/pipelines.rs` checks that it holds
/// every file of the example.
const SAMPLE_APP: &[(&str, &str)] = &[
    // BEGIN SAMPLE_APP (generated: see tests/pipelines.rs)
    (
        ".wfe/recorded/bugfix/args.json",
        include_str!("../../../examples/sample-app/.wfe/recorded/bugfix/args.json"),
    ),
    (
        ".wfe/recorded/bugfix/fix/iterations/1/patch.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/bugfix/fix/iterations/1/patch.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/bugfix/fix/iterations/2/patch.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/bugfix/fix/iterations/2/patch.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/bugfix/reproduce.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/bugfix/reproduce.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/bugfix/review.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/bugfix/review.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/ci/args.json",
        include_str!("../../../examples/sample-app/.wfe/recorded/ci/args.json"),
    ),
    (
        ".wfe/recorded/compound-dev/architecture.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/architecture.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/args.json",
        include_str!("../../../examples/sample-app/.wfe/recorded/compound-dev/args.json"),
    ),
    (
        ".wfe/recorded/compound-dev/backend.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/backend.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/execute/iterations/1/implement.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/execute/iterations/1/implement.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/execute/iterations/2/implement.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/execute/iterations/2/implement.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/frontend.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/frontend.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/plan.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/plan.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/retro.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/retro.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/synthesize.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/synthesize.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/compound-dev/testing.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/compound-dev/testing.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/feature/args.json",
        include_str!("../../../examples/sample-app/.wfe/recorded/feature/args.json"),
    ),
    (
        ".wfe/recorded/feature/implement.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/feature/implement.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/feature/research.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/feature/research.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/feature/review.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/feature/review.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/feature/spec.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/feature/spec.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/review/args.json",
        include_str!("../../../examples/sample-app/.wfe/recorded/review/args.json"),
    ),
    (
        ".wfe/recorded/review/changes/src/textkit.py",
        include_str!("../../../examples/sample-app/.wfe/recorded/review/changes/src/textkit.py"),
    ),
    (
        ".wfe/recorded/review/correctness.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/review/correctness.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/review/design.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/review/design.exchanges.jsonl"),
    ),
    (
        ".wfe/recorded/review/synthesize.exchanges.jsonl",
        include_str!(
            "../../../examples/sample-app/.wfe/recorded/review/synthesize.exchanges.jsonl"
        ),
    ),
    (
        ".wfe/recorded/review/tests.exchanges.jsonl",
        include_str!("../../../examples/sample-app/.wfe/recorded/review/tests.exchanges.jsonl"),
    ),
    (
        "README.md",
        include_str!("../../../examples/sample-app/README.md"),
    ),
    (
        "scripts/build.sh",
        include_str!("../../../examples/sample-app/scripts/build.sh"),
    ),
    (
        "scripts/lint.sh",
        include_str!("../../../examples/sample-app/scripts/lint.sh"),
    ),
    (
        "scripts/test.sh",
        include_str!("../../../examples/sample-app/scripts/test.sh"),
    ),
    (
        "src/cli.py",
        include_str!("../../../examples/sample-app/src/cli.py"),
    ),
    (
        "src/textkit.py",
        include_str!("../../../examples/sample-app/src/textkit.py"),
    ),
    (
        "tests/run.py",
        include_str!("../../../examples/sample-app/tests/run.py"),
    ),
    (
        "tests/test_textkit.py",
        include_str!("../../../examples/sample-app/tests/test_textkit.py"),
    ),
    // END SAMPLE_APP
];

/// `examples/agent-replay`, compiled in: (path in the scratch repository, text).
/// `tests/examples.rs` checks that it holds every file of the example.
const AGENT_EXAMPLE: &[(&str, &str)] = &[
    (
        ".wfe/config.json",
        include_str!("../../../examples/agent-replay/.wfe/config.json"),
    ),
    (
        ".wfe/templates/review-fix.yaml",
        include_str!("../../../examples/agent-replay/.wfe/templates/review-fix.yaml"),
    ),
    (
        "README.md",
        include_str!("../../../examples/agent-replay/README.md"),
    ),
    (
        "recorded/fix.exchanges.jsonl",
        include_str!("../../../examples/agent-replay/recorded/fix.exchanges.jsonl"),
    ),
    (
        "recorded/plan.exchanges.jsonl",
        include_str!("../../../examples/agent-replay/recorded/plan.exchanges.jsonl"),
    ),
    (
        "src/calc.py",
        include_str!("../../../examples/agent-replay/src/calc.py"),
    ),
    (
        "src/report.py",
        include_str!("../../../examples/agent-replay/src/report.py"),
    ),
    (
        "test_calc.sh",
        include_str!("../../../examples/agent-replay/test_calc.sh"),
    ),
];

/// Make a scratch repository and run a bundled example in it
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to make the repository (default: a new directory under the system temp dir)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Who to greet
    #[arg(long, default_value = "world")]
    pub name: String,
    /// Run the agent example instead: agents plan and fix a bug, with a
    /// reviewer, replayed from a recording (no key, no network)
    #[arg(long, conflicts_with = "name")]
    pub agent: bool,
    /// Run a built-in pipeline instead (compound-dev, feature, bugfix, review, ci) on a small sample project, its agents replayed from a recording (no key, no network)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["name", "agent"])]
    pub template: Option<String>,
}

/// The built-in pipelines `--template` runs, each with the one to try
/// after it; `hello` (the plain demo) leads to the first.
const PIPELINES: &[(&str, &str)] = &[
    ("compound-dev", "feature"),
    ("feature", "bugfix"),
    ("bugfix", "review"),
    ("review", "ci"),
    ("ci", "compound-dev"),
];

/// The last thing every demo says: the same run, live in a browser.
const WEB_HINT: &str =
    "Watch the run (and every run to come) in your browser (Ctrl-C stops the server):";

/// Runs `wfe demo`.
pub(crate) async fn run(args: DemoArgs, ui: &Ui) -> Result<Outcome, CliError> {
    if let Some(name) = args.template.as_deref()
        && name != "hello"
        && !PIPELINES.iter().any(|(p, _)| *p == name)
    {
        let known: Vec<&str> = std::iter::once("hello")
            .chain(PIPELINES.iter().map(|(p, _)| *p))
            .collect();
        return Err(CliError::input(format!(
            "`--template {name}`: the demo runs one of {}",
            known.join(", ")
        )));
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "wfe-demo-{}",
            crate::store::RunId::generate().as_str()
        )),
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::input(format!(
            "{} exists and is not empty; pick another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    ui.note(&format!(
        "{} a scratch repository at {}",
        ui.paint(Style::Bold, "wfe demo:"),
        dir.display()
    ));
    let now = crate::time::Clock::system().epoch_seconds();
    if let Some(name) = args.template.as_deref().filter(|n| *n != "hello") {
        return run_pipeline(name, &dir, now, ui).await;
    }
    let store = GitStore::init_with_empty_commit(&dir, now)?;
    if args.agent {
        // Before the context: it reads the example's `.wfe/config.json`.
        write_agent_example(&dir)?;
    }
    let ctx = Context::for_store(store)?;
    let (template, run_args) = if args.agent {
        ("review-fix", Vec::new())
    } else {
        super::init::write_starter_files(&ctx.root, false)?;
        ("hello", vec![format!("name={}", args.name)])
    };
    let code = super::run::run(run_args_for(template, run_args, None), &ctx, ui).await?;
    let id = ctx.store.resolve("latest")?;
    let git = format!("git -C {}", dir.display());
    if args.agent {
        ui.note(&format!(
            "\n{}\n  {git} diff '{r}^{{/plan completed}}' {r} -- {workspace}/\n  {git} show {r}:{review}\n  {git} log --format='%h %s' {r}\n  cd {} && wfe show latest fix\n{web}\n  cd {dir} && wfe serve --open",
            ui.paint(
                Style::Bold,
                "The run is a chain of commits (every model turn, tool call and review, with snapshots of the code); look at it with git or wfe:"
            ),
            dir.display(),
            r = id.ref_name(),
            workspace = WORKSPACE,
            review = layout::review("fix", 1, 1),
            web = ui.paint(Style::Bold, WEB_HINT),
            dir = dir.display(),
        ));
        return Ok(code);
    }
    ui.note(&format!(
        "\n{}\n  {git} log --format='%h %s%n%(trailers:only)' {r}\n  {git} show {r}:{summary}\n  {git} diff {r}~3 {r} -- {phases}/\n  cd {} && wfe status && wfe show latest count\n{next}\n  wfe demo --template {first}\n{web}\n  cd {dir} && wfe serve --open",
        ui.paint(Style::Bold, "The run is a chain of commits; look at it with git or wfe:"),
        dir.display(),
        r = id.ref_name(),
        summary = layout::artifact("combine", "summary"),
        phases = layout::PHASES,
        next = ui.paint(
            Style::Bold,
            "Next, a built-in agent pipeline (plan, specialists, a task loop, a retro), offline:"
        ),
        first = PIPELINES[0].0,
        web = ui.paint(Style::Bold, WEB_HINT),
        dir = dir.display(),
    ));
    Ok(code)
}

/// `wfe run TEMPLATE` with `args` (and an args file), driven in this process.
fn run_args_for(
    template: &str,
    args: Vec<String>,
    args_file: Option<PathBuf>,
) -> super::run::RunArgs {
    super::run::RunArgs {
        template: template.into(),
        args,
        args_file,
        replay: None,
        budget: Vec::new(),
        detach: false,
        queue: false,
        drive: super::run::DriveArgs {
            jobs: None,
            json: false,
            no_output: false,
            wait: false,
            ci: Default::default(),
        },
    }
}

/// `wfe demo --template NAME`: the sample project committed in `dir`, a
/// config whose roles all answer from `.wfe/recorded/NAME/`, the change a
/// pipeline starts from (if its recording has one), then the run.
async fn run_pipeline(name: &str, dir: &Path, now: i64, ui: &Ui) -> Result<Outcome, CliError> {
    let recorded = format!(".wfe/recorded/{name}");
    write_files(dir, SAMPLE_APP.iter().copied())?;
    write_files(dir, [(".wfe/config.json", &*replay_config(&recorded))])?;
    let store = GitStore::init_committing_work_tree(dir, now)?;
    // The uncommitted change the pipeline starts from (`review` reviews it).
    let changes = format!("{recorded}/changes/");
    write_files(
        dir,
        SAMPLE_APP
            .iter()
            .filter_map(|(path, text)| Some((path.strip_prefix(&changes)?, *text))),
    )?;
    let ctx = Context::for_store(store)?;
    let args_file = dir.join(format!("{recorded}/args.json"));
    let code = super::run::run(run_args_for(name, Vec::new(), Some(args_file)), &ctx, ui).await?;
    let id = ctx.store.resolve("latest")?;
    let snapshot = crate::engine::RunSnapshot::load_tip(&ctx.store, &id)?;
    let cd = format!("cd {}", dir.display());
    let next = PIPELINES
        .iter()
        .find(|(p, _)| *p == name)
        .map_or("hello", |(_, next)| next);
    let waiting: Vec<&str> = snapshot
        .template
        .phases
        .iter()
        .zip(&snapshot.phases)
        .filter(|(_, state)| state.status == crate::engine::PhaseStatus::Waiting)
        .map(|(phase, _)| phase.id.as_str())
        .collect();
    if let Some(gate) = waiting.first() {
        // What the gate is asked to approve: the phase it waits on.
        let read = snapshot
            .template
            .phases
            .iter()
            .find(|p| p.id == *gate)
            .and_then(|p| p.needs.first())
            .map_or_else(
                || "wfe status".to_string(),
                |n| format!("wfe show latest {n}"),
            );
        ui.note(&format!(
            "\n{}\n  {cd} && {read}\n  {cd} && wfe approve latest {gate} && wfe resume latest\n{}\n  wfe demo --template {next}\n{}\n  {cd} && wfe serve --open",
            ui.paint(
                Style::Bold,
                &format!("The run waits for you at `{gate}`: see what it asks you to approve, then approve it and let the run finish:")
            ),
            ui.paint(Style::Bold, "Then try the next pipeline:"),
            ui.paint(Style::Bold, WEB_HINT),
        ));
        return Ok(code);
    }
    let last = snapshot
        .template
        .phases
        .last()
        .map_or_else(String::new, |p| p.id.clone());
    ui.note(&format!(
        "\n{}\n  {cd} && wfe status\n  {cd} && wfe show latest {last}\n  {cd} && git diff --stat\n  {cd} && wfe template new my-{name} --from {name}\n{}\n  wfe demo --template {next}\n{}\n  {cd} && wfe serve --open",
        ui.paint(
            Style::Bold,
            "Look at what the run did, and make the pipeline your own (.wfe/templates/):"
        ),
        ui.paint(Style::Bold, "Then try the next pipeline:"),
        ui.paint(Style::Bold, WEB_HINT),
    ));
    Ok(code)
}

/// A config whose `primary`, `reviewer` and `second_opinion` roles answer
/// from the recorded exchanges in `from` (relative to the repository).
fn replay_config(from: &str) -> String {
    let config = serde_json::json!({
        "providers": { "recorded": { "kind": "replay", "from": from } },
        "roles": {
            "primary": { "provider": "recorded", "model": "recorded" },
            "reviewer": { "provider": "recorded", "model": "recorded" },
            "second_opinion": { "provider": "recorded", "model": "recorded" }
        }
    });
    format!("{config:#}\n")
}

/// Writes [`AGENT_EXAMPLE`] into the work tree at `root`.
fn write_agent_example(root: &Path) -> Result<(), CliError> {
    write_files(root, AGENT_EXAMPLE.iter().copied())
}

/// Writes each (path relative to `root`, text), making directories.
fn write_files<'a>(
    root: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), CliError> {
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                CliError::internal(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        std::fs::write(&path, text)
            .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}
