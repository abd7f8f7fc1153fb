//! A YAML node tree whose scalars know exactly which bytes of the parsed text hold their value.
//!
//! The structure and the values come from yaml-rust2 0.13; the byte positions do not come from
//! its marker `index()`, which is not a byte offset nor a character offset: it advances by
//! characters on most lines but by bytes on the content lines of `|` and `>` block scalars, so
//! after one non-ASCII character in a block scalar every later index is off. What was measured
//! of the markers of a scalar event (plain, quoted and block scalars, keys, flow collections,
//! non-ASCII before and inside them, comments, CRLF, a lone CR, anchors and tags):
//!
//! - `line()` is exact (1-based; `\r\n`, `\n` and a lone `\r` each end a line);
//! - `col()` counts characters from the start of that line, on every kind of line;
//! - a plain scalar's marker is at its first character, a quoted scalar's at its opening quote
//!   (after any anchor or tag); a block scalar's is at the block indentation of its first
//!   non-empty content line (its column is the indentation), not at the `|` or `>` header;
//! - a leading UTF-8 BOM is not skipped: it becomes part of the first key. [`parse`] removes it
//!   before parsing and adds its three bytes back to every position.
//!
//! So a scalar's start is taken from `line()` and `col()` (the line's byte start from a table of
//! line starts, then the column's characters walked on that line, with a cursor so that many
//! scalars on one long line cost one walk), and from there the scalar's source is read again
//! here, by its style, to find which runs of value bytes are copies of runs of source bytes
//! (its *verbatim segments*). Every byte of the value is checked against what that reading
//! produces; if anything disagrees the scalar keeps no segments, and [`Scalar::source_range`]
//! answers `None` rather than a wrong range.

use std::ops::Range;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A scalar, with where its value is written.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, its entries in the order written.
    Map(Vec<(Node, Node)>),
    /// An alias (not followed).
    Alias,
}

impl Node {
    /// The value of a mapping's entry whose key is the scalar `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of a scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.value.as_str())
    }

    /// The scalar, if this is one.
    pub(crate) fn as_scalar(&self) -> Option<&Scalar> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `x`
    Plain,
    /// `'x'`
    SingleQuoted,
    /// `"x"`
    DoubleQuoted,
    /// `|`
    Literal,
    /// `>`
    Folded,
}

/// A scalar: its value, its style and where its value's bytes are in the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar {
    /// The value, after unescaping and line folding.
    pub(crate) value: String,
    /// How it is written.
    pub(crate) style: Style,
    /// 1-based line of its first character (for a block scalar, of its first non-empty
    /// content line).
    pub(crate) line: usize,
    /// The runs of value bytes that are copies of source bytes, in value order.
    segments: Vec<Segment>,
}

/// `value[value..value + len]` is `text[source..source + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    value: usize,
    source: usize,
    len: usize,
}

impl Scalar {
    /// The byte range in the parsed text that holds `value[range]` verbatim: Some only when
    /// those value bytes are a copy of one contiguous run of source bytes (no escape, no folded
    /// line break, no stripped indentation inside the range).
    ///
    /// An empty range is answered where it touches a verbatim run (the inside of `""` and `''`
    /// is an empty run), so an empty quoted value can be replaced too.
    pub(crate) fn source_range(&self, range: Range<usize>) -> Option<Range<usize>> {
        if range.start > range.end || range.end > self.value.len() {
            return None;
        }
        // The last segment starting at or before range.start.
        let i = self
            .segments
            .partition_point(|s| s.value <= range.start)
            .checked_sub(1)?;
        let s = self.segments[i];
        (range.end <= s.value + s.len).then(|| {
            let start = s.source + (range.start - s.value);
            start..start + (range.end - range.start)
        })
    }
}

