//! Reading broker JSON safely: a size limit before parsing, then typed field access.
//!
//! [`parse`] refuses a body longer than the configured maximum before serde sees a byte, and an empty or
//! malformed one with the position of the problem. [`Obj`] reads fields by name; a missing required
//! field or a field of the wrong JSON type is a [`WireError`] that names the field (with its path, e.g.
//! `data.access_token`) and the JSON type found — never the value, which may be a token.
//!
//! ```
//! use warden_adapters::broker::json::{Obj, parse};
//!
//! let value = parse(br#"{"data":{"access_token":"t","expires_in":"x"}}"#, 1024).unwrap();
//! let data = Obj::root(&value).unwrap().obj("data").unwrap();
//! assert_eq!(data.str("access_token").unwrap(), "t");
//! let err = data.u64("expires_in").unwrap_err();
//! assert_eq!(err.to_string(), "field `data.expires_in` must be a number, found a string");
//! ```

use serde_json::{Map, Value};

/// Why a response could not be read. Messages name fields and types, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is longer than the limit; it was not parsed.
    #[error("the response is larger than the {max}-byte limit ({size} bytes or more); it was not parsed")]
    TooLarge {
        /// The size seen (at least this many bytes).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The body is empty where JSON was expected.
    #[error("the response body is empty (JSON expected)")]
    Empty,
    /// The body is not JSON, or is cut short.
    #[error("the response is not valid JSON: {problem} (line {line}, column {column})")]
    Syntax {
        /// What the parser found wrong (a fixed description, no input text).
        problem: String,
        /// Line of the problem.
        line: usize,
        /// Column of the problem.
        column: usize,
    },
    /// A required field is absent (or null).
    #[error("field `{field}` is missing")]
    Missing {
        /// The field's path.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The field's path (`$` for the whole body).
        field: String,
        /// What was expected (`a string`).
        expected: &'static str,
        /// What was found (`a number`).
        found: &'static str,
    },
    /// A field has the right type but an unusable value.
    #[error("field `{field}` is not valid: {problem}")]
    Invalid {
        /// The field's path.
        field: String,
        /// What is wrong (without the value).
        problem: String,
    },
}

/// Parses a JSON body of at most `max_bytes` bytes (longer bodies are refused before parsing).
pub fn parse(body: &[u8], max_bytes: usize) -> Result<Value, WireError> {
    check_size(body.len(), max_bytes)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WireError::Empty);
    }
    serde_json::from_slice(body).map_err(|e| syntax_error(&e))
}

/// Refuses a body of `size` bytes when it exceeds `max_bytes`.
pub fn check_size(size: usize, max_bytes: usize) -> Result<(), WireError> {
    if size > max_bytes {
        return Err(WireError::TooLarge { size: size as u64, max: max_bytes as u64 });
    }
    Ok(())
}

/// A serde_json error as a [`WireError`]. Parsing into a `Value` only fails on syntax or truncation,
/// whose messages are fixed texts; the trailing position is dropped (it is in the fields).
fn syntax_error(e: &serde_json::Error) -> WireError {
    let text = e.to_string();
    let problem = match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let problem = if e.is_eof() { format!("the body is cut short ({problem})") } else { problem };
    WireError::Syntax { problem, line: e.line(), column: e.column() }
}

/// The JSON type of a value, for messages (`a string`, `an object`).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object with its path, for typed field access.
#[derive(Clone, Debug)]
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

/// The path of `field` inside `path`.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "$" { field.to_owned() } else { format!("{path}.{field}") }
}

