//! Heredoc markers (`<<EOF`, `<<-'EOF'`, `3<<"EOF"`) in RUN, COPY and ADD lines.
//!
//! BuildKit finds them by splitting the instruction line with its shell lexer in a raw mode
//! (quotes and escapes kept, unset variables left as written) and matching each word
//! against `^(\d*)<<(-?)\s*([^<]*)$`. The lexer below reproduces that mode, including the
//! details that decide what counts as one word (`<<` followed by blanks stays in one word).
//! It always uses `\` as escape character, whatever the escape directive says.

use crate::dump::go_quote;
use crate::grammar::{Rule, parse};

/// A heredoc marker found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The delimiter, quotes removed.
    pub name: String,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
    /// File descriptor digits before `<<` (0 when absent).
    pub fd: u64,
}

/// The heredoc markers of an instruction line, with the byte offset of each marker word.
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<(Marker, usize)>, String> {
    let mut lexer = Lexer::new(line, true, true);
    // As in BuildKit, a line the lexer cannot split (an unterminated quote) has no heredocs.
    let Ok(words) = lexer.words() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (word, start) in words {
        if let Some(marker) = parse_marker(&word)? {
            out.push((marker, start));
        }
    }
    Ok(out)
}

/// Parses one word as a heredoc marker (BuildKit's `ParseHeredoc`). `Ok(None)` when the
/// word is not a marker; an error when it looks like one but cannot be lexed.
pub(crate) fn parse_marker(word: &str) -> Result<Option<Marker>, String> {
    // Nearly every word is not a marker: without `<<` after the digits the grammar
    // cannot match, so skip the call.
    if !word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with("<<")
    {
        return Ok(None);
    }
    let Some(mut pairs) = parse(Rule::heredoc_marker, word) else {
        return Ok(None);
    };
    let Some(top) = pairs.next() else {
        return Ok(None);
    };
    let (mut fd, mut chomp, mut rest) = (0, false, "");
    for p in top.into_inner() {
        match p.as_rule() {
            Rule::heredoc_fd => fd = p.as_str().parse().unwrap_or(0),
            Rule::heredoc_chomp => chomp = true,
            Rule::heredoc_word => rest = p.as_str(),
            _ => {}
        }
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let words = Lexer::new(rest, false, false)
        .words()
        .map_err(|e| format!("failed to process {}: {e}", go_quote(rest)))?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer::new(rest, true, false)
        .words()
        .map_err(|e| format!("failed to process {}: {e}", go_quote(rest)))?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words[0].0.clone();
    let expand = quotes(&name) == quotes(&raw[0].0);
    Ok(Some(Marker {
        name,
        expand,
        chomp,
        fd,
    }))
}

/// Strips leading tabs from every line (`<<-`).
pub(crate) fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

const ESCAPE: char = '\\';

/// Deepest `${...}` nesting the lexer follows (far beyond any real Dockerfile).
const MAX_NESTING: usize = 64;

/// The subset of BuildKit's shell lexer used for heredoc detection: an empty environment
/// with unset variables kept as written.
struct Lexer {
    chars: Vec<(usize, char)>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// The word buffer. Shared between nested `${...}` scans exactly as in BuildKit, where
    /// a nested scan resets it; this decides the words of odd input like `a${x:-y}`.
    buf: String,
    buf_start: Option<usize>,
    /// Nesting of `${...}` scans, bounded so that hostile input cannot exhaust the stack.
    depth: usize,
}

/// The words being collected by one scan.
#[derive(Default)]
struct Words {
    words: Vec<(String, usize)>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, lx: &mut LexBuf<'_>, ch: char, at: usize) {
        if ch.is_whitespace() {
            if self.in_word && !lx.buf.is_empty() {
                self.flush(lx);
            }
        } else {
            self.add_raw_str(lx, ch.encode_utf8(&mut [0; 4]), at);
        }
    }

    fn add_raw_str(&mut self, lx: &mut LexBuf<'_>, s: &str, at: usize) {
        if lx.buf.is_empty() {
            *lx.start = Some(at);
        }
        lx.buf.push_str(s);
        self.in_word = true;
    }

    fn add_string(&mut self, lx: &mut LexBuf<'_>, s: &str, at: usize) {
        for c in s.chars() {
            self.add_char(lx, c, at);
        }
    }

    fn flush(&mut self, lx: &mut LexBuf<'_>) {
        self.words
            .push((std::mem::take(lx.buf), lx.start.take().unwrap_or(0)));
        self.in_word = false;
    }

    fn finish(mut self, lx: &mut LexBuf<'_>) -> Vec<(String, usize)> {
        if !lx.buf.is_empty() {
            self.flush(lx);
        }
        self.words
    }
}

struct LexBuf<'b> {
    buf: &'b mut String,
    start: &'b mut Option<usize>,
}