/// A text that is not YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column (in characters).
    pub(crate) column: usize,
    /// What is wrong.
    pub(crate) message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Every document of a multi-document YAML stream (a leading BOM, `---` with comments, `...`
/// ends, CRLF all handled).
pub(crate) fn parse(text: &str) -> Result<Vec<Node>, ParseError> {
    // yaml-rust2 has no limit on block nesting (a few thousand indented levels overflow the
    // stack) and the trees built here are recursive: bound the depth first, in one pass.
    kfsec_core::limits::yaml_nesting(text, kfsec_core::limits::MAX_YAML_DEPTH).map_err(|e| {
        ParseError {
            line: e.line,
            column: 1,
            message: format!(
                "nested more than {} levels deep; kfsec refuses such YAML before parsing it (Kubernetes objects nest far less)",
                e.limit
            ),
        }
    })?;
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ('\u{feff}'.len_utf8(), rest),
        None => (0, text),
    };
    let mut builder = Builder {
        text: body,
        bom,
        lines: line_starts(body),
        cursor: (0, 0, 0),
        documents: Vec::new(),
        stack: Vec::new(),
    };
    Parser::new_from_str(body)
        .load(&mut builder, true)
        .map_err(|e| ParseError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
    Ok(builder.documents)
}

/// The byte where each line starts (`\r\n`, `\n` and a lone `\r` end a line, as in yaml-rust2).
fn line_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = vec![0];
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
            out.push(i + 1);
        }
    }
    out
}

/// Builds [`Node`] trees from parser events, one per document.
struct Builder<'a> {
    /// The text parsed (after any BOM).
    text: &'a str,
    /// Bytes before `text` in what the caller gave.
    bom: usize,
    lines: Vec<usize>,
    /// The last (line, column, byte) converted: scalars come in text order, so the next one on
    /// the same line walks on from there.
    cursor: (usize, usize, usize),
    documents: Vec<Node>,
    /// Open collections: a sequence's items, or a map's entries and a pending key.
    stack: Vec<Open>,
}

enum Open {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

impl Builder<'_> {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Open::Seq(items)) => items.push(node),
            Some(Open::Map(entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    /// The byte of a (1-based line, 0-based character column) in `text`.
    fn byte(&mut self, line: usize, col: usize) -> Option<usize> {
        let line_start = *self.lines.get(line.checked_sub(1)?)?;
        let (from_col, from_byte) = match self.cursor {
            (l, c, b) if l == line && c <= col => (c, b),
            _ => (0, line_start),
        };
        let rest = self.text.get(from_byte..)?;
        let byte = if rest.as_bytes()[..rest.len().min(col - from_col)].is_ascii() {
            from_byte + (col - from_col)
        } else {
            from_byte
                + rest
                    .char_indices()
                    .nth(col - from_col)
                    .map_or(rest.len(), |(i, _)| i)
        };
        (byte <= self.text.len()).then(|| {
            self.cursor = (line, col, byte);
            byte
        })
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, style, _, _) => {
                let style = match style {
                    TScalarStyle::SingleQuoted => Style::SingleQuoted,
                    TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    TScalarStyle::Literal => Style::Literal,
                    TScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let mut segments = match (value.is_empty(), style) {
                    // An empty plain or block scalar has no position of its own.
                    (true, Style::Plain | Style::Literal | Style::Folded) => Vec::new(),
                    _ => match self.byte(mark.line(), mark.col()) {
                        Some(start) => {
                            segments(self.text, start, &value, style).unwrap_or_default()
                        }
                        None => Vec::new(),
                    },
                };
                for s in &mut segments {
                    s.source += self.bom;
                }
                self.push(Node::Scalar(Scalar {
                    value,
                    style,
                    line: mark.line(),
                    segments,
                }));
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(Vec::new())),
            Event::MappingStart(..) => self.stack.push(Open::Map(Vec::new(), None)),
            Event::SequenceEnd => {
                if let Some(Open::Seq(items)) = self.stack.pop() {
                    self.push(Node::Seq(items));
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(entries, _)) = self.stack.pop() {
                    self.push(Node::Map(entries));
                }
            }
            Event::Alias(_) => self.push(Node::Alias),
            _ => {}
        }
    }
}

/// Reads a scalar's source from `start` (its first character, opening quote, or block
/// indentation of its first non-empty line) along with its `value`, and returns the verbatim
/// segments; `None` when the source does not produce exactly `value`.
fn segments(text: &str, start: usize, value: &str, style: Style) -> Option<Vec<Segment>> {
    let mut r = Reader {
        src: text.as_bytes(),
        value: value.as_bytes(),
        s: start,
        v: 0,
        segments: Vec::new(),
    };
    match style {
        Style::Plain => r.plain()?,
        Style::SingleQuoted => r.quoted(b'\'')?,
        Style::DoubleQuoted => r.quoted(b'"')?,
        Style::Literal => r.block(false)?,
        Style::Folded => r.block(true)?,
    }
    (r.v == r.value.len()).then_some(r.segments)
}

/// A walk through a scalar's source (`s`) and its value (`v`) together.
struct Reader<'a> {
    src: &'a [u8],
    value: &'a [u8],
    s: usize,
    v: usize,
    segments: Vec<Segment>,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

impl Reader<'_> {
    /// Copies `n` source bytes to the value (they must be the value's next bytes).
    fn copy(&mut self, n: usize) -> Option<()> {
        if self.src.get(self.s..self.s + n)? != self.value.get(self.v..self.v + n)? {
            return None;
        }
        match self.segments.last_mut() {
            Some(last) if last.value + last.len == self.v && last.source + last.len == self.s => {
                last.len += n;
            }
            _ if n == 0 => {}
            _ => self.segments.push(Segment {
                value: self.v,
                source: self.s,
                len: n,
            }),
        }
        self.s += n;
        self.v += n;
        Some(())
    }

