//! The index's schema: which fields a document has and how each is indexed.
//!
//! Bump [`SCHEMA_VERSION`] whenever the schema, the tokenizer or what a
//! document holds changes: an index of another version is rebuilt.

use tantivy::DateTime;
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions,
    STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};

/// The version of the schema and of document extraction.
pub const SCHEMA_VERSION: u32 = 1;

/// The tokenizer of `text` and `json`: words, lowercased, stemmed (English).
pub const TOKENIZER: &str = "wfe_en";

/// Field handles of the schema.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The whole schema.
    pub schema: Schema,
    /// `<run>/<path>`: every document read from one file shares it, so the
    /// file's documents can be replaced together (indexed, not stored).
    pub key: Field,
    /// The run id.
    pub run: Field,
    /// The run's template.
    pub template: Field,
    /// The phase, for documents that belong to one.
    pub phase: Field,
    /// The attempt, when known.
    pub attempt: Field,
    /// The artifact's schema name, for artifacts.
    pub schema_name: Field,
    /// The run's status at the checkpoint read.
    pub status: Field,
    /// What the document is: `artifact`, `log`, `comment`, `tool_call`, `error`.
    pub kind: Field,
    /// When it was written.
    pub time: Field,
    /// The file it was read from, relative to the checkpoint's root (stored).
    pub path: Field,
    /// Which entry of a `.jsonl` file of entries (comments, tool calls), from 0 (stored).
    pub line: Field,
    /// The checkpoint it was read from (stored).
    pub checkpoint: Field,
    /// A digest of the file's bytes: unchanged files are not re-indexed (stored).
    pub hash: Field,
    /// The searchable text: JSON flattened to `path: value` lines, log lines, comments.
    pub text: Field,
    /// The JSON of artifacts, comments and tool calls, for `field:value` queries.
    pub json: Field,
}

impl Fields {
    /// The schema and its field handles.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let words = TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let key = b.add_text_field("key", STRING);
        let run = b.add_text_field("run", STRING | STORED);
        let template = b.add_text_field("template", STRING | STORED);
        let phase = b.add_text_field("phase", STRING | STORED);
        let attempt = b.add_u64_field("attempt", INDEXED | STORED);
        let schema_name = b.add_text_field("schema", STRING | STORED);
        let status = b.add_text_field("status", STRING | STORED);
        let kind = b.add_text_field("kind", STRING | STORED);
        let time = b.add_date_field(
            "time",
            DateOptions::from(INDEXED | STORED | FAST).set_precision(DateTimePrecision::Seconds),
        );
        let path = b.add_text_field("path", STORED);
        let line = b.add_u64_field("line", STORED);
        let checkpoint = b.add_text_field("checkpoint", STORED);
        let hash = b.add_u64_field("hash", STORED);
        let text = b.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(words.clone()),
        );
        let json = b.add_json_field(
            "json",
            JsonObjectOptions::default()
                .set_indexing_options(words)
                .set_expand_dots_enabled(),
        );
        Fields {
            schema: b.build(),
            key,
            run,
            template,
            phase,
            attempt,
            schema_name,
            status,
            kind,
            time,
            path,
            line,
            checkpoint,
            hash,
            text,
            json,
        }
    }

    /// The analyzer registered as [`TOKENIZER`].
    pub fn analyzer() -> TextAnalyzer {
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .build()
    }

    /// True for names the query language reaches directly; any other
    /// `name:value` is a path into the artifact's JSON.
    pub fn is_field(&self, name: &str) -> bool {
        self.schema.get_field(name).is_ok()
    }
}

/// `secs` since the epoch as an index date; tantivy counts nanoseconds in
/// an i64, so times beyond its range (any year past 2262) are clamped.
pub fn date(secs: i64) -> DateTime {
    const LIMIT: i64 = i64::MAX / 1_000_000_000;
    DateTime::from_timestamp_secs(secs.clamp(-LIMIT, LIMIT))
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_beyond_tantivys_range_are_clamped() {
        assert_eq!(date(60).into_timestamp_secs(), 60);
        assert!(date(i64::MAX).into_timestamp_secs() > 9_000_000_000);
        assert!(date(i64::MIN).into_timestamp_secs() < -9_000_000_000);
    }
}