impl<'a> Obj<'a> {
    /// The whole body, which must be an object.
    pub fn root(value: &'a Value) -> Result<Obj<'a>, WireError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path: "$".to_owned() }),
            other => {
                Err(WireError::WrongType { field: "$".to_owned(), expected: "an object", found: type_name(other) })
            }
        }
    }

    /// A field's raw value, if present and not null.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn wrong(&self, field: &str, expected: &'static str, found: &Value) -> WireError {
        WireError::WrongType { field: join(&self.path, field), expected, found: type_name(found) }
    }

    fn missing(&self, field: &str) -> WireError {
        WireError::Missing { field: join(&self.path, field) }
    }

    /// An invalid-value error for `field`.
    pub fn invalid(&self, field: &str, problem: impl Into<String>) -> WireError {
        WireError::Invalid { field: join(&self.path, field), problem: problem.into() }
    }

    /// A required string field.
    pub fn str(&self, field: &str) -> Result<&'a str, WireError> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional string field (absent or null: `None`).
    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(field, "a string", other)),
        }
    }

    /// A required non-empty string field.
    pub fn non_empty_str(&self, field: &str) -> Result<&'a str, WireError> {
        let s = self.str(field)?;
        if s.is_empty() {
            return Err(self.invalid(field, "it is empty"));
        }
        Ok(s)
    }

    /// A required non-negative integer field.
    pub fn u64(&self, field: &str) -> Result<u64, WireError> {
        self.opt_u64(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional non-negative integer field.
    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                n.as_u64().map(Some).ok_or_else(|| self.invalid(field, "it is not a non-negative integer"))
            }
            Some(other) => Err(self.wrong(field, "a number", other)),
        }
    }

    /// An optional non-negative integer that some servers send as a string of digits (`"1200"`).
    pub fn opt_u64_lenient(&self, field: &str) -> Result<Option<u64>, WireError> {
        match self.get(field) {
            Some(Value::String(s)) => s
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.invalid(field, "the string is not a non-negative integer")),
            _ => self.opt_u64(field),
        }
    }

    /// A required boolean field.
    pub fn bool(&self, field: &str) -> Result<bool, WireError> {
        self.opt_bool(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional boolean field.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, WireError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(field, "a boolean", other)),
        }
    }

    /// A required object field.
    pub fn obj(&self, field: &str) -> Result<Obj<'a>, WireError> {
        self.opt_obj(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional object field.
    pub fn opt_obj(&self, field: &str) -> Result<Option<Obj<'a>>, WireError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj { map, path: join(&self.path, field) })),
            Some(other) => Err(self.wrong(field, "an object", other)),
        }
    }

    /// A code that brokers send either as a string or as a number (`"900901"`, `100022`).
    pub fn opt_code(&self, field: &str) -> Option<String> {
        match self.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A broker's human-readable text, made safe for an error message: control characters removed and
/// cut to `max_chars` characters.
pub fn clean_text(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max_chars).collect();
    if text.chars().filter(|c| !c.is_control()).nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_bodies_before_parsing() {
        let body = vec![b'x'; 11];
        assert_eq!(parse(&body, 10), Err(WireError::TooLarge { size: 11, max: 10 }));
        assert!(parse(b"{}", 10).is_ok());
    }

    #[test]
    fn syntax_errors_have_positions_and_no_input() {
        let err = parse(br#"{"access_token":"SECRET-TOKEN""#, 1024).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cut short"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        let err = parse(b"<html>SECRET</html>", 1024).unwrap_err();
        assert!(matches!(err, WireError::Syntax { line: 1, column: 1, .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
        assert_eq!(parse(b"  \n", 1024), Err(WireError::Empty));
    }

    #[test]
    fn fields_name_themselves_and_their_types() {
        let v = parse(br#"{"a":{"b":"SECRET","n":-1,"s":"12"},"t":true}"#, 1024).unwrap();
        let root = Obj::root(&v).unwrap();
        let a = root.obj("a").unwrap();
        assert_eq!(a.u64("b").unwrap_err().to_string(), "field `a.b` must be a number, found a string");
        assert_eq!(a.u64("n").unwrap_err().to_string(), "field `a.n` is not valid: it is not a non-negative integer");
        assert_eq!(a.opt_u64_lenient("s").unwrap(), Some(12));
        assert_eq!(root.str("missing").unwrap_err().to_string(), "field `missing` is missing");
        assert!(root.bool("t").unwrap());
        assert_eq!(root.obj("t").unwrap_err().to_string(), "field `t` must be an object, found a boolean");
        assert_eq!(
            Obj::root(&serde_json::json!([1])).unwrap_err().to_string(),
            "field `$` must be an object, found an array"
        );
    }

    #[test]
    fn clean_text_strips_controls_and_cuts() {
        assert_eq!(clean_text("a\nb\u{7}c", 10), "abc");
        assert_eq!(clean_text("abcdef", 3), "abc…");
    }
}
