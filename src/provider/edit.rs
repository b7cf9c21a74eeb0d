//! Editing the provider part of `.wfe/config.json`: adding and removing
//! providers, and seating a role. `wfe provider add|remove` and `wfe role
//! set` use it, and so can any other front end (the web view's provider
//! page): each edit is checked here, so every caller refuses the same
//! mistakes with the same words.
//!
//! Edits work on the file's JSON document, not on a typed config, so keys
//! this module knows nothing about (`auto`, `secrets`, a provider's
//! `retry`) are kept as they are. Nothing is written unless the edited
//! document's providers, roles and models are valid.

use std::path::Path;

use serde_json::{Map, Value};

use super::config::{ProviderConfig, ProviderKind};
use super::registry::{ConfigProblem, validate};

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// `kind` is not a provider kind wfe speaks.
    #[error("unknown provider kind `{kind}`; the kinds are: {}", ProviderKind::names().join(", "))]
    UnknownKind {
        /// The kind asked for.
        kind: String,
    },
    /// No provider has this name.
    #[error("provider `{name}` is not in {path} `providers`{}", known_names(.known))]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The file.
        path: String,
        /// The providers there are.
        known: Vec<String>,
    },
    /// A name that cannot be a key in config.
    #[error("`{name}` cannot name a {what}: use letters, digits, `-`, `_` and `.`")]
    BadName {
        /// The name.
        name: String,
        /// `provider` or `role`.
        what: &'static str,
    },
    /// The provider still plays roles.
    #[error("provider `{name}` still plays role{} {}: seat {} elsewhere first", if .roles.len() == 1 { "" } else { "s" }, quoted(.roles), if .roles.len() == 1 { "it" } else { "them" })]
    InUse {
        /// The provider.
        name: String,
        /// The roles it plays.
        roles: Vec<String>,
    },
    /// The file is not a JSON object, or its provider part is malformed.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The edited config would be invalid.
    #[error("the edit would leave {path} invalid: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem.
        problems: Vec<ConfigProblem>,
    },
    /// Reading or writing the file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn known_names(names: &[String]) -> String {
    if names.is_empty() {
        " (none configured)".into()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `wfe provider add` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProvider {
    /// The provider's name.
    pub name: String,
    /// Its kind as written in config (`anthropic`, `openai`, …).
    pub kind: String,
    /// `base_url`, if given.
    pub base_url: Option<String>,
    /// `api_key_env`, if given.
    pub key_env: Option<String>,
}

/// The config document of one file, edited in memory and written back.
#[derive(Debug, Clone)]
pub struct ConfigDoc {
    path: String,
    doc: Map<String, Value>,
}

impl ConfigDoc {
    /// `text` (the contents of the file at `path`, for messages) as a document.
    pub fn parse(path: &str, text: &str) -> Result<ConfigDoc, EditError> {
        let malformed = |message: String| EditError::Malformed {
            path: path.to_string(),
            message,
        };
        let doc = if text.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str(text) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => return Err(malformed("not a JSON object".into())),
                Err(e) => return Err(malformed(format!("not JSON: {e}"))),
            }
        };
        Ok(ConfigDoc {
            path: path.to_string(),
            doc,
        })
    }

    /// Reads the file at `path` (named `shown` in messages, e.g.
    /// `.wfe/config.json`); a missing file is an empty config.
    pub fn load(path: &Path, shown: &str) -> Result<ConfigDoc, EditError> {
        let shown = shown.to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(EditError::Io {
                    action: "read",
                    path: shown,
                    source,
                });
            }
        };
        ConfigDoc::parse(&shown, &text)
    }

    /// The document as the file will hold it: pretty JSON and a newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.doc).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }

    /// Writes the document to `path` (a temporary file renamed over it,
    /// so a reader never sees half a config).
    pub fn save(&self, path: &Path) -> Result<(), EditError> {
        let io = |source| EditError::Io {
            action: "write",
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, self.to_text()).map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)
    }

    /// The provider part as wfe reads it.
    pub fn provider_config(&self) -> Result<ProviderConfig, EditError> {
        let mut part = Map::new();
        for key in ["providers", "roles", "models"] {
            if let Some(value) = self.doc.get(key) {
                part.insert(key.to_string(), value.clone());
            }
        }
        serde_json::from_value(Value::Object(part)).map_err(|e| EditError::Malformed {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Adds provider `new.name`, or updates its kind, base URL and key
    /// variable when it exists (its other settings are kept). Returns true
    /// when it is new.
    pub fn add_provider(&mut self, new: &NewProvider) -> Result<bool, EditError> {
        check_name(&new.name, "provider")?;
        let kind = ProviderKind::parse(&new.kind).ok_or_else(|| EditError::UnknownKind {
            kind: new.kind.clone(),
        })?;
        let mut edited = self.clone();
        let providers = edited.section("providers")?;
        let created = !providers.contains_key(&new.name);
        let entry = providers
            .entry(new.name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(entry) = entry else {
            return Err(edited.malformed(format!("`providers.{}` is not an object", new.name)));
        };
        entry.insert("kind".into(), Value::String(kind.as_str().into()));
        for (key, value) in [("base_url", &new.base_url), ("api_key_env", &new.key_env)] {
            if let Some(value) = value {
                entry.insert(key.into(), Value::String(value.clone()));
            }
        }
        edited.check()?;
        *self = edited;
        Ok(created)
    }

    /// Removes provider `name`; refused while a role uses it (naming the
    /// roles) or when there is no such provider.
    pub fn remove_provider(&mut self, name: &str) -> Result<(), EditError> {
        let config = self.provider_config()?;
        if !config.providers.contains_key(name) {
            return Err(EditError::UnknownProvider {
                name: name.to_string(),
                path: self.path.clone(),
                known: config.providers.keys().cloned().collect(),
            });
        }
        let roles: Vec<String> = config
            .roles
            .iter()
            .filter(|(_, role)| role.provider == name)
            .map(|(role, _)| role.clone())
            .collect();
        if !roles.is_empty() {
            return Err(EditError::InUse {
                name: name.to_string(),
                roles,
            });
        }
        let mut edited = self.clone();
        edited.section("providers")?.remove(name);
        if edited.section("providers")?.is_empty() {
            edited.doc.remove("providers");
        }
        edited.check()?;
        *self = edited;
        Ok(())
    }

    /// Seats `role`: played by `provider` with `model` (its other settings,
    /// e.g. `max_tokens`, are kept). The provider must exist.
    pub fn set_role(&mut self, role: &str, provider: &str, model: &str) -> Result<(), EditError> {
        check_name(role, "role")?;
        let config = self.provider_config()?;
        if !config.providers.contains_key(provider) {
            return Err(EditError::UnknownProvider {
                name: provider.to_string(),
                path: self.path.clone(),
                known: config.providers.keys().cloned().collect(),
            });
        }
        let mut edited = self.clone();
        let roles = edited.section("roles")?;
        let entry = roles
            .entry(role.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(entry) = entry else {
            return Err(edited.malformed(format!("`roles.{role}` is not an object")));
        };
        entry.insert("provider".into(), Value::String(provider.into()));
        entry.insert("model".into(), Value::String(model.into()));
        edited.check()?;
        *self = edited;
        Ok(())
    }

    /// The object under `key`, made if absent.
    fn section(&mut self, key: &str) -> Result<&mut Map<String, Value>, EditError> {
        let path = self.path.clone();
        match self
            .doc
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(map) => Ok(map),
            _ => Err(EditError::Malformed {
                path,
                message: format!("`{key}` is not an object"),
            }),
        }
    }

    fn malformed(&self, message: String) -> EditError {
        EditError::Malformed {
            path: self.path.clone(),
            message,
        }
    }

    /// Refuses a document whose provider part wfe would refuse.
    fn check(&self) -> Result<(), EditError> {
        let problems = validate(&self.provider_config()?);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EditError::Invalid {
                path: self.path.clone(),
                problems,
            })
        }
    }
}

/// Names are object keys people type in commands: keep them plain.
fn check_name(name: &str, what: &'static str) -> Result<(), EditError> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(EditError::BadName {
            name: name.to_string(),
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(value: Value) -> ConfigDoc {
        ConfigDoc::parse(".wfe/config.json", &value.to_string()).unwrap()
    }

    fn value(doc: &ConfigDoc) -> Value {
        serde_json::from_str(&doc.to_text()).unwrap()
    }

    fn new(name: &str, kind: &str) -> NewProvider {
        NewProvider {
            name: name.into(),
            kind: kind.into(),
            ..NewProvider::default()
        }
    }

    #[test]
    fn adding_keeps_the_rest_of_the_file() {
        let mut d = doc(json!({
            "auto": false,
            "secrets": ["TOKEN"],
            "providers": {"claude": {"kind": "anthropic", "max_tokens": 100, "retry": {"max_attempts": 2}}}
        }));
        let created = d
            .add_provider(&NewProvider {
                base_url: Some("http://127.0.0.1:11434/v1".into()),
                ..new("local", "openai-compatible")
            })
            .unwrap();
        assert!(created);
        // Updating keeps the settings the command does not name.
        assert!(
            !d.add_provider(&NewProvider {
                key_env: Some("MY_KEY".into()),
                ..new("claude", "anthropic")
            })
            .unwrap()
        );
        assert_eq!(
            value(&d),
            json!({
                "auto": false,
                "secrets": ["TOKEN"],
                "providers": {
                    "claude": {"kind": "anthropic", "max_tokens": 100, "retry": {"max_attempts": 2},
                               "api_key_env": "MY_KEY"},
                    "local": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1"}
                }
            })
        );
    }

    #[test]
    fn bad_additions_change_nothing() {
        let mut d = doc(json!({"providers": {}}));
        let before = d.to_text();
        let err = d.add_provider(&new("x", "antropic")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown provider kind `antropic`; the kinds are: anthropic, openai, openai-compatible, gemini, cli, replay"
        );
        // openai-compatible needs a base URL: config validation says so.
        let err = d
            .add_provider(&new("local", "openai-compatible"))
            .unwrap_err();
        assert!(
            err.to_string().contains("providers.local.base_url"),
            "{err}"
        );
        let err = d.add_provider(&new("a b", "openai")).unwrap_err();
        assert!(matches!(err, EditError::BadName { .. }), "{err}");
        assert_eq!(d.to_text(), before);
    }

    #[test]
    fn removing_is_refused_while_a_role_uses_it() {
        let mut d = doc(json!({
            "providers": {"claude": {"kind": "anthropic"}, "gpt": {"kind": "openai"}},
            "roles": {"primary": {"provider": "claude", "model": "m"},
                      "reviewer": {"provider": "claude", "model": "m"}}
        }));
        let err = d.remove_provider("claude").unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider `claude` still plays roles `primary`, `reviewer`: seat them elsewhere first"
        );
        let err = d.remove_provider("nope").unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider `nope` is not in .wfe/config.json `providers` (known: claude, gpt)"
        );
        d.remove_provider("gpt").unwrap();
        assert_eq!(
            value(&d)["providers"],
            json!({"claude": {"kind": "anthropic"}})
        );
    }

    #[test]
    fn setting_a_role_needs_a_known_provider_and_keeps_its_settings() {
        let mut d = doc(json!({
            "providers": {"claude": {"kind": "anthropic"}},
            "roles": {"primary": {"provider": "claude", "model": "old", "max_tokens": 2000}}
        }));
        d.set_role("primary", "claude", "new").unwrap();
        d.set_role("reviewer", "claude", "small").unwrap();
        assert_eq!(
            value(&d)["roles"],
            json!({"primary": {"provider": "claude", "model": "new", "max_tokens": 2000},
                   "reviewer": {"provider": "claude", "model": "small"}})
        );
        let err = d.set_role("primary", "gpt", "m").unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider `gpt` is not in .wfe/config.json `providers` (known: claude)"
        );
    }

    #[test]
    fn a_file_that_is_not_an_object_is_refused() {
        let err = ConfigDoc::parse("c.json", "[1]").unwrap_err();
        assert_eq!(err.to_string(), "c.json: not a JSON object");
        let err = ConfigDoc::parse("c.json", "{").unwrap_err();
        assert!(err.to_string().starts_with("c.json: not JSON"), "{err}");
        assert!(ConfigDoc::parse("c.json", "").is_ok());
    }
}
