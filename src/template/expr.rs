//! Expressions (`if`, `until`) and string templates (`run`, `cwd`, `env`,
//! prompts), both minijinja, over a context of `args` and `artifacts`.

use serde_json::Value;

/// An expression or template that failed to compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    /// minijinja's message, with the position when known.
    pub message: String,
}

/// Checks that `source` compiles as an expression.
pub fn check_expression(source: &str) -> Result<(), ExprError> {
    let _ = source;
    todo!("helper implements")
}

/// Checks that `source` compiles as a string template.
pub fn check_template(source: &str) -> Result<(), ExprError> {
    let _ = source;
    todo!("helper implements")
}

/// Evaluates `source` as an expression over `context` for its truth.
pub fn eval_condition(source: &str, context: &Value) -> Result<bool, ExprError> {
    let _ = (source, context);
    todo!("helper implements")
}

/// Renders `source` as a string template over `context`.
pub fn render(source: &str, context: &Value) -> Result<String, ExprError> {
    let _ = (source, context);
    todo!("helper implements")
}
