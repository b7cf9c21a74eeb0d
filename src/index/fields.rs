//! The index's schema: which fields a document has and how each is indexed.
//!
//! Few indexed fields on purpose: every indexed field costs a term
//! dictionary and a postings writer in each segment, and a runner commits a
//! small segment per checkpoint. So the exact-match facets (run, template,
//! phase, …) share one `tags` field as `name:value` terms, what a result
//! shows is one stored JSON (`meta`), and only `text` keeps positions.
//!
//! Bump [`SCHEMA_VERSION`] whenever the schema, a tokenizer or what a
//! document holds changes: an index of another version is rebuilt.

use tantivy::DateTime;
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, IndexRecordOption, JsonObjectOptions, STORED,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
    TextAnalyzer,
};

/// The version of the schema and of document extraction.
pub const SCHEMA_VERSION: u32 = 1;

/// The tokenizer of `text`: words, lowercased, English stop words dropped,
/// stemmed. Phrases still match across a dropped word: positions keep gaps.
pub(super) const TEXT_TOKENIZER: &str = "wfe_text";
/// The tokenizer of `json` values: the whole value, lowercased; values
/// longer than [`VALUE_MAX_BYTES`] are left to `text`.
pub(super) const VALUE_TOKENIZER: &str = "wfe_value";
/// The longest JSON string value matched as a whole by `field:value`.
pub(super) const VALUE_MAX_BYTES: usize = 40;

/// The facets kept as `name:value` terms of `tags`, in the order a query may name them.
pub(super) const TAGS: [&str; 7] = [
    "run", "template", "phase", "attempt", "schema", "status", "kind",
];

/// Field handles of the schema.
#[derive(Debug, Clone)]
pub(super) struct Fields {
    /// The whole schema.
    pub schema: Schema,
    /// Exact `name:value` terms: the [`TAGS`], and `key:<run>/<path>`
    /// shared by every document of one file, to replace them together.
    pub tags: Field,
    /// [`DocMeta`] as JSON (stored only).
    pub meta: Field,
    /// When the document was written (fast, for `--since`).
    pub time: Field,
    /// The searchable text: JSON flattened to `path: value` lines, log lines, comments.
    pub text: Field,
    /// The JSON of artifacts, comments and tool calls, for `field:value` queries.
    pub json: Field,
}

/// What a result shows about its document, stored with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct DocMeta {
    /// The run.
    pub run: String,
    /// Its template.
    pub template: String,
    /// The phase, if any.
    pub phase: Option<String>,
    /// The attempt, when known.
    pub attempt: Option<u32>,
    /// The artifact's schema.
    pub schema: Option<String>,
    /// The run's status at the checkpoint read.
    pub status: String,
    /// What the document is.
    pub kind: String,
    /// The file it was read from.
    pub path: String,
    /// Which entry of a per-line file, from 0.
    pub line: Option<u64>,
    /// The checkpoint it was read from.
    pub checkpoint: String,
    /// When it was written (seconds since the epoch).
    pub time: i64,
}

impl DocMeta {
    /// The stored form: a JSON array, values in field order (no keys:
    /// they would be most of the stored bytes).
    pub(super) fn render(&self) -> String {
        let value = serde_json::json!([
            self.run,
            self.template,
            self.phase,
            self.attempt,
            self.schema,
            self.status,
            self.kind,
            self.path,
            self.line,
            self.checkpoint,
            self.time,
        ]);
        value.to_string()
    }

    /// Reads the stored form back.
    pub(super) fn parse(text: &str) -> Option<DocMeta> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let text = |i: usize| value[i].as_str().map(String::from);
        Some(DocMeta {
            run: text(0)?,
            template: text(1)?,
            phase: text(2),
            attempt: value[3].as_u64().and_then(|n| u32::try_from(n).ok()),
            schema: text(4),
            status: text(5)?,
            kind: text(6)?,
            path: text(7)?,
            line: value[8].as_u64(),
            checkpoint: text(9)?,
            time: value[10].as_i64()?,
        })
    }

    /// The values of the [`TAGS`], in their order.
    pub(super) fn tags(&self) -> [(&'static str, Option<String>); 7] {
        [
            ("run", Some(self.run.clone())),
            ("template", Some(self.template.clone())),
            ("phase", self.phase.clone()),
            ("attempt", self.attempt.map(|a| a.to_string())),
            ("schema", self.schema.clone()),
            ("status", Some(self.status.clone())),
            ("kind", Some(self.kind.clone())),
        ]
    }
}

