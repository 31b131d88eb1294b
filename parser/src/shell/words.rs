//! Splitting an expanded word into fields on unquoted whitespace.

/// Collects the fields of one word while it is being expanded. Text that must not split
/// (quoted text, escaped characters) goes in "raw"; text that may split (literal characters
/// and the values of unquoted variables) goes through [`Fields::push`].
#[derive(Debug, Default)]
pub(crate) struct Fields {
    buf: String,
    fields: Vec<String>,
    /// Set once anything (even an empty quoted string) started a field. An empty field
    /// is still never emitted, as in BuildKit: `a "" b` gives `a`, `b`.
    in_field: bool,
}

impl Fields {
    pub(crate) fn push(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_field && !self.buf.is_empty() {
                self.fields.push(std::mem::take(&mut self.buf));
                self.in_field = false;
            }
        } else {
            self.push_raw(ch);
        }
    }

    pub(crate) fn push_raw(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_field = true;
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        s.chars().for_each(|ch| self.push(ch));
    }

    pub(crate) fn push_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_field = true;
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.fields.push(self.buf);
        }
        self.fields
    }
}
