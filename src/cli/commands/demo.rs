//! `wfe demo`: a scratch repository, the `hello` template run in it (or,
//! with `--agent`, the bundled `examples/agent-replay` replayed from its
//! recording), and the git commands that show where the run lives.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::layout;
use crate::store::{GitStore, RunStore, WORKSPACE};

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
}

/// Runs `wfe demo`.
pub(crate) async fn run(args: DemoArgs, ui: &Ui) -> Result<Outcome, CliError> {
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
    let store =
        GitStore::init_with_empty_commit(&dir, crate::time::Clock::system().epoch_seconds())?;
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
    let run_args = super::run::RunArgs {
        template: template.into(),
        args: run_args,
        args_file: None,
        replay: None,
        budget: Vec::new(),
        detach: false,
        drive: super::run::DriveArgs {
            jobs: None,
            json: false,
            no_output: false,
            wait: false,
            ci: Default::default(),
        },
    };
    let code = super::run::run(run_args, &ctx, ui).await?;
    let id = ctx.store.resolve("latest")?;
    let git = format!("git -C {}", dir.display());
    if args.agent {
        ui.note(&format!(
            "\n{}\n  {git} diff '{r}^{{/plan completed}}' {r} -- {workspace}/\n  {git} show {r}:{review}\n  {git} log --format='%h %s' {r}\n  cd {} && wfe show latest fix",
            ui.paint(
                Style::Bold,
                "The run is a chain of commits (every model turn, tool call and review, with snapshots of the code); look at it with git or wfe:"
            ),
            dir.display(),
            r = id.ref_name(),
            workspace = WORKSPACE,
            review = layout::review("fix", 1, 1),
        ));
        return Ok(code);
    }
    ui.note(&format!(
        "\n{}\n  {git} log --format='%h %s%n%(trailers:only)' {r}\n  {git} show {r}:{summary}\n  {git} diff {r}~3 {r} -- {phases}/\n  cd {} && wfe status && wfe show latest count",
        ui.paint(Style::Bold, "The run is a chain of commits; look at it with git or wfe:"),
        dir.display(),
        r = id.ref_name(),
        summary = layout::artifact("combine", "summary"),
        phases = layout::PHASES,
    ));
    Ok(code)
}

/// Writes [`AGENT_EXAMPLE`] into the work tree at `root`.
fn write_agent_example(root: &Path) -> Result<(), CliError> {
    for (path, text) in AGENT_EXAMPLE {
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
