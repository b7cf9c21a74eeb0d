//! The run-summary cache: per run, its tip and what the tip's commit says
//! (parent, time, summary line and trailers), so that listing ten thousand
//! runs reads one small file instead of ten thousand commits.
//!
//! It is derived data, like the search index: it lives in
//! `<git-dir>/wfe/cache/runs-2`, is never committed or pushed, and is never
//! trusted blindly. Every use compares each entry's tip with the run's ref;
//! a run whose ref moved (a checkpoint, a rollback, `git update-ref`, a
//! fetch) is read from its commit again, a run whose ref is gone is
//! dropped, and a file that is missing, cut short, corrupted or written by
//! another version counts as empty. It is rewritten whole, to a temporary
//! file renamed over the old one, so a reader never sees half a file and
//! concurrent writers cannot mix theirs (the last rename wins, and whatever
//! it holds is checked against the refs again on the next read).
//!
//! The format is text: a header `wfe-runs <version> <checksum>` (a
//! word-wise hash of the rest), then one line per run, in the order the
//! list gives them (newest run id first): `<run> <tip> <parent or -> <time>`,
//! a tab, the summary, then each trailer as a tab, its key, a tab, its
//! value; a tab, newline, carriage return or backslash inside a field is
//! written `\t`, `\n`, `\r`, `\\`. (Version 1 held each message as JSON,
//! and decoding it was half of listing 10,000 runs.) Lines are compared
//! with the refs in one ordered pass, and only a line whose tip matches its
//! ref is decoded at all.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Checkpoint, CheckpointId, Message, RunHead, RunId, Trailer};

/// The first word of a cache file.
const MAGIC: &str = "wfe-runs";
/// Bumped whenever the line format changes: an old file then counts as empty.
const VERSION: u32 = 2;
/// Above this size the file is not read (it is rebuilt, and not written
/// back): about 200,000 runs, and bounded memory whatever is there.
const LIMIT: u64 = 64 * 1024 * 1024;

/// The cache file of a repository.
#[derive(Debug)]
pub(super) struct SummaryCache {
    path: PathBuf,
}

impl SummaryCache {
    /// The cache under `wfe_dir` (`<git-dir>/wfe`).
    pub(super) fn new(wfe_dir: &Path) -> Self {
        SummaryCache {
            // The format's version in the name: two wfe versions on one
            // repository (a CI image and a laptop) each keep their own file
            // instead of rebuilding over each other's at every listing.
            path: wfe_dir.join("cache").join(format!("runs-{VERSION}")),
        }
    }

    /// What the file holds; empty when it is missing, too large or not a
    /// cache this version wrote.
    pub(super) fn load(&self) -> Entries {
        let text = crate::bounded::read_to_string(&self.path, LIMIT).unwrap_or_default();
        match checked_body(&text) {
            Some(body) => Entries {
                start: text.len() - body.len(),
                text,
            },
            None => Entries::default(),
        }
    }

