//! Finding templates by name: the repo's `.wfe/templates/`, the built-ins,
//! or a path.
//!
//! A name resolves to `.wfe/templates/NAME.json` (then `.yaml`, `.yml`),
//! then to the built-in of that name, so a repo can shadow a built-in. A
//! name with a `/` or a template extension is a path, relative to the
//! repository root (never to the process's current directory, which the
//! library does not look at), or absolute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Problem, Template, TemplateError, parse_template, validate};
use crate::artifact::Registry;
use crate::bounded;

/// Built-in templates compiled into the binary: (name, JSON text), by name.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("bugfix", include_str!("../../templates/bugfix.json")),
    ("ci", include_str!("../../templates/ci.json")),
    (
        "compound-dev",
        include_str!("../../templates/compound-dev.json"),
    ),
    ("feature", include_str!("../../templates/feature.json")),
    ("hello", include_str!("../../templates/hello.json")),
    ("review", include_str!("../../templates/review.json")),
];

/// The extensions a template file may have, in the order they are tried.
const EXTENSIONS: &[&str] = &["json", "yaml", "yml"];

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// `.wfe/templates/NAME.json` (or `.yaml`).
    Repo(PathBuf),
    /// Compiled into wfe.
    Builtin(String),
    /// A file named by path.
    Path(PathBuf),
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateSource::Repo(p) | TemplateSource::Path(p) => write!(f, "{}", p.display()),
            TemplateSource::Builtin(name) => write!(f, "built-in:{name}"),
        }
    }
}

impl TemplateSource {
    /// How a run records where its template came from (`template_source`
    /// in run.json, which travels to every clone): a path relative to the
    /// repository's root `root`, `built-in:NAME`, or for a file outside
    /// the repository just its file name. Never an absolute local path.
    pub fn recorded(&self, root: &Path) -> String {
        match self {
            TemplateSource::Builtin(_) => self.to_string(),
            TemplateSource::Repo(path) | TemplateSource::Path(path) => {
                let relative: Option<PathBuf> = path
                    .strip_prefix(root)
                    .ok()
                    .map(Path::to_path_buf)
                    .or_else(|| {
                        // `root` may be reached through a symlink (macOS /tmp).
                        let canon_root = root.canonicalize().ok()?;
                        let canon = path.canonicalize().ok()?;
                        canon.strip_prefix(&canon_root).ok().map(Path::to_path_buf)
                    });
                match relative {
                    Some(rel) => rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                    None => path
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                }
            }
        }
    }
}

/// The templates of one repository.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: PathBuf,
}

impl Catalog {
    /// The catalog of the repository whose work tree is `root`.
    pub fn new(root: &Path) -> Self {
        Catalog {
            root: root.to_path_buf(),
        }
    }

    /// Every template name with where it comes from; repo templates shadow built-ins.
    ///
    /// Sorted by name. An unreadable `.wfe/templates/` lists the built-ins
    /// only; the files themselves are not read (see [`Catalog::load`]).
    pub fn list(&self) -> Vec<(String, TemplateSource)> {
        let mut found: BTreeMap<String, TemplateSource> = BUILTIN_TEMPLATES
            .iter()
            .map(|(name, _)| (name.to_string(), TemplateSource::Builtin(name.to_string())))
            .collect();
        let mut repo: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
        let entries = std::fs::read_dir(self.templates_dir())
            .into_iter()
            .flatten()
            .flatten();
        for entry in entries {
            let path = entry.path();
            let (Some(stem), Some(rank)) = (
                path.file_stem().and_then(|s| s.to_str()),
                extension_rank(&path),
            ) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            // `x.json` beats `x.yaml`, as in `load`.
            if repo.get(stem).is_none_or(|(best, _)| rank < *best) {
                repo.insert(stem.to_string(), (rank, path.clone()));
            }
        }
        for (name, (_, path)) in repo {
            found.insert(name, TemplateSource::Repo(path));
        }
        found.into_iter().collect()
    }

