//! What the index holds: the schema version and, per run, the checkpoint
//! its documents were last read from.
//!
//! Each commit writes the whole state to a new file `tips-<generation>`
//! first, then names that generation in the commit's payload; the old file
//! goes only after the commit. So the commit that changes documents is the
//! one that switches states, atomically, and a crash at any point leaves a
//! payload naming a file that exists. (The payload itself stays tiny:
//! tantivy parses it on every open, reload and commit.) The file is plain
//! text searched and spliced rather than parsed into a map, ten thousand
//! runs or not: `wfe-index <version> <generation>`, then `<run> <tip>` lines.

use std::collections::{BTreeMap, HashMap};

use super::fields::SCHEMA_VERSION;

/// The first word of a payload this wfe wrote.
const MAGIC: &str = "wfe-index";
/// Above this many changes, rewriting the text beats splicing it.
const SPLICE_LIMIT: usize = 16;

/// The index's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexState {
    version: u32,
    generation: u64,
    /// The header line, then run lines, each ending in `\n`.
    text: String,
}

impl Default for IndexState {
    fn default() -> Self {
        IndexState::empty(SCHEMA_VERSION)
    }
}

impl IndexState {
    fn empty(version: u32) -> Self {
        IndexState {
            version,
            generation: 0,
            text: format!("{MAGIC} {version} 0\n"),
        }
    }

    /// Reads a commit payload: `(version, generation)`; `None` if it is
    /// not one a wfe wrote.
    pub fn parse_header(payload: &str) -> Option<(u32, u64)> {
        let line = payload.lines().next()?.strip_prefix(MAGIC)?;
        let mut words = line.split_whitespace();
        let version = words.next()?.parse().ok()?;
        let generation = words.next()?.parse().ok()?;
        Some((version, generation))
    }

    /// Reads a state file; `None` if it is not one a wfe wrote.
    pub fn parse(text: &str) -> Option<Self> {
        let (version, generation) = Self::parse_header(text)?;
        // Every line but the header is `run tip`. A file cut short loses
        // only tips, and a run without one is simply indexed again.
        let (_, rest) = text.split_once('\n')?;
        if !rest.lines().all(|l| l.contains(' ')) {
            return None;
        }
        let mut text = text.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Some(IndexState {
            version,
            generation,
            text,
        })
    }

    /// The version of the wfe that wrote it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Which state file it is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The name of the state file of `generation`.
    pub fn file_name(generation: u64) -> String {
        format!("tips-{generation:016x}")
    }

    /// Moves to a new generation, for the next commit.
    pub fn set_generation(&mut self, generation: u64) {
        let end = self.text.find('\n').map_or(self.text.len(), |i| i + 1);
        self.generation = generation;
        self.text
            .replace_range(..end, &format!("{MAGIC} {} {generation}\n", self.version));
    }

    /// The commit payload naming this state: its header line.
    pub fn header(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The state file's text.
    pub fn render(&self) -> &str {
        &self.text
    }

    /// The fingerprint of every run's recorded checkpoint (see
    /// `catch_up::fingerprint`), read without building a map.
    pub fn fingerprint(&self) -> (usize, u64, u64) {
        super::catch_up::fingerprint(self.lines())
    }

    /// Every run's recorded checkpoint.
    pub fn tips(&self) -> HashMap<&str, &str> {
        self.lines().collect()
    }

    /// How many runs it records.
    pub fn len(&self) -> usize {
        self.lines().count()
    }

    /// True when it records no run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checkpoint recorded for `run`.
    pub fn tip(&self, run: &str) -> Option<&str> {
        let (start, end) = self.find(run)?;
        Some(&self.text[start + run.len() + 1..end - 1])
    }

    /// Records `tip` for each run, or forgets the run (`None`).
    pub fn update(&mut self, changes: &BTreeMap<String, Option<String>>) {
        if changes.len() > SPLICE_LIMIT {
            let mut runs: BTreeMap<&str, &str> = self.lines().collect();
            for (run, tip) in changes {
                match tip {
                    Some(tip) => runs.insert(run, tip),
                    None => runs.remove(run.as_str()),
                };
            }
            let mut text = format!("{}\n", self.header());
            for (run, tip) in runs {
                text.push_str(&format!("{run} {tip}\n"));
            }
            self.text = text;
            return;
        }
        for (run, tip) in changes {
            let line = tip.as_ref().map(|tip| format!("{run} {tip}\n"));
            match (self.find(run), line) {
                (Some((start, end)), Some(line)) => self.text.replace_range(start..end, &line),
                (Some((start, end)), None) => self.text.replace_range(start..end, ""),
                (None, Some(line)) => self.text.push_str(&line),
                (None, None) => {}
            }
        }
    }

    /// The run lines as `(run, tip)`.
    fn lines(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(' '))
    }

