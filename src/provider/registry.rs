//! From `.wfe/config.json`'s provider part to working providers: which
//! provider and model sit in a role, how each provider is built, what its
//! key status is. Checks a config for the mistakes serde cannot see.
//!
//! The registry builds providers; it never sends a request. `replay` is the
//! exception it does not build: a replay answers for one phase, so the engine
//! builds it from [`Registry::entry`] with [`super::replay`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cli::CliProvider;
use super::config::{ModelEntry, ProviderConfig, ProviderEntry, ProviderKind};
use super::keys::{KeySource, KeyStatus, key_env, needs_key};
use super::{
    HttpConfig, Provider, ProviderError, ProviderErrorKind, RetrySettings, anthropic, gemini,
    openai,
};

/// The role a phase gets when it names none.
pub const DEFAULT_ROLE: &str = "primary";
/// `max_tokens` of a request when the provider's entry gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// How long connecting may take when the entry does not say.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may stay silent (or a CLI agent may run) when the entry does not say.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Where config files are named in messages.
const CONFIG_FILE: &str = ".wfe/config.json";

/// The configured providers, ready to be built.
#[derive(Debug, Clone)]
pub struct Registry {
    config: ProviderConfig,
    keys: KeySource,
    work_dir: Option<PathBuf>,
    /// Provider key variables `cli` agents do not inherit.
    key_vars: Vec<String>,
}

impl Registry {
    /// A registry over `config`, finding keys with `keys`.
    pub fn new(config: ProviderConfig, keys: KeySource) -> Registry {
        Registry {
            config,
            keys,
            work_dir: None,
            key_vars: Vec::new(),
        }
    }

    /// Keeps `vars` (the provider key variables) out of `cli` agents'
    /// environment, but for those a phase keeps (see [`Registry::build_keeping`]).
    pub fn without_env(mut self, vars: Vec<String>) -> Registry {
        self.key_vars = vars;
        self
    }

    /// Runs `cli` agents in `dir` (the repository's work tree) rather than
    /// wfe's current directory.
    pub fn in_dir(mut self, dir: PathBuf) -> Registry {
        self.work_dir = Some(dir);
        self
    }

    /// The provider part of the config.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Where keys come from.
    pub fn keys(&self) -> &KeySource {
        &self.keys
    }

    /// The entry of provider `name`.
    pub fn entry(&self, name: &str) -> Result<&ProviderEntry, ProviderError> {
        self.config.providers.get(name).ok_or_else(|| {
            config_error(format!(
                "provider `{name}` is not in {CONFIG_FILE} `providers`{}",
                known(self.config.providers.keys())
            ))
        })
    }

