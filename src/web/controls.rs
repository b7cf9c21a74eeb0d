//! Every control of the web view: starting a run (`POST /runs`) and
//! `POST /runs/RUN/<verb>` for pause, resume, cancel, auto, continue,
//! approve, retry, skip, rollback, undo, accept, edit and comment, with the
//! page that offers them (`/runs/RUN/controls`).
//!
//! Each control runs the very CLI verb it stands for: this executable,
//! started with `-C <work tree>` and the verb's arguments. So a control
//! is the same operation as the command, with the same validation, lock
//! handling, secret masking and error messages (with their JSON paths),
//! and a control cannot drift from its command. Exit 2 (bad input)
//! answers 422 with the form shown again and the message inline; exit 1
//! (a conflict, a refusal) answers 409.
//!
//! A run is driven by a runner process: `run --detach` starts one for a
//! new run, and resume (and retry, and approve when no runner is live)
//! start `resume RUN` here, in a session of its own with its output in
//! `<git-dir>/wfe/detached/<id>.log`, so it keeps going if the server
//! stops; a thread waits for it, so it leaves no zombie.
//!
//! Answers: a plain form gets 303 back to the page it came from (`back`);
//! a request with `Accept: application/json` gets the status code and
//! `{ "ok": …, "error": … }`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Path as UrlPath, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::forms::{self, Field};
use super::pages::{Layout, Repo, resolve};
use super::render::{WebError, page};
use super::state::RepoState;
use crate::engine::operations::{artifact_schema, editable_artifact};
use crate::engine::{PhaseStatus, RunSnapshot, RunStatus};
use crate::store::{RunId, RunStore};

/// How long a started runner is watched for an early exit (a refusal)
/// before the control answers.
const RUNNER_START_WAIT: Duration = Duration::from_secs(5);

/// A submitted form, as ordered pairs (a name may repeat).
pub type FormData = Vec<(String, String)>;

/// What one CLI verb said.
#[derive(Debug)]
pub struct CliAnswer {
    /// Its exit code (-1: ended by a signal).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error: notes and the error with its hints.
    pub stderr: String,
}

