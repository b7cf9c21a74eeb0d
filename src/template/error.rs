//! Template errors: every problem, each with its JSON path.

use std::fmt;

/// One problem in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document, e.g. `phases[2].needs[0]` (`""` for the whole document).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A template that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// The template file (or `built-in:NAME`).
    pub file: String,
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "template {} is invalid ({n} problem{})",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            if p.path.is_empty() {
                write!(f, "\n  {}: {}", self.file, p.message)?;
            } else {
                write!(f, "\n  {}: {}: {}", self.file, p.path, p.message)?;
            }
        }
        Ok(())
    }
}