    /// Who sits in a seat: `(provider name, model)`.
    ///
    /// An explicit `provider` or `model` overrides the role's; the role
    /// defaults to [`DEFAULT_ROLE`]. A role is only required when something
    /// is left to take from it. Fails with the first of [`Registry::resolve`]'s
    /// problems.
    pub fn seat(
        &self,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<(String, String), ProviderError> {
        self.resolve(role, provider, model).map_err(|problems| {
            let first = problems.into_iter().next();
            config_error(
                first.map_or_else(|| "the seat cannot be filled".into(), |p| p.to_string()),
            )
        })
    }

    /// Who sits in a seat, as [`Registry::seat`], with every reason it
    /// cannot be filled (an unknown role, an unknown provider, no model)
    /// rather than only the first. Keys are not looked at: see
    /// [`Registry::check_seat`].
    pub fn resolve(
        &self,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<(String, String), Vec<SeatProblem>> {
        let mut problems = Vec::new();
        let role_name = role.unwrap_or(DEFAULT_ROLE);
        let role_entry = match (provider, model, self.config.roles.get(role_name)) {
            (Some(_), Some(_), _) => None,
            (_, _, Some(entry)) => Some(entry),
            // Only the model was missing, and no role was asked for: say that.
            (Some(provider), None, None) if role.is_none() => {
                problems.push(SeatProblem::NoModel {
                    provider: provider.to_string(),
                    role: None,
                });
                None
            }
            (_, _, None) => {
                problems.push(SeatProblem::UnknownRole {
                    role: role_name.to_string(),
                    known: self.config.roles.keys().cloned().collect(),
                });
                None
            }
        };
        let provider = provider.or_else(|| role_entry.map(|r| r.provider.as_str()));
        if let Some(name) = provider
            && !self.config.providers.contains_key(name)
        {
            problems.push(SeatProblem::UnknownProvider {
                provider: name.to_string(),
                role: role_entry
                    .is_some_and(|r| r.provider == name)
                    .then(|| role_name.to_string()),
                known: self.config.providers.keys().cloned().collect(),
            });
        }
        let model = model.or_else(|| role_entry.and_then(|r| r.model.as_deref()));
        if let (Some(provider), None, Some(_)) = (provider, model, role_entry) {
            problems.push(SeatProblem::NoModel {
                provider: provider.to_string(),
                role: Some(role_name.to_string()),
            });
        }
        match (provider, model) {
            (Some(provider), Some(model)) if problems.is_empty() => {
                Ok((provider.to_string(), model.to_string()))
            }
            _ => Err(problems),
        }
    }

    /// Every reason a seat cannot be filled, keys included: what a run
    /// checks for each agent phase before it writes anything.
    pub fn check_seat(
        &self,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Vec<SeatProblem> {
        let (name, _) = match self.resolve(role, provider, model) {
            Ok(seat) => seat,
            Err(problems) => return problems,
        };
        self.key_problem(&name).into_iter().collect()
    }

    /// Why provider `name` cannot be used for want of a key, if it cannot;
    /// a kind that needs no key (`cli`, `replay`, a local server) never
    /// has one.
    pub fn key_problem(&self, name: &str) -> Option<SeatProblem> {
        let entry = self.config.providers.get(name)?;
        match self.keys.status(name, entry) {
            Ok(KeyStatus::Missing { looked_in }) => Some(SeatProblem::MissingKey {
                provider: name.to_string(),
                var: key_env(entry),
                looked_in,
            }),
            Ok(_) => None,
            Err(e) => Some(SeatProblem::UnreadableKeys {
                provider: name.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Builds provider `name`. A hosted API without its key is an `Auth`
    /// error saying where to put one; `replay` is built by the engine.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        self.build_keeping(name, &[])
    }

    /// [`Registry::build`] for a phase whose `pass_env` keeps `keep` of the
    /// provider key variables in a `cli` agent's environment.
    pub fn build_keeping(
        &self,
        name: &str,
        keep: &[String],
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let entry = self.entry(name)?;
        Ok(match entry.kind {
            ProviderKind::Anthropic => Arc::new(anthropic::Anthropic::new(self.http_config(name)?)),
            ProviderKind::Openai => Arc::new(openai::OpenAi::new(self.http_config(name)?)),
            ProviderKind::OpenaiCompatible => {
                Arc::new(openai::OpenAi::compatible(self.http_config(name)?))
            }
            ProviderKind::Gemini => Arc::new(gemini::Gemini::new(self.http_config(name)?)),
            ProviderKind::Cli => {
                if entry.command.is_empty() {
                    return Err(config_error(format!(
                        "provider `{name}` (kind cli) has no `command` in {CONFIG_FILE}"
                    )));
                }
                let removed = self
                    .key_vars
                    .iter()
                    .filter(|v| !keep.contains(v))
                    .cloned()
                    .collect();
                let cli = CliProvider::new(
                    name.to_string(),
                    entry.command.clone(),
                    entry.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.0),
                )
                .without_env(removed);
                Arc::new(match &self.work_dir {
                    Some(dir) => cli.in_dir(dir.clone()),
                    None => cli,
                })
            }
            ProviderKind::Replay => {
                return Err(config_error(format!(
                    "provider `{name}` is a replay: it answers for one phase at a time, so the engine builds it for each phase from `from`"
                )));
            }
        })
    }

    /// The HTTP settings of provider `name`: base URL (default per kind),
    /// key, timeouts and retries.
    pub fn http_config(&self, name: &str) -> Result<HttpConfig, ProviderError> {
        let entry = self.entry(name)?;
        let base_url = match (&entry.base_url, default_base_url(entry.kind)) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.to_string(),
            (None, None) => {
                return Err(config_error(format!(
                    "provider `{name}` (kind {}) needs a `base_url` in {CONFIG_FILE}",
                    entry.kind.as_str()
                )));
            }
        };
        let key = self.keys.key(name, entry)?;
        if key.is_none() && needs_key(entry) {
            let var = key_env(entry).unwrap_or_default();
            let mut error = ProviderError::new(
                ProviderErrorKind::Auth,
                format!(
                    "no key for provider `{name}`: {var} is not set and the credentials file has none"
                ),
            );
            error.missing_key = Some(var);
            return Err(error);
        }
        Ok(HttpConfig {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
            connect_timeout: entry
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            read_timeout: entry.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.0),
            retry: retry_settings(entry),
        })
    }

    /// What config says about `model` (context window, prices); empty when nothing.
    pub fn model_info(&self, model: &str) -> ModelEntry {
        self.config.models.get(model).cloned().unwrap_or_default()
    }

    /// `max_tokens` for requests to provider `name` in role `role` (the
    /// default role when `None`): the role's own when it is played by
    /// `name`, else the provider's, else the default.
    pub fn role_max_tokens(&self, role: Option<&str>, name: &str) -> u32 {
        self.config
            .roles
            .get(role.unwrap_or(DEFAULT_ROLE))
            .filter(|entry| entry.provider == name)
            .and_then(|entry| entry.max_tokens)
            .unwrap_or_else(|| self.max_tokens(name))
    }

    /// `max_tokens` for requests to provider `name`.
    pub fn max_tokens(&self, name: &str) -> u32 {
        self.config
            .providers
            .get(name)
            .and_then(|e| e.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// Where provider `name`'s key comes from (never the key).
    pub fn key_status(&self, name: &str) -> Result<KeyStatus, ProviderError> {
        let entry = self.entry(name)?;
        Ok(self.keys.status(name, entry)?)
    }

    /// The first role (by name) played by provider `name`, with its model.
    pub fn role_of(&self, name: &str) -> Option<(&str, Option<&str>)> {
        self.config
            .roles
            .iter()
            .find(|(_, r)| r.provider == name)
            .map(|(role, r)| (role.as_str(), r.model.as_deref()))
    }
}

/// The default base URL of an HTTP kind (`openai-compatible` has none).
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Anthropic => Some(anthropic::DEFAULT_BASE_URL),
        ProviderKind::Openai => Some(openai::DEFAULT_BASE_URL),
        ProviderKind::Gemini => Some(gemini::DEFAULT_BASE_URL),
        ProviderKind::OpenaiCompatible | ProviderKind::Cli | ProviderKind::Replay => None,
    }
}

/// The entry's retry policy, with the defaults for what it leaves out.
fn retry_settings(entry: &ProviderEntry) -> RetrySettings {
    let default = RetrySettings {
        max_wait: entry
            .max_wait
            .map_or(RetrySettings::DEFAULT_MAX_WAIT, |d| d.0),
        ..RetrySettings::default()
    };
    match &entry.retry {
        Some(policy) => RetrySettings {
            // 0 attempts would never send anything; validation reports it.
            max_attempts: policy.max_attempts.max(1),
            backoff: policy.backoff.map_or(default.backoff, |d| d.0),
            max_backoff: policy.max_backoff.map_or(default.max_backoff, |d| d.0),
            max_wait: default.max_wait,
        },
        None => default,
    }
}

/// One mistake in a provider config, at a JSON path like `providers.local.base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where, in the same dotted form serde's errors use.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a seat of an agent phase cannot be filled from the config and the
/// user's keys. Each names the part of `.wfe/config.json` to fix
/// ([`SeatProblem::config_path`]) or the provider whose key is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatProblem {
    /// The role is not under `roles`.
    UnknownRole {
        /// The role asked for (or [`DEFAULT_ROLE`]).
        role: String,
        /// The roles the config has.
        known: Vec<String>,
    },
    /// The provider is not under `providers`.
    UnknownProvider {
        /// The provider asked for.
        provider: String,
        /// The role that named it, when the phase did not.
        role: Option<String>,
        /// The providers the config has.
        known: Vec<String>,
    },
    /// Nothing gives the seat a model.
    NoModel {
        /// The seat's provider.
        provider: String,
        /// The role that was to give one; None when no role was asked for.
        role: Option<String>,
    },
    /// The provider needs a key and none was found.
    MissingKey {
        /// The provider.
        provider: String,
        /// The environment variable that would hold it.
        var: Option<String>,
        /// Where wfe looked.
        looked_in: Vec<String>,
    },
    /// The credentials file could not be used.
    UnreadableKeys {
        /// The provider whose key was looked up.
        provider: String,
        /// Why (never the file's text).
        message: String,
    },
}

impl SeatProblem {
    /// The JSON path in `.wfe/config.json` to edit, when the fix is there.
    pub fn config_path(&self) -> Option<String> {
        match self {
            SeatProblem::UnknownRole { role, .. } => Some(format!("roles.{role}")),
            SeatProblem::UnknownProvider {
                role: Some(role), ..
            } => Some(format!("roles.{role}.provider")),
            SeatProblem::UnknownProvider { provider, .. } => Some(format!("providers.{provider}")),
            SeatProblem::NoModel {
                role: Some(role), ..
            } => Some(format!("roles.{role}.model")),
            SeatProblem::NoModel { role: None, .. }
            | SeatProblem::MissingKey { .. }
            | SeatProblem::UnreadableKeys { .. } => None,
        }
    }
}

impl std::fmt::Display for SeatProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeatProblem::UnknownRole { role, known: names } => write!(
                f,
                "role `{role}` is not in {CONFIG_FILE} `roles`{}",
                known(names.iter())
            ),
            SeatProblem::UnknownProvider {
                provider,
                role,
                known: names,
            } => {
                write!(
                    f,
                    "provider `{provider}` is not in {CONFIG_FILE} `providers`{}",
                    known(names.iter())
                )?;
                match role {
                    Some(role) => write!(f, " (role `{role}` names it)"),
                    None => Ok(()),
                }
            }
            SeatProblem::NoModel {
                provider,
                role: None,
            } => write!(
                f,
                "no model for provider `{provider}`: name a `model` beside it (there is no `{DEFAULT_ROLE}` role in {CONFIG_FILE} to take one from)"
            ),
            SeatProblem::NoModel {
                provider,
                role: Some(role),
            } => write!(
                f,
                "no model for role `{role}` (provider `{provider}`): add `model` to roles.{role} in {CONFIG_FILE}, or name one beside the provider"
            ),
            SeatProblem::MissingKey {
                provider,
                looked_in,
                ..
            } => {
                write!(f, "no key for provider `{provider}`")?;
                if !looked_in.is_empty() {
                    write!(f, " (looked in {})", looked_in.join(", "))?;
                }
                Ok(())
            }
            SeatProblem::UnreadableKeys { provider, message } => {
                write!(
                    f,
                    "the key of provider `{provider}` cannot be read: {message}"
                )
            }
        }
    }
}