    /// Marks an empty verbatim run here (the inside of an empty quoted scalar).
    fn empty_run(&mut self) {
        self.segments.push(Segment {
            value: self.v,
            source: self.s,
            len: 0,
        });
    }

    /// The value's next bytes are `bytes`, not a copy of the source; the source advances by
    /// `src_len`.
    fn made(&mut self, bytes: &[u8], src_len: usize) -> Option<()> {
        if self.value.get(self.v..self.v + bytes.len())? != bytes {
            return None;
        }
        self.v += bytes.len();
        self.s += src_len;
        Some(())
    }

    /// The end of the line at `at`: the first `\r` or `\n`.
    fn eol(&self, at: usize) -> usize {
        self.src[at..]
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .map_or(self.src.len(), |i| at + i)
    }

    /// Past the line break at `at` (none at the end of the text).
    fn past_break(&self, at: usize) -> usize {
        match self.src.get(at) {
            Some(b'\r') if self.src.get(at + 1) == Some(&b'\n') => at + 2,
            Some(b'\r' | b'\n') => at + 1,
            _ => at,
        }
    }

    /// From a line break at `s`: skips it, the empty lines after it and the next line's
    /// leading blanks, and returns how many empty lines there were.
    fn skip_fold(&mut self) -> usize {
        let mut empty = 0;
        self.s = self.past_break(self.s);
        loop {
            while self.s < self.src.len() && is_blank(self.src[self.s]) {
                self.s += 1;
            }
            match self.src.get(self.s) {
                Some(b'\r' | b'\n') => {
                    empty += 1;
                    self.s = self.past_break(self.s);
                }
                _ => return empty,
            }
        }
    }

    /// A line break folded in a flow scalar: a space, or a newline per empty line.
    fn fold(&mut self) -> Option<()> {
        match self.skip_fold() {
            0 => self.made(b" ", 0),
            n => {
                for _ in 0..n {
                    self.made(b"\n", 0)?;
                }
                Some(())
            }
        }
    }

    /// The longest common prefix of the source from `s` (up to `end`) and the rest of the value.
    fn common(&self, end: usize) -> usize {
        self.src[self.s..end]
            .iter()
            .zip(&self.value[self.v..])
            .take_while(|(a, b)| a == b)
            .count()
    }

    fn plain(&mut self) -> Option<()> {
        loop {
            let eol = self.eol(self.s);
            let mut end = eol;
            while end > self.s && is_blank(self.src[end - 1]) {
                end -= 1;
            }
            let n = self.common(end);
            self.copy(n)?;
            if self.v == self.value.len() {
                return Some(());
            }
            // The value goes on: only past a line break.
            if self.s != end {
                return None;
            }
            self.s = eol;
            if self.s == self.src.len() {
                return None;
            }
            self.fold()?;
        }
    }

    fn quoted(&mut self, quote: u8) -> Option<()> {
        if self.src.get(self.s) != Some(&quote) {
            return None;
        }
        self.s += 1;
        let mut any = false;
        loop {
            let from = self.s;
            let special = from
                + self.src[from..].iter().position(|&c| {
                    c == quote || c == b'\\' && quote == b'"' || c == b'\n' || c == b'\r'
                })?;
            let mut run_end = special;
            if matches!(self.src[special], b'\n' | b'\r') {
                while run_end > from && is_blank(self.src[run_end - 1]) {
                    run_end -= 1;
                }
            }
            self.copy(run_end - from)?;
            any |= run_end > from;
            self.s = special;
            match self.src[special] {
                b'\n' | b'\r' => self.fold()?,
                b'\'' if quote == b'\'' && self.src.get(special + 1) == Some(&b'\'') => {
                    self.made(b"'", 2)?;
                }
                b'\\' => self.escape()?,
                _ => {
                    // The closing quote.
                    if !any && self.value.is_empty() {
                        self.empty_run();
                    }
                    return Some(());
                }
            }
            any = true;
        }
    }

