//! Searching: the query language, filters, ranking and snippets.
//!
//! The language is tantivy's (words, `"phrases"`, `AND`/`OR`/`-`, `field:value`)
//! with all words required by default. `run`, `template`, `phase`,
//! `attempt`, `schema`, `status` and `kind` match a document's facets
//! exactly, `text:` its words; any other `name:value` is a path into the
//! document's JSON matched against the whole value, case aside
//! (`verdict:changes_requested`, `findings.severity:major`), as is
//! `json.name:value` for names the index uses itself. Snippets are cut from
//! the document's text read back from its checkpoint: the index stores no
//! text of its own.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::query_grammar::{self, UserInputAst, UserInputLeaf};
use tantivy::schema::IndexRecordOption;
use tantivy::snippet::{SnippetGenerator, collapse_overlapped_ranges};
use tantivy::{Searcher, TantivyDocument, Term};

use super::IndexError;
use super::extract::{self, Kind};
use super::fields::{Fields, TAGS, date, tag};
use super::search_index::SearchIndex;
use crate::store::{CheckpointId, RunId, RunStore};

/// The longest snippet, in characters.
const SNIPPET_CHARS: usize = 160;

/// A search: the query and its filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The query text.
    pub query: String,
    /// Only this run.
    pub run: Option<RunId>,
    /// Only runs of this template.
    pub template: Option<String>,
    /// Only this phase.
    pub phase: Option<String>,
    /// Only artifacts of this schema.
    pub schema: Option<String>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only documents of this kind.
    pub kind: Option<Kind>,
    /// Only documents written at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// At most this many results.
    pub limit: usize,
}

impl Search {
    /// A search for `query` with no filters and a limit of 20.
    pub fn new(query: impl Into<String>) -> Self {
        Search {
            query: query.into(),
            run: None,
            template: None,
            phase: None,
            schema: None,
            status: None,
            kind: None,
            since: None,
            limit: 20,
        }
    }
}

/// One result, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The run.
    pub run: String,
    /// Its template.
    pub template: String,
    /// The phase, if the document belongs to one.
    pub phase: Option<String>,
    /// The attempt, when known.
    pub attempt: Option<u32>,
    /// What the document is.
    pub kind: String,
    /// The artifact's schema.
    pub schema: Option<String>,
    /// The run's status.
    pub status: String,
    /// The file in the checkpoint.
    pub path: String,
    /// Which entry of the file (comments, tool calls), from 0.
    pub line: Option<u64>,
    /// The checkpoint the document was read from.
    pub checkpoint: String,
    /// When it was written (seconds since the epoch).
    pub time: i64,
    /// The relevance score.
    pub score: f32,
    /// A piece of the text around the best match.
    pub snippet: String,
    /// Byte ranges of `snippet` that matched.
    pub highlights: Vec<Range<usize>>,
}

impl Hit {
    /// The hit as `wfe search --json` prints it (and `/api/search` sends).
    pub fn to_json(&self) -> serde_json::Value {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.time.max(0) as u64);
        serde_json::json!({
            "run": self.run,
            "template": self.template,
            "phase": self.phase,
            "attempt": self.attempt,
            "kind": self.kind,
            "schema": self.schema,
            "status": self.status,
            "path": self.path,
            "line": self.line,
            "checkpoint": self.checkpoint,
            "time": crate::time::format_stamp(time),
            "score": self.score,
            "snippet": self.snippet,
            // Character offsets: what a script slicing the snippet string expects.
            "highlights": self
                .highlights
                .iter()
                .map(|r| [chars(&self.snippet, r.start), chars(&self.snippet, r.end)])
                .collect::<Vec<_>>(),
        })
    }
}

/// The character offset of byte offset `at` in `text`.
fn chars(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |head| head.chars().count())
}

/// A query the user must fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// What is wrong.
    pub message: String,
}