/// Every mistake in `config` that parsing cannot catch, in path order:
/// roles naming unknown providers and entries missing what their kind needs.
pub fn validate(config: &ProviderConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |path: String, message: String| problems.push(ConfigProblem { path, message });
    for (name, entry) in &config.providers {
        let at = format!("providers.{name}");
        let kind = entry.kind.as_str();
        match entry.kind {
            ProviderKind::OpenaiCompatible if entry.base_url.is_none() => problem(
                format!("{at}.base_url"),
                format!("required for kind {kind} (e.g. \"http://127.0.0.1:11434/v1\")"),
            ),
            ProviderKind::Cli if entry.command.is_empty() => problem(
                format!("{at}.command"),
                format!(
                    "required for kind {kind} (e.g. [\"claude\", \"-p\", \"--output-format\", \"json\"])"
                ),
            ),
            ProviderKind::Replay if entry.from.as_deref().is_none_or(str::is_empty) => problem(
                format!("{at}.from"),
                format!(
                    "required for kind {kind}: a run id, or a directory of <phase>.exchanges.jsonl files"
                ),
            ),
            _ => {}
        }
        if let Some(url) = &entry.base_url
            && let Err(why) = check_http_url(url)
        {
            problem(format!("{at}.base_url"), why);
        }
        if entry.max_tokens == Some(0) {
            problem(format!("{at}.max_tokens"), "must be at least 1".into());
        }
        if entry.retry.as_ref().is_some_and(|r| r.max_attempts == 0) {
            problem(
                format!("{at}.retry.max_attempts"),
                "must be at least 1 (1 = no retry)".into(),
            );
        }
    }
    for (role, entry) in &config.roles {
        if !config.providers.contains_key(&entry.provider) {
            problem(
                format!("roles.{role}.provider"),
                format!(
                    "provider `{}` is not in `providers`{}",
                    entry.provider,
                    known(config.providers.keys())
                ),
            );
        }
        if entry.max_tokens == Some(0) {
            problem(
                format!("roles.{role}.max_tokens"),
                "must be at least 1".into(),
            );
        }
    }
    problems
}

