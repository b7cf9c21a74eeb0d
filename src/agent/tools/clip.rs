//! Cutting text to the output cap, at char boundaries, saying how much went.
//!
//! Every cut leaves a note in the text itself: the model reads only the
//! text, and must know that it did not see everything.

/// The largest char boundary of `s` at or below `i`.
pub(super) fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    // A char is at most 4 bytes, so a boundary is at most 3 bytes back.
    (i.saturating_sub(3)..=i)
        .rev()
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(0)
}

/// The smallest char boundary of `s` at or above `i`.
fn ceil_boundary(s: &str, i: usize) -> usize {
    (i..s.len())
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(s.len())
}

/// `text` cut to at most `cap` bytes from its start; true if it was cut.
pub(super) fn keep_head(text: &str, cap: usize) -> (String, bool) {
    if text.len() <= cap {
        return (text.to_string(), false);
    }
    let end = floor_boundary(text, cap);
    let left_out = text.len() - end;
    (
        format!("{}\n[… {left_out} more bytes left out]", &text[..end]),
        true,
    )
}

/// Text that may already have lost its middle: `head`, then `omitted`
/// bytes that were not kept, then `tail`. With nothing omitted, `head` and
/// `tail` are simply the two halves of one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Ends {
    pub(super) head: String,
    pub(super) tail: String,
    pub(super) omitted: u64,
}

impl Ends {
    /// The whole of `text`.
    #[cfg(test)]
    pub(super) fn whole(text: &str) -> Ends {
        Ends {
            head: text.to_string(),
            ..Ends::default()
        }
    }

    /// The length of the text it stands for, omitted bytes included.
    pub(super) fn len(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.omitted
    }

    /// The text in at most `cap` bytes (plus the note): both ends kept,
    /// the middle cut, since a command's first and last lines (what it was
    /// doing, how it ended) matter most. True if anything was left out.
    pub(super) fn fit(&self, cap: usize) -> (String, bool) {
        let kept = self.head.len() + self.tail.len();
        if self.omitted == 0 && kept <= cap {
            return (format!("{}{}", self.head, self.tail), false);
        }
        // Without a gap yet, cut around the middle of the whole text.
        let whole;
        let (head, tail) = if self.omitted == 0 {
            whole = format!("{}{}", self.head, self.tail);
            whole.split_at(floor_boundary(&whole, whole.len() / 2))
        } else {
            (self.head.as_str(), self.tail.as_str())
        };
        let tail_len = tail.len().min(cap - head.len().min(cap / 2));
        let head_end = floor_boundary(head, cap - tail_len);
        let tail_start = ceil_boundary(tail, tail.len() - tail_len);
        let left_out = self.omitted + (head.len() - head_end + tail_start) as u64;
        (
            format!(
                "{}\n[… {left_out} bytes left out …]\n{}",
                &head[..head_end],
                &tail[tail_start..]
            ),
            true,
        )
    }
}

/// Shares `cap` bytes between two texts of lengths `a` and `b`: each gets
/// what it needs if they fit together; otherwise each at least half, and
/// what one does not need goes to the other.
pub(super) fn share(a: u64, b: u64, cap: usize) -> (usize, usize) {
    let half = cap / 2;
    let small = |n: u64| usize::try_from(n).ok().filter(|&n| n <= half);
    match (small(a), small(b)) {
        (Some(a), _) => (a, cap - a),
        (_, Some(b)) => (cap - b, b),
        _ => (half, cap - half),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_head_cuts_at_a_char_boundary() {
        assert_eq!(keep_head("short", 10), ("short".to_string(), false));
        // `é` is two bytes: a cut at 2 would split it.
        let (text, cut) = keep_head("aébc", 2);
        assert!(cut);
        assert_eq!(text, "a\n[… 4 more bytes left out]");
    }

    #[test]
    fn fit_keeps_both_ends() {
        let text = "0123456789";
        assert_eq!(Ends::whole(text).fit(10), (text.to_string(), false));
        assert_eq!(
            Ends::whole(text).fit(4),
            ("01\n[… 6 bytes left out …]\n89".to_string(), true)
        );
        let gapped = Ends {
            head: "abc".into(),
            tail: "xyz".into(),
            omitted: 100,
        };
        assert_eq!(gapped.len(), 106);
        assert_eq!(
            gapped.fit(100),
            ("abc\n[… 100 bytes left out …]\nxyz".to_string(), true)
        );
        assert_eq!(
            gapped.fit(2),
            ("a\n[… 104 bytes left out …]\nz".to_string(), true)
        );
        // Multi-byte chars at both cuts.
        let (text, cut) = Ends::whole("ééééé").fit(5);
        assert!(cut);
        assert_eq!(text, "é\n[… 6 bytes left out …]\né");
    }

    #[test]
    fn share_gives_the_rest_to_the_larger() {
        assert_eq!(share(10, 20, 100), (10, 90));
        assert_eq!(share(200, 20, 100), (80, 20));
        assert_eq!(share(200, 300, 100), (50, 50));
        assert_eq!(share(0, 0, 100), (0, 100));
    }
}
