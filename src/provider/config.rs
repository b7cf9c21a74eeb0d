//! How `.wfe/config.json` names providers, maps roles to them and describes models.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::retry::{DurationSpec, RetryPolicy};

/// The kinds of provider wfe speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions.
    Openai,
    /// Any server speaking Chat Completions (Ollama, llama.cpp, vLLM); needs `base_url`.
    OpenaiCompatible,
    /// Google Gemini generateContent.
    Gemini,
    /// A CLI agent run as a subprocess (`command`).
    Cli,
    /// Answers from recorded exchanges (`from`).
    Replay,
}

impl ProviderKind {
    /// Every kind, in the order people are shown them.
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Anthropic,
        ProviderKind::Openai,
        ProviderKind::OpenaiCompatible,
        ProviderKind::Gemini,
        ProviderKind::Cli,
        ProviderKind::Replay,
    ];

    /// The kind written `name` in config.
    pub fn parse(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Every kind as written in config.
    pub fn names() -> Vec<&'static str> {
        ProviderKind::ALL.iter().map(|k| k.as_str()).collect()
    }

    /// The kind as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Openai => "openai",
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Cli => "cli",
            ProviderKind::Replay => "replay",
        }
    }

    /// The environment variable a key is read from unless the entry names one.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::Openai => Some("OPENAI_API_KEY"),
            ProviderKind::Gemini => Some("GEMINI_API_KEY"),
            ProviderKind::OpenaiCompatible | ProviderKind::Cli | ProviderKind::Replay => None,
        }
    }
}

/// One entry of `providers` in `.wfe/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// What the provider speaks.
    pub kind: ProviderKind,
    /// The API's base URL (e.g. `http://127.0.0.1:11434/v1`); each HTTP kind has a default but `openai-compatible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the key (default per kind, e.g. `ANTHROPIC_API_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// cli: the command and its arguments; the prompt is given on stdin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// replay: a run id in this repository, or a directory holding `<phase>.exchanges.jsonl` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The most tokens one answer may have (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// How long connecting may take (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<DurationSpec>,
    /// How long the server may stay silent mid-answer, and for a cli agent how long it may run (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<DurationSpec>,
    /// Retries of transient failures (default 5 attempts, 1s backoff doubling, at most 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The longest wait the provider may ask for (`retry-after`) before the run pauses instead, resumable with `wfe resume` (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<DurationSpec>,
}

/// One entry of `roles`: who plays a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// A provider named in `providers`.
    pub provider: String,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The most tokens one answer may have in this role (default: the provider's `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// One entry of `models`: what wfe needs to know about a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The context window in tokens; older tool results are summarised before a request would outgrow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    /// US dollars per million input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_usd_per_mtok: Option<f64>,
    /// US dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_usd_per_mtok: Option<f64>,
}

/// The provider part of `.wfe/config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderConfig {
    /// Providers by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderEntry>,
    /// Roles (`primary`, `reviewer`, `second_opinion`, …) mapped to a provider and model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleEntry>,
    /// Models by name: context window and prices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelEntry>,
}
