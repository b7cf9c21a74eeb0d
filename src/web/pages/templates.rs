//! `/templates`: the repository's and the built-in templates; one
//! template's JSON and its DAG (the run page's drawing, every phase
//! pending); validating (as `wfe template
//! validate`), cloning (as `wfe template new NAME --from T`) and editing
//! one in the browser, saved to `.wfe/templates/NAME.json` only when it
//! validates.

use axum::Form;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::{Layout, Repo};
use crate::engine::view::{LayoutOptions, PhaseRow, RunView, layout_run, render_svg};
use crate::engine::{PhaseState, RunRecord, RunStatus};
use crate::template::{BUILTIN_TEMPLATES, TemplateSource};
use crate::web::controls::{FormData, cli, done, failed_json, field, wants_json};
use crate::web::render::{WebError, page};
use crate::web::state::RepoState;

/// One template in the list.
#[derive(Debug, Serialize)]
struct Item {
    name: String,
    source: String,
    builtin: bool,
}

/// `GET /templates`.
pub async fn list(repo: Repo) -> Response {
    let layout = repo.layout("Templates", "templates");
    let items: Vec<Item> = repo
        .repo
        .catalog
        .list()
        .into_iter()
        .map(|(name, source)| Item {
            builtin: matches!(source, TemplateSource::Builtin(_)),
            source: source.to_string(),
            name,
        })
        .collect();
    page(
        "templates.html",
        json!({ "layout": layout, "templates": items }),
    )
}

/// The template page.
#[derive(Debug, Serialize)]
struct Shown {
    layout: Layout,
    name: String,
    source: String,
    builtin: bool,
    editable: bool,
    text: String,
    /// The DAG as SVG, every phase pending (empty when it does not load).
    drawing: String,
    /// Why the template does not load, if it does not.
    load_error: Option<String>,
    /// The result of the validate button: `valid` and the CLI's message.
    validated: Option<(bool, String)>,
    failure: Option<String>,
}

/// The text of template `name` and where it comes from.
fn source_of(repo: &RepoState, name: &str) -> Result<(TemplateSource, String), WebError> {
    let (_, source) = repo
        .catalog
        .list()
        .into_iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "no template `{name}` in this repository or built in"
            ))
        })?;
    let text = match &source {
        TemplateSource::Builtin(b) => BUILTIN_TEMPLATES
            .iter()
            .find(|(n, _)| n == b)
            .map(|(_, t)| (*t).to_string())
            .unwrap_or_default(),
        TemplateSource::Repo(p) | TemplateSource::Path(p) => {
            crate::bounded::read_to_string(p, crate::bounded::TEXT_LIMIT)
                .map_err(|e| WebError::Internal(e.to_string()))?
        }
    };
    Ok((source, text))
}

/// Reads the page of template `name`.
fn shown(repo: &RepoState, layout: Layout, name: &str) -> Result<Shown, WebError> {
    let (source, text) = source_of(repo, name)?;
    let root = repo.store.info().work_dir.clone().unwrap_or_default();
    let registry = crate::artifact::Registry::new(&root);
    let (drawing, load_error) = match repo.catalog.load(name, &registry) {
        Ok((t, _)) => (preview(name, &t), None),
        Err(e) => (String::new(), Some(e.to_string())),
    };
    let builtin = matches!(source, TemplateSource::Builtin(_));
    let editable =
        matches!(&source, TemplateSource::Repo(p) if p.extension().is_some_and(|e| e == "json"));
    Ok(Shown {
        layout,
        name: name.to_string(),
        source: source.to_string(),
        builtin,
        editable,
        text,
        drawing,
        load_error,
        validated: None,
        failure: None,
    })
}

/// `GET /templates/NAME`.
pub async fn show(repo: Repo, UrlPath(name): UrlPath<String>) -> Response {
    let layout = repo.layout(&name, "templates");
    match repo.read(move |r| shown(r, layout, &name)).await {
        Ok(s) => page("template.html", s),
        Err(e) => e.into_response(),
    }
}