    /// Loads and fully validates a template by name or path.
    pub fn load(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<(Template, TemplateSource), TemplateError> {
        if is_path(name) {
            let given = Path::new(name);
            let path = if given.is_absolute() {
                given.to_path_buf()
            } else {
                self.root.join(given)
            };
            let template = self.load_file(&path, name)?;
            validate(&template, name, registry)?;
            return Ok((template, TemplateSource::Path(path)));
        }

        let dir = self.templates_dir();
        for ext in EXTENSIONS {
            let path = dir.join(format!("{name}.{ext}"));
            // Anything at the path counts (a FIFO, a link to a device): the
            // bounded read says what is wrong with it rather than skipping it.
            if std::fs::symlink_metadata(&path).is_ok() {
                let file = format!(".wfe/templates/{name}.{ext}");
                let template = self.load_file(&path, &file)?;
                let mut problems = match validate(&template, &file, registry) {
                    Ok(()) => Vec::new(),
                    Err(e) => e.problems,
                };
                // `wfe run foo` running a template that calls itself `bar`
                // would confuse every listing and run record.
                if template.name != name {
                    let message = format!(
                        "the template in {file} must be named `{name}` after its file, found `{}`",
                        template.name
                    );
                    problems.insert(
                        0,
                        Problem {
                            path: "name".into(),
                            message,
                        },
                    );
                }
                if !problems.is_empty() {
                    return Err(TemplateError { file, problems });
                }
                return Ok((template, TemplateSource::Repo(path)));
            }
        }

        if let Some((_, text)) = BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == name) {
            let file = format!("built-in:{name}");
            let template = parse_template(text, &file, false)?;
            validate(&template, &file, registry)?;
            return Ok((template, TemplateSource::Builtin(name.to_string())));
        }

        let available: Vec<String> = self.list().into_iter().map(|(n, _)| n).collect();
        let mut message = format!(
            "no template named `{name}`; available: {}",
            available.join(", ")
        );
        if let Some(suggestion) = super::load::closest(name, &available) {
            message.push_str(&format!("; did you mean `{suggestion}`?"));
        }
        Err(TemplateError {
            file: name.to_string(),
            problems: vec![Problem {
                path: String::new(),
                message,
            }],
        })
    }

    fn templates_dir(&self) -> PathBuf {
        self.root.join(".wfe").join("templates")
    }

    /// Reads and parses one template file; `file` names it in errors.
    fn load_file(&self, path: &Path, file: &str) -> Result<Template, TemplateError> {
        // Bounded: a template symlinked to /dev/zero must not eat memory.
        let text =
            bounded::read_to_string(path, bounded::TEXT_LIMIT).map_err(|e| TemplateError {
                file: file.to_string(),
                problems: vec![Problem {
                    path: String::new(),
                    message: e.to_string(),
                }],
            })?;
        let yaml = matches!(extension_rank(path), Some(1 | 2));
        parse_template(&text, file, yaml)
    }
}

/// True when `name` names a file rather than a template.
fn is_path(name: &str) -> bool {
    name.contains('/')
        || name.contains(std::path::MAIN_SEPARATOR)
        || extension_rank(Path::new(name)).is_some()
}

