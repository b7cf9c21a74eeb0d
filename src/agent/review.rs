//! Second opinions: a reviewer model reads the primary's artifacts and
//! approves them, rejects them, or asks for changes.
//!
//! Each round is a fresh conversation (`review-<round>`) with the
//! reviewer's seat, read-only tools and one `submit_review` tool; its
//! submission is recorded as a [`Step::Review`]. What the verdict means for
//! the attempt (go on, revise, fail) is decided by the loop in `run.rs`;
//! this file words the reviewer's task and the findings sent back.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ReviewJob;
use super::Step;
use super::conversation::{Conversation, recorded_review};
use super::run::{Attempt, Failure, Tools, Toolset};
use super::submit::Submissions;
use crate::artifact::OutputSpec;
use crate::attempt::{AttemptError, Stream};

/// The reviewer's artifact, submitted with `submit_review`.
const REVIEW: &str = "review";

const SYSTEM: &str = "You review the work another model did for one phase of a workflow. \
You get the phase's instructions and the artifacts the model submitted. Check that the \
artifacts do what the instructions ask, are correct and complete, and, where they make \
claims about the repository, that the claims hold (you may read files with the tools you \
have; you cannot change anything). Then call submit_review once with your verdict: \
`approve` when the work can be used as it is, `changes_requested` with findings the author \
can act on (each with its severity, where it is and how to fix it), or `reject` when the \
work should be started over.";

/// What a reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The artifacts go on as they are.
    Approve,
    /// The primary revises and submits again.
    ChangesRequested,
    /// The attempt fails.
    Reject,
}

/// The verdict of a `review` artifact. Anything but `approve` or `reject`
/// (a repo's own review schema may allow more) asks for changes, so nothing
/// passes without an explicit approval.
pub(super) fn verdict(review: &Value) -> Verdict {
    match review.get("verdict").and_then(Value::as_str) {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        _ => Verdict::ChangesRequested,
    }
}

/// The reviewer's summary, for an error message.
pub(super) fn summary(review: &Value) -> String {
    review
        .get("summary")
        .and_then(Value::as_str)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "(no summary)".into())
}

/// The review of `round`: recorded in the journal, or asked of the reviewer
/// now and recorded.
pub(super) async fn review_round(
    attempt: &Attempt<'_>,
    review: &ReviewJob,
    round: u32,
    artifacts: &BTreeMap<String, Value>,
    tools: &dyn Tools,
) -> Result<Value, Failure> {
    let job = attempt.job;
    if let Some(doc) = recorded_review(&job.journal, round) {
        return Ok(doc.clone());
    }
    attempt.log.push(
        Stream::Wfe,
        format!(
            "review round {round} of {}: asking {} ({})",
            review.rounds, review.seat.provider_name, review.seat.model
        ),
    );
    let outputs = [OutputSpec {
        name: REVIEW.into(),
        schema: review.schema.clone(),
    }];
    let mut submissions = Submissions::new(&outputs, job.max_invalid_submissions);
    let toolset = Toolset::new(tools, &submissions);
    let mut conversation = Conversation::new(
        format!("review-{round}"),
        review.seat.clone(),
        Some(SYSTEM.into()),
        toolset.specs().to_vec(),
        task(&job.prompt, artifacts),
    );
    attempt
        .converse(&mut conversation, &mut submissions, &toolset)
        .await?;
    let doc =
        submissions
            .accepted()
            .get(REVIEW)
            .cloned()
            .ok_or_else(|| AttemptError::Internal {
                message: format!("review round {round} ended without a review"),
            })?;
    attempt
        .record(Step::Review {
            round,
            review: doc.clone(),
        })
        .await?;
    attempt.log.push(
        Stream::Wfe,
        format!(
            "review round {round}: {} — {}",
            doc.get("verdict").and_then(Value::as_str).unwrap_or("?"),
            summary(&doc)
        ),
    );
    Ok(doc)
}

/// The reviewer's first message: the instructions and the artifacts.
fn task(prompt: &str, artifacts: &BTreeMap<String, Value>) -> String {
    let mut text =
        format!("## The phase's instructions\n\n{prompt}\n\n## The artifacts submitted\n");
    for (name, doc) in artifacts {
        // A `Value` always serialises.
        let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
        text.push_str(&format!("\n### {name}\n\n```json\n{pretty}\n```\n"));
    }
    text.push_str("\nReview the work, then call submit_review.");
    text
}

/// What the primary is told after a reviewer asked for changes.
pub(super) fn findings_message(
    review: &Value,
    round: u32,
    rounds: u32,
    submit_tools: &[&str],
) -> String {
    let mut text = format!(
        "A reviewer checked your submission and requested changes (review round {round} of \
         {rounds}): {}\n",
        summary(review)
    );
    let findings = review
        .get("findings")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !findings.is_empty() {
        text.push_str("\nFindings:\n");
    }
    for (n, finding) in findings.iter().enumerate() {
        let field = |key: &str| finding.get(key).and_then(Value::as_str);
        let severity = field("severity").unwrap_or("finding");
        let place = finding
            .get("location")
            .and_then(location)
            .map(|l| format!(" {l}:"))
            .unwrap_or_default();
        let message = field("message").unwrap_or("(no message)");
        text.push_str(&format!("{}. [{severity}]{place} {message}\n", n + 1));
        if let Some(suggestion) = field("suggestion") {
            text.push_str(&format!("   Suggestion: {suggestion}\n"));
        }
    }
    text.push_str(&format!(
        "\nRevise your work to address these findings, then submit every output again \
         ({}): your earlier submissions no longer count.",
        submit_tools.join(", ")
    ));
    text
}

/// `file`, `file:line` or `file:line-end_line`.
fn location(location: &Value) -> Option<String> {
    let file = location.get("file")?.as_str()?;
    let line = location.get("line").and_then(Value::as_u64);
    let end = location.get("end_line").and_then(Value::as_u64);
    Some(match (line, end) {
        (Some(line), Some(end)) if end != line => format!("{file}:{line}-{end}"),
        (Some(line), _) => format!("{file}:{line}"),
        (None, _) => file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn findings_say_what_where_and_how() {
        let review = json!({
            "verdict": "changes_requested",
            "summary": "Two problems.",
            "findings": [
                {"severity": "major", "message": "Off by one.",
                 "location": {"file": "src/lib.rs", "line": 3, "end_line": 5},
                 "suggestion": "Use `..=`."},
                {"severity": "nit", "message": "Typo."}
            ]
        });
        let text = findings_message(&review, 1, 2, &["submit_plan"]);
        assert!(text.contains("round 1 of 2): Two problems."), "{text}");
        assert!(
            text.contains("1. [major] src/lib.rs:3-5: Off by one."),
            "{text}"
        );
        assert!(text.contains("   Suggestion: Use `..=`."), "{text}");
        assert!(text.contains("2. [nit] Typo."), "{text}");
        assert!(text.contains("(submit_plan)"), "{text}");
    }

    #[test]
    fn only_approve_passes() {
        assert_eq!(verdict(&json!({"verdict": "approve"})), Verdict::Approve);
        assert_eq!(verdict(&json!({"verdict": "reject"})), Verdict::Reject);
        assert_eq!(
            verdict(&json!({"verdict": "maybe"})),
            Verdict::ChangesRequested
        );
        assert_eq!(verdict(&json!({})), Verdict::ChangesRequested);
    }
}
