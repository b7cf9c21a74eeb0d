//! `wfe demo`: a scratch repository, the `hello` template run in it, and
//! the git commands that show where the run lives.

use std::path::PathBuf;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::{Style, Ui};
use crate::store::{GitStore, RunStore};

/// Make a scratch repository and run the bundled `hello` example in it
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to make the repository (default: a new directory under the system temp dir)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Who to greet
    #[arg(long, default_value = "world")]
    pub name: String,
}

/// Runs `wfe demo`.
pub async fn run(args: DemoArgs, ui: &Ui) -> Result<u8, CliError> {
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
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    ui.note(&format!(
        "{} a scratch repository at {}",
        ui.paint(Style::Bold, "wfe demo:"),
        dir.display()
    ));
    let store =
        GitStore::init_with_empty_commit(&dir, crate::time::Clock::system().epoch_seconds())?;
    let ctx = Context::for_store(store)?;
    super::init::write_starter_files(&ctx.root, false)?;
    let run_args = super::run::RunArgs {
        template: "hello".into(),
        args: vec![format!("name={}", args.name)],
        args_file: None,
        replay: None,
        drive: super::run::DriveArgs {
            jobs: None,
            json: false,
            no_output: false,
            wait: false,
        },
    };
    let code = super::run::run(run_args, &ctx, ui).await?;
    let id = ctx.store.resolve("latest")?;
    let git = format!("git -C {}", dir.display());
    ui.note(&format!(
        "\n{}\n  {git} log --format='%h %s%n%(trailers:only)' {r}\n  {git} show {r}:phases/combine/artifacts/summary.json\n  {git} diff {r}~3 {r} -- phases/\n  cd {} && wfe status && wfe show latest count",
        ui.paint(Style::Bold, "The run is a chain of commits; look at it with git or wfe:"),
        dir.display(),
        r = id.ref_name(),
    ));
    Ok(code)
}
