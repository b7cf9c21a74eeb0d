//! Where provider keys come from: the environment first, then
//! `credentials.json` in the user's config directory. Never the repository.
//!
//! This module reads and writes that one file and nothing else; it does not
//! read the process environment itself. The CLI hands it a lookup function
//! ([`KeySource::from_lookup`]), so tests can use a map and the rule that
//! only the edges read the environment holds.
//!
//! The file is `{"<provider name>": "<key>"}`, mode `0600` in a `0700`
//! directory. A file others can read is refused rather than used: a key that
//! has leaked must be noticed, not quietly relied on.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{ProviderEntry, ProviderKind};
use super::{ProviderError, ProviderErrorKind, Secret};

/// The credentials file's name inside the user's config directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// Reads one environment variable (or stands in for the environment in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where a provider's key was found, or where wfe looked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    /// In this environment variable.
    Env(String),
    /// In this credentials file.
    File(PathBuf),
    /// Nowhere; these are the places wfe looked (`env VAR`, a file path).
    Missing {
        /// The places, in the order they are tried.
        looked_in: Vec<String>,
    },
    /// The provider works without a key (`cli`, `replay`, a local server).
    NotNeeded,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStatus::Env(var) => write!(f, "env {var}"),
            KeyStatus::File(path) => write!(f, "file {}", path.display()),
            KeyStatus::Missing { looked_in } => {
                write!(f, "missing (looked in {})", looked_in.join(", "))
            }
            KeyStatus::NotNeeded => f.write_str("not needed"),
        }
    }
}