impl CliAnswer {
    /// The error as the page shows it: the CLI's lines, without the
    /// editor's chatter (`edit` re-opens its "editor" once).
    pub fn message(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.starts_with("re-opening the editor"))
            .collect();
        let text = lines.join("\n").trim().to_string();
        if text.is_empty() {
            format!("the command exited with code {}", self.code)
        } else {
            text
        }
    }

    /// The status code the answer gets.
    pub fn status(&self) -> StatusCode {
        match self.code {
            0 => StatusCode::OK,
            2 => StatusCode::UNPROCESSABLE_ENTITY,
            1 => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The work tree of `repo` (every served repository has one).
fn root(repo: &RepoState) -> Result<PathBuf, WebError> {
    repo.store
        .info()
        .work_dir
        .clone()
        .ok_or_else(|| WebError::Internal("the repository has no work tree".into()))
}

/// This executable.
fn exe() -> Result<PathBuf, WebError> {
    std::env::current_exe()
        .map_err(|e| WebError::Internal(format!("cannot find the wfe executable: {e}")))
}

/// Runs the CLI verb `args` in `repo` with `stdin` and extra `env`, to the end.
pub async fn cli(
    repo: &RepoState,
    args: &[String],
    stdin: Option<Vec<u8>>,
    env: &[(&str, String)],
) -> Result<CliAnswer, WebError> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(exe()?);
    cmd.arg("-C")
        .arg(root(repo)?)
        .args(["--color", "never"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let verb = args.first().map(String::as_str).unwrap_or_default();
    let mut child = cmd
        .spawn()
        .map_err(|e| WebError::Internal(format!("cannot start `wfe {verb}`: {e}")))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that exits before reading all of it is its own answer.
        let _ = pipe.write_all(&bytes).await;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| WebError::Internal(format!("`wfe {verb}` failed: {e}")))?;
    Ok(CliAnswer {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Starts the runner of `run`: `resume RUN` in a session of its own (the
/// child leaves the server's session first), stdin closed, its output
/// appended to `<git-dir>/wfe/detached/<id>.log`. A thread waits for it so
/// it is reaped. Returns once the runner holds the run, has ended, or
/// five seconds passed; a runner that failed at once is an error
/// with what it said.
pub async fn spawn_runner(repo: Arc<RepoState>, run: RunId) -> Result<(), (StatusCode, String)> {
    let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
    let root = root(&repo).map_err(|e| internal(e.to_string()))?;
    let exe = exe().map_err(|e| internal(e.to_string()))?;
    let dir = repo.store.wfe_dir().join("detached");
    let log_path = dir.join(format!("{run}.log"));
    let io = |what: &str, e: std::io::Error| internal(format!("cannot {what} for run {run}: {e}"));
    std::fs::create_dir_all(&dir).map_err(|e| io("create the runner's log directory", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io("open the runner's log", e))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log
        .try_clone()
        .map_err(|e| io("open the runner's log", e))?;
    let mut child = std::process::Command::new(exe)
        .arg("-C")
        .arg(&root)
        .args([
            "--color",
            "never",
            "resume",
            run.as_str(),
            "--detached-child",
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group from the start; the child then makes its
        // own session, so the server's terminal and signals never reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| io("start the runner", e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let code = child.wait().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1);
        let _ = tx.send(code);
    });
    let deadline = Instant::now() + RUNNER_START_WAIT;
    loop {
        if let Ok(code) = rx.try_recv() {
            if code == 0 || code == 1 {
                // It ran (the run completed, or a phase failed): the page tells.
                return Ok(());
            }
            let said = std::fs::read(&log_path)
                .map(|b| String::from_utf8_lossy(&b[(start as usize).min(b.len())..]).into_owned())
                .unwrap_or_default();
            let status = if code == 2 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return Err((status, said.trim().to_string()));
        }
        if repo.store.lock_holder(&run).ok().flatten().is_some() || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the request asked for JSON.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The value of form field `name` (the last one sent), if any.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The same value, present and not blank.
fn given<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    field(form, name).filter(|v| !v.trim().is_empty())
}

/// Where a form asked to go back to: a path of this server only.
pub fn back_to(form: &[(String, String)], default: String) -> String {
    match field(form, "back") {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => b.to_string(),
        _ => default,
    }
}

/// A control that worked: 303 to `back`, or `{ "ok": true, … }`.
pub fn done(json: bool, back: &str, message: &str, extra: Value) -> Response {
    if json {
        let mut body = json!({ "ok": true, "message": message.trim() });
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        return (StatusCode::OK, Json(body)).into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, back.to_string())],
    )
        .into_response()
}

/// A control that failed, as JSON (`{ "ok": false, "error": … }`).
pub fn failed_json(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "ok": false, "error": message }))).into_response()
}

/// A verb's request: the run, the verb, and the page's extra query.
#[derive(Debug, Default, Deserialize)]
pub struct PanelQuery {
    /// `PHASE/ARTIFACT`: open the artifact editor.
    #[serde(default)]
    pub edit: Option<String>,
}

/// What the control panel shows after a failed control.
#[derive(Debug, Default, Serialize)]
struct Failure {
    /// Which form failed: the verb, and the phase when it has one.
    verb: String,
    phase: Option<String>,
    /// The CLI's message.
    message: String,
    /// Whether the form that failed is on the panel (the message shows
    /// beside it), else the message shows at the top.
    inline: bool,
}

/// One phase on the panel, with the controls that apply to it.
#[derive(Debug, Serialize)]
struct PhaseRow {
    id: String,
    kind: String,
    status: String,
    attempt: u32,
    outputs: Vec<String>,
    approve: bool,
    retry: bool,
    skip: bool,
    accept: bool,
    edit: bool,
    /// The gate's form, from its one output's schema.
    approve_fields: Vec<Field>,
    /// The output an approval records, when the phase has one.
    approve_output: Option<String>,
}

/// One checkpoint to roll back to.
#[derive(Debug, Serialize)]
struct CheckpointRow {
    id: String,
    summary: String,
}

/// The artifact editor, open.
#[derive(Debug, Serialize)]
struct Editor {
    phase: String,
    artifact: String,
    text: String,
    schema: String,
}

/// The panel's run-level controls, on when they apply to the run's state.
#[derive(Debug, Serialize)]
struct Verbs {
    pause: bool,
    resume: bool,
    cancel: bool,
    auto_on: bool,
    auto_off: bool,
    #[serde(rename = "continue")]
    go_on: bool,
    rollback: bool,
    undo: bool,
}

/// Everything the panel shows.
#[derive(Debug, Serialize)]
struct Panel {
    layout: Layout,
    run: String,
    template: String,
    status: String,
    live: bool,
    auto: bool,
    verbs: Verbs,
    phases: Vec<PhaseRow>,
    checkpoints: Vec<CheckpointRow>,
    editor: Option<Editor>,
    failure: Option<Failure>,
    back: String,
}

/// The most checkpoints the rollback list shows (newest first).
const CHECKPOINTS_SHOWN: usize = 50;

/// Reads the panel of `run`; `editor` opens the editor of `PHASE/ARTIFACT`
/// (with `text` instead of the current artifact after a failed save).
fn panel(
    repo: &RepoState,
    layout: Layout,
    run: &RunId,
    editor: Option<(&str, &str, Option<String>)>,
    failure: Option<Failure>,
) -> Result<Panel, WebError> {
    let snap = RunSnapshot::load_tip(&repo.store, run)?;
    let live = repo.store.lock_holder(run).ok().flatten().is_some();
    let status = snap.record.status;
    let ended = matches!(status, RunStatus::Completed | RunStatus::Cancelled);
    let mut phases = Vec::new();
    for p in &snap.phases {
        let spec = snap
            .template
            .all_phases()
            .into_iter()
            .find(|s| s.id == p.id);
        let outputs: Vec<String> = spec
            .map(|s| s.outputs.keys().cloned().collect())
            .unwrap_or_default();
        use PhaseStatus as S;
        let approve = p.status == S::Waiting;
        let approve_output = (approve && outputs.len() == 1).then(|| outputs[0].clone());
        let approve_fields = match &approve_output {
            Some(name) => artifact_schema(&repo.store, &snap, &p.id, name)
                .map(|s| forms::fields(Some(s.json()), None))
                .unwrap_or_default(),
            None => Vec::new(),
        };
        phases.push(PhaseRow {
            id: p.id.clone(),
            kind: format!("{:?}", p.kind).to_lowercase(),
            status: p.status.as_str().to_string(),
            attempt: p.attempt,
            approve,
            retry: !live
                && matches!(
                    p.status,
                    S::Completed | S::Failed | S::Cancelled | S::TimedOut | S::Skipped
                ),
            skip: !live
                && !ended
                && matches!(
                    p.status,
                    S::Pending | S::Failed | S::Cancelled | S::TimedOut
                ),
            accept: !live && p.status == S::Failed && !outputs.is_empty(),
            edit: !live && !outputs.is_empty() && matches!(p.status, S::Completed | S::Failed),
            outputs,
            approve_fields,
            approve_output,
        });
    }
    let checkpoints = repo
        .store
        .history(run)?
        .into_iter()
        .skip(1)
        .take(CHECKPOINTS_SHOWN)
        .map(|c| CheckpointRow {
            id: c.id.0.clone(),
            summary: c.message.summary.clone(),
        })
        .collect();
    let editor = match editor {
        Some((phase, artifact, text)) => {
            let schema = artifact_schema(&repo.store, &snap, phase, artifact)?;
            let text = match text {
                Some(t) => t,
                None => editable_artifact(&repo.store, &snap, phase, artifact)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|| "{}\n".into()),
            };
            Some(Editor {
                phase: phase.to_string(),
                artifact: artifact.to_string(),
                text,
                schema: serde_json::to_string_pretty(schema.json()).unwrap_or_default(),
            })
        }
        None => None,
    };
    let mut failure = failure;
    if let Some(f) = &mut failure {
        let row = phases.iter().find(|p| Some(&p.id) == f.phase.as_ref());
        f.inline = match f.verb.as_str() {
            "approve" => row.is_some_and(|r| r.approve),
            "retry" => row.is_some_and(|r| r.retry),
            "skip" => row.is_some_and(|r| r.skip),
            "accept" => row.is_some_and(|r| r.accept),
            "edit" => editor.is_some(),
            "comment" => true,
            "rollback" => !live,
            _ => false,
        };
    }
    let back = format!("/runs/{run}/controls{}", layout.q);
    Ok(Panel {
        layout,
        run: run.to_string(),
        template: snap.record.template.clone(),
        status: shown_status(status, live).to_string(),
        live,
        auto: snap.record.auto,
        verbs: Verbs {
            pause: live && !ended && status != RunStatus::Paused,
            resume: !live && crate::engine::resumable(&snap),
            cancel: !ended,
            auto_on: !ended && !snap.record.auto,
            auto_off: !ended && snap.record.auto,
            go_on: live,
            rollback: !live,
            undo: !live,
        },
        phases,
        checkpoints,
        editor,
        failure,
        back,
    })
}

/// A run stored as running without a runner is shown as interrupted.
fn shown_status(status: RunStatus, live: bool) -> &'static str {
    if status == RunStatus::Running && !live {
        "interrupted"
    } else {
        status.as_str()
    }
}