impl SearchIndex {
    /// Runs `search`; snippets are read from `store`.
    pub fn search(&self, store: &dyn RunStore, search: &Search) -> Result<Vec<Hit>, IndexError> {
        let f = &self.fields;
        let ast = parse(&search.query)?;
        let ast = redirect_fields(ast, f);
        let mut parser = QueryParser::for_index(&self.index, vec![f.text]);
        parser.set_conjunction_by_default();
        let query = parser
            .build_query_from_user_input_ast(ast.clone())
            .map_err(|e| query_error(e.to_string()))?;

        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, query)];
        let mut filter = |query: Box<dyn Query>| {
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0))));
        };
        let tags = [
            ("run", search.run.as_ref().map(|r| r.to_string())),
            ("template", search.template.clone()),
            ("phase", search.phase.clone()),
            ("schema", search.schema.clone()),
            ("status", search.status.clone()),
            ("kind", search.kind.map(|k| k.as_str().to_string())),
        ];
        for (name, value) in tags {
            if let Some(value) = value {
                let term = Term::from_field_text(f.tags, &tag(name, &value));
                filter(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
            }
        }
        if let Some(since) = search.since {
            let from = Term::from_field_date_for_search(f.time, date(since));
            filter(Box::new(RangeQuery::new(
                Bound::Included(from),
                Bound::Unbounded,
            )));
        }
        let query = BooleanQuery::new(clauses);

        let searcher = self.searcher()?;
        let top = searcher.search(
            &query,
            &TopDocs::with_limit(search.limit.max(1)).order_by_score(),
        )?;
        let snippets = self.snippet_generator(&searcher, &query, &ast)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let mut hit = self.hit(&doc, score);
            let text = document_text(store, &hit);
            let (snippet, highlights) = cut_snippet(&snippets, &text);
            hit.snippet = snippet;
            hit.highlights = highlights;
            hits.push(hit);
        }
        Ok(hits)
    }

    fn hit(&self, doc: &TantivyDocument, score: f32) -> Hit {
        let meta = self.fields.meta_of(doc);
        Hit {
            run: meta.run,
            template: meta.template,
            phase: meta.phase,
            attempt: meta.attempt,
            kind: meta.kind,
            schema: meta.schema,
            status: meta.status,
            path: meta.path,
            line: meta.line,
            checkpoint: meta.checkpoint,
            time: meta.time,
            score,
            snippet: String::new(),
            highlights: Vec::new(),
        }
    }

    /// Highlights the words of the query's text terms, and of its JSON
    /// terms as the text shows them (`verdict: changes_requested`).
    fn snippet_generator(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        ast: &UserInputAst,
    ) -> Result<SnippetGenerator, IndexError> {
        let f = &self.fields;
        let mut words = Vec::new();
        query.query_terms(&mut |term, _| {
            if term.field() == f.text
                && let Some(word) = term.value().as_str()
            {
                words.push(word.to_string());
            }
        });
        let mut analyzer = Fields::text_analyzer();
        let mut tokenize = |text: &str, out: &mut Vec<String>| {
            let mut stream = analyzer.token_stream(text);
            while let Some(token) = stream.next() {
                out.push(token.text.clone());
            }
        };
        for (path, value) in json_literals(ast) {
            let key = path.rsplit('.').next().unwrap_or(&path).to_string();
            tokenize(&key, &mut words);
            tokenize(&value, &mut words);
        }
        let mut terms = BTreeMap::new();
        for word in words {
            let freq = searcher.doc_freq(&Term::from_field_text(f.text, &word))?;
            // Rarer words weigh more in choosing the fragment, as tantivy does.
            terms.insert(word, 1.0 / (1.0 + freq as f32));
        }
        Ok(SnippetGenerator::new(
            terms,
            Fields::text_analyzer(),
            f.text,
            SNIPPET_CHARS,
        ))
    }
}

/// Parses the query, with a clear message for a syntax error.
fn parse(query: &str) -> Result<UserInputAst, IndexError> {
    if query.trim().is_empty() {
        return Err(query_error(
            "the query is empty (`*` matches everything)".into(),
        ));
    }
    query_grammar::parse_query(query).map_err(|_| {
        let (_, errors) = query_grammar::parse_query_lenient(query);
        let detail = errors
            .first()
            .map(|e| format!(" at character {}: {}", e.pos + 1, e.message))
            .unwrap_or_default();
        query_error(format!("cannot parse the query `{query}`{detail}"))
    })
}

fn query_error(message: String) -> IndexError {
    IndexError::Query(QueryError { message })
}

/// Points a facet's `name:value` at its `tags` term, and every other
/// `name:` but `text` into the JSON field.
fn redirect_fields(ast: UserInputAst, fields: &Fields) -> UserInputAst {
    let json = |name: String| -> String {
        if name == "text" || name == "json" || name.starts_with("json.") {
            name
        } else {
            format!("json.{name}")
        }
    };
    let is_tag = |name: &Option<String>| name.as_deref().is_some_and(|n| TAGS.contains(&n));
    let tags_name = || fields.schema.get_field_name(fields.tags).to_string();
    match ast {
        UserInputAst::Clause(children) => UserInputAst::Clause(
            children
                .into_iter()
                .map(|(occur, child)| (occur, redirect_fields(child, fields)))
                .collect(),
        ),
        UserInputAst::Boost(child, boost) => {
            UserInputAst::Boost(Box::new(redirect_fields(*child, fields)), boost)
        }
        UserInputAst::Leaf(leaf) => UserInputAst::Leaf(Box::new(match *leaf {
            UserInputLeaf::Literal(mut literal) if is_tag(&literal.field_name) => {
                let name = literal.field_name.take().unwrap_or_default();
                literal.phrase = tag(&name, &literal.phrase);
                literal.field_name = Some(tags_name());
                UserInputLeaf::Literal(literal)
            }
            UserInputLeaf::Set { field, elements } if is_tag(&field) => {
                let name = field.unwrap_or_default();
                UserInputLeaf::Set {
                    field: Some(tags_name()),
                    elements: elements.iter().map(|e| tag(&name, e)).collect(),
                }
            }
            UserInputLeaf::Literal(mut literal) => {
                literal.field_name = literal.field_name.map(json);
                UserInputLeaf::Literal(literal)
            }
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            } => UserInputLeaf::Range {
                field: field.map(json),
                lower,
                upper,
            },
            UserInputLeaf::Set { field, elements } => UserInputLeaf::Set {
                field: field.map(json),
                elements,
            },
            UserInputLeaf::Exists { field } => UserInputLeaf::Exists { field: json(field) },
            UserInputLeaf::Regex { field, pattern } => UserInputLeaf::Regex {
                field: field.map(json),
                pattern,
            },
            other => other,
        })),
    }
}

