//! Checkpoint commit messages: a summary line, then `Wfe-*` trailers.
//!
//! Trailers let `wfe list` and `wfe log` describe runs from commit objects
//! alone, without opening a single tree. This is the raw text form; the
//! engine's `CheckpointMessage` gives the trailers their types, and
//! [`Trailer`] is the one place their keys are spelled.

use std::borrow::Cow;

/// A `Wfe-*` trailer key. Keys are case-insensitive when read, as git's are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    /// `Wfe-Run`: the run's id (also on commits an agent makes with its `git` tool).
    Run,
    /// `Wfe-Template`: the template's name.
    Template,
    /// `Wfe-Phase`: the phase the next `Wfe-Event` is about (also on agents' commits).
    Phase,
    /// `Wfe-Event`: what happened.
    Event,
    /// `Wfe-Provider`: a provider chosen for a retry.
    Provider,
    /// `Wfe-Model`: a model chosen for a retry.
    Model,
    /// `Wfe-Forced`: an operation that overrode a validation.
    Forced,
    /// `Wfe-Requested-By`: who asked for the change.
    RequestedBy,
    /// `Wfe-Failed`: a phase that failed or timed out in a run that still
    /// completed (`on_failure: continue`), one trailer per phase, so
    /// `wfe list` can say so without opening the tree.
    Failed,
    /// `Wfe-Status`: the run's status after the checkpoint; always last.
    Status,
}

impl Trailer {
    /// The key as written in commit messages.
    pub fn key(self) -> &'static str {
        match self {
            Trailer::Run => "Wfe-Run",
            Trailer::Template => "Wfe-Template",
            Trailer::Phase => "Wfe-Phase",
            Trailer::Event => "Wfe-Event",
            Trailer::Provider => "Wfe-Provider",
            Trailer::Model => "Wfe-Model",
            Trailer::Forced => "Wfe-Forced",
            Trailer::RequestedBy => "Wfe-Requested-By",
            Trailer::Failed => "Wfe-Failed",
            Trailer::Status => "Wfe-Status",
        }
    }

    /// Whether `key` names this trailer.
    pub fn is(self, key: &str) -> bool {
        key.eq_ignore_ascii_case(self.key())
    }

    /// `key` as a message holds it: a known key (as wfe spells it) is not
    /// copied; reading 10,000 runs' tips made 60,000 copies of ten words.
    pub fn intern(key: &str) -> Cow<'static, str> {
        const ALL: [Trailer; 10] = [
            Trailer::Run,
            Trailer::Template,
            Trailer::Phase,
            Trailer::Event,
            Trailer::Provider,
            Trailer::Model,
            Trailer::Forced,
            Trailer::RequestedBy,
            Trailer::Failed,
            Trailer::Status,
        ];
        match ALL.iter().find(|t| t.key() == key) {
            Some(t) => Cow::Borrowed(t.key()),
            None => Cow::Owned(key.to_string()),
        }
    }

    /// `Key: value`, as `git commit --trailer` takes it.
    pub fn line(self, value: &str) -> String {
        format!("{}: {}", self.key(), value.replace('\n', " "))
    }
}

/// A checkpoint's commit message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The one-line summary, e.g. `wfe: build completed (attempt 1)`.
    pub summary: String,
    /// `(key, value)` trailers in order, e.g. `("Wfe-Run", "01jf…")`.
    pub trailers: Vec<(Cow<'static, str>, String)>,
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
    pub fn trailer(mut self, key: Trailer, value: impl Into<String>) -> Self {
        self.trailers.push((Cow::Borrowed(key.key()), value.into()));
        self
    }

    /// Every value of trailer `key`, in order.
    pub fn all(&self, key: Trailer) -> impl Iterator<Item = &str> {
        self.trailers
            .iter()
            .filter(move |(k, _)| key.is(k))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of trailer `key`.
    pub fn get(&self, key: Trailer) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| key.is(k))
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
                    trailers.push((Trailer::intern(k), v.to_string()));
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
            .trailer(Trailer::Run, "01jf")
            .trailer(Trailer::Phase, "build")
            .trailer(Trailer::Event, "phase-completed");
        let text = m.render();
        assert_eq!(
            text,
            "wfe: build completed (attempt 1)\n\nWfe-Run: 01jf\nWfe-Phase: build\nWfe-Event: phase-completed\n"
        );
        assert_eq!(Message::parse(&text), m);
        assert_eq!(Message::parse(&text).get(Trailer::Phase), Some("build"));
        let lower = Message::parse("s\n\nwfe-phase: build\n");
        assert_eq!(lower.get(Trailer::Phase), Some("build"));
    }

    #[test]
    fn a_message_without_trailers_has_none() {
        let m = Message::parse("just a summary\n");
        assert_eq!(m.summary, "just a summary");
        assert!(m.trailers.is_empty());
    }
}
