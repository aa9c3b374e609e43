//! Finding places in a TOML file: byte offsets to lines and columns, error spans to the key they belong
//! to, and dotted key paths back to the line where the key is written. Shared by every parser of a TOML
//! file that wants located errors (`warden.toml` here, the simulator's scenario files).
//!
//! The file is parsed once more into toml's spanned document tree ([`toml::de::DeTable`]), which keeps the
//! byte span of every key and value. Serde errors carry a span; semantic errors found after parsing carry
//! a [`KeyPath`] (`sessions.kite.base_url`, `broker.outages[1].to`); both end up as "line L, column C" and
//! a key name (see [`super::located`]).
//!
//! ```
//! use warden_adapters::config::locate::{Document, KeyPath};
//!
//! let text = "[store]\npath = \"/var/lib/warden/db\"\n";
//! let doc = Document::parse(text).unwrap();
//! let span = doc.span_of(&KeyPath::of(&["store", "path"]));
//! assert_eq!(doc.line_column(span.start), (2, 1));
//! ```

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A key in a table.
    Key(String),
    /// An element of an array (0-based).
    Index(usize),
}

/// Where a value sits in a file, as written: `policy.refresh_buffer`, `broker.outages[1].to`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document itself.
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    /// A path from plain keys.
    pub fn of(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect())
    }

    /// This path followed by a key.
    #[must_use]
    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path followed by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// The path without its last step.
    #[must_use]
    pub fn parent(&self) -> KeyPath {
        let mut path = self.clone();
        path.0.pop();
        path
    }

    /// The last key (not index) of the path.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Whether this is the document itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The steps.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// "in [broker.outages]" or "at the top level": where a key of this table is.
    pub fn table_phrase(&self) -> String {
        if self.is_root() { "at the top level".to_owned() } else { format!("in [{self}]") }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare { f.write_str(key)? } else { write!(f, "{key:?}")? }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed TOML text with the spans of its keys.
pub struct Document<'a> {
    text: &'a str,
    root: DeTable<'a>,
}

impl std::fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document").field("bytes", &self.text.len()).finish_non_exhaustive()
    }
}

impl<'a> Document<'a> {
    /// Parses the text; the error is a TOML syntax error.
    pub fn parse(text: &'a str) -> Result<Document<'a>, toml::de::Error> {
        let root = DeTable::parse(text)?.into_inner();
        Ok(Document { text, root })
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.text, offset)
    }

    /// The key path an error span belongs to: the deepest key whose name or value covers it.
    pub fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let mut best = KeyPath::root();
        if span.start < span.end {
            search_table(&self.root, &KeyPath::root(), span, &mut best);
        }
        best
    }

    /// The byte span to point at for `path`: the key itself (or, for an array element, the element); if
    /// the path is not written in the file, its deepest written ancestor; the start of the file for the
    /// root.
    pub fn span_of(&self, path: &KeyPath) -> Range<usize> {
        self.find(path).0
    }

    /// Whether `path` is written in the file.
    pub fn has(&self, path: &KeyPath) -> bool {
        self.find(path).1
    }

    /// The span [`Document::span_of`] gives, and whether the whole path was found.
    fn find(&self, path: &KeyPath) -> (Range<usize>, bool) {
        let mut found = 0..0;
        let mut depth = 0;
        let mut value: Option<&DeValue<'a>> = None;
        let mut table: Option<&DeTable<'a>> = Some(&self.root);
        for segment in path.segments() {
            match segment {
                Segment::Key(key) => {
                    let Some(entry) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key)) else {
                        break;
                    };
                    found = entry.0.span();
                    value = Some(entry.1.get_ref());
                    depth += 1;
                }
                Segment::Index(index) => {
                    let Some(DeValue::Array(array)) = value else { break };
                    let Some(element) = array.get(*index) else { break };
                    found = element.span();
                    value = Some(element.get_ref());
                    depth += 1;
                }
            }
            table = match value {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            };
        }
        (found, depth == path.segments().len())
    }
}

/// The 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

fn consider(candidate: &KeyPath, best: &mut KeyPath) {
    if candidate.segments().len() > best.segments().len() {
        *best = candidate.clone();
    }
}

fn search_table(table: &DeTable<'_>, prefix: &KeyPath, span: &Range<usize>, best: &mut KeyPath) {
    for (key, value) in table.iter() {
        let path = prefix.key(key.get_ref());
        if covers(&key.span(), span) || covers(&value.span(), span) {
            consider(&path, best);
        }
        search_value(value.get_ref(), &path, span, best);
    }
}

fn search_value(value: &DeValue<'_>, path: &KeyPath, span: &Range<usize>, best: &mut KeyPath) {
    match value {
        DeValue::Table(table) => search_table(table, path, span, best),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let element_path = path.index(i);
                if covers(&element.span(), span) {
                    consider(&element_path, best);
                }
                search_value(element.get_ref(), &element_path, span, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name = \"x\"\n[broker]\nmodel = \"k\"\n[[broker.outages]]\nfrom = \"a\"\n\
                       [[broker.outages]]\nfrom = \"b\"\nto = \"c\"\n[policy]\nbackoff = { min = \"1s\" }\n";

    #[test]
    fn paths_are_found_from_spans_and_back() {
        let doc = Document::parse(DOC).unwrap();
        let to = DOC.find("\"c\"").unwrap();
        assert_eq!(doc.path_at(&(to..to + 3)).to_string(), "broker.outages[1].to");
        let min = DOC.find("\"1s\"").unwrap();
        assert_eq!(doc.path_at(&(min..min + 4)).to_string(), "policy.backoff.min");
        let span = doc.span_of(&KeyPath::of(&["broker", "outages"]).index(1).key("to"));
        assert_eq!(doc.line_column(span.start), (8, 1));
        let header = doc.span_of(&KeyPath::of(&["policy", "refresh_buffer"]));
        assert_eq!(doc.line_column(header.start), (9, 2));
        assert_eq!(doc.span_of(&KeyPath::root()), 0..0);
    }

    #[test]
    fn paths_print_as_written() {
        let path = KeyPath::of(&["expect", "time_in_state.Valid"]);
        assert_eq!(path.to_string(), "expect.\"time_in_state.Valid\"");
        assert_eq!(KeyPath::root().table_phrase(), "at the top level");
        assert_eq!(KeyPath::of(&["policy"]).table_phrase(), "in [policy]");
        assert_eq!(line_column("ab\ncé\nd", 6), (2, 3));
    }
}
