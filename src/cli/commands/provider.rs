//! `wfe provider list|test|set-key`: what is configured, whether it
//! answers, and where its key lives. A key is read here and stored, never
//! printed.

use std::io::{BufRead, IsTerminal};
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::args::GlobalArgs;
use crate::cli::config::user_keys;
use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::provider::config::{ProviderEntry, ProviderKind};
use crate::provider::edit::{ConfigDoc, NewProvider};
use crate::provider::keys::key_env;
use crate::provider::registry::default_base_url;
use crate::provider::{
    Block, ChatRequest, KeyStatus, Message, ProviderError, ProviderErrorKind, Registry, Secret,
};

/// The prompt of `wfe provider test`: short to send, short to answer.
const TEST_PROMPT: &str = "Reply with the word OK.";
/// `max_tokens` of the test call.
const TEST_MAX_TOKENS: u32 = 16;
/// Longest answer text shown by `wfe provider test`.
const TEST_ANSWER_CHARS: usize = 200;

/// List, test and set up LLM providers
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// List roles and providers, with where each key comes from (never the key)
    List(ListArgs),
    /// Send one tiny request to a provider and report how it went
    Test(TestArgs),
    /// Store a provider's key (read from stdin) in the user's config directory
    SetKey(SetKeyArgs),
    /// Add a provider to .wfe/config.json (or change its kind, base URL or key variable)
    Add(AddArgs),
    /// Remove a provider from .wfe/config.json (refused while a role uses it)
    Remove(RemoveArgs),
}

/// `wfe provider add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The provider's name in .wfe/config.json
    pub name: String,
    /// What it speaks: anthropic, openai, openai-compatible, gemini, cli or replay
    #[arg(long)]
    pub kind: String,
    /// The API's base URL (needed by openai-compatible)
    #[arg(long)]
    pub base_url: Option<String>,
    /// The environment variable holding its key (default per kind, e.g. ANTHROPIC_API_KEY)
    #[arg(long)]
    pub key_env: Option<String>,
}

/// `wfe provider remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The provider's name in .wfe/config.json
    pub name: String,
}

/// `wfe provider list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// `wfe provider test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The provider's name in .wfe/config.json
    pub name: String,
    /// The model to ask (default: the model of the first role using the provider)
    #[arg(long)]
    pub model: Option<String>,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// `wfe provider set-key`.
#[derive(Debug, Args)]
pub struct SetKeyArgs {
    /// The provider's name in .wfe/config.json
    pub name: String,
}

/// Runs a provider subcommand.
pub(crate) async fn run(
    cmd: ProviderCommand,
    global: &GlobalArgs,
    ui: &Ui,
) -> Result<Outcome, CliError> {
    match cmd {
        ProviderCommand::List(args) => list(args, &Context::discover(global)?, ui),
        ProviderCommand::Test(args) => test(args, &Context::discover(global)?, ui).await,
        // The key belongs to the user, not a repository: no repo needed.
        ProviderCommand::SetKey(args) => set_key(args, Context::discover(global).ok(), ui),
        ProviderCommand::Add(args) => add(args, &Context::discover(global)?, ui),
        ProviderCommand::Remove(args) => remove(args, &Context::discover(global)?, ui),
    }
}

/// The repository's config file.
pub(super) fn config_path(ctx: &Context) -> std::path::PathBuf {
    ctx.root.join(".wfe/config.json")
}

fn add(args: AddArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let path = config_path(ctx);
    let mut doc = ConfigDoc::load(&path, ".wfe/config.json")?;
    let created = doc.add_provider(&NewProvider {
        name: args.name.clone(),
        kind: args.kind,
        base_url: args.base_url,
        key_env: args.key_env,
    })?;
    doc.save(&path)?;
    let what = if created { "added" } else { "updated" };
    ui.note(&format!(
        "{what} provider `{}` in .wfe/config.json; `wfe provider test {}` checks that it answers",
        args.name, args.name
    ));
    Ok(Outcome::Success)
}

fn remove(args: RemoveArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let path = config_path(ctx);
    let mut doc = ConfigDoc::load(&path, ".wfe/config.json")?;
    doc.remove_provider(&args.name)?;
    doc.save(&path)?;
    ui.note(&format!(
        "removed provider `{}` from .wfe/config.json",
        args.name
    ));
    Ok(Outcome::Success)
}

fn registry(ctx: &Context) -> Registry {
    Registry::new(ctx.config.provider_config(), user_keys()).in_dir(ctx.root.clone())
}

