//! Documents: Kubernetes-style objects (`apiVersion`, `kind`, `metadata`, ...) split out of
//! a source, whatever its format.
//!
//! A source is JSON when its first non-blank character is `{` or `[` (one or more
//! concatenated values; a top-level array is a list of objects), and YAML otherwise
//! (documents separated by `---`). A document whose kind ends in `List` and that has an
//! `items` array, as `kubectl get -o yaml|json` prints, stands for its items.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics, FieldPath, Location, Severity};
use crate::source::Source;

/// One object read from a source, not yet decoded into a typed resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it was read.
    pub location: Location,
    /// `apiVersion`, e.g. `networking.k8s.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `NetworkPolicy`.
    pub kind: String,
    /// The whole object.
    pub value: Value,
}

impl Document {
    /// `metadata.name`, if it is a string.
    pub fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }

    /// `metadata.namespace`, if it is a string.
    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// How diagnostics name the object: `Kind name` or `Kind namespace/name`.
    pub fn object_ref(&self) -> String {
        match (self.namespace(), self.name()) {
            (Some(ns), Some(name)) => format!("{} {ns}/{name}", self.kind),
            (None, Some(name)) => format!("{} {name}", self.kind),
            _ => self.kind.clone(),
        }
    }

    /// The API group of `apiVersion` (`""` for the core group).
    pub fn api_group(&self) -> &str {
        match self.api_version.rsplit_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// Decodes the object into a serde type; the error names the field path.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize(&self.value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            self.error(&FieldPath::root().field(&path), e.into_inner().to_string())
        })
    }

    /// An error about this document at `path`.
    pub fn error(&self, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location: Some(self.location.clone()),
            object: Some(self.object_ref()),
            path: path.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// A warning about this document at `path`.
    pub fn warning(&self, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..self.error(path, message)
        }
    }
}

/// Parses every document of every source. Returns the documents that parsed and every
/// error found (syntax errors, objects without `apiVersion` or `kind`).
pub fn parse_sources(sources: &[Source]) -> (Vec<Document>, Diagnostics) {
    let mut docs = Vec::new();
    let mut errors = Diagnostics::default();
    for source in sources {
        let (d, e) = parse_source(source);
        docs.extend(d);
        errors.extend(e);
    }
    (docs, errors)
}

/// Parses the documents of one source.
pub fn parse_source(source: &Source) -> (Vec<Document>, Diagnostics) {
    let trimmed = source.text.trim_start_matches('\u{feff}').trim_start();
    let raw = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        split_json(source)
    } else {
        split_yaml(source)
    };
    let mut docs = Vec::new();
    let mut errors = Diagnostics::default();
    for item in raw {
        match item {
            Ok((location, value)) => expand(location, value, &mut docs, &mut errors),
            Err(e) => errors.push(e),
        }
    }
    (docs, errors)
}

type RawDocument = Result<(Location, Value), Diagnostic>;

fn located_error(location: &Location, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        location: Some(location.clone()),
        object: None,
        path: String::new(),
        message,
    }
}

fn split_json(source: &Source) -> Vec<RawDocument> {
    let text = source.text.trim_start_matches('\u{feff}');
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut document = 0;
    loop {
        let offset = stream.byte_offset();
        let line = 1 + text[..offset].matches('\n').count() + leading_blank_lines(&text[offset..]);
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                document += 1;
                let location = Location {
                    source: source.name.clone(),
                    document,
                    line,
                    item: None,
                };
                out.push(Ok((location, value)));
            }
            Some(Err(e)) => {
                document += 1;
                let location = Location {
                    source: source.name.clone(),
                    document,
                    line,
                    item: None,
                };
                out.push(Err(located_error(
                    &location,
                    format!(
                        "invalid JSON at line {}, column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )));
                // The rest of the stream cannot be trusted after a syntax error.
                break;
            }
        }
    }
    out
}

fn leading_blank_lines(text: &str) -> usize {
    let rest = text.trim_start();
    text[..text.len() - rest.len()].matches('\n').count()
}

/// Splits a YAML stream at document markers. A line starting with `---` (followed by
/// nothing, a space or a tab) starts a document; a line that is exactly `...` ends one.
/// Block scalars are always indented, so a marker at column 0 is never content.
fn split_yaml(source: &Source) -> Vec<RawDocument> {
    let text = source.text.trim_start_matches('\u{feff}');
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if is_start || is_end {
            chunks.push((start_line, std::mem::take(&mut current)));
            start_line = lineno;
            if is_start {
                // Keep content that follows the marker on the same line, and keep the
                // line count so that error lines stay right.
                current.push_str("   ");
                current.push_str(&line[3..]);
            } else {
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
    }
    chunks.push((start_line, current));

    let mut out = Vec::new();
    let mut document = 0;
    for (start, chunk) in chunks {
        if !has_content(&chunk) {
            continue;
        }
        document += 1;
        let line = start + first_content_line(&chunk);
        let location = Location {
            source: source.name.clone(),
            document,
            line,
            item: None,
        };
        match serde_yaml_ng::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(value) => out.push(Ok((location, value))),
            Err(e) => {
                let at = match e.location() {
                    Some(l) => format!(" at line {}, column {}", start + l.line() - 1, l.column()),
                    None => String::new(),
                };
                let message = strip_yaml_position(&e.to_string());
                out.push(Err(located_error(
                    &location,
                    format!("invalid YAML{at}: {message}"),
                )));
            }
        }
    }
    out
}

/// serde_yaml_ng appends "at line X column Y" relative to the chunk; the caller reports
/// the absolute position instead.
fn strip_yaml_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
    })
}