    /// A double-quoted scalar's escape at `s`.
    fn escape(&mut self) -> Option<()> {
        let c = *self.src.get(self.s + 1)?;
        let simple = |ch: char| Some((ch, 2));
        let hex = |n: usize| -> Option<(char, usize)> {
            let digits = std::str::from_utf8(self.src.get(self.s + 2..self.s + 2 + n)?).ok()?;
            Some((
                char::from_u32(u32::from_str_radix(digits, 16).ok()?)?,
                2 + n,
            ))
        };
        let (ch, len) = match c {
            b'\n' | b'\r' => {
                // An escaped line break: nothing, then a newline per empty line.
                self.s += 1;
                let empty = self.skip_fold();
                for _ in 0..empty {
                    self.made(b"\n", 0)?;
                }
                return Some(());
            }
            b'0' => simple('\0'),
            b'a' => simple('\x07'),
            b'b' => simple('\x08'),
            b't' | b'\t' => simple('\t'),
            b'n' => simple('\n'),
            b'v' => simple('\x0b'),
            b'f' => simple('\x0c'),
            b'r' => simple('\r'),
            b'e' => simple('\x1b'),
            b' ' => simple(' '),
            b'"' => simple('"'),
            b'/' => simple('/'),
            b'\\' => simple('\\'),
            b'N' => simple('\u{85}'),
            b'_' => simple('\u{a0}'),
            b'L' => simple('\u{2028}'),
            b'P' => simple('\u{2029}'),
            b'x' => hex(2),
            b'u' => hex(4),
            b'U' => hex(8),
            _ => None,
        }?;
        let mut buf = [0; 4];
        self.made(ch.encode_utf8(&mut buf).as_bytes(), len)
    }

    /// A block scalar from the indentation of its first non-empty content line.
    fn block(&mut self, folded: bool) -> Option<()> {
        // The indentation: `s` is at the first content character of the first non-empty line.
        let line_start = self.src[..self.s]
            .iter()
            .rposition(|&c| c == b'\n' || c == b'\r')
            .map_or(0, |i| i + 1);
        let indent = self.s - line_start;
        if !self.src[line_start..self.s].iter().all(|&c| c == b' ') {
            return None;
        }
        // Leading empty lines are above this one.
        while self.value.get(self.v) == Some(&b'\n') {
            self.made(b"\n", 0)?;
        }
        // A line whose content is only blanks or nothing at this indentation is empty.
        let empty = |r: &Self, at: usize| -> bool {
            let eol = r.eol(at);
            eol - at <= indent && r.src[at..eol].iter().all(|&c| c == b' ')
        };
        let mut prev_spaced;
        loop {
            // A content line: its bytes after the indentation are the value's.
            let eol = self.eol(self.s);
            prev_spaced = self.src.get(self.s).is_some_and(|&c| is_blank(c));
            self.copy(eol - self.s)?;
            if self.v == self.value.len() {
                return Some(());
            }
            // Line breaks up to the next content line.
            let mut at = self.past_break(eol);
            let mut empties = 0;
            while at < self.src.len() && empty(self, at) {
                empties += 1;
                at = self.past_break(self.eol(at));
            }
            let newlines = self.value[self.v..]
                .iter()
                .take_while(|&&c| c == b'\n')
                .count();
            if self.v + newlines == self.value.len() {
                // The chomped end.
                self.v += newlines;
                return Some(());
            }
            let next = at + indent;
            if self.src.get(at..next)?.iter().any(|&c| c != b' ') {
                return None;
            }
            let spaced = self.src.get(next).is_some_and(|&c| is_blank(c));
            let ok = if folded && !prev_spaced && !spaced {
                if empties == 0 {
                    self.value.get(self.v) == Some(&b' ')
                } else {
                    newlines == empties
                }
            } else {
                newlines == empties + 1
            };
            if !ok {
                return None;
            }
            self.v += newlines.max(usize::from(newlines == 0));
            self.s = next;
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod roundtrip;
