//! The `openai` provider (placeholder: the wire format lands next).

use futures_util::future::BoxFuture;

use super::{
    ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, ProviderErrorKind, TextSink,
};

/// The API's base URL when the config gives none.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Speaks the openai API over HTTP.
#[derive(Debug)]
pub struct OpenAi {
    config: HttpConfig,
}

impl OpenAi {
    /// A provider for `config`.
    pub fn new(config: HttpConfig) -> OpenAi {
        OpenAi { config }
    }

    /// A provider for an OpenAI-compatible server (kind `openai-compatible`).
    pub fn compatible(config: HttpConfig) -> OpenAi {
        OpenAi { config }
    }
}

impl Provider for OpenAi {
    fn kind(&self) -> &'static str {
        "openai"
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