/// `POST /templates/NAME/validate`: `wfe template validate NAME`.
pub async fn validate(repo: Repo, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let answer = match cli(
        &repo.repo,
        &["template".into(), "validate".into(), name.clone()],
        None,
        &[],
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return if json { e.json() } else { e.into_response() },
    };
    let valid = answer.code == 0;
    let status = if valid {
        StatusCode::OK
    } else {
        answer.status()
    };
    if json {
        return if valid {
            done(true, "", &answer.stderr, json!({ "valid": true }))
        } else {
            failed_json(status, &answer.message())
        };
    }
    let layout = repo.layout(&name, "templates");
    let message = if valid {
        answer.stderr.trim().to_string()
    } else {
        answer.message()
    };
    match repo.read(move |r| shown(r, layout, &name)).await {
        Ok(mut s) => {
            s.validated = Some((valid, message));
            let mut res = page("template.html", s);
            *res.status_mut() = status;
            res
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /templates/NAME/clone` (`name` = the new name): `wfe template new NEW --from NAME`.
pub async fn clone(
    repo: Repo,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    let json = wants_json(&headers);
    let new = field(&form, "name").unwrap_or_default().trim().to_string();
    let args = vec![
        "template".into(),
        "new".into(),
        new.clone(),
        format!("--from={name}"),
    ];
    let answer = match cli(&repo.repo, &args, None, &[]).await {
        Ok(a) => a,
        Err(e) => return if json { e.json() } else { e.into_response() },
    };
    if answer.code == 0 {
        let to = format!("/templates/{new}/edit{}", repo.q());
        return done(json, &to, &answer.stderr, json!({ "template": new }));
    }
    if json {
        return failed_json(answer.status(), &answer.message());
    }
    let layout = repo.layout(&name, "templates");
    match repo.read(move |r| shown(r, layout, &name)).await {
        Ok(mut s) => {
            s.failure = Some(answer.message());
            let mut res = page("template.html", s);
            *res.status_mut() = answer.status();
            res
        }
        Err(e) => e.into_response(),
    }
}

/// The editor page.
#[derive(Debug, Serialize)]
struct Editor {
    layout: Layout,
    name: String,
    text: String,
    error: Option<String>,
}

/// The path of repo template `name` as JSON, when it is one.
fn editable_path(repo: &RepoState, name: &str) -> Result<std::path::PathBuf, WebError> {
    match source_of(repo, name)?.0 {
        TemplateSource::Repo(p) if p.extension().is_some_and(|e| e == "json") => Ok(p),
        TemplateSource::Builtin(_) => Err(WebError::BadRequest(format!(
            "`{name}` is built in: clone it to edit a copy in .wfe/templates/"
        ))),
        other => Err(WebError::BadRequest(format!(
            "`{name}` is {other}: only JSON templates in .wfe/templates/ are edited here"
        ))),
    }
}

/// `GET /templates/NAME/edit`.
pub async fn edit_page(repo: Repo, UrlPath(name): UrlPath<String>) -> Response {
    let layout = repo.layout(&name, "templates");
    let read = repo
        .read(move |r| {
            let path = editable_path(r, &name)?;
            let text = crate::bounded::read_to_string(&path, crate::bounded::TEXT_LIMIT)
                .map_err(|e| WebError::Internal(e.to_string()))?;
            Ok(Editor {
                layout,
                name,
                text,
                error: None,
            })
        })
        .await;
    match read {
        Ok(e) => page("template_edit.html", e),
        Err(e) => e.into_response(),
    }
}

/// `POST /templates/NAME/edit`: validates the text as `wfe template
/// validate` does (the file at a scratch path, its messages naming
/// `.wfe/templates/NAME.json`) and writes it only when valid.
pub async fn save(
    repo: Repo,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    let json = wants_json(&headers);
    // A browser sends a textarea's lines with CRLF; the file keeps LF.
    let text = field(&form, "text")
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let target = {
        let name = name.clone();
        repo.read(move |r| editable_path(r, &name)).await
    };
    let target = match target {
        Ok(p) => p,
        Err(e) => return if json { e.json() } else { e.into_response() },
    };
    let shown_as = format!(".wfe/templates/{name}.json");
    let problem = check(&repo.repo, &name, &text, &shown_as).await;
    let problem = match problem {
        Ok(None) => match std::fs::write(&target, &text) {
            Ok(()) => None,
            Err(e) => Some((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write {shown_as}: {e}"),
            )),
        },
        Ok(Some(p)) => Some(p),
        Err(e) => Some((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    match problem {
        None => done(
            json,
            &format!("/templates/{name}{}", repo.q()),
            &format!("saved {shown_as}"),
            json!({}),
        ),
        Some((status, message)) if json => failed_json(status, &message),
        Some((status, message)) => {
            let layout = repo.layout(&name, "templates");
            let mut res = page(
                "template_edit.html",
                Editor {
                    layout,
                    name,
                    text,
                    error: Some(message),
                },
            );
            *res.status_mut() = status;
            res
        }
    }
}

/// What is wrong with `text` as template `name`, if anything: the CLI's
/// validation of a scratch copy, with the scratch path shown as `shown_as`.
async fn check(
    repo: &RepoState,
    name: &str,
    text: &str,
    shown_as: &str,
) -> Result<Option<(StatusCode, String)>, WebError> {
    let dir = repo
        .store
        .wfe_dir()
        .join("web")
        .join(ulid::Ulid::generate().to_string());
    let path = dir.join(format!("{name}.json"));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| WebError::Internal(format!("cannot write {}: {e}", path.display())))?;
    let args = vec![
        "template".into(),
        "validate".into(),
        path.display().to_string(),
    ];
    let answer = cli(repo, &args, None, &[]).await;
    let _ = std::fs::remove_dir_all(&dir);
    let answer = answer?;
    let mut problems = Vec::new();
    if answer.code != 0 {
        problems.push(
            answer
                .message()
                .replace(&path.display().to_string(), shown_as),
        );
    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
        && v.get("name").and_then(|n| n.as_str()) != Some(name)
    {
        // As `wfe run NAME` refuses a file whose template is named otherwise.
        problems.push(format!(
            "the template in {shown_as} must be named `{name}` after its file, found `{}`",
            v.get("name").and_then(|n| n.as_str()).unwrap_or_default()
        ));
    }
    Ok((!problems.is_empty()).then(|| (StatusCode::UNPROCESSABLE_ENTITY, problems.join("\n"))))
}

/// Template `name` drawn as a run that has not started: the run page's
/// SVG with every phase pending and no links (there is no run to open).
fn preview(name: &str, t: &crate::template::Template) -> String {
    let view = RunView {
        checkpoint: String::new(),
        record: RunRecord {
            id: name.to_string(),
            template: name.to_string(),
            template_source: String::new(),
            template_digest: String::new(),
            args: serde_json::Value::Null,
            status: RunStatus::Pending,
            auto: false,
            base_commit: String::new(),
            created_at: String::new(),
            finished_at: None,
            schemas: Default::default(),
            reason: None,
            secret_args: Vec::new(),
            budget: None,
            budget_approved: None,
        },
        phases: t
            .phases
            .iter()
            .map(|p| PhaseRow {
                state: PhaseState::pending(&p.id, p.kind),
                needs: p.needs.clone(),
                max_iters: p.max_iters,
                children: Vec::new(),
                budget: None,
                nested: Default::default(),
                claim: None,
            })
            .collect(),
        layers: Vec::new(),
    };
    unlink(&render_svg(&layout_run(&view, &LayoutOptions::default())))
}

/// Drops every ` href="…"` of a drawing.
fn unlink(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(at) = rest.find(" href=\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 7..];
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}
