//! `/providers`: which provider and model each role uses, each provider
//! and whether its key is present (where it is found, never the key),
//! with the CLI's verbs as forms: test (`wfe provider test`), set a key
//! (`wfe provider set-key`, the key on its standard input, written to the
//! user's credentials file; never shown back), add a provider (`wfe
//! provider add`) and change a role's model (`wfe role set`).

use axum::Form;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Layout, Repo};
use crate::web::controls::{CliAnswer, FormData, cli, done, failed_json, field, wants_json};
use crate::web::render::{WebError, page};

/// The page.
#[derive(Debug, Serialize)]
struct Shown {
    layout: Layout,
    /// `wfe provider list --json`: roles and providers with key status.
    roles: Value,
    providers: Value,
    list_error: Option<String>,
    /// What the last action said, and about what (`test:NAME`, `key:NAME`, …).
    notice: Option<(String, String)>,
    failure: Option<(String, String)>,
}

/// Reads the page: the CLI's own listing.
async fn shown(repo: &Repo) -> Result<Shown, WebError> {
    let answer = cli(
        &repo.repo,
        &["provider".into(), "list".into(), "--json".into()],
        None,
        &[],
    )
    .await?;
    let (mut roles, mut providers, mut list_error) = (json!([]), json!([]), None);
    if answer.code == 0 {
        let doc: Value = serde_json::from_str(&answer.stdout).unwrap_or(Value::Null);
        roles = doc.get("roles").cloned().unwrap_or(json!([]));
        providers = doc.get("providers").cloned().unwrap_or(json!([]));
    } else {
        list_error = Some(answer.message());
    }
    Ok(Shown {
        layout: repo.layout("Providers", "providers"),
        roles,
        providers,
        list_error,
        notice: None,
        failure: None,
    })
}

/// `GET /providers`.
pub async fn html(repo: Repo) -> Response {
    match shown(&repo).await {
        Ok(s) => page("providers.html", s),
        Err(e) => e.into_response(),
    }
}

/// Answers an action: JSON, a 303 back to the page, or (`show_notice`,
/// or a failure) the page with the CLI's message next to the form `what`.
async fn answer(
    repo: &Repo,
    headers: &HeaderMap,
    what: String,
    result: Result<CliAnswer, WebError>,
    show_notice: bool,
) -> Response {
    let json = wants_json(headers);
    let answer = match result {
        Ok(a) => a,
        Err(e) => return if json { e.json() } else { e.into_response() },
    };
    let ok = answer.code == 0;
    if json {
        return if ok {
            let said = format!("{}{}", answer.stdout, answer.stderr);
            done(true, "", &said, json!({}))
        } else {
            failed_json(answer.status(), &answer.message())
        };
    }
    if ok && !show_notice {
        return done(false, &format!("/providers{}", repo.q()), "", json!({}));
    }
    match shown(repo).await {
        Ok(mut s) => {
            let status = if ok {
                s.notice = Some((
                    what,
                    format!("{}{}", answer.stdout, answer.stderr)
                        .trim()
                        .to_string(),
                ));
                StatusCode::OK
            } else {
                s.failure = Some((what, answer.message()));
                answer.status()
            };
            let mut res = page("providers.html", s);
            *res.status_mut() = status;
            res
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /providers/NAME/test`: `wfe provider test NAME [--model M]`.
pub async fn test(
    repo: Repo,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    let mut args = vec!["provider".into(), "test".into(), name.clone()];
    if let Some(m) = field(&form, "model").filter(|m| !m.trim().is_empty()) {
        args.push(format!("--model={m}"));
    }
    let result = cli(&repo.repo, &args, None, &[]).await;
    answer(&repo, &headers, format!("test:{name}"), result, true).await
}

/// `POST /providers/NAME/key`: `wfe provider set-key NAME`, the key on
/// its standard input. The key is in no answer, page or log.
pub async fn set_key(
    repo: Repo,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    // One line, as the command reads it: a pasted key's line breaks go.
    let key: String = field(&form, "key")
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    let args = vec!["provider".into(), "set-key".into(), name.clone()];
    let result = cli(
        &repo.repo,
        &args,
        Some(format!("{key}\n").into_bytes()),
        &[],
    )
    .await;
    answer(&repo, &headers, format!("key:{name}"), result, false).await
}

/// `POST /providers/add`: `wfe provider add NAME --kind K [--base-url U] [--key-env V]`.
pub async fn add(repo: Repo, headers: HeaderMap, Form(form): Form<FormData>) -> Response {
    let name = field(&form, "name").unwrap_or_default().trim().to_string();
    let mut args = vec![
        "provider".into(),
        "add".into(),
        name,
        format!("--kind={}", field(&form, "kind").unwrap_or_default().trim()),
    ];
    for (f, flag) in [("base_url", "--base-url"), ("key_env", "--key-env")] {
        if let Some(v) = field(&form, f).filter(|v| !v.trim().is_empty()) {
            args.push(format!("{flag}={}", v.trim()));
        }
    }
    let result = cli(&repo.repo, &args, None, &[]).await;
    answer(&repo, &headers, "add".into(), result, false).await
}

/// `POST /roles/ROLE`: `wfe role set ROLE PROVIDER MODEL`.
pub async fn set_role(
    repo: Repo,
    UrlPath(role): UrlPath<String>,
    headers: HeaderMap,
    Form(form): Form<FormData>,
) -> Response {
    let args = vec![
        "role".into(),
        "set".into(),
        role.clone(),
        field(&form, "provider")
            .unwrap_or_default()
            .trim()
            .to_string(),
        field(&form, "model").unwrap_or_default().trim().to_string(),
    ];
    let result = cli(&repo.repo, &args, None, &[]).await;
    answer(&repo, &headers, format!("role:{role}"), result, false).await
}