/// The position of `path`'s extension in [`EXTENSIONS`], if it has one of them.
fn extension_rank(path: &Path) -> Option<usize> {
    let ext = path.extension()?.to_str()?;
    EXTENSIONS.iter().position(|e| *e == ext)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn manifest_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    const GOOD: &str =
        r#"{"name": "NAME", "phases": [{"id": "a", "kind": "script", "run": "true"}]}"#;

    fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn every_builtin_template_loads_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        let registry = Registry::new(dir.path());
        for (name, _) in BUILTIN_TEMPLATES {
            let (template, source) = catalog
                .load(name, &registry)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(template.name, *name);
            assert_eq!(source, TemplateSource::Builtin(name.to_string()));
        }
    }

    #[test]
    fn every_file_in_templates_is_built_in_and_valid() {
        let root = manifest_dir();
        let catalog = Catalog::new(&root);
        let registry = Registry::new(&root);
        let mut seen = 0;
        for entry in fs::read_dir(root.join("templates")).unwrap() {
            let path = entry.unwrap().path();
            let relative = format!("templates/{}", path.file_name().unwrap().to_str().unwrap());
            let (template, _) = catalog
                .load(&relative, &registry)
                .unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert_eq!(template.name, stem, "{relative}");
            assert!(
                BUILTIN_TEMPLATES.iter().any(|(n, _)| *n == stem),
                "{relative} is not in BUILTIN_TEMPLATES"
            );
            seen += 1;
        }
        assert_eq!(seen, BUILTIN_TEMPLATES.len());
    }

    /// Each `tests/data/invalid-templates/<case>.<ext>` must fail to load
    /// with every line of `<case>.expected` in the error's text.
    #[test]
    fn every_invalid_sample_fails_as_expected() {
        let root = manifest_dir();
        let catalog = Catalog::new(&root);
        let registry = Registry::new(&root);
        let dir = root.join("tests/data/invalid-templates");
        let mut cases = 0;
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.extension().and_then(|e| e.to_str()) == Some("expected") {
                continue;
            }
            let expected_path = path.with_extension("expected");
            let expected = fs::read_to_string(&expected_path).unwrap_or_else(|e| {
                panic!("{} needs {}: {e}", path.display(), expected_path.display())
            });
            let relative = path.strip_prefix(&root).unwrap().to_str().unwrap();
            let err = match catalog.load(relative, &registry) {
                Ok(_) => panic!("{relative} loaded, but it is in invalid-templates"),
                Err(e) => e.to_string(),
            };
            for fragment in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
                assert!(
                    err.contains(fragment),
                    "{relative}: `{fragment}` is not in:\n{err}"
                );
            }
            cases += 1;
        }
        assert!(cases >= 10, "only {cases} invalid samples");
    }

    #[test]
    fn repo_templates_shadow_builtins_and_list_sorted() {
        let repo = repo_with(&[
            (".wfe/templates/hello.json", &GOOD.replace("NAME", "hello")),
            (
                ".wfe/templates/zeta.yaml",
                "name: zeta\nphases: [{id: a, kind: gate}]\n",
            ),
            (
                ".wfe/templates/alpha.yml",
                "name: alpha\nphases: [{id: a, kind: gate}]\n",
            ),
            (".wfe/templates/alpha.json", &GOOD.replace("NAME", "alpha")),
            (".wfe/templates/notes.txt", "not a template"),
        ]);
        let catalog = Catalog::new(repo.path());
        let listed = catalog.list();
        let dir = repo.path().join(".wfe/templates");
        let builtin = |name: &str| (name.to_string(), TemplateSource::Builtin(name.into()));
        assert_eq!(
            listed,
            vec![
                (
                    "alpha".to_string(),
                    TemplateSource::Repo(dir.join("alpha.json"))
                ),
                builtin("bugfix"),
                builtin("ci"),
                builtin("compound-dev"),
                builtin("feature"),
                (
                    "hello".to_string(),
                    TemplateSource::Repo(dir.join("hello.json"))
                ),
                builtin("review"),
                (
                    "zeta".to_string(),
                    TemplateSource::Repo(dir.join("zeta.yaml"))
                ),
            ]
        );
        let registry = Registry::new(repo.path());
        let (template, source) = catalog.load("hello", &registry).unwrap();
        assert_eq!(template.phases.len(), 1);
        assert_eq!(source, TemplateSource::Repo(dir.join("hello.json")));
        let (template, _) = catalog.load("zeta", &registry).unwrap();
        assert_eq!(template.name, "zeta");
    }

    #[test]
    fn without_a_repo_dir_the_builtins_are_listed() {
        let repo = tempfile::tempdir().unwrap();
        let names: Vec<String> = Catalog::new(repo.path())
            .list()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let builtins: Vec<String> = BUILTIN_TEMPLATES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(names, builtins);
    }

    #[test]
    fn paths_are_relative_to_the_repo_root_or_absolute() {
        let repo = repo_with(&[
            ("flows/x.json", &GOOD.replace("NAME", "x")),
            ("y.yaml", "name: y\nphases: [{id: a, kind: gate}]\n"),
        ]);
        let catalog = Catalog::new(repo.path());
        let registry = Registry::new(repo.path());
        let (t, source) = catalog.load("flows/x.json", &registry).unwrap();
        assert_eq!(t.name, "x");
        assert_eq!(
            source,
            TemplateSource::Path(repo.path().join("flows/x.json"))
        );
        let (t, _) = catalog.load("y.yaml", &registry).unwrap();
        assert_eq!(t.name, "y");
        let absolute = repo.path().join("flows/x.json");
        let (t, _) = catalog.load(absolute.to_str().unwrap(), &registry).unwrap();
        assert_eq!(t.name, "x");
    }

    #[test]
    fn recorded_sources_never_hold_an_absolute_local_path() {
        let root = Path::new("/home/someone/project");
        let cases = [
            (
                TemplateSource::Repo(root.join(".wfe/templates/hello.json")),
                ".wfe/templates/hello.json",
            ),
            (
                TemplateSource::Path(root.join("flows/x.json")),
                "flows/x.json",
            ),
            (
                TemplateSource::Path(PathBuf::from("/elsewhere/shared/y.yaml")),
                "y.yaml",
            ),
            (
                TemplateSource::Builtin("feature".into()),
                "built-in:feature",
            ),
        ];
        for (source, want) in cases {
            assert_eq!(source.recorded(root), want, "{source:?}");
        }
    }

    #[test]
    fn failures_name_the_file_and_say_why() {
        let repo = repo_with(&[
            (
                ".wfe/templates/misnamed.json",
                &GOOD.replace("NAME", "other"),
            ),
            (".wfe/templates/broken.json", "{"),
        ]);
        let catalog = Catalog::new(repo.path());
        let registry = Registry::new(repo.path());
        let cases = [
            (
                "helo",
                "template helo is invalid (1 problem)\n  helo: no template named `helo`; available: broken, bugfix, ci, compound-dev, feature, hello, misnamed, review; did you mean `hello`?",
            ),
            ("missing.json", "missing.json does not exist"),
            (
                "misnamed",
                ".wfe/templates/misnamed.json: name: the template in .wfe/templates/misnamed.json must be named `misnamed` after its file, found `other`",
            ),
            (
                "broken",
                ".wfe/templates/broken.json: not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
        ];
        for (name, fragment) in cases {
            let err = catalog.load(name, &registry).unwrap_err().to_string();
            assert!(err.contains(fragment), "{name}: {err}");
        }
    }
}
