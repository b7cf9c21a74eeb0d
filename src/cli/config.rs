//! `.wfe/config.json`: repo-wide settings (never secrets).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::CliError;
use crate::bounded;
use crate::provider::KeySource;
use crate::provider::config::{ModelEntry, ProviderConfig, ProviderEntry, RoleEntry};
use crate::provider::keys::provider_key_vars;
use crate::provider::registry::validate;
use crate::secret::Masker;
use crate::strict::{self, StrictError};
use crate::template::Template;

/// Default largest artifact file: 16 MiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 16 * 1024 * 1024;

/// Overrides the config's `checkpoint_interval_ms` for one command.
pub const CHECKPOINT_INTERVAL_VAR: &str = "WFE_CHECKPOINT_INTERVAL_MS";

/// The repository's wfe configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional `$schema` for editor help.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Whether runs advance without asking after each phase (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
    /// Default for `--jobs` (default: the number of CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
    /// Largest accepted artifact file in bytes (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
    /// Bytes of output a script attempt's committed log keeps (default
    /// 4 MiB): its first and last half, with a `truncated` line between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
    /// Most bytes of file artifacts one phase may keep (default 50 MB); a
    /// phase's own `max_files_bytes` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files_bytes: Option<u64>,
    /// During a burst of short phases, at most one checkpoint per this
    /// many milliseconds: sooner transitions are folded into the next
    /// (default 10; 0: one checkpoint per transition). The
    /// `WFE_CHECKPOINT_INTERVAL_MS` environment variable overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_ms: Option<u64>,
    /// LLM providers by name (used by agent phases).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderEntry>,
    /// Roles (`primary`, `reviewer`, …) mapped to a provider and model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleEntry>,
    /// Models by name: context window and prices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelEntry>,
    /// Names of environment variables whose values are secret: masked as
    /// `***` in everything wfe writes or shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The budget of every run, under the template's `defaults.budget` and
    /// `wfe run --budget` (see [`crate::budget::Budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::budget::Budget>,
}

impl Config {
    /// Reads `<root>/.wfe/config.json` (a missing file is the default
    /// config), then what the environment overrides.
    pub fn load(root: &Path) -> Result<Config, CliError> {
        let mut config = Config::load_file(root)?;
        if let Some(value) = std::env::var_os(CHECKPOINT_INTERVAL_VAR) {
            let ms = value.to_str().and_then(|v| v.trim().parse::<u64>().ok());
            config.checkpoint_interval_ms = Some(ms.ok_or_else(|| {
                CliError::input(format!(
                    "{CHECKPOINT_INTERVAL_VAR}={}: expected a whole number of milliseconds (0: a checkpoint per transition)",
                    value.to_string_lossy()
                ))
            })?);
        }
        Ok(config)
    }

    /// `<root>/.wfe/config.json` alone.
    fn load_file(root: &Path) -> Result<Config, CliError> {
        let path = root.join(".wfe/config.json");
        // Bounded and regular: a committed config symlinked to /dev/zero
        // must fail every command at once, not eat memory.
        let text = match bounded::read_to_string(&path, bounded::TEXT_LIMIT) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(Config::default()),
            Err(e) => return Err(CliError::input(e.to_string())),
        };
        let shown = path.display();
        let value = strict::parse_json(&text).map_err(|e| match e {
            StrictError::Duplicate { .. } => {
                CliError::input(format!("{shown}: {e}; each key may appear once"))
            }
            StrictError::Syntax(message) => {
                CliError::input(format!("{shown}: not valid JSON: {message}"))
            }
        })?;
        if !value.is_object() {
            let found = match &value {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            return Err(CliError::input(format!(
                "{shown}: expected an object (`{{\"providers\": …, \"roles\": …}}`), found {found}"
            )));
        }
        // From the text again (it is small): serde's errors then carry the
        // line and column, which a `Value` no longer knows.
        let mut de = serde_json::Deserializer::from_str(&text);
        let config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." {
                String::new()
            } else {
                format!("{at}: ")
            };
            CliError::input(format!("{shown}: {at}{}", e.inner()))
        })?;
        // What serde cannot see: names that must match, fields a kind needs.
        let mut problems = validate(&config.provider_config());
        if let Some(budget) = &config.budget {
            problems.extend(budget.problems().into_iter().map(|(field, message)| {
                crate::provider::registry::ConfigProblem {
                    path: format!("budget.{field}"),
                    message,
                }
            }));
        }
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect();
            return Err(CliError::input(lines.join("\n")));
        }
        Ok(config)
    }

    /// The provider part: providers, roles and models.
    pub fn provider_config(&self) -> ProviderConfig {
        ProviderConfig {
            providers: self.providers.clone(),
            roles: self.roles.clone(),
            models: self.models.clone(),
        }
    }

    /// The config `wfe init` writes.
    pub fn starter() -> Config {
        Config {
            auto: Some(true),
            ..Config::default()
        }
    }
}

/// What a run must keep secret: the provider key variables no phase
/// inherits unless it names them in `pass_env`, and the masker of every
/// secret value — provider keys (environment and credentials file) and the
/// values of the variables `config` and `template`'s phases list in `secrets`,
/// and `extra` (the run's secret args).
pub fn run_secrets(
    config: &Config,
    template: &Template,
    extra: impl IntoIterator<Item = String>,
) -> (Vec<String>, Masker) {
    let key_vars = provider_key_vars(&config.provider_config());
    let keys = user_keys();
    let mut values: Vec<String> = keys
        .all_values(&key_vars)
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    let declared = template
        .all_phases()
        .into_iter()
        .flat_map(|p| &p.secrets)
        .chain(&config.secrets);
    values.extend(declared.filter_map(|var| std::env::var(var).ok()));
    values.extend(extra);
    (key_vars, Masker::new(values))
}

/// Provider keys as the user set them up: the process environment, then
/// `credentials.json` in `$WFE_CONFIG_DIR`, `$XDG_CONFIG_HOME/wfe` or
/// `~/.config/wfe`. The CLI is the layer that reads the environment.
pub fn user_keys() -> KeySource {
    KeySource::from_lookup(|var| std::env::var(var).ok())
}
