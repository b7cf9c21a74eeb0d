//! Checkpoint commit messages: a summary line, then `Wfe-*` trailers.
//!
//! Trailers let `wfe list` and `wfe log` describe runs from commit objects
//! alone, without opening a single tree.

/// A checkpoint's commit message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The one-line summary, e.g. `wfe: build completed (attempt 1)`.
    pub summary: String,
    /// `(key, value)` trailers in order, e.g. `("Wfe-Run", "01jf…")`.
    pub trailers: Vec<(String, String)>,
}

impl Message {
    /// A message with a summary and no trailers.
    pub fn new(summary: impl Into<String>) -> Self {
        Message {
            summary: summary.into(),
            trailers: Vec::new(),
        }
    }

    /// Adds a trailer.
    pub fn trailer(mut self, key: &str, value: impl Into<String>) -> Self {
        self.trailers.push((key.to_string(), value.into()));
        self
    }

    /// The first value of trailer `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The full commit message text.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.summary.replace('\n', " "));
        if !self.trailers.is_empty() {
            out.push('\n');
            for (k, v) in &self.trailers {
                out.push_str(&format!("{k}: {}\n", v.replace('\n', " ")));
            }
        }
        out
    }

    /// Parses a commit message: the first line, and `Key: value` lines of the last paragraph.
    pub fn parse(text: &str) -> Self {
        let text = text.trim_end();
        let summary = text.lines().next().unwrap_or("").to_string();
        let mut trailers = Vec::new();
        if let Some((_, last)) = text.rsplit_once("\n\n") {
            for line in last.lines() {
                if let Some((k, v)) = line.split_once(": ")
                    && !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    trailers.push((k.to_string(), v.to_string()));
                }
            }
        }
        Message { summary, trailers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_trailers() {
        let m = Message::new("wfe: build completed (attempt 1)")
            .trailer("Wfe-Run", "01jf")
            .trailer("Wfe-Phase", "build")
            .trailer("Wfe-Event", "phase-completed");
        let text = m.render();
        assert_eq!(
            text,
            "wfe: build completed (attempt 1)\n\nWfe-Run: 01jf\nWfe-Phase: build\nWfe-Event: phase-completed\n"
        );
        assert_eq!(Message::parse(&text), m);
        assert_eq!(Message::parse(&text).get("wfe-phase"), Some("build"));
    }

    #[test]
    fn a_message_without_trailers_has_none() {
        let m = Message::parse("just a summary\n");
        assert_eq!(m.summary, "just a summary");
        assert!(m.trailers.is_empty());
    }
}
