//! Diagnostics: errors and warnings that say exactly where in the input they come from.
//!
//! Every problem found while loading resources is a [`Diagnostic`] carrying the source
//! (a file path or `<stdin>`), the 1-based document index in that source, the line the
//! document starts on, the item index inside a `kind: List`, the object (`Kind ns/name`)
//! and the field path (`spec.ingress[0].from[1].ipBlock.cidr`). Validators collect every
//! problem into [`Diagnostics`] instead of stopping at the first one.

use std::fmt;
use std::sync::Arc;

/// Where a document sits in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// File path as given, or `<stdin>`.
    pub source: Arc<str>,
    /// 1-based index of the document in the source (YAML documents separated by `---`,
    /// or concatenated JSON values). Empty documents are not counted.
    pub document: usize,
    /// 1-based line on which the document starts.
    pub line: usize,
    /// Index of the item inside a `kind: List` document (the `items[i]` of that list).
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} (line {})",
            self.source, self.document, self.line
        )?;
        if let Some(item) = self.item {
            write!(f, ": items[{item}]")?;
        }
        Ok(())
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The input is loaded anyway; the warning is shown on request.
    Warning,
    /// The input is rejected.
    Error,
}

/// One problem in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Where the document is, if the problem belongs to one.
    pub location: Option<Location>,
    /// The object, e.g. `NetworkPolicy x/deny-all`, when known.
    pub object: Option<String>,
    /// The field path inside the object, e.g. `spec.ingress[0].ports[1].endPort`; empty
    /// when the problem is about the whole document.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// An error not tied to a document (a file that cannot be read, say).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            location: None,
            object: None,
            path: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in an input, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The diagnostics, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when empty, otherwise `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A field path being built while walking an object: `spec.ingress[0].from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (the whole object).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The path of a named field below this one.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of the `i`-th element of this list.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of the entry `key` of this map.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key:?}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects the errors of one object while it is validated.
#[derive(Debug)]
pub struct ObjectErrors<'a> {
    location: Option<&'a Location>,
    object: String,
    errors: Vec<Diagnostic>,
}

impl<'a> ObjectErrors<'a> {
    /// Starts collecting for the object `object` (e.g. `NetworkPolicy x/deny`).
    pub fn new(location: Option<&'a Location>, object: impl Into<String>) -> Self {
        Self {
            location,
            object: object.into(),
            errors: Vec::new(),
        }
    }

    /// Records an error at `path`.
    pub fn push(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            severity: Severity::Error,
            location: self.location.cloned(),
            object: Some(self.object.clone()),
            path: path.as_str().to_owned(),
            message: message.into(),
        });
    }

    /// True when no error has been recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors recorded so far.
    pub fn finish(self) -> Diagnostics {
        Diagnostics(self.errors)
    }
}