/// `(path, value)` of every `json.path:value` literal of the query.
fn json_literals(ast: &UserInputAst) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![ast];
    while let Some(node) = stack.pop() {
        match node {
            UserInputAst::Clause(children) => stack.extend(children.iter().map(|(_, c)| c)),
            UserInputAst::Boost(child, _) => stack.push(child),
            UserInputAst::Leaf(leaf) => {
                if let UserInputLeaf::Literal(literal) = &**leaf
                    && let Some(path) = literal
                        .field_name
                        .as_deref()
                        .and_then(|n| n.strip_prefix("json."))
                {
                    out.push((path.to_string(), literal.phrase.clone()));
                }
            }
        }
    }
    out
}

/// The text of the document `hit` names, read back from its checkpoint;
/// empty if it can no longer be read.
fn document_text(store: &dyn RunStore, hit: &Hit) -> String {
    let Some(kind) = Kind::parse(&hit.kind) else {
        return String::new();
    };
    let bytes = match store.read(&CheckpointId(hit.checkpoint.clone()), &hit.path) {
        Ok(Some(bytes)) => bytes,
        _ => return String::new(),
    };
    extract::entries(kind, &bytes)
        .into_iter()
        .find(|e| e.line == hit.line)
        .map(|e| e.text)
        .unwrap_or_default()
}

/// The best fragment of `text` with its highlighted byte ranges, on one
/// line (` · ` between lines); the text's start when no word of the query
/// is in it.
fn cut_snippet(generator: &SnippetGenerator, text: &str) -> (String, Vec<Range<usize>>) {
    let snippet = generator.snippet(text);
    let (fragment, highlights) = if snippet.is_empty() {
        let end = text
            .char_indices()
            .nth(SNIPPET_CHARS)
            .map_or(text.len(), |(i, _)| i);
        (&text[..end], Vec::new())
    } else {
        (
            snippet.fragment(),
            collapse_overlapped_ranges(snippet.highlighted()),
        )
    };
    let fragment = fragment.trim_end();
    // Where each byte of the fragment lands in the one-line text.
    let mut flat = String::with_capacity(fragment.len());
    let mut moved = Vec::with_capacity(fragment.len() + 1);
    for (i, c) in fragment.char_indices() {
        moved.resize(i + 1, flat.len());
        match c {
            '\n' => flat.push_str(" · "),
            '\r' | '\t' => flat.push(' '),
            c => flat.push(c),
        }
    }
    moved.resize(fragment.len() + 1, flat.len());
    let highlights = highlights
        .into_iter()
        .filter(|r| r.end <= fragment.len())
        .map(|r| moved[r.start]..moved[r.end])
        .collect();
    (flat, highlights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_line_with_highlights_kept_in_place() {
        let mut terms = BTreeMap::new();
        terms.insert("parser".to_string(), 1.0);
        let generator =
            SnippetGenerator::new(terms, Fields::text_analyzer(), Fields::new().text, 100);
        let (flat, highlights) = cut_snippet(&generator, "title: Write it\nsummary: the parser");
        assert_eq!(flat, "title: Write it · summary: the parser");
        assert_eq!(highlights.len(), 1);
        assert_eq!(&flat[highlights[0].clone()], "parser");
        let (flat, highlights) = cut_snippet(&generator, "nothing\nhere");
        assert_eq!((flat.as_str(), highlights.len()), ("nothing · here", 0));
    }

    #[test]
    fn unknown_field_names_point_into_the_json() {
        let fields = Fields::new();
        let ast = redirect_fields(
            parse("verdict:x phase:build json.kind:y -z").unwrap(),
            &fields,
        );
        let text = format!("{ast:?}");
        assert!(text.contains("\"json.verdict\":"), "{text}");
        assert!(text.contains("\"tags\":phase:build"), "{text}");
        assert!(text.contains("\"json.kind\":"), "{text}");
        assert_eq!(json_literals(&ast).len(), 2);
    }

    #[test]
    fn syntax_errors_say_where() {
        let Err(IndexError::Query(e)) = parse("foo AND (") else {
            panic!("expected a query error");
        };
        assert!(
            e.message.contains("cannot parse the query"),
            "{}",
            e.message
        );
        assert!(matches!(parse("  "), Err(IndexError::Query(_))));
    }
}