/// Why a key could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No `WFE_CONFIG_DIR`, `XDG_CONFIG_HOME` or `HOME` to put the file in.
    #[error("cannot find the user's config directory: set WFE_CONFIG_DIR, XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    /// The credentials file can be read by other users.
    #[error(
        "{path} can be read by other users (mode {mode:04o}); wfe will not use keys from it: run `chmod 600 {path}`",
        path = path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The credentials file is not a JSON object of strings.
    #[error("{path} is not a JSON object of provider names to keys: {message}", path = path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (never the file's text).
        message: String,
    },
    /// Reading or writing failed.
    #[error("cannot {action} {path}: {source}", path = path.display())]
    Io {
        /// What wfe was doing (`read`, `write`, `create`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The credentials file is not a regular file or is too large.
    #[error(transparent)]
    Read(#[from] crate::bounded::ReadError),
}

impl From<KeyError> for ProviderError {
    fn from(e: KeyError) -> Self {
        ProviderError::new(ProviderErrorKind::Config, e.to_string())
    }
}

/// Looks keys up for providers: the environment, then the credentials file.
#[derive(Clone)]
pub struct KeySource {
    env: EnvLookup,
    dir: Option<PathBuf>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeySource {
    /// Keys from `env` and from `credentials.json` in `dir` (none: env only).
    pub fn new(env: EnvLookup, dir: Option<PathBuf>) -> KeySource {
        KeySource { env, dir }
    }

    /// Keys from `env`, with the config directory it implies
    /// (see [`config_dir`]).
    pub fn from_lookup(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> KeySource {
        let env: EnvLookup = Arc::new(env);
        let dir = config_dir(&*env);
        KeySource { env, dir }
    }

    /// No environment, no file: every key is missing. For tests and offline tools.
    pub fn none() -> KeySource {
        KeySource::new(Arc::new(|_| None), None)
    }

    /// The user's config directory, if one could be found.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The credentials file's path, if a config directory was found.
    pub fn credentials_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(CREDENTIALS_FILE))
    }

    /// The key of provider `name`, if there is one anywhere.
    pub fn key(&self, name: &str, entry: &ProviderEntry) -> Result<Option<Secret>, KeyError> {
        Ok(self.find(name, entry)?.0)
    }

    /// Where the key of provider `name` comes from, without exposing it.
    pub fn status(&self, name: &str, entry: &ProviderEntry) -> Result<KeyStatus, KeyError> {
        Ok(self.find(name, entry)?.1)
    }

    /// The key and where it was found.
    fn find(
        &self,
        name: &str,
        entry: &ProviderEntry,
    ) -> Result<(Option<Secret>, KeyStatus), KeyError> {
        if !uses_key(entry.kind) {
            return Ok((None, KeyStatus::NotNeeded));
        }
        let mut looked_in = Vec::new();
        if let Some(var) = key_env(entry) {
            // An empty variable counts as unset: `FOO= wfe …` is how people unset one.
            if let Some(key) = (self.env)(&var).filter(|k| !k.trim().is_empty()) {
                return Ok((Some(Secret::new(key.trim())), KeyStatus::Env(var)));
            }
            looked_in.push(format!("env {var}"));
        }
        if let Some(path) = self.credentials_path() {
            if let Some(key) = read_credentials(&path)?.remove(name) {
                return Ok((Some(Secret::new(key)), KeyStatus::File(path)));
            }
            looked_in.push(path.display().to_string());
        }
        if needs_key(entry) {
            Ok((None, KeyStatus::Missing { looked_in }))
        } else {
            Ok((None, KeyStatus::NotNeeded))
        }
    }

    /// Stores `key` for provider `name` in the credentials file (created
    /// `0600`, its directory `0700`), replacing the file atomically.
    /// Returns the file's path.
    pub fn set_key(&self, name: &str, key: &Secret) -> Result<PathBuf, KeyError> {
        let dir = self.dir.as_ref().ok_or(KeyError::NoConfigDir)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        let path = dir.join(CREDENTIALS_FILE);
        // Existing keys are kept. The mode is not checked here: the file is
        // rewritten 0600 below, which repairs an exposed one.
        let mut keys = match crate::bounded::read_to_string(&path, crate::bounded::SMALL_LIMIT) {
            Ok(text) => parse_credentials(&path, &text)?,
            Err(e) if e.is_not_found() => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        keys.insert(name.to_string(), key.expose().to_string());
        let mut text = serde_json::to_string_pretty(&keys).map_err(|e| KeyError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push('\n');
        write_private(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// The user's config directory: `$WFE_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/wfe`, else `$HOME/.config/wfe`.
pub fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |var: &str| env(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("WFE_CONFIG_DIR")
        .or_else(|| set("XDG_CONFIG_HOME").map(|d| d.join("wfe")))
        .or_else(|| set("HOME").map(|d| d.join(".config").join("wfe")))
}

/// The environment variable a provider's key is read from, if any.
pub fn key_env(entry: &ProviderEntry) -> Option<String> {
    entry
        .api_key_env
        .clone()
        .or_else(|| entry.kind.default_key_env().map(str::to_string))
}

/// Variables that commonly hold a provider key though wfe reads none of
/// them by default: kept out of phases all the same.
const KNOWN_KEY_VARS: &[&str] = &["GOOGLE_API_KEY"];

/// Every environment variable that holds a provider key: each kind's
/// default (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, `GEMINI_API_KEY`), the
/// well-known `GOOGLE_API_KEY`, and every `api_key_env` of `config`.
/// Sorted, each once.
pub fn provider_key_vars(config: &super::config::ProviderConfig) -> Vec<String> {
    let kinds = [
        ProviderKind::Anthropic,
        ProviderKind::Openai,
        ProviderKind::OpenaiCompatible,
        ProviderKind::Gemini,
        ProviderKind::Cli,
        ProviderKind::Replay,
    ];
    let mut vars: Vec<String> = kinds
        .iter()
        .filter_map(|k| k.default_key_env())
        .chain(KNOWN_KEY_VARS.iter().copied())
        .map(str::to_string)
        .chain(
            config
                .providers
                .values()
                .filter_map(|e| e.api_key_env.clone()),
        )
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

impl KeySource {
    /// Every key value there is, to be masked: the values of `vars` in the
    /// environment and every key in the credentials file (an unreadable
    /// file holds none that could leak here).
    pub fn all_values(&self, vars: &[String]) -> Vec<Secret> {
        let mut values: Vec<Secret> = vars
            .iter()
            .filter_map(|var| (self.env)(var))
            .filter(|v| !v.trim().is_empty())
            .map(Secret::new)
            .collect();
        if let Some(path) = self.credentials_path()
            && let Ok(keys) = read_credentials(&path)
        {
            values.extend(keys.into_values().map(Secret::new));
        }
        values
    }
}

/// True for kinds that send a key when they have one (the HTTP kinds).
fn uses_key(kind: ProviderKind) -> bool {
    !matches!(kind, ProviderKind::Cli | ProviderKind::Replay)
}

/// True when a provider cannot work without a key: the hosted APIs, and an
/// OpenAI-compatible server whose entry names a key variable (a local
/// server usually takes none).
pub fn needs_key(entry: &ProviderEntry) -> bool {
    entry.kind.default_key_env().is_some()
        || (entry.kind == ProviderKind::OpenaiCompatible && entry.api_key_env.is_some())
}

/// Reads the credentials file; a missing file holds no keys.
fn read_credentials(path: &Path) -> Result<BTreeMap<String, String>, KeyError> {
    let io = |action, source| KeyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let file = match crate::bounded::open(path, false) {
        Ok(file) => file,
        Err(e) if e.is_not_found() => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    // The mode of the file as opened, not of whatever the path names a moment later.
    let mode = file.metadata().map_err(|e| io("read", e))?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let bytes = crate::bounded::read_file(file, path, crate::bounded::SMALL_LIMIT)?;
    let text = String::from_utf8(bytes).map_err(|_| KeyError::Parse {
        path: path.to_path_buf(),
        message: "not UTF-8 text".into(),
    })?;
    parse_credentials(path, &text)
}

/// Parses the file's text; the error never quotes it (it holds keys).
fn parse_credentials(path: &Path, text: &str) -> Result<BTreeMap<String, String>, KeyError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        // Line and column only: serde's message can echo a piece of the input.
        message: format!("invalid at line {} column {}", e.line(), e.column()),
    })
}

/// Writes `bytes` to `path` through a `0600` temporary file and a rename, so
/// a reader sees the old file or the new one, never half of one, and the
/// key is never in a file others could read, not even for a moment.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_file_name(format!(".{CREDENTIALS_FILE}.{}.tmp", std::process::id()));
    let io = |action, p: &Path, source| KeyError::Io {
        action,
        path: p.to_path_buf(),
        source,
    };
    // A leftover from a crashed run of this pid would make `create_new` fail.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask can only remove bits; set them exactly anyway.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", &tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: ProviderKind) -> ProviderEntry {
        serde_json::from_value(serde_json::json!({ "kind": kind })).unwrap()
    }

    fn source(vars: &[(&str, &str)], dir: &Path) -> KeySource {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KeySource::new(
            Arc::new(move |k: &str| vars.get(k).cloned()),
            Some(dir.to_path_buf()),
        )
    }

    fn write_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(CREDENTIALS_FILE);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn key_variables_are_the_defaults_and_every_api_key_env() {
        let config: super::super::config::ProviderConfig = serde_json::from_value(serde_json::json!({
            "providers": {
                "local": { "kind": "openai-compatible", "base_url": "http://x", "api_key_env": "LOCAL_KEY" },
                "other": { "kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY" }
            }
        }))
        .unwrap();
        assert_eq!(
            provider_key_vars(&config),
            [
                "ANTHROPIC_API_KEY",
                "GEMINI_API_KEY",
                "GOOGLE_API_KEY",
                "LOCAL_KEY",
                "OPENAI_API_KEY"
            ]
        );
    }

    #[test]
    fn all_values_are_the_env_keys_and_the_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        write_file(
            dir.path(),
            r#"{"claude": "from-file", "gpt": "other-file"}"#,
            0o600,
        );
        let keys = source(
            &[("ANTHROPIC_API_KEY", "from-env"), ("OPENAI_API_KEY", " ")],
            dir.path(),
        );
        let vars = [
            "ANTHROPIC_API_KEY".to_string(),
            "OPENAI_API_KEY".to_string(),
        ];
        let values: Vec<String> = keys
            .all_values(&vars)
            .iter()
            .map(|s| s.expose().to_string())
            .collect();
        assert_eq!(values, ["from-env", "from-file", "other-file"]);
    }

    #[test]
    fn env_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), r#"{"claude": "from-file"}"#, 0o600);
        let anthropic = entry(ProviderKind::Anthropic);

        let keys = source(&[("ANTHROPIC_API_KEY", "from-env")], dir.path());
        assert_eq!(
            keys.key("claude", &anthropic).unwrap().unwrap().expose(),
            "from-env"
        );
        assert_eq!(
            keys.status("claude", &anthropic).unwrap(),
            KeyStatus::Env("ANTHROPIC_API_KEY".into())
        );

        let keys = source(&[("ANTHROPIC_API_KEY", "")], dir.path());
        assert_eq!(
            keys.key("claude", &anthropic).unwrap().unwrap().expose(),
            "from-file"
        );
        assert_eq!(
            keys.status("claude", &anthropic).unwrap(),
            KeyStatus::File(path.clone())
        );

        // The entry's own variable replaces the kind's default.
        let mut custom = anthropic.clone();
        custom.api_key_env = Some("MY_KEY".into());
        let keys = source(&[("MY_KEY", "mine")], dir.path());
        assert_eq!(
            keys.key("claude", &custom).unwrap().unwrap().expose(),
            "mine"
        );

        // The file is looked up by provider name.
        let keys = source(&[], dir.path());
        assert_eq!(
            keys.status("other", &anthropic).unwrap(),
            KeyStatus::Missing {
                looked_in: vec!["env ANTHROPIC_API_KEY".into(), path.display().to_string()]
            }
        );
    }

    #[test]
    fn kinds_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let keys = source(&[], dir.path());
        for kind in [
            ProviderKind::Cli,
            ProviderKind::Replay,
            ProviderKind::OpenaiCompatible,
        ] {
            assert_eq!(
                keys.status("x", &entry(kind)).unwrap(),
                KeyStatus::NotNeeded
            );
        }
        // A compatible server that names a variable wants its key.
        let mut local = entry(ProviderKind::OpenaiCompatible);
        local.api_key_env = Some("LOCAL_KEY".into());
        assert!(matches!(
            keys.status("x", &local).unwrap(),
            KeyStatus::Missing { .. }
        ));
        // One without a variable still uses a stored key.
        write_file(dir.path(), r#"{"x": "k"}"#, 0o600);
        let compatible = entry(ProviderKind::OpenaiCompatible);
        assert_eq!(keys.key("x", &compatible).unwrap().unwrap().expose(), "k");
    }

    #[test]
    fn a_readable_file_is_refused_with_the_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), r#"{"claude": "sk-secret-value"}"#, 0o644);
        let keys = source(&[], dir.path());
        let err = keys
            .key("claude", &entry(ProviderKind::Anthropic))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, KeyError::Exposed { mode: 0o644, .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("chmod 600 {}", path.display())),
            "{text}"
        );
        assert!(!text.contains("sk-secret-value"));
    }

    #[test]
    fn a_broken_file_never_echoes_its_text() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), r#"{"claude": sk-secret-value}"#, 0o600);
        let err = source(&[], dir.path())
            .key("claude", &entry(ProviderKind::Anthropic))
            .unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }));
        assert!(!err.to_string().contains("sk-secret"), "{err}");
    }

    #[test]
    fn set_key_writes_a_private_file_and_keeps_other_keys() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("config/wfe");
        let keys = source(&[], &dir);
        let path = keys.set_key("claude", &Secret::new("one")).unwrap();
        assert_eq!(path, dir.join(CREDENTIALS_FILE));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);

        keys.set_key("gpt", &Secret::new("two")).unwrap();
        keys.set_key("claude", &Secret::new("three")).unwrap();
        let stored: BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(stored["claude"], "three");
        assert_eq!(stored["gpt"], "two");
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn set_key_repairs_an_exposed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), r#"{"gpt": "old"}"#, 0o644);
        let keys = source(&[], dir.path());
        keys.set_key("claude", &Secret::new("new")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            keys.key("gpt", &entry(ProviderKind::Openai))
                .unwrap()
                .unwrap()
                .expose(),
            "old"
        );
    }

    #[test]
    fn config_dir_order() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let all = lookup(&[
            ("WFE_CONFIG_DIR", "/w"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(config_dir(&all), Some(PathBuf::from("/w")));
        let xdg = lookup(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(config_dir(&xdg), Some(PathBuf::from("/x/wfe")));
        let home = lookup(&[("XDG_CONFIG_HOME", ""), ("HOME", "/h")]);
        assert_eq!(config_dir(&home), Some(PathBuf::from("/h/.config/wfe")));
        assert_eq!(config_dir(&lookup(&[])), None);
    }
}