impl Fields {
    /// The schema and its field handles.
    pub(super) fn new() -> Self {
        let mut b = Schema::builder();
        let exact = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false);
        let tags = b.add_text_field("tags", TextOptions::default().set_indexing_options(exact));
        let meta = b.add_text_field("meta", STORED);
        let time = b.add_date_field(
            "time",
            DateOptions::from(FAST).set_precision(DateTimePrecision::Seconds),
        );
        let words = TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let text = b.add_text_field("text", TextOptions::default().set_indexing_options(words));
        let values = TextFieldIndexing::default()
            .set_tokenizer(VALUE_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false);
        let json = b.add_json_field(
            "json",
            JsonObjectOptions::default()
                .set_indexing_options(values)
                .set_expand_dots_enabled(),
        );
        Fields {
            schema: b.build(),
            tags,
            meta,
            time,
            text,
            json,
        }
    }

    /// The analyzer registered as [`TEXT_TOKENIZER`].
    pub(super) fn text_analyzer() -> TextAnalyzer {
        let builder = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .dynamic();
        let builder = match StopWordFilter::new(Language::English) {
            Some(stop) => builder.filter_dynamic(stop),
            None => builder,
        };
        builder
            .filter_dynamic(Stemmer::new(Language::English))
            .build()
    }

    /// The analyzer registered as [`VALUE_TOKENIZER`].
    pub(super) fn value_analyzer() -> TextAnalyzer {
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(RemoveLongFilter::limit(VALUE_MAX_BYTES + 1))
            .filter(LowerCaser)
            .build()
    }

    /// What a document's `meta` says; empty if it cannot be read.
    pub(super) fn meta_of(&self, doc: &tantivy::TantivyDocument) -> DocMeta {
        use tantivy::schema::Value;
        doc.get_first(self.meta)
            .and_then(|v| v.as_str())
            .and_then(DocMeta::parse)
            .unwrap_or_default()
    }

    /// Registers the analyzers on an opened or created index.
    pub(super) fn register(index: &tantivy::Index) {
        index
            .tokenizers()
            .register(TEXT_TOKENIZER, Self::text_analyzer());
        index
            .tokenizers()
            .register(VALUE_TOKENIZER, Self::value_analyzer());
    }
}

impl Default for Fields {
    fn default() -> Self {
        Self::new()
    }
}

/// The `tags` term for `name` = `value`.
pub(super) fn tag(name: &str, value: &str) -> String {
    format!("{name}:{value}")
}

/// `secs` since the epoch as an index date; tantivy counts nanoseconds in
/// an i64, so times beyond its range (any year past 2262) are clamped.
pub(super) fn date(secs: i64) -> DateTime {
    const LIMIT: i64 = i64::MAX / 1_000_000_000;
    DateTime::from_timestamp_secs(secs.clamp(-LIMIT, LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_meta_round_trips() {
        let meta = DocMeta {
            run: "01kaxz".into(),
            template: "t".into(),
            phase: Some("build".into()),
            attempt: Some(2),
            schema: None,
            status: "failed".into(),
            kind: "log".into(),
            path: "phases/build/log.jsonl".into(),
            line: None,
            checkpoint: "ab".repeat(20),
            time: -5,
        };
        assert_eq!(DocMeta::parse(&meta.render()), Some(meta));
        assert_eq!(DocMeta::parse("[]"), None);
    }

    #[test]
    fn dates_beyond_tantivys_range_are_clamped() {
        assert_eq!(date(60).into_timestamp_secs(), 60);
        assert!(date(i64::MAX).into_timestamp_secs() > 9_000_000_000);
        assert!(date(i64::MIN).into_timestamp_secs() < -9_000_000_000);
    }

    fn tokens(mut analyzer: TextAnalyzer, text: &str) -> Vec<(String, usize)> {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((token.text.clone(), token.position));
        }
        out
    }

    #[test]
    fn text_drops_stop_words_but_keeps_positions_and_values_stay_whole() {
        assert_eq!(
            tokens(Fields::text_analyzer(), "Write the Parsers"),
            [("write".to_string(), 0), ("parser".to_string(), 2)]
        );
        assert_eq!(
            tokens(Fields::value_analyzer(), "Changes_Requested"),
            [("changes_requested".to_string(), 0)]
        );
        assert!(tokens(Fields::value_analyzer(), &"x".repeat(VALUE_MAX_BYTES + 1)).is_empty());
        assert_eq!(
            tokens(Fields::value_analyzer(), &"x".repeat(VALUE_MAX_BYTES)).len(),
            1
        );
    }
}
