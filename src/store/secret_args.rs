//! Secret run arguments, kept beside the repository and never committed.
//!
//! An argument the template's args schema marks `"secret": true` (or whose
//! value holds a declared secret) is committed masked (`***`) in `run.json`;
//! the runner still needs the value to render `{{ args.NAME }}` and
//! `WFE_ARG_NAME`, also when `wfe resume` or `wfe retry` drives the run
//! later. So the values are written to `<git-dir>/wfe/secrets/<run>.json`
//! (mode 0600) when the run is created, beside the locks and the attempt
//! registry: machine-local files git never sees.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The secret args of one run: `<wfe-dir>/secrets/<run>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArgs {
    path: PathBuf,
}

impl SecretArgs {
    /// The secret args of `run` under `wfe_dir` (`<git-dir>/wfe`).
    pub fn new(wfe_dir: &Path, run: &str) -> SecretArgs {
        SecretArgs {
            path: wfe_dir.join("secrets").join(format!("{run}.json")),
        }
    }

    /// Where they are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `args` readable by the owner only (a temporary file renamed
    /// into place, so a reader never sees half of it).
    pub fn write(&self, args: &Map<String, Value>) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(args).map_err(io::Error::other)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &self.path)
    }

    /// The args written for the run; `None` when there are none here (a
    /// run without secret args, or one started in another clone).
    pub fn read(&self) -> io::Result<Option<Map<String, Value>>> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;
    use tempfile::TempDir;

    use super::*;

    #[test]
    fn written_for_the_owner_only_and_read_back() {
        let dir = TempDir::new().unwrap();
        let secrets = SecretArgs::new(dir.path(), "run-1");
        assert_eq!(secrets.read().unwrap(), None);
        let Value::Object(args) = json!({"token": "tok-123456789"}) else {
            unreachable!()
        };
        secrets.write(&args).unwrap();
        assert_eq!(secrets.read().unwrap(), Some(args));
        let mode = fs::metadata(secrets.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SecretArgs::new(dir.path(), "run-2").read().unwrap(), None);
    }
}