fn list(args: ListArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let registry = registry(ctx);
    let config = registry.config();
    let statuses: Vec<(&String, &ProviderEntry, Result<KeyStatus, ProviderError>)> = config
        .providers
        .iter()
        .map(|(name, entry)| (name, entry, registry.key_status(name)))
        .collect();
    if args.json {
        let roles: Vec<Value> = config
            .roles
            .iter()
            .map(|(role, r)| json!({ "role": role, "provider": r.provider, "model": r.model }))
            .collect();
        let providers: Vec<Value> = statuses
            .iter()
            .map(|(name, entry, status)| {
                json!({
                    "name": name,
                    "kind": entry.kind.as_str(),
                    "base_url": base_url(entry),
                    "command": (!entry.command.is_empty()).then_some(&entry.command),
                    "from": entry.from,
                    "key": key_json(status),
                })
            })
            .collect();
        ui.json(&json!({ "roles": roles, "providers": providers }));
        return Ok(Outcome::Success);
    }
    if config.providers.is_empty() {
        ui.note(
            "no providers in .wfe/config.json: add `providers` and `roles` (see `Providers and keys` in the README)",
        );
        return Ok(Outcome::Success);
    }
    if !config.roles.is_empty() {
        ui.out(&ui.paint(Style::Bold, "roles"));
        let width = config.roles.keys().map(String::len).max().unwrap_or(0);
        for (role, r) in &config.roles {
            let model = r.model.as_deref().unwrap_or("(no model)");
            ui.out(&format!("  {role:<width$}  {} / {model}", r.provider));
        }
    }
    ui.out(&ui.paint(Style::Bold, "providers"));
    let name_width = statuses.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
    let rows: Vec<(String, String, String)> = statuses
        .iter()
        .map(|(name, entry, status)| {
            let (style, text) = match status {
                Ok(KeyStatus::Missing { .. }) | Err(_) => (Style::Red, key_text(status)),
                Ok(KeyStatus::NotNeeded) => (Style::Dim, key_text(status)),
                Ok(_) => (Style::Green, key_text(status)),
            };
            (
                format!("{name:<name_width$}  {:<17}", entry.kind.as_str()),
                target(entry),
                ui.paint(style, &format!("key: {text}")),
            )
        })
        .collect();
    let target_width = rows.iter().map(|(_, t, _)| t.len()).max().unwrap_or(0);
    for (head, target, key) in rows {
        ui.out(&format!("  {head}  {target:<target_width$}  {key}"));
    }
    Ok(Outcome::Success)
}

/// Where a provider is reached: its base URL, command or recording.
fn target(entry: &ProviderEntry) -> String {
    match entry.kind {
        ProviderKind::Cli => entry.command.join(" "),
        ProviderKind::Replay => format!("from {}", entry.from.as_deref().unwrap_or("?")),
        _ => base_url(entry).unwrap_or_default(),
    }
}

fn base_url(entry: &ProviderEntry) -> Option<String> {
    entry
        .base_url
        .clone()
        .or_else(|| default_base_url(entry.kind).map(str::to_string))
}

fn key_text(status: &Result<KeyStatus, ProviderError>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unusable: {e}"),
    }
}

fn key_json(status: &Result<KeyStatus, ProviderError>) -> Value {
    match status {
        Ok(KeyStatus::Env(var)) => json!({ "status": "env", "var": var }),
        Ok(KeyStatus::File(path)) => json!({ "status": "file", "path": path }),
        Ok(KeyStatus::Missing { looked_in }) => {
            json!({ "status": "missing", "looked_in": looked_in })
        }
        Ok(KeyStatus::NotNeeded) => json!({ "status": "not_needed" }),
        Err(e) => json!({ "status": "error", "message": e.message }),
    }
}

