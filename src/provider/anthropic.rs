//! The `anthropic` provider (placeholder: the wire format lands next).

use futures_util::future::BoxFuture;

use super::{
    ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, ProviderErrorKind, TextSink,
};

/// The API's base URL when the config gives none.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Speaks the anthropic API over HTTP.
#[derive(Debug)]
pub struct Anthropic {
    config: HttpConfig,
}

impl Anthropic {
    /// A provider for `config`.
    pub fn new(config: HttpConfig) -> Anthropic {
        Anthropic { config }
    }
}

impl Provider for Anthropic {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn send<'a>(
        &'a self,
        _request: &'a ChatRequest,
        _stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::new(
                ProviderErrorKind::Config,
                format!("{}: not available yet", self.config.name),
            ))
        })
    }
}