    /// Replaces the file with `lines` (made by [`line()`] or lines the cursor gave,
    /// newest run first), atomically. Failing to write (a read-only
    /// repository, a full disk) loses nothing but speed, so the caller may
    /// ignore the error.
    pub(super) fn save<S: AsRef<str>>(&self, lines: &[S]) -> std::io::Result<()> {
        let text = encode(lines);
        if text.len() as u64 > LIMIT {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        // A name of this process's own, so concurrent writers never share one.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!("runs-{VERSION}.{}.{nanos}.tmp", std::process::id()));
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

/// The lines of a cache file whose header and checksum held.
#[derive(Debug, Default)]
pub(super) struct Entries {
    text: String,
    /// Where the lines start (after the header).
    start: usize,
}

impl Entries {
    /// A cursor over the lines, for runs asked about in the file's order.
    pub(super) fn cursor(&self) -> Cursor<'_> {
        Cursor {
            rest: &self.text[self.start..],
            entries: 0,
        }
    }
}

/// Walks the lines in step with the refs: both come newest run first, so
/// each line is looked at once and no map of 10,000 entries is built.
#[derive(Debug)]
pub(super) struct Cursor<'a> {
    rest: &'a str,
    entries: usize,
}

impl<'a> Cursor<'a> {
    /// The cached tip of `run`, and its line, if the cache has `run` at
    /// `tip`; lines of runs above `run` (gone since) are passed over. Asked
    /// in descending run order; a line that does not decode is a miss.
    pub(super) fn take(
        &mut self,
        run: &RunId,
        tip: &CheckpointId,
    ) -> Option<(Checkpoint, &'a str)> {
        loop {
            let (line, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
            if line.is_empty() {
                return None;
            }
            // A line without a run and a tip (a hand edit) is passed over,
            // not left to stop the walk for every run after it.
            let (line_run, after) = line.split_once(' ').unwrap_or((line, ""));
            match line_run.cmp(run.as_str()) {
                // A run the refs no longer have: skip it.
                std::cmp::Ordering::Greater => {
                    self.rest = rest;
                    self.entries += 1;
                }
                // The refs have a run the cache does not: read it from git.
                std::cmp::Ordering::Less => return None,
                std::cmp::Ordering::Equal => {
                    self.rest = rest;
                    self.entries += 1;
                    let (line_tip, after) = after.split_once(' ')?;
                    if line_tip != tip.0 {
                        return None;
                    }
                    return Some((decode_rest(tip, after)?, line));
                }
            }
        }
    }

    /// How many lines were passed so far plus how many are left: the
    /// number of runs the file holds, once the walk is over.
    pub(super) fn total(&self) -> usize {
        self.entries + self.rest.lines().count()
    }
}

/// The line of `head` in the file (without its line break).
pub(super) fn line(head: &RunHead) -> String {
    use std::fmt::Write as _;
    let tip = &head.tip;
    let mut line = String::with_capacity(256);
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "{} {} {} {}\t",
        head.run,
        tip.id,
        tip.parent.as_ref().map_or("-", |p| p.0.as_str()),
        tip.time,
    );
    escape(&tip.message.summary, &mut line);
    for (key, value) in &tip.message.trailers {
        line.push('\t');
        escape(key, &mut line);
        line.push('\t');
        escape(value, &mut line);
    }
    line
}

/// The file's text for `lines`.
fn encode<S: AsRef<str>>(lines: &[S]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| l.as_ref().len() + 1).sum());
    for line in lines {
        body.push_str(line.as_ref());
        body.push('\n');
    }
    format!(
        "{MAGIC} {VERSION} {:016x}\n{body}",
        checksum(body.as_bytes())
    )
}

/// The body of a cache file; `None` when it is not one this version
/// wrote or its checksum does not match (a torn or edited file).
fn checked_body(text: &str) -> Option<&str> {
    let (header, body) = text.split_once('\n')?;
    let mut words = header.split(' ');
    if words.next()? != MAGIC || words.next()?.parse::<u32>().ok()? != VERSION {
        return None;
    }
    let sum = u64::from_str_radix(words.next()?, 16).ok()?;
    (words.next().is_none() && sum == checksum(body.as_bytes())).then_some(body)
}

/// The checkpoint of a line whose run and tip matched: `after` is what
/// follows the tip (`<parent> <time>\t<summary>\t<key>\t<value>…`).
fn decode_rest(tip: &CheckpointId, after: &str) -> Option<Checkpoint> {
    let (numbers, message) = after.split_once('\t')?;
    let (parent, time) = numbers.split_once(' ')?;
    let parent = match parent {
        "-" => None,
        other => Some(hex_id(other)?),
    };
    let mut fields = message.split('\t');
    let summary = unescape(fields.next()?)?.into_owned();
    let mut trailers = Vec::with_capacity(8);
    while let Some(key) = fields.next() {
        let key = match unescape(key)? {
            Cow::Borrowed(key) => Trailer::intern(key),
            Cow::Owned(key) => Cow::Owned(key),
        };
        trailers.push((key, unescape(fields.next()?)?.into_owned()));
    }
    Some(Checkpoint {
        id: tip.clone(),
        parent,
        time: time.parse().ok()?,
        message: Message { summary, trailers },
    })
}

/// Appends `field` to `out` with its tabs, line breaks and backslashes escaped.
fn escape(field: &str, out: &mut String) {
    if !field.contains(['\t', '\n', '\r', '\\']) {
        out.push_str(field);
        return;
    }
    for c in field.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
}

/// The field [`escape`] wrote; `None` for an escape it never writes.
fn unescape(field: &str) -> Option<Cow<'_, str>> {
    if !field.contains('\\') {
        return Some(Cow::Borrowed(field));
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            '\\' => '\\',
            _ => return None,
        });
    }
    Some(Cow::Owned(out))
}

/// A commit id as the refs give it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn hex_id(text: &str) -> Option<CheckpointId> {
    let ok = matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| CheckpointId(text.to_string()))
}