/// Checks that `url` is an absolute http(s) URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => Err(format!(
            "`{url}` is not an http(s) URL (scheme `{}`)",
            parsed.scheme()
        )),
        Ok(_) => Err(format!("`{url}` has no host")),
        Err(e) => Err(format!("`{url}` is not an http(s) URL: {e}")),
    }
}

fn config_error(message: String) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Config, message)
}

/// ` (known: a, b)`, or ` (none configured)`, to end an "unknown name" message.
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        " (none configured)".to_string()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn config(value: serde_json::Value) -> ProviderConfig {
        serde_json::from_value(value).unwrap()
    }

    fn sample() -> ProviderConfig {
        config(json!({
            "providers": {
                "claude": { "kind": "anthropic", "max_tokens": 4096 },
                "gpt": { "kind": "openai", "base_url": "http://127.0.0.1:9/v1/",
                         "connect_timeout": "2s", "read_timeout": "30s",
                         "retry": { "max_attempts": 2, "backoff": "10ms" } },
                "local": { "kind": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1" },
                "codex": { "kind": "cli", "command": ["codex", "exec"] },
                "again": { "kind": "replay", "from": "01abc" }
            },
            "roles": {
                "primary": { "provider": "claude", "model": "claude-sonnet-4-5" },
                "reviewer": { "provider": "gpt" }
            },
            "models": { "claude-sonnet-4-5": { "context_tokens": 200000 } }
        }))
    }

    fn registry(vars: &[(&str, &str)]) -> Registry {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Registry::new(
            sample(),
            KeySource::new(Arc::new(move |k: &str| vars.get(k).cloned()), None),
        )
    }

    #[test]
    fn seats() {
        let r = registry(&[]);
        let seat = |role, provider, model| r.seat(role, provider, model);
        let ok = |p: &str, m: &str| Ok((p.to_string(), m.to_string()));
        assert_eq!(seat(None, None, None), ok("claude", "claude-sonnet-4-5"));
        assert_eq!(
            seat(Some("primary"), None, Some("claude-opus")),
            ok("claude", "claude-opus")
        );
        // The provider is overridden, the role's model kept (replay relies on it).
        assert_eq!(
            seat(None, Some("again"), None),
            ok("again", "claude-sonnet-4-5")
        );
        // Both given: no role is needed, not even a missing one.
        assert_eq!(
            seat(Some("nobody"), Some("gpt"), Some("gpt-5")),
            ok("gpt", "gpt-5")
        );
        assert_eq!(
            seat(Some("reviewer"), None, Some("gpt-5")),
            ok("gpt", "gpt-5")
        );
    }

    #[test]
    fn seat_errors() {
        let r = registry(&[]);
        let err = |role, provider, model| {
            let e = r.seat(role, provider, model).unwrap_err();
            assert_eq!(e.kind, ProviderErrorKind::Config, "{e}");
            e.message
        };
        let m = err(Some("critic"), None, None);
        assert!(
            m.starts_with(
                "role `critic` is not in .wfe/config.json `roles` (known: `primary`, `reviewer`)"
            ),
            "{m}"
        );
        let m = err(None, Some("nope"), None);
        assert!(
            m.starts_with("provider `nope` is not in .wfe/config.json `providers` (known:"),
            "{m}"
        );
        let m = err(Some("reviewer"), None, None);
        assert!(
            m.starts_with("no model for role `reviewer` (provider `gpt`)"),
            "{m}"
        );

        let empty = Registry::new(ProviderConfig::default(), KeySource::none());
        let m = empty.seat(None, None, None).unwrap_err().message;
        assert_eq!(
            m,
            "role `primary` is not in .wfe/config.json `roles` (none configured)"
        );
        let mut no_roles = sample();
        no_roles.roles.clear();
        let no_roles = Registry::new(no_roles, KeySource::none());
        let m = no_roles.seat(None, Some("gpt"), None).unwrap_err().message;
        assert!(
            m.starts_with("no model for provider `gpt`: name a `model`"),
            "{m}"
        );
        let m = no_roles
            .seat(Some("critic"), Some("gpt"), None)
            .unwrap_err()
            .message;
        assert!(m.starts_with("role `critic` is not in"), "{m}");
    }

    #[test]
    fn a_seat_check_reports_every_problem_with_the_path_to_fix() {
        let r = registry(&[("ANTHROPIC_API_KEY", "sk-test")]);
        // Seatable, with a key or without the need of one.
        assert_eq!(r.check_seat(None, None, None), []);
        assert_eq!(r.check_seat(None, Some("local"), Some("llama")), []);
        assert_eq!(r.check_seat(None, Some("codex"), Some("o3")), []);
        assert_eq!(r.check_seat(None, Some("again"), None), []);
        // An unknown role and an unknown provider: both, not the first.
        let problems = r.check_seat(Some("critic"), Some("nope"), None);
        let paths: Vec<Option<String>> = problems.iter().map(SeatProblem::config_path).collect();
        assert_eq!(
            paths,
            [Some("roles.critic".into()), Some("providers.nope".into())]
        );
        // A role naming a provider the config lacks points at the role.
        let mut broken = sample();
        broken.roles.get_mut("primary").unwrap().provider = "gone".into();
        let broken = Registry::new(broken, KeySource::none());
        let problems = broken.check_seat(None, None, None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].config_path().as_deref(),
            Some("roles.primary.provider")
        );
        assert!(
            problems[0]
                .to_string()
                .ends_with("(role `primary` names it)"),
            "{}",
            problems[0]
        );
        // No model from the role.
        let problems = r.check_seat(Some("reviewer"), None, None);
        assert_eq!(
            problems[0].config_path().as_deref(),
            Some("roles.reviewer.model")
        );
        // A missing key names the variable and where wfe looked.
        let problems = r.check_seat(Some("reviewer"), None, Some("gpt-5"));
        assert_eq!(
            problems,
            [SeatProblem::MissingKey {
                provider: "gpt".into(),
                var: Some("OPENAI_API_KEY".into()),
                looked_in: vec!["env OPENAI_API_KEY".into()],
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            "no key for provider `gpt` (looked in env OPENAI_API_KEY)"
        );
        assert_eq!(problems[0].config_path(), None);
    }

    #[test]
    fn http_configs() {
        let r = registry(&[("ANTHROPIC_API_KEY", "sk-test"), ("OPENAI_API_KEY", "sk-o")]);
        let claude = r.http_config("claude").unwrap();
        assert_eq!(claude.base_url, "https://api.anthropic.com");
        assert_eq!(claude.key.as_ref().unwrap().expose(), "sk-test");
        assert_eq!(claude.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(claude.read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(claude.retry, RetrySettings::default());

        let gpt = r.http_config("gpt").unwrap();
        assert_eq!(gpt.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(gpt.connect_timeout, Duration::from_secs(2));
        assert_eq!(gpt.read_timeout, Duration::from_secs(30));
        assert_eq!(
            gpt.retry,
            RetrySettings {
                max_attempts: 2,
                backoff: Duration::from_millis(10),
                max_backoff: RetrySettings::default().max_backoff,
                max_wait: RetrySettings::DEFAULT_MAX_WAIT,
            }
        );

        let local = r.http_config("local").unwrap();
        assert!(local.key.is_none());
        for name in ["claude", "gpt", "local", "codex"] {
            r.build(name).unwrap();
        }
        assert_eq!(r.max_tokens("claude"), 4096);
        assert_eq!(r.max_tokens("gpt"), DEFAULT_MAX_TOKENS);
        assert_eq!(
            r.model_info("claude-sonnet-4-5").context_tokens,
            Some(200000)
        );
        assert_eq!(r.model_info("unknown"), ModelEntry::default());
    }

    #[test]
    fn build_errors() {
        let r = registry(&[]);
        let e = r.build("claude").err().unwrap();
        assert_eq!(e.kind, ProviderErrorKind::Auth);
        assert_eq!(
            e.message,
            "no key for provider `claude`: ANTHROPIC_API_KEY is not set and the credentials file has none"
        );
        assert_eq!(e.missing_key.as_deref(), Some("ANTHROPIC_API_KEY"));
        let e = r.build("again").err().unwrap();
        assert_eq!(e.kind, ProviderErrorKind::Config);
        assert!(e.message.contains("replay"), "{e}");
        assert!(r.entry("again").is_ok());
        assert_eq!(r.key_status("codex").unwrap(), KeyStatus::NotNeeded);
        assert_eq!(
            r.key_status("claude").unwrap(),
            KeyStatus::Missing {
                looked_in: vec!["env ANTHROPIC_API_KEY".into()]
            }
        );
    }

    #[test]
    fn validation_names_each_path() {
        let problems = validate(&config(json!({
            "providers": {
                "local": { "kind": "openai-compatible" },
                "codex": { "kind": "cli" },
                "again": { "kind": "replay" },
                "ftp": { "kind": "openai", "base_url": "ftp://example.com" },
                "rel": { "kind": "anthropic", "base_url": "api.example.com", "max_tokens": 0,
                         "retry": { "max_attempts": 0 } }
            },
            "roles": { "primary": { "provider": "claude", "model": "m" } }
        })));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers.again.from",
                "providers.codex.command",
                "providers.ftp.base_url",
                "providers.local.base_url",
                "providers.rel.base_url",
                "providers.rel.max_tokens",
                "providers.rel.retry.max_attempts",
                "roles.primary.provider",
            ]
        );
        assert!(
            problems[2].message.contains("scheme `ftp`"),
            "{}",
            problems[2]
        );
        assert_eq!(
            problems[7].to_string(),
            "roles.primary.provider: provider `claude` is not in `providers` (known: `again`, `codex`, `ftp`, `local`, `rel`)"
        );
        assert!(validate(&sample()).is_empty());
    }
}
