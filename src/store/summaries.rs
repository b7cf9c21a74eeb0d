//! The run-summary cache: per run, its tip and what the tip's commit says
//! (parent, time, summary line and trailers), so that listing ten thousand
//! runs reads one small file instead of ten thousand commits.
//!
//! It is derived data, like the search index: it lives in
//! `<git-dir>/wfe/cache/runs`, is never committed or pushed, and is never
//! trusted blindly. Every use compares each entry's tip with the run's ref;
//! a run whose ref moved (a checkpoint, a rollback, `git update-ref`, a
//! fetch) is read from its commit again, a run whose ref is gone is
//! dropped, and a file that is missing, cut short, corrupted or written by
//! another version counts as empty. It is rewritten whole, to a temporary
//! file renamed over the old one, so a reader never sees half a file and
//! concurrent writers cannot mix theirs (the last rename wins, and whatever
//! it holds is checked against the refs again on the next read).
//!
//! The format is text: a header `wfe-runs <version> <checksum>` (FNV-1a of
//! the rest), then one line per run: `<run> <tip> <parent or -> <time>
//! <message>`, the message as a JSON array `[summary, [[key, value], …]]`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Checkpoint, CheckpointId, Message, RunHead, RunId};

/// The first word of a cache file.
const MAGIC: &str = "wfe-runs";
/// Bumped whenever the line format changes: an old file then counts as empty.
const VERSION: u32 = 1;
/// Above this size the file is not read (it is rebuilt, and not written
/// back): about 200,000 runs, and bounded memory whatever is there.
const LIMIT: u64 = 64 * 1024 * 1024;

/// The cache file of a repository and what it holds.
#[derive(Debug)]
pub(super) struct SummaryCache {
    path: PathBuf,
}

impl SummaryCache {
    /// The cache under `wfe_dir` (`<git-dir>/wfe`).
    pub(super) fn new(wfe_dir: &Path) -> Self {
        SummaryCache {
            path: wfe_dir.join("cache").join("runs"),
        }
    }

    /// What the file holds, by run id; empty when it is missing, too large
    /// or not a cache this version wrote.
    pub(super) fn load(&self) -> HashMap<RunId, Checkpoint> {
        match crate::bounded::read_to_string(&self.path, LIMIT) {
            Ok(text) => decode(&text).unwrap_or_default(),
            Err(_) => HashMap::new(),
        }
    }

    /// Replaces the file with `heads`, atomically. Failing to write (a
    /// read-only repository, a full disk) loses nothing but speed, so the
    /// caller may ignore the error.
    pub(super) fn save(&self, heads: &[RunHead]) -> std::io::Result<()> {
        let text = encode(heads);
        if text.len() as u64 > LIMIT {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        // A name of this process's own, so concurrent writers never share one.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!("runs.{}.{nanos}.tmp", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&temp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written?;
        Ok(())
    }
}

/// The file's text for `heads`.
pub(super) fn encode(heads: &[RunHead]) -> String {
    let mut body = String::with_capacity(heads.len() * 256);
    for head in heads {
        let tip = &head.tip;
        let message = serde_json::json!([tip.message.summary, tip.message.trailers]);
        body.push_str(&format!(
            "{} {} {} {} {}\n",
            head.run,
            tip.id,
            tip.parent.as_ref().map_or("-", |p| p.0.as_str()),
            tip.time,
            message
        ));
    }
    format!(
        "{MAGIC} {VERSION} {:016x}\n{body}",
        checksum(body.as_bytes())
    )
}

/// The entries of a cache file; `None` when it is not one this version
/// wrote or its checksum does not match (a torn or edited file).
pub(super) fn decode(text: &str) -> Option<HashMap<RunId, Checkpoint>> {
    let (header, body) = text.split_once('\n')?;
    let mut words = header.split(' ');
    if words.next()? != MAGIC || words.next()?.parse::<u32>().ok()? != VERSION {
        return None;
    }
    let sum = u64::from_str_radix(words.next()?, 16).ok()?;
    if words.next().is_some() || sum != checksum(body.as_bytes()) {
        return None;
    }
    let mut entries = HashMap::with_capacity(body.len() / 200);
    for line in body.lines() {
        let (run, tip) = decode_line(line)?;
        entries.insert(run, tip);
    }
    Some(entries)
}

fn decode_line(line: &str) -> Option<(RunId, Checkpoint)> {
    let mut fields = line.splitn(5, ' ');
    let run = RunId::parse(fields.next()?)?;
    let id = hex_id(fields.next()?)?;
    let parent = match fields.next()? {
        "-" => None,
        other => Some(hex_id(other)?),
    };
    let time = fields.next()?.parse().ok()?;
    let (summary, trailers): (String, Vec<(String, String)>) =
        serde_json::from_str(fields.next()?).ok()?;
    Some((
        run,
        Checkpoint {
            id,
            parent,
            time,
            message: Message { summary, trailers },
        },
    ))
}

/// A commit id as the refs give it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn hex_id(text: &str) -> Option<CheckpointId> {
    let ok = matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| CheckpointId(text.to_string()))
}

/// FNV-1a over `bytes`: cheap, and enough to tell a damaged file.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Trailer;

    fn head(n: u8, parent: bool) -> RunHead {
        let run = RunId::parse(&format!("01jf3k0000000000000000000{}", n % 10)).expect("an id");
        RunHead {
            run,
            tip: Checkpoint {
                id: CheckpointId(format!("{:040x}", u128::from(n) + 1)),
                parent: parent.then(|| CheckpointId(format!("{:040x}", u128::from(n) + 100))),
                time: 1_767_225_600 + i64::from(n),
                message: Message::new(format!("wfe: phase {n} \"done\" \\ ok"))
                    .trailer(Trailer::Template, "feature")
                    .trailer(Trailer::Failed, "a b")
                    .trailer(Trailer::Status, "completed"),
            },
        }
    }

    #[test]
    fn entries_round_trip() {
        let heads = [head(1, true), head(2, false)];
        let decoded = decode(&encode(&heads)).expect("a cache");
        assert_eq!(decoded.len(), 2);
        for h in &heads {
            assert_eq!(decoded.get(&h.run), Some(&h.tip));
        }
        assert_eq!(decode(&encode(&[])).expect("empty").len(), 0);
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let text = encode(&[head(1, true), head(2, false)]);
        let flipped = text.replacen("completed", "completes", 1);
        let cut = &text[..text.len() - 10];
        let other_version = text.replacen("wfe-runs 1 ", "wfe-runs 2 ", 1);
        for bad in ["", "garbage", flipped.as_str(), cut, other_version.as_str()] {
            assert!(decode(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_line_with_a_bad_field_spoils_the_file() {
        // With a matching checksum (a bug or a hand edit), a bad line still fails.
        let body = "01jf3k00000000000000000001 nothex - 5 [\"s\",[]]\n";
        let text = format!(
            "{MAGIC} {VERSION} {:016x}\n{body}",
            checksum(body.as_bytes())
        );
        assert!(decode(&text).is_none());
    }

    #[test]
    fn the_file_is_replaced_whole_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = SummaryCache::new(dir.path());
        assert!(cache.load().is_empty());
        cache.save(&[head(1, true)]).expect("saved");
        cache.save(&[head(2, false)]).expect("saved");
        let loaded = cache.load();
        assert_eq!(loaded.len(), 1);
        assert!(loaded.contains_key(&head(2, false).run));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .expect("the dir")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, ["runs"], "no temporary file is left");
    }
}