/// `GET /runs/RUN/controls`: the control panel.
pub async fn controls_page(
    repo: Repo,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<PanelQuery>,
) -> Response {
    let layout = repo.layout("Controls", "runs");
    let result = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            let editor = q.edit.as_deref().and_then(|e| e.split_once('/'));
            panel(r, layout, &id, editor.map(|(p, a)| (p, a, None)), None)
        })
        .await;
    match result {
        Ok(panel) => page("controls.html", panel),
        Err(e) => e.into_response(),
    }
}

/// A temporary file under `<git-dir>/wfe/web/` holding `bytes`, removed
/// when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(repo: &RepoState, name: &str, bytes: &[u8]) -> Result<TempFile, WebError> {
        let dir = repo.store.wfe_dir().join("web");
        let path = dir.join(format!("{}-{name}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|e| WebError::Internal(format!("cannot write {}: {e}", path.display())))?;
        Ok(TempFile(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A shell word: `'…'` with any `'` inside escaped.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The argument list of `verb` on `run`, and whether a runner is started
/// after it; `None` when `verb` is not a control.
fn verb_args(
    verb: &str,
    run: &str,
    form: &[(String, String)],
) -> Result<(Vec<String>, bool), String> {
    let phase = || -> Result<String, String> {
        given(form, "phase")
            .map(str::to_string)
            .ok_or_else(|| format!("{verb} needs a phase (the `phase` field)"))
    };
    let mut args = vec![verb.to_string(), run.to_string()];
    let mut drive = false;
    match verb {
        "pause" | "cancel" | "continue" | "undo" => {}
        "resume" => {
            args.clear();
            drive = true;
        }
        "auto" => {
            let mode = field(form, "mode").unwrap_or_default();
            if mode != "on" && mode != "off" {
                return Err(format!("auto: mode is `{mode}`; expected on or off"));
            }
            args.push(mode.to_string());
        }
        "skip" => args.push(phase()?),
        "accept" => {
            args.push(phase()?);
            args.push("--force".into());
        }
        "retry" => {
            args.push(phase()?);
            for flag in ["provider", "model", "prompt"] {
                if let Some(v) = given(form, flag) {
                    args.push(format!("--{flag}={v}"));
                }
            }
            args.push("--no-run".into());
            drive = true;
        }
        "rollback" => {
            let to = given(form, "to").ok_or("rollback needs a checkpoint or phase (`to`)")?;
            args.push(format!("--to={to}"));
            if field(form, "code").is_some() {
                args.push("--code".into());
            }
        }
        "comment" => {
            if let Some(p) = given(form, "phase") {
                args.push(p.to_string());
            }
            // Empty text is the CLI's to refuse, with its message.
            args.push(field(form, "text").unwrap_or_default().to_string());
            if field(form, "for_agent").is_some() {
                args.insert(1, "--for-agent".into());
            }
        }
        _ => return Err(format!("`{verb}` is not a control")),
    }
    Ok((args, drive))
}

/// `POST /runs/RUN/<verb>`: one control.
pub async fn control(
    repo: Repo,
    UrlPath((run, verb)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    let json = wants_json(&headers);
    let state = repo.repo.clone();
    let resolved = {
        let run = run.clone();
        repo.read(move |r| resolve(r, &run)).await
    };
    let id = match resolved {
        Ok(id) => id,
        Err(e) if json => return e.json(),
        Err(e) => return e.into_response(),
    };
    let default_back = format!("/runs/{id}{}", repo.q());
    let back = back_to(&form, default_back);
    let phase = given(&form, "phase").map(str::to_string);
    let outcome = act(&state, &id, &verb, &form).await;
    match outcome {
        Ok(message) => done(json, &back, &message, json!({ "run": id.to_string() })),
        Err((status, message)) if json => failed_json(status, &message),
        Err((status, message)) => {
            let layout = repo.layout("Controls", "runs");
            let failure = Failure {
                verb: verb.clone(),
                phase,
                message,
                inline: false,
            };
            // The editor comes back with what was typed.
            let editor = (verb == "edit")
                .then(|| {
                    Some((
                        given(&form, "phase")?.to_string(),
                        given(&form, "artifact")?.to_string(),
                        field(&form, "json").unwrap_or_default().to_string(),
                    ))
                })
                .flatten();
            let shown = repo
                .read(move |r| {
                    let editor = editor
                        .as_ref()
                        .map(|(p, a, t)| (p.as_str(), a.as_str(), Some(t.clone())));
                    panel(r, layout, &id, editor, Some(failure))
                })
                .await;
            match shown {
                Ok(panel) => {
                    let mut res = page("controls.html", panel);
                    *res.status_mut() = status;
                    res
                }
                Err(e) => e.into_response(),
            }
        }
    }
}

/// Does `verb` on `run`; the CLI's notes on success, else the status and message.
async fn act(
    repo: &Arc<RepoState>,
    run: &RunId,
    verb: &str,
    form: &[(String, String)],
) -> Result<String, (StatusCode, String)> {
    let internal = |e: WebError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let checked = |answer: CliAnswer| {
        if answer.code == 0 {
            Ok(answer.stderr)
        } else {
            Err((answer.status(), answer.message()))
        }
    };
    match verb {
        "approve" => {
            let phase = given(form, "phase")
                .ok_or((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "approve needs a phase (the `phase` field)".to_string(),
                ))?
                .to_string();
            let artifact = approval_artifact(repo, run, &phase, form)
                .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e))?;
            let mut args = vec!["approve".into(), run.to_string(), phase];
            let file = match artifact {
                Some(text) => {
                    Some(TempFile::new(repo, "artifact.json", text.as_bytes()).map_err(internal)?)
                }
                None => None,
            };
            if let Some(f) = &file {
                args.push(format!("--artifact={}", f.path().display()));
            }
            let notes = checked(cli(repo, &args, None, &[]).await.map_err(internal)?)?;
            drive_if_idle(repo, run).await?;
            Ok(notes)
        }
        "edit" => {
            let need = |name: &str| {
                given(form, name).map(str::to_string).ok_or((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("edit needs the `{name}` field"),
                ))
            };
            let (phase, artifact) = (need("phase")?, need("artifact")?);
            // A browser sends a textarea's lines with CRLF.
            let text = field(form, "json")
                .unwrap_or_default()
                .replace("\r\n", "\n");
            let file = TempFile::new(repo, "edit.json", text.as_bytes()).map_err(internal)?;
            // `wfe edit` opens `$VISUAL` on its copy of the artifact: the
            // "editor" here copies what was typed over it, so the edit is
            // checked and committed by the command itself.
            let visual = format!("cp {}", shell_quote(&file.path().display().to_string()));
            let args = vec!["edit".into(), run.to_string(), phase, artifact];
            checked(
                cli(repo, &args, None, &[("VISUAL", visual)])
                    .await
                    .map_err(internal)?,
            )
        }
        _ => {
            let (args, drive) =
                verb_args(verb, run.as_str(), form).map_err(|e| (StatusCode::NOT_FOUND, e))?;
            let notes = if args.is_empty() {
                String::new()
            } else {
                checked(cli(repo, &args, None, &[]).await.map_err(internal)?)?
            };
            if drive {
                if verb == "resume" {
                    let live = repo.store.lock_holder(run).ok().flatten().is_some();
                    if live {
                        return Err((
                            StatusCode::CONFLICT,
                            format!("run {run} is already being run by a live runner"),
                        ));
                    }
                }
                spawn_runner(repo.clone(), run.clone()).await?;
            }
            Ok(notes)
        }
    }
}

/// After an approval done without a runner, the run goes on as a resume
/// would (a gate ends its runner): a runner is started when none is live
/// and there is something to run.
async fn drive_if_idle(repo: &Arc<RepoState>, run: &RunId) -> Result<(), (StatusCode, String)> {
    let live = repo.store.lock_holder(run).ok().flatten().is_some();
    let resumable = RunSnapshot::load_tip(&repo.store, run)
        .map(|s| crate::engine::resumable(&s))
        .unwrap_or(false);
    if !live && resumable {
        spawn_runner(repo.clone(), run.clone()).await?;
    }
    Ok(())
}

/// The artifact an approval records: the JSON textarea when filled, else
/// the gate's generated form when any field was filled, else none.
fn approval_artifact(
    repo: &RepoState,
    run: &RunId,
    phase: &str,
    form: &[(String, String)],
) -> Result<Option<String>, String> {
    if let Some(text) = given(form, "artifact_json") {
        return Ok(Some(text.to_string()));
    }
    let Some(output) = given(form, "output") else {
        return Ok(None);
    };
    let snap = RunSnapshot::load_tip(&repo.store, run).map_err(|e| e.to_string())?;
    let schema = artifact_schema(&repo.store, &snap, phase, output).map_err(|e| e.to_string())?;
    let value = forms::collect(Some(schema.json()), form, "art.");
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(Value::Object(value).to_string()))
}

/// `/runs/new?template=T`: the form.
#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    /// The template to start.
    #[serde(default)]
    pub template: Option<String>,
}

/// The new-run page.
#[derive(Debug, Serialize)]
struct NewRun {
    layout: Layout,
    templates: Vec<String>,
    template: Option<String>,
    fields: Vec<Field>,
    /// Why the template cannot be loaded, if it cannot.
    template_error: Option<String>,
    error: Option<String>,
}

/// Reads the new-run form of `template`, filled with `values` and marked
/// with `error`.
fn new_run(
    repo: &RepoState,
    layout: Layout,
    template: Option<String>,
    values: Option<&serde_json::Map<String, Value>>,
    error: Option<String>,
) -> NewRun {
    let templates = repo.catalog.list().into_iter().map(|(n, _)| n).collect();
    let (mut fields, mut template_error) = (Vec::new(), None);
    if let Some(name) = template.as_deref().filter(|n| !n.is_empty()) {
        match args_schema(repo, name) {
            Ok(schema) => fields = forms::fields(schema.as_ref(), values),
            Err(e) => template_error = Some(e),
        }
    }
    if let Some(e) = &error {
        fields = forms::attach_errors(fields, e);
    }
    NewRun {
        layout,
        templates,
        template,
        fields,
        template_error,
        error,
    }
}

/// The args schema of template `name`, loaded and validated.
fn args_schema(repo: &RepoState, name: &str) -> Result<Option<Value>, String> {
    let root = root(repo).map_err(|e| e.to_string())?;
    let registry = crate::artifact::Registry::new(&root);
    repo.catalog
        .load(name, &registry)
        .map(|(t, _)| t.args)
        .map_err(|e| e.to_string())
}

/// `GET /runs/new`.
pub async fn new_run_page(repo: Repo, Query(q): Query<NewQuery>) -> Response {
    let layout = repo.layout("New run", "runs");
    match repo
        .read(move |r| Ok(new_run(r, layout, q.template, None, None)))
        .await
    {
        Ok(p) => page("new_run.html", p),
        Err(e) => e.into_response(),
    }
}

/// `POST /runs`: starts a run of `template` with the form's args (`arg.NAME`).
pub async fn start(repo: Repo, headers: HeaderMap, Form(form): Form<FormData>) -> Response {
    let json = wants_json(&headers);
    let template = field(&form, "template").unwrap_or_default().to_string();
    let state = repo.repo.clone();
    let args = {
        let (t, form) = (template.clone(), form.clone());
        repo.read(move |r| {
            let schema = args_schema(r, &t).ok().flatten();
            Ok(forms::collect(schema.as_ref(), &form, "arg."))
        })
        .await
        .unwrap_or_default()
    };
    let cmd = vec![
        "run".to_string(),
        template.clone(),
        "--args-file=-".into(),
        "--detach".into(),
    ];
    let answer = cli(
        &state,
        &cmd,
        Some(Value::Object(args.clone()).to_string().into_bytes()),
        &[],
    )
    .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) if json => return e.json(),
        Err(e) => return e.into_response(),
    };
    if answer.code == 0 {
        let id = answer.stdout.trim().to_string();
        let to = format!("/runs/{id}{}", repo.q());
        return done(json, &to, &answer.stderr, json!({ "run": id }));
    }
    let (status, message) = (answer.status(), answer.message());
    if json {
        return failed_json(status, &message);
    }
    let layout = repo.layout("New run", "runs");
    let shown = repo
        .read(move |r| {
            Ok(new_run(
                r,
                layout,
                Some(template),
                Some(&args),
                Some(message),
            ))
        })
        .await;
    match shown {
        Ok(p) => {
            let mut res = page("new_run.html", p);
            *res.status_mut() = status;
            res
        }
        Err(e) => e.into_response(),
    }
}

