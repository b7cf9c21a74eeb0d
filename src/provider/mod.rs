//! LLM providers behind one trait, in one provider-neutral conversation model.
//!
//! Every provider (Anthropic Messages, OpenAI Chat Completions and
//! OpenAI-compatible servers, Gemini generateContent, CLI agents, replay)
//! turns a [`ChatRequest`] into its own wire format and its answer back into
//! a [`ChatResponse`]. The agent loop, the records in git and replay only
//! ever see the neutral model, so a run recorded with one provider can be
//! replayed, diffed and searched the same way as any other.

pub mod anthropic;
pub mod cli;
pub mod config;
pub mod edit;
pub mod gemini;
mod http;
pub mod keys;
pub mod openai;
pub mod registry;
pub mod replay;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tool_schema_tests;
mod types;

pub use cli::CliProvider;
pub use keys::{KeySource, KeyStatus};
pub use registry::Registry;
pub use replay::ReplayProvider;

pub use types::{
    Block, ChatRequest, ChatResponse, Exchange, Message, ProviderError, ProviderErrorKind,
    RetryNotice, Role, StopReason, TextSink, ToolSpec, Usage, full_requests,
};

use std::time::Duration;

use futures_util::future::BoxFuture;

/// Makes ring rustls' crypto provider for the whole process.
///
/// reqwest is built without a default provider (so aws-lc never enters the
/// build), and building a client before one is installed panics. Call it
/// once at start-up; calling it again, or after another provider was
/// installed, changes nothing.
pub fn install_crypto() {
    // A second call fails only because a provider is already there: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An API key. It never prints: `Debug` shows `Secret(…)`, and only
/// [`Secret::expose`] gives the text, for the one header that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Secret {
        Secret(key.into())
    }

    /// The key itself, for an HTTP header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// How patiently a provider retries transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles each time.
    pub backoff: Duration,
    /// The longest backoff wait (a `retry-after` longer than this is still honoured).
    pub max_backoff: Duration,
    /// The longest `retry-after` honoured: a provider asking for more
    /// fails the request as [`ProviderErrorKind::Exhausted`] at once, which
    /// pauses the run (resumable) instead of leaving it "running" for a day.
    pub max_wait: Duration,
}

impl RetrySettings {
    /// The default [`RetrySettings::max_wait`].
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_wait: RetrySettings::DEFAULT_MAX_WAIT,
        }
    }
}

/// Everything an HTTP provider needs, resolved from its config entry.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The provider's name in config, for messages.
    pub name: String,
    /// The API's base URL without a trailing slash.
    pub base_url: String,
    /// The key, when the provider needs one.
    pub key: Option<Secret>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the server may stay silent mid-answer.
    pub read_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetrySettings,
}

/// One LLM endpoint: sends a request, streams text as it arrives, returns the whole answer.
///
/// Implementations retry what is worth retrying (429 honouring
/// `retry-after`, 5xx, connection errors, cut or malformed streams) with
/// backoff before they give up; the error they return then says so with
/// [`ProviderErrorKind::Exhausted`]. They never put a key in an error.
pub trait Provider: Send + Sync {
    /// The provider's kind as written in config (`anthropic`, `openai`, …).
    fn kind(&self) -> &'static str;

    /// Sends one request. `stream` hears each piece of text as it arrives
    /// (it may hear the same text again if a cut stream is retried).
    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>>;
}
