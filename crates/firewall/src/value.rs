//! Reading fields out of a document's JSON value, recording every problem with its path.

use rampart_resources::{FieldPath, ObjectErrors};
use serde_json::{Map, Value};

/// A field reader over one object.
pub(crate) struct Obj<'a, 'e, 'l> {
    pub(crate) map: Option<&'a Map<String, Value>>,
    pub(crate) path: FieldPath,
    pub(crate) errors: &'e mut ObjectErrors<'l>,
}

impl<'a, 'e, 'l> Obj<'a, 'e, 'l> {
    /// Reads `value` at `path` as an object (an error if it is something else; `null` is
    /// an empty object).
    pub(crate) fn new(
        value: Option<&'a Value>,
        path: FieldPath,
        errors: &'e mut ObjectErrors<'l>,
    ) -> Self {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                errors.push(&path, "must be an object");
                None
            }
        };
        Obj { map, path, errors }
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub(crate) fn at(&self, key: &str) -> FieldPath {
        self.path.field(key)
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        let p = self.at(key);
        self.errors.push(&p, message);
    }

    /// Reports every key not in `known`.
    pub(crate) fn only(&mut self, known: &[&str]) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let p = self.at(key);
                self.errors.push(
                    &p,
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    pub(crate) fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(key, "must be a string");
                None
            }
        }
    }

    pub(crate) fn required_string(&mut self, key: &str) -> Option<String> {
        let s = self.string(key);
        if s.as_deref().is_none_or(str::is_empty) && self.raw(key).is_none_or(Value::is_string) {
            self.error(key, "required");
            return None;
        }
        s
    }

    pub(crate) fn bool(&mut self, key: &str) -> Option<bool> {
        match self.raw(key) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.error(key, "must be true or false");
                None
            }
        }
    }

    /// An integer (JSON numbers, or digits in a string as OpenStack sometimes prints).
    pub(crate) fn int(&mut self, key: &str) -> Option<i64> {
        match self.raw(key) {
            None => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(Value::String(s))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() < 10 =>
            {
                s.parse().ok()
            }
            Some(_) => {
                self.error(key, "must be an integer");
                None
            }
        }
    }

    pub(crate) fn array(&mut self, key: &str) -> &'a [Value] {
        match self.raw(key) {
            None => &[],
            Some(Value::Array(a)) => a,
            Some(_) => {
                self.error(key, "must be a list");
                &[]
            }
        }
    }

    /// A list of strings.
    pub(crate) fn strings(&mut self, key: &str) -> Vec<(FieldPath, String)> {
        let items = self.array(key);
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let p = self.at(key).index(i);
            match v {
                Value::String(s) => out.push((p, s.clone())),
                _ => self.errors.push(&p, "must be a string"),
            }
        }
        out
    }
}