impl Lexer {
    fn new(text: &str, raw_quotes: bool, raw_escapes: bool) -> Self {
        Lexer {
            chars: text.char_indices().collect(),
            pos: 0,
            raw_quotes,
            raw_escapes,
            buf: String::new(),
            buf_start: None,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn offset(&self) -> usize {
        self.chars.get(self.pos).map_or_else(
            || self.chars.last().map_or(0, |&(i, c)| i + c.len_utf8()),
            |&(i, _)| i,
        )
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn lexbuf(&mut self) -> LexBuf<'_> {
        LexBuf {
            buf: &mut self.buf,
            start: &mut self.buf_start,
        }
    }

    fn words(&mut self) -> Result<Vec<(String, usize)>, String> {
        let raw = self.raw_escapes;
        self.scan(None, raw).map(|(_, words)| words)
    }

    /// Scans up to `stop` (or the end); returns the processed text and its words.
    fn scan(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<(String, usize)>), String> {
        if self.depth >= MAX_NESTING {
            return Err("substitutions nested too deeply".into());
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let r = self.scan_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        r
    }

    fn scan_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<(String, usize)>), String> {
        let mut result = String::new();
        self.buf.clear();
        self.buf_start = None;
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            let at = self.offset();
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish(&mut self.lexbuf())));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&mut self.lexbuf(), &tmp, at);
                }
                '<' | '\'' | '"' => {
                    let tmp = match ch {
                        '<' => self.possible_heredoc(),
                        '\'' => self.single_quote()?,
                        _ => self.double_quote()?,
                    };
                    result.push_str(&tmp);
                    words.add_raw_str(&mut self.lexbuf(), &tmp, at);
                }
                _ => {
                    self.next();
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            words.add_raw_str(&mut self.lexbuf(), "\\", at);
                            result.push(ch);
                        }
                        let Some(c) = self.next() else { break };
                        words.add_raw_str(&mut self.lexbuf(), c.encode_utf8(&mut [0; 4]), at);
                        result.push(c);
                    } else {
                        words.add_char(&mut self.lexbuf(), ch, at);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish(&mut self.lexbuf())))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let q = self.next();
        if self.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let q = self.next();
        if self.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(ESCAPE);
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | ESCAPE) => ch = self.next().unwrap_or(ESCAPE),
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            // Unset (the environment is empty) and kept as written.
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        let mut chs: String = ch.map_or("\u{FFFD}".to_string(), String::from);
        match ch {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                let mut op = ch;
                if null_is_unset {
                    op = self.next();
                    chs.push(op.unwrap_or('\u{FFFD}'));
                }
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let (word, _) = self.scan(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                Ok(format!("${{{name}{chs}{word}}}"))
            }
            Some('/') => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let (pattern, _) = self.scan(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.scan(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn name(&mut self) -> String {
        use pest::unicode::{DECIMAL_NUMBER, LETTER};
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && DECIMAL_NUMBER(ch) {
                while let Some(d) = self.peek().filter(|&d| DECIMAL_NUMBER(d)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !LETTER(ch) && !DECIMAL_NUMBER(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            self.next();
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        markers_in_line(line)
            .unwrap()
            .into_iter()
            .map(|(m, _)| m.name)
            .collect()
    }

    #[test]
    fn markers_of_lines() {
        assert_eq!(names("RUN <<EOF"), vec!["EOF"]);
        assert_eq!(names("RUN <<-EOF"), vec!["EOF"]);
        assert_eq!(names("RUN << -EOF"), vec!["-EOF"]);
        assert_eq!(names("RUN <<'EOF'"), vec!["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), vec!["EOF"]);
        assert_eq!(names("RUN <<EOF <<EOF2"), vec!["EOF", "EOF2"]);
        assert_eq!(names("RUN '<<EOF'"), Vec::<String>::new());
        assert_eq!(names(r#"RUN "<<EOF""#), Vec::<String>::new());
        assert_eq!(names("RUN <<  EOF  > foo"), vec!["EOF"]);
        assert_eq!(names("RUN <<$EOF"), vec!["$EOF"]);
        assert_eq!(names("COPY <<file.txt /dest"), vec!["file.txt"]);
        assert_eq!(names("RUN echo 'unterminated <<EOF"), Vec::<String>::new());
    }

    fn marker(w: &str) -> Marker {
        parse_marker(w).unwrap().unwrap()
    }

    #[test]
    fn quoting_disables_expansion() {
        let m = marker("<<eo'f'");
        assert_eq!((m.name.as_str(), m.expand), ("eof", false));
        let m = marker(r"<<eo\'f");
        assert_eq!((m.name.as_str(), m.expand), ("eo'f", true));
        let m = marker(r"<<'e'o\'f");
        assert_eq!((m.name.as_str(), m.expand), ("eo'f", false));
        let m = marker("<<'one two'");
        assert_eq!((m.name.as_str(), m.expand), ("one two", false));
        let m = marker("<<-\"EOF\"");
        assert_eq!((m.name.as_str(), m.expand, m.chomp), ("EOF", false, true));
        assert_eq!(marker("3<<X").fd, 3);
    }

    #[test]
    fn marker_helpers_like_buildkit() {
        for w in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(marker(w).name, "EOF", "{w}");
        }
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_marker(w).is_err(), "{w}");
        }
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_marker(w), Ok(None), "{w}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let line = format!("RUN <<EOF {}", "${a:-".repeat(20_000));
        assert_eq!(markers_in_line(&line), Ok(Vec::new()));
        let nested = format!("{}x{}", "${a:-".repeat(10), "}".repeat(10));
        assert!(Lexer::new(&nested, true, true).words().is_ok());
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\thello\n\t\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp("a\t\n"), "a\t\n");
    }
}
