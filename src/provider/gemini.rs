//! The `gemini` provider (placeholder: the wire format lands next).

use futures_util::future::BoxFuture;

use super::{
    ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, ProviderErrorKind, TextSink,
};

/// The API's base URL when the config gives none.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Speaks the gemini API over HTTP.
#[derive(Debug)]
pub struct Gemini {
    config: HttpConfig,
}

impl Gemini {
    /// A provider for `config`.
    pub fn new(config: HttpConfig) -> Gemini {
        Gemini { config }
    }
}

impl Provider for Gemini {
    fn kind(&self) -> &'static str {
        "gemini"
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