async fn test(args: TestArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let registry = registry(ctx);
    let name = args.name.as_str();
    let entry = registry.entry(name).map_err(|e| {
        CliError::input(e.message).hint("`wfe provider list` shows the configured providers")
    })?;
    if entry.kind == ProviderKind::Replay {
        return Err(CliError::input(format!(
            "provider `{name}` is a replay: it answers only the requests a recorded run sent, so there is nothing to test"
        )));
    }
    let model = match (args.model, registry.role_of(name)) {
        (Some(model), _) => model,
        (None, Some((_, Some(model)))) => model.to_string(),
        (None, Some((role, None))) => {
            return Err(CliError::input(format!(
                "role `{role}` names provider `{name}` without a model: which model should be tested?"
            ))
            .hint(format!("wfe provider test {name} --model MODEL")));
        }
        (None, None) => {
            return Err(CliError::input(format!(
                "no role uses provider `{name}`, so there is no model to test it with"
            ))
            .hint(format!("wfe provider test {name} --model MODEL")));
        }
    };
    let request = ChatRequest {
        model: model.clone(),
        system: None,
        messages: vec![Message::user(TEST_PROMPT)],
        tools: Vec::new(),
        max_tokens: TEST_MAX_TOKENS,
    };
    let started = Instant::now();
    let result = match registry.build(name) {
        // A CLI agent runs in its own process group, out of the terminal's
        // reach: on Ctrl-C the request is dropped, which kills the group.
        Ok(provider) => tokio::select! {
            result = provider.send(&request, &|_: &str| {}) => result,
            _ = tokio::signal::ctrl_c() => {
                return Err(CliError::failed(format!("{name}: interrupted; the request was abandoned")));
            }
        },
        Err(e) => Err(e),
    };
    let ms = started.elapsed().as_millis();
    match result {
        Ok(response) => {
            let text: String = response
                .content
                .iter()
                .filter_map(|b| match b {
                    Block::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" ");
            let text = one_line(&text);
            if args.json {
                ui.json(&json!({
                    "provider": name, "model": model, "ok": true, "duration_ms": ms,
                    "usage": response.usage, "stop": response.stop, "text": text,
                }));
            } else {
                let usage = response.usage;
                ui.out(&format!(
                    "{name}: {} in {ms} ms (model {model}, {} tokens in, {} out): {text}",
                    ui.paint(Style::Green, "ok"),
                    usage.input_tokens,
                    usage.output_tokens
                ));
            }
            Ok(Outcome::Success)
        }
        Err(e) => {
            // Providers name themselves in their errors; the line already does.
            let message = e
                .message
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(&e.message);
            if args.json {
                ui.json(&json!({
                    "provider": name, "model": model, "ok": false, "duration_ms": ms,
                    "error": { "kind": e.kind, "message": e.message },
                }));
            } else {
                ui.err_line(&format!(
                    "{name}: {} after {ms} ms: {message}",
                    ui.paint(Style::Red, "failed"),
                ));
                if let Some(var) = &e.missing_key {
                    ui.note(&format!(
                        "{} set {var} or run `wfe provider set-key {name}`",
                        ui.paint(Style::Yellow, "hint:")
                    ));
                } else if e.kind == ProviderErrorKind::Auth {
                    ui.note(&format!(
                        "{} `wfe provider list` shows where wfe looks for keys",
                        ui.paint(Style::Yellow, "hint:")
                    ));
                }
            }
            Ok(Outcome::Reported(ErrorKind::Failed))
        }
    }
}

/// The answer on one line, cut to [`TEST_ANSWER_CHARS`].
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= TEST_ANSWER_CHARS {
        return joined;
    }
    let cut: String = joined.chars().take(TEST_ANSWER_CHARS).collect();
    format!("{cut}…")
}

fn set_key(args: SetKeyArgs, ctx: Option<Context>, ui: &Ui) -> Result<Outcome, CliError> {
    let name = args.name.as_str();
    let entry = ctx.as_ref().and_then(|c| c.config.providers.get(name));
    if let Some(ctx) = &ctx
        && entry.is_none()
    {
        ui.note(&format!(
            "note: `{name}` is not a provider in {}; the key is stored under that name anyway",
            ctx.root.join(".wfe/config.json").display()
        ));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        ui.note(&format!(
            "paste the key for `{name}` and press Enter (it shows as you type; `wfe provider set-key {name} < FILE` avoids that)"
        ));
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::internal(format!("cannot read the key from stdin: {e}")))?;
    let key = line.trim();
    if key.is_empty() {
        return Err(CliError::input("no key on stdin").hint(format!(
            "printf '%s\\n' \"$KEY\" | wfe provider set-key {name}"
        )));
    }
    let path = user_keys()
        .set_key(name, &Secret::new(key))
        .map_err(|e| CliError::internal(e.to_string()))?;
    ui.note(&format!(
        "stored the key for `{name}` in {} (mode 600)",
        path.display()
    ));
    // The environment is looked at first: say so when it will hide the file.
    if let Some(var) = entry.and_then(key_env)
        && std::env::var(&var).is_ok_and(|v| !v.trim().is_empty())
    {
        ui.note(&format!(
            "note: {var} is set, and wfe uses it before the stored key"
        ));
    }
    Ok(Outcome::Success)
}