/// A hash of `bytes` eight at a time: cheap on a 4 MB file (FNV-1a a byte
/// at a time cost milliseconds), and enough to tell a damaged file.
fn checksum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ bytes.len() as u64;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    for &b in chunks.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The cache of `text` as `load` would give it.
    fn entries(text: &str) -> Entries {
        match checked_body(text) {
            Some(body) => Entries {
                start: text.len() - body.len(),
                text: text.to_string(),
            },
            None => Entries::default(),
        }
    }

    #[test]
    fn entries_round_trip_in_the_lists_order() {
        let mut odd = head(3, true);
        odd.tip.message.summary = "tab\there, line\nbreak, \\t not a tab\r".into();
        odd.tip
            .message
            .trailers
            .push(("Wfe-Note".into(), "a\tb\\".into()));
        let heads = [odd, head(2, false), head(1, true)];
        let lines: Vec<String> = heads.iter().map(line).collect();
        let cache = entries(&encode(&lines));
        let mut cursor = cache.cursor();
        for (h, l) in heads.iter().zip(&lines) {
            assert_eq!(
                cursor.take(&h.run, &h.tip.id),
                Some((h.tip.clone(), l.as_str()))
            );
        }
        assert_eq!(cursor.total(), 3);
        assert_eq!(entries(&encode::<&str>(&[])).cursor().total(), 0);
    }

    #[test]
    fn only_a_run_at_the_same_tip_is_taken_and_gone_runs_are_passed_over() {
        let heads = [head(5, true), head(4, true), head(2, false)];
        let cache = entries(&encode(&heads.iter().map(line).collect::<Vec<_>>()));
        let mut cursor = cache.cursor();
        // Run 5 is gone from the refs; 4 moved; 3 is new; 2 is as cached.
        let moved = CheckpointId(format!("{:040x}", 999));
        assert_eq!(cursor.take(&heads[1].run, &moved), None);
        assert_eq!(cursor.take(&head(3, true).run, &head(3, true).tip.id), None);
        assert_eq!(
            cursor
                .take(&heads[2].run, &heads[2].tip.id)
                .map(|(tip, _)| tip),
            Some(heads[2].tip.clone())
        );
        assert_eq!(cursor.total(), 3, "every line was counted once");
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let text = encode(&[line(&head(1, true)), line(&head(2, false))]);
        let flipped = text.replacen("completed", "completes", 1);
        let cut = &text[..text.len() - 10];
        let other_version = text.replacen("wfe-runs 2 ", "wfe-runs 1 ", 1);
        for bad in ["", "garbage", flipped.as_str(), cut, other_version.as_str()] {
            assert!(checked_body(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_line_with_a_bad_field_is_a_miss() {
        // With a matching checksum (a bug or a hand edit), a bad line still
        // gives nothing: the run is read from git instead.
        let run = head(1, true).run;
        let tip = CheckpointId("a".repeat(40));
        for line in [
            format!("{run} {tip} nothex 5\ts\n"),
            format!("{run} {tip} - soon\ts\n"),
            format!("{run} {tip} - 5\ts\\q\n"),
            format!("{run} {tip} - 5\ts\tWfe-Status\n"),
        ] {
            let text = format!(
                "{MAGIC} {VERSION} {:016x}\n{line}",
                checksum(line.as_bytes())
            );
            let cache = entries(&text);
            assert_eq!(cache.cursor().total(), 1, "{line:?}: the header held");
            assert_eq!(cache.cursor().take(&run, &tip), None, "{line:?}");
        }
        // A line that is not even `run tip …` does not hide the lines after it.
        let good = head(1, true);
        let body = format!("zzzzzzzzzz\n{}\n", line(&good));
        let text = format!(
            "{MAGIC} {VERSION} {:016x}\n{body}",
            checksum(body.as_bytes())
        );
        let cache = entries(&text);
        let mut cursor = cache.cursor();
        assert_eq!(
            cursor.take(&good.run, &good.tip.id).map(|(tip, _)| tip),
            Some(good.tip)
        );
    }

    #[test]
    fn the_file_is_replaced_whole_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = SummaryCache::new(dir.path());
        assert_eq!(cache.load().cursor().total(), 0);
        cache.save(&[line(&head(1, true))]).expect("saved");
        cache.save(&[line(&head(2, false))]).expect("saved");
        let loaded = cache.load();
        assert_eq!(loaded.cursor().total(), 1);
        let two = head(2, false);
        assert_eq!(
            loaded
                .cursor()
                .take(&two.run, &two.tip.id)
                .map(|(tip, _)| tip),
            Some(two.tip)
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .expect("the dir")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, ["runs-2"], "no temporary file is left");
    }
}
