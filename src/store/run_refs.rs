//! The runs' refs read straight from the files git keeps them in: the
//! loose refs under `refs/wfe/runs/` and the `packed-refs` file.
//!
//! Listing 10,000 refs through gix's overlay iterator validates every name
//! and converts every entry (most of `wfe list`, `latest` and `wfe search`
//! at 10,000 runs); the run refs have one shape (`refs/wfe/runs/<id>` to a
//! lowercase hex commit id), so a plain scan of the two sources gives the
//! same answer in one pass. Anything this reader does not fully understand
//! (an unexpected line in `packed-refs`, a loose ref that is neither a hex
//! id nor `ref: …`, an unreadable directory) makes it give up, and the
//! caller asks gix instead: it is a shortcut, never a second opinion.
//!
//! The loose refs are read before `packed-refs`, as git does: a concurrent
//! `git pack-refs` writes `packed-refs` before it deletes the loose files,
//! so a ref is seen in one of the two whatever the interleaving.

use std::path::Path;

use super::{CheckpointId, RunId, RunRef, StoreError};

/// The prefix of every run's ref.
const PREFIX: &str = "refs/wfe/runs/";

/// What one ref holds, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Object(String),
    Symbolic(String),
}

/// Every run ref of the repository whose common git dir is `common_dir`,
/// in no particular order; `None` when the files hold something this
/// reader leaves to gix.
pub(super) fn read(common_dir: &Path) -> Option<Vec<RunRef>> {
    let mut loose = loose(&common_dir.join("refs/wfe/runs"))?;
    let mut packed = Vec::new();
    match std::fs::read(common_dir.join("packed-refs")) {
        Ok(bytes) => for_each_packed(&bytes, |hex, rest| {
            if let Some(run) = exact_run(rest) {
                packed.push((run, Target::Object(hex.to_string())));
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    // Two sorted lists merged, a loose ref winning over its packed copy:
    // git keeps `packed-refs` sorted, so this is one pass (a map of 10,000
    // entries was a fifth of `wfe list`).
    packed.sort_by(|a, b| a.0.cmp(&b.0));
    loose.sort_by(|a, b| a.0.cmp(&b.0));
    let mut refs = Vec::with_capacity(packed.len() + loose.len());
    let mut packed = packed.into_iter().peekable();
    for (run, target) in loose {
        while let Some(first) = packed.next_if(|(p, _)| *p <= run) {
            if first.0 != run {
                refs.push(first);
            }
        }
        refs.push((run, target));
    }
    refs.extend(packed);
    Some(
        refs.into_iter()
            .map(|(run, target)| RunRef {
                tip: resolve(&run, target),
                run,
            })
            .collect(),
    )
}

/// The run ref with the highest id (the newest run: ids sort by time),
/// without building the list [`read`] builds; `Some(None)` when there is
/// no run, `None` when the files hold something this reader leaves to
/// gix.
pub(super) fn highest(common_dir: &Path) -> Option<Option<RunRef>> {
    let loose = loose(&common_dir.join("refs/wfe/runs"))?;
    let mut best: Option<(RunId, Target)> = None;
    match std::fs::read(common_dir.join("packed-refs")) {
        Ok(bytes) => for_each_packed(&bytes, |hex, rest| {
            // Only a name above the best so far is parsed at all.
            if best.as_ref().is_some_and(|(run, _)| rest <= run.as_str()) {
                return;
            }
            if let Some(run) = exact_run(rest) {
                best = Some((run, Target::Object(hex.to_string())));
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    // A loose ref wins over its packed copy (same id: `>=`).
    for (run, target) in loose {
        if best.as_ref().is_none_or(|(b, _)| run >= *b) {
            best = Some((run, target));
        }
    }
    Some(best.map(|(run, target)| RunRef {
        tip: resolve(&run, target),
        run,
    }))
}

/// A ref's target as a checkpoint, or why it cannot be one.
fn resolve(run: &RunId, target: Target) -> Result<CheckpointId, StoreError> {
    match target {
        Target::Object(hex) => Ok(CheckpointId(hex)),
        Target::Symbolic(other) => Err(StoreError::Git {
            message: format!(
                "{PREFIX}{run} is a symbolic ref to {other}; wfe writes only direct refs there"
            ),
        }),
    }
}

/// The loose run refs in `dir`; none when it does not exist.
fn loose(dir: &Path) -> Option<Vec<(RunId, Target)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(_) => return None,
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.ok()?;
        let name = entry.file_name();
        // Lock files, temporary files and directories name no run.
        let Some(run) = name.to_str().and_then(exact_run) else {
            continue;
        };
        let bytes = match std::fs::read(entry.path()) {
            Ok(bytes) => bytes,
            // Deleted since the directory was read, or a directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        let text = std::str::from_utf8(&bytes).ok()?.trim_end();
        let target = match text.strip_prefix("ref: ") {
            Some(other) => Target::Symbolic(other.to_string()),
            None if is_hex_id(text) => Target::Object(text.to_string()),
            None => return None,
        };
        out.push((run, target));
    }
    Some(out)
}

/// Calls `f` with the target and the name after [`PREFIX`] of every run
/// ref line of `packed-refs`; `None` when a line is not what git writes.
fn for_each_packed(bytes: &[u8], mut f: impl FnMut(&str, &str)) -> Option<()> {
    let text = std::str::from_utf8(bytes).ok()?;
    for line in text.lines() {
        // The header, and the peeled targets of annotated tags.
        if line.starts_with('#') || line.starts_with('^') || line.is_empty() {
            continue;
        }
        let (hex, name) = line.split_once(' ')?;
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !is_hex_id(hex) {
            return None;
        }
        f(hex, rest);
    }
    Some(())
}

/// A run id spelled exactly as wfe writes it (no other spelling of it).
fn exact_run(name: &str) -> Option<RunId> {
    RunId::parse_exact(name)
}

/// 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn is_hex_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "01jf3k00000000000000000001";
    const B: &str = "01jf3k00000000000000000002";

    fn hex(n: u8) -> String {
        format!("{n:040x}")
    }

    fn tips(refs: Vec<RunRef>) -> Vec<(String, Result<String, String>)> {
        refs.into_iter()
            .map(|r| {
                (
                    r.run.to_string(),
                    r.tip.map(|t| t.0).map_err(|e| e.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn packed_and_loose_refs_interleave_in_order() {
        let dir = tempfile::tempdir().expect("a dir");
        let runs = dir.path().join("refs/wfe/runs");
        std::fs::create_dir_all(&runs).expect("dirs");
        let id = |n: u8| format!("01jf3k0000000000000000000{n}");
        // Out of order on purpose: the reader must not trust the file's order.
        std::fs::write(
            dir.path().join("packed-refs"),
            format!(
                "{} {PREFIX}{}\n{} {PREFIX}{}\n{} {PREFIX}{}\n",
                hex(5),
                id(5),
                hex(1),
                id(1),
                hex(3),
                id(3)
            ),
        )
        .expect("packed-refs");
        for n in [2, 3, 6] {
            std::fs::write(runs.join(id(n)), format!("{}\n", hex(n + 10))).expect("loose");
        }
        let got = tips(read(dir.path()).expect("understood"));
        let want: Vec<_> = [(1, 1), (2, 12), (3, 13), (5, 5), (6, 16)]
            .into_iter()
            .map(|(n, h)| (id(n), Ok(hex(h))))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_exact_run_is_what_parse_accepts_spelled_as_wfe_spells_it() {
        let generated = RunId::generate();
        let mut names = vec![
            A.to_string(),
            generated.to_string(),
            generated.to_string().to_uppercase(),
            "01jf3k0000000000000000000".into(),
            "01jf3k000000000000000000001".into(),
            "zzzzzzzzzzzzzzzzzzzzzzzzzz".into(),
            String::new(),
        ];
        // Every ASCII byte in one position: the alphabet and nothing else.
        for b in 0u8..128 {
            let mut name = A.as_bytes().to_vec();
            name[7] = b;
            names.extend(String::from_utf8(name).ok());
        }
        names.push("01jf3k0é000000000000000001".into());
        for name in &names {
            let old = RunId::parse(name).filter(|run| run.as_str() == name);
            assert_eq!(exact_run(name), old, "{name:?}");
        }
    }

    #[test]
    fn loose_refs_win_over_packed_ones_and_other_refs_are_ignored() {
        let dir = tempfile::tempdir().expect("a dir");
        let runs = dir.path().join("refs/wfe/runs");
        std::fs::create_dir_all(runs.join("nested")).expect("dirs");
        std::fs::write(
            dir.path().join("packed-refs"),
            format!(
                "# pack-refs with: peeled fully-peeled sorted\n{} refs/heads/main\n{} refs/tags/v1\n^{}\n{} {PREFIX}{A}\n{} {PREFIX}{B}\n{} {PREFIX}NOTANID\n",
                hex(1),
                hex(2),
                hex(3),
                hex(4),
                hex(5),
                hex(6)
            ),
        )
        .expect("packed-refs");
        std::fs::write(runs.join(B), format!("{}\n", hex(9))).expect("loose");
        std::fs::write(runs.join(format!("{A}.lock")), "garbage").expect("lock");
        let got = tips(read(dir.path()).expect("understood"));
        assert_eq!(
            got,
            [(A.to_string(), Ok(hex(4))), (B.to_string(), Ok(hex(9)))]
        );
    }

    #[test]
    fn the_highest_id_is_found_in_either_file_and_a_loose_copy_wins() {
        const C: &str = "01jf3k00000000000000000003";
        let dir = tempfile::tempdir().expect("a dir");
        let runs = dir.path().join("refs/wfe/runs");
        assert!(highest(dir.path()).expect("understood").is_none(), "no run");
        std::fs::create_dir_all(&runs).expect("dirs");
        // Not sorted: the scan must not trust the file's order.
        std::fs::write(
            dir.path().join("packed-refs"),
            format!(
                "{} {PREFIX}{C}
{} {PREFIX}{A}
{} refs/wfe/trash/{A}
{} {PREFIX}{}
",
                hex(3),
                hex(1),
                hex(7),
                hex(8),
                C.to_uppercase()
            ),
        )
        .expect("packed-refs");
        std::fs::write(runs.join(B), format!("{}\n", hex(2))).expect("loose");
        let got = tips(
            highest(dir.path())
                .expect("understood")
                .into_iter()
                .collect(),
        );
        assert_eq!(got, [(C.to_string(), Ok(hex(3)))], "packed, highest");
        std::fs::write(runs.join(C), format!("{}\n", hex(9))).expect("loose");
        let got = tips(
            highest(dir.path())
                .expect("understood")
                .into_iter()
                .collect(),
        );
        assert_eq!(got, [(C.to_string(), Ok(hex(9)))], "the loose copy wins");
        // Whatever `read` would list first, `highest` finds.
        let mut all = read(dir.path()).expect("understood");
        all.sort_by(|a, b| b.run.cmp(&a.run));
        assert_eq!(all[0].run.as_str(), C);
    }

    #[test]
    fn a_symbolic_ref_is_named_as_broken() {
        let dir = tempfile::tempdir().expect("a dir");
        let runs = dir.path().join("refs/wfe/runs");
        std::fs::create_dir_all(&runs).expect("dirs");
        std::fs::write(runs.join(A), "ref: refs/heads/main\n").expect("loose");
        let got = tips(read(dir.path()).expect("understood"));
        assert_eq!(got.len(), 1);
        let error = got[0].1.clone().expect_err("broken");
        assert!(error.contains("symbolic ref to refs/heads/main"), "{error}");
    }

    #[test]
    fn no_refs_at_all_is_an_empty_list() {
        let dir = tempfile::tempdir().expect("a dir");
        assert!(read(dir.path()).expect("understood").is_empty());
    }

    #[test]
    fn what_it_does_not_understand_is_left_to_gix() {
        let dir = tempfile::tempdir().expect("a dir");
        std::fs::write(dir.path().join("packed-refs"), format!("XYZ {PREFIX}{A}\n"))
            .expect("packed-refs");
        assert!(read(dir.path()).is_none(), "a bad packed line");
        std::fs::write(dir.path().join("packed-refs"), "").expect("packed-refs");
        let runs = dir.path().join("refs/wfe/runs");
        std::fs::create_dir_all(&runs).expect("dirs");
        std::fs::write(runs.join(A), "not a ref\n").expect("loose");
        assert!(read(dir.path()).is_none(), "a bad loose ref");
    }
}