/// Every verb `POST /runs/RUN/<verb>` answers, for the docs and tests.
pub const VERBS: [&str; 13] = [
    "pause", "resume", "cancel", "auto", "continue", "approve", "retry", "skip", "rollback",
    "undo", "accept", "edit", "comment",
];

/// The verbs by whether they need a phase (for the JSON API's docs).
pub fn phase_verbs() -> BTreeMap<&'static str, bool> {
    VERBS
        .iter()
        .map(|v| {
            (
                *v,
                matches!(*v, "approve" | "retry" | "skip" | "accept" | "edit"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn verbs_become_the_cli_arguments() {
        let (args, drive) =
            verb_args("retry", "R", &form(&[("phase", "b"), ("model", "m1")])).unwrap();
        assert_eq!(args, ["retry", "R", "b", "--model=m1", "--no-run"]);
        assert!(drive);
        let (args, drive) = verb_args("resume", "R", &[]).unwrap();
        assert!(args.is_empty() && drive);
        let (args, _) = verb_args("comment", "R", &form(&[("text", "hi"), ("phase", "")])).unwrap();
        assert_eq!(args, ["comment", "R", "hi"]);
        let (args, _) = verb_args("rollback", "R", &form(&[("to", "abc"), ("code", "1")])).unwrap();
        assert_eq!(args, ["rollback", "R", "--to=abc", "--code"]);
        assert!(verb_args("auto", "R", &form(&[("mode", "maybe")])).is_err());
        assert!(verb_args("skip", "R", &[]).is_err());
        assert!(verb_args("rm", "R", &[]).is_err());
        assert_eq!(phase_verbs().len(), VERBS.len());
    }

    #[test]
    fn back_stays_on_this_server() {
        let d = || "/d".to_string();
        assert_eq!(back_to(&form(&[("back", "/runs/x")]), d()), "/runs/x");
        assert_eq!(back_to(&form(&[("back", "//evil.example/")]), d()), "/d");
        assert_eq!(
            back_to(&form(&[("back", "https://evil.example/")]), d()),
            "/d"
        );
        assert_eq!(back_to(&[], d()), "/d");
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_quote("/a b/c'd"), r"'/a b/c'\''d'");
    }

    #[test]
    fn exit_codes_become_status_codes() {
        let a = |code| CliAnswer {
            code,
            stdout: String::new(),
            stderr: "error: x\nre-opening the editor (save it unchanged to give up)\n".into(),
        };
        assert_eq!(a(2).status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(a(1).status(), StatusCode::CONFLICT);
        assert_eq!(a(2).message(), "error: x");
    }
}