    /// The byte range of `run`'s line, its newline included.
    fn find(&self, run: &str) -> Option<(usize, usize)> {
        let needle = format!("\n{run} ");
        let start = self.text.find(&needle)? + 1;
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i + 1);
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(r, t)| (r.to_string(), t.map(String::from)))
            .collect()
    }

    #[test]
    fn payload_round_trips_and_rejects_foreign_text() {
        let mut state = IndexState::default();
        assert!(state.is_empty());
        state.update(&changes(&[
            ("01run", Some("abc")),
            ("01other", Some("def")),
        ]));
        let again = IndexState::parse(state.render()).unwrap();
        assert_eq!(again, state);
        assert_eq!(again.tip("01run"), Some("abc"));
        assert_eq!(again.tip("01other"), Some("def"));
        assert_eq!(again.tip("01"), None);
        assert_eq!(again.version(), SCHEMA_VERSION);
        assert_eq!(IndexState::parse("not ours"), None);
        assert_eq!(IndexState::parse("wfe-index x 1\n"), None);
        assert_eq!(IndexState::parse("wfe-index 1\n"), None, "no generation");
        assert_eq!(IndexState::parse("wfe-index 1 2\nno-tip\n"), None);
        state.set_generation(7);
        assert_eq!(state.header(), format!("wfe-index {SCHEMA_VERSION} 7"));
        assert_eq!(
            IndexState::parse_header(state.header()),
            Some((SCHEMA_VERSION, 7))
        );
        assert_eq!(
            IndexState::parse(state.render()).unwrap().tip("01run"),
            Some("abc")
        );
    }

    #[test]
    fn the_fingerprint_matches_the_same_pairs_in_any_order_only() {
        let mut state = IndexState::default();
        state.update(&changes(&[("a", Some("1")), ("b", Some("2"))]));
        let fp =
            |pairs: &[(&str, &str)]| super::super::catch_up::fingerprint(pairs.iter().copied());
        assert_eq!(state.fingerprint(), fp(&[("b", "2"), ("a", "1")]));
        assert_ne!(state.fingerprint(), fp(&[("a", "2"), ("b", "1")]));
        assert_ne!(state.fingerprint(), fp(&[("a", "1")]));
        assert_ne!(state.fingerprint(), fp(&[("a", "1"), ("b", "3")]));
    }

    #[test]
    fn updates_splice_few_and_rewrite_many() {
        let mut state = IndexState::default();
        state.update(&changes(&[
            ("a", Some("1")),
            ("b", Some("2")),
            ("c", Some("3")),
        ]));
        state.update(&changes(&[("b", Some("22")), ("a", None), ("z", None)]));
        assert_eq!(
            state.tips(),
            [("b", "22"), ("c", "3")].into_iter().collect()
        );
        let many: Vec<(String, Option<String>)> = (0..100)
            .map(|i| (format!("r{i:03}"), Some(format!("t{i}"))))
            .chain([("c".to_string(), None)])
            .collect();
        state.update(&many.into_iter().collect());
        assert_eq!(state.len(), 101);
        assert_eq!(state.tip("b"), Some("22"));
        assert_eq!(state.tip("c"), None);
        assert_eq!(state.tip("r042"), Some("t42"));
    }
}
