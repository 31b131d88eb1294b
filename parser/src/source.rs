//! Positions: byte offsets in the Dockerfile to 1-based line/column [`Span`]s, and the
//! offset map of an instruction whose continuation lines were joined into one string.

use crate::ast::{Span, Word};
use std::cell::Cell;

/// The Dockerfile text with the start offset of every line.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub text: &'a str,
    line_starts: Vec<usize>,
    /// The last `(offset, column, line)` computed: positions are mostly asked for in
    /// increasing order, so counting characters from there keeps long lines linear, and
    /// the line is usually the same one.
    last: Cell<(usize, usize, usize)>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            text,
            line_starts,
            last: Cell::new((0, 1, 1)),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let (last_off, last_col, last_line) = self.last.get();
        // Usually on the line of the last position asked for: no search then.
        let on_last_line = self.line_starts[last_line - 1] <= offset
            && self
                .line_starts
                .get(last_line)
                .is_none_or(|&next| offset < next);
        let line = if on_last_line {
            last_line
        } else {
            self.line_starts.partition_point(|&s| s <= offset)
        };
        let start = self.line_starts[line - 1];
        let (from, base) = if last_off >= start && last_off <= offset {
            (last_off, last_col)
        } else {
            (start, 1)
        };
        let col = base + self.text.get(from..offset).map_or(0, |s| s.chars().count());
        self.last.set((offset, col, line));
        (line, col)
    }

    /// The span of `start..end`; its last line is the line of the last byte.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let (line, col) = self.line_col(start);
        let end_line = if end > start {
            self.line_col(end - 1).0
        } else {
            line
        };
        Span {
            start,
            end,
            line,
            col,
            end_line,
        }
    }
}

/// One logical line: the pieces of physical lines that a continuation joined, with where
/// each piece came from so that positions in `text` map back to the source.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    pub text: String,
    /// `(offset in text, offset in source)` of each non-empty piece, in order.
    segments: Vec<(usize, usize)>,
}

impl Joined {
    pub fn push(&mut self, source: &str, start: usize, end: usize) {
        if end > start {
            self.segments.push((self.text.len(), start));
            self.text.push_str(&source[start..end]);
        }
    }

    /// Source offset of a byte offset in `text`.
    pub fn to_source(&self, offset: usize) -> usize {
        let i = self.segments.partition_point(|&(j, _)| j <= offset);
        match i {
            0 => self.segments.first().map_or(0, |&(_, s)| s),
            _ => {
                let (j, s) = self.segments[i - 1];
                s + (offset - j)
            }
        }
    }

    /// Source byte range of `start..end` in `text`.
    pub fn source_range(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.to_source(start);
        let e = if end > start {
            self.to_source(end - 1) + 1
        } else {
            s
        };
        (s, e)
    }

    pub fn span(&self, source: &Source<'_>, start: usize, end: usize) -> Span {
        let (s, e) = self.source_range(start, end);
        // `to_source(end - 1) + 1` lands inside a multi-byte character; move to its end.
        let mut e = e;
        while e < source.text.len() && !source.text.is_char_boundary(e) {
            e += 1;
        }
        source.span(s, e)
    }

    pub fn word(
        &self,
        source: &Source<'_>,
        text: impl Into<String>,
        start: usize,
        end: usize,
    ) -> Word {
        Word {
            text: text.into(),
            span: self.span(source, start, end),
        }
    }
}

/// Trims Unicode white space (Go's `strings.TrimSpace`) off `text[start..end]`.
pub(crate) fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    (start + lead, start + lead + trimmed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let src = Source::new("ab\nçd\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        assert_eq!(src.line_col(5), (2, 2));
        // Backwards, across lines, past the end.
        assert_eq!(src.line_col(1), (1, 2));
        assert_eq!(src.line_col(6), (2, 3));
        assert_eq!(src.line_col(2), (1, 3));
        assert_eq!(src.line_col(7), (3, 1));
        assert_eq!(src.line_col(99), (3, 1));
        assert_eq!(src.line_col(5), (2, 2));
    }

    #[test]
    fn joined_maps_back_to_each_piece() {
        let text = "RUN a \\\n  b\n";
        let mut j = Joined::default();
        j.push(text, 0, 6);
        j.push(text, 8, 11);
        assert_eq!(j.text, "RUN a   b");
        assert_eq!(j.to_source(4), 4);
        assert_eq!(j.to_source(8), 10);
        assert_eq!(j.source_range(8, 9), (10, 11));
        let src = Source::new(text);
        let sp = j.span(&src, 4, 9);
        assert_eq!((sp.line, sp.col, sp.end_line), (1, 5, 2));
    }
}