fn first_content_line(chunk: &str) -> usize {
    chunk
        .lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(0)
}

/// Checks the object shape and expands lists into their items.
fn expand(location: Location, value: Value, docs: &mut Vec<Document>, errors: &mut Diagnostics) {
    if let Value::Array(items) = value {
        for (i, item) in items.into_iter().enumerate() {
            let location = Location {
                item: Some(i),
                ..location.clone()
            };
            push_object(location, item, docs, errors);
        }
        return;
    }
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some();
    if is_list {
        match value.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let location = Location {
                        item: Some(i),
                        ..location.clone()
                    };
                    push_object(location, item.clone(), docs, errors);
                }
            }
            Some(Value::Null) => {}
            _ => errors.push(Diagnostic {
                path: "items".to_owned(),
                ..located_error(&location, "must be a list of objects".to_owned())
            }),
        }
        return;
    }
    push_object(location, value, docs, errors);
}

fn push_object(
    location: Location,
    value: Value,
    docs: &mut Vec<Document>,
    errors: &mut Diagnostics,
) {
    if !value.is_object() {
        errors.push(located_error(
            &location,
            format!(
                "expected an object with apiVersion and kind, found {}",
                kind_of(&value)
            ),
        ));
        return;
    }
    let mut missing = Vec::new();
    let api_version = match value.get("apiVersion") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            missing.push("apiVersion");
            String::new()
        }
    };
    let kind = match value.get("kind") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            missing.push("kind");
            String::new()
        }
    };
    if !missing.is_empty() {
        for field in missing {
            errors.push(Diagnostic {
                path: field.to_owned(),
                ..located_error(&location, "required: must be a non-empty string".to_owned())
            });
        }
        return;
    }
    docs.push(Document {
        location,
        api_version,
        kind,
        value,
    });
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Diagnostics) {
        parse_source(&Source::from_text("t.yaml", text))
    }

    #[test]
    fn yaml_documents_are_numbered_and_located() {
        let (docs, errors) = parse(
            "# header\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n",
        );
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].location.document, 1);
        assert_eq!(docs[0].location.line, 3);
        assert_eq!(docs[1].location.document, 2);
        assert_eq!(docs[1].location.line, 9);
        assert_eq!(docs[1].name(), Some("y"));
    }

    #[test]
    fn yaml_errors_carry_absolute_lines() {
        let (docs, errors) =
            parse("apiVersion: v1\nkind: Namespace\n---\napiVersion: v1\nkind: [unclosed\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(errors.len(), 1);
        let text = errors.to_string();
        assert!(
            text.starts_with("t.yaml: document 2 (line 4): invalid YAML at line 6"),
            "{text}"
        );
    }

    #[test]
    fn lists_expand_into_items() {
        let (docs, errors) = parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p, namespace: a}\n",
        );
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].location.item, Some(1));
        assert_eq!(docs[1].object_ref(), "Pod a/p");
    }

    #[test]
    fn json_streams_and_arrays() {
        let (docs, errors) = parse_source(&Source::from_text(
            "t.json",
            "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"a\"}}\n\n{\"apiVersion\":\"v1\",\"kind\":\"PodList\",\"items\":[]}",
        ));
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(docs.len(), 1);
        let (docs, errors) = parse_source(&Source::from_text("t.json", "[{\"kind\": \"X\"}]"));
        assert!(docs.is_empty());
        assert_eq!(
            errors.to_string(),
            "t.json: document 1 (line 1): items[0]: apiVersion: required: must be a non-empty string"
        );
    }

    #[test]
    fn bad_json_is_reported() {
        let (_, errors) = parse_source(&Source::from_text("t.json", "{\"a\": }"));
        assert!(
            errors.to_string().contains("invalid JSON at line 1"),
            "{errors}"
        );
    }

    #[test]
    fn decode_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only decoded")]
        struct Obj {
            spec: Spec,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only decoded")]
        struct Spec {
            ports: Vec<u16>,
        }
        let (docs, _) =
            parse("apiVersion: v1\nkind: X\nmetadata: {name: n}\nspec:\n  ports: [1, x]\n");
        let err = docs[0].decode::<Obj>().unwrap_err();
        assert_eq!(err.path, "spec.ports[1]");
        assert_eq!(err.object.as_deref(), Some("X n"));
    }
}
