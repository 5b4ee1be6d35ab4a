//! Field and label selector parsing, as far as request parsing needs it: whether a
//! selector is valid (an invalid one makes the API server drop the `metadata.name`
//! shortcut) and which value a field selector requires for a field.
//!
//! Follows `k8s.io/apimachinery/pkg/fields/selector.go` and `pkg/labels/selector.go`.

use std::fmt;

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectorError(String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError(message.into()))
}

/// The value that the field selector requires `field` to equal (`field=v` or
/// `field==v`), if any. Terms are sorted before the first match is taken, as upstream.
pub(crate) fn field_selector_exact_match(
    selector: &str,
    field: &str,
) -> Result<Option<String>, SelectorError> {
    let mut terms = split_field_terms(selector);
    terms.sort_unstable();
    let mut found = None;
    for term in terms {
        if term.is_empty() {
            continue;
        }
        let Some((lhs, op, rhs)) = split_field_term(term) else {
            return err(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            ));
        };
        let value = unescape_field_value(rhs)?;
        if found.is_none() && op != "!=" && lhs == field {
            found = Some(value);
        }
    }
    Ok(found)
}

fn split_field_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return err(format!("invalid field selector: unescaped character {c:?}")),
            _ => out.push(c),
        }
    }
    if in_slash {
        return err("invalid field selector: invalid escape sequence: \\");
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
    Error,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            let start = pos;
            let mut last: Option<(Token, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                let candidate = &s[start..=pos];
                if let Some(t) = keyword(candidate) {
                    last = Some((t, pos + 1));
                } else if last.is_some() {
                    break;
                }
                pos += 1;
            }
            match last {
                Some((t, end)) => {
                    out.push((t, s[start..end].to_owned()));
                    pos = end;
                }
                None => {
                    out.push((Token::Error, s[start..pos].to_owned()));
                    out.push((Token::End, String::new()));
                    return out;
                }
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push((keyword(word).unwrap_or(Token::Identifier), word.to_owned()));
        }
    }
}

/// Checks a label selector as `labels.Parse` does (syntax, keys, values, operators).
pub(crate) fn parse_label_selector(selector: &str) -> Result<(), SelectorError> {
    let items = lex(selector);
    let mut p = LabelParser { items, pos: 0 };
    p.parse()
}

struct LabelParser {
    items: Vec<(Token, String)>,
    pos: usize,
}

impl LabelParser {
    /// In a value position, `in` and `notin` are plain identifiers.
    fn value_token(t: Token) -> Token {
        match t {
            Token::In | Token::NotIn => Token::Identifier,
            t => t,
        }
    }

    fn lookahead(&self, values: bool) -> (Token, &str) {
        let (t, l) = self
            .items
            .get(self.pos)
            .map_or((Token::End, ""), |(t, l)| (*t, l.as_str()));
        (if values { Self::value_token(t) } else { t }, l)
    }

    fn consume(&mut self, values: bool) -> (Token, String) {
        let (t, l) = self.lookahead(values);
        let l = l.to_owned();
        self.pos += 1;
        (t, l)
    }

    fn parse(&mut self) -> Result<(), SelectorError> {
        loop {
            let (t, l) = self.lookahead(true);
            match t {
                Token::Identifier | Token::DoesNotExist => {
                    self.requirement()?;
                    let (t, l) = self.consume(true);
                    match t {
                        Token::End => return Ok(()),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(()),
                _ => {
                    return err(format!(
                        "found '{l}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<(), SelectorError> {
        let (mut t, mut key) = self.consume(true);
        let mut does_not_exist = false;
        if t == Token::DoesNotExist {
            does_not_exist = true;
            (t, key) = self.consume(true);
        }
        if t != Token::Identifier {
            return err(format!("found '{key}', expected: identifier"));
        }
        if !is_label_key(&key) {
            return err(format!("invalid label key {key:?}"));
        }
        // `!key` is complete by itself; whatever follows is checked by the caller.
        let (next, _) = self.lookahead(true);
        if does_not_exist || next == Token::End || next == Token::Comma {
            return Ok(());
        }
        let (op, lit) = self.consume(false);
        let values = match op {
            Token::In | Token::NotIn => {
                let values = self.values()?;
                if values.is_empty() {
                    return err("for 'in', 'notin' operators, values set can't be empty");
                }
                values
            }
            Token::Equals
            | Token::DoubleEquals
            | Token::NotEquals
            | Token::GreaterThan
            | Token::LessThan => {
                let (t, _) = self.lookahead(true);
                let value = if t == Token::End || t == Token::Comma {
                    String::new()
                } else {
                    let (t, l) = self.consume(true);
                    if t != Token::Identifier {
                        return err(format!("found '{l}', expected: identifier"));
                    }
                    l
                };
                if matches!(op, Token::GreaterThan | Token::LessThan)
                    && crate::request::parse_go_int64(&value).is_none()
                {
                    return err("for 'Gt', 'Lt' operators, the value must be an integer");
                }
                vec![value]
            }
            _ => {
                return err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        };
        for v in &values {
            if !is_label_value(v) {
                return err(format!("invalid label value {v:?}"));
            }
        }
        Ok(())
    }

    fn values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (t, l) = self.consume(true);
        if t != Token::OpenPar {
            return err(format!("found '{l}' expected: '('"));
        }
        let (t, l) = self.lookahead(true);
        let l = l.to_owned();
        match t {
            Token::Identifier | Token::Comma => {
                let set = self.identifiers()?;
                let (t, _) = self.consume(true);
                if t != Token::ClosedPar {
                    return err(format!("found '{l}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => err(format!("found '{l}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut set: Vec<String> = Vec::new();
        let insert = |set: &mut Vec<String>, v: String| {
            if !set.contains(&v) {
                set.push(v);
            }
        };
        loop {
            let (t, l) = self.consume(true);
            match t {
                Token::Identifier => {
                    insert(&mut set, l);
                    let (t2, l2) = self.lookahead(true);
                    match t2 {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(set),
                        _ => return err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        insert(&mut set, String::new());
                    }
                    let (t2, _) = self.lookahead(true);
                    if t2 == Token::ClosedPar {
                        insert(&mut set, String::new());
                        return Ok(set);
                    }
                    if t2 == Token::Comma {
                        insert(&mut set, String::new());
                    }
                }
                _ => return err(format!("found '{l}', expected: ',', or identifier")),
            }
        }
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lower-case labels separated by dots, at most 253 bytes.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A qualified name: `[prefix/]name`.
pub(crate) fn is_label_key(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [name] => is_label_name(name),
        [prefix, name] => is_dns1123_subdomain(prefix) && is_label_name(name),
        _ => false,
    }
}

/// Empty, or a label name.
pub(crate) fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selector_exact_match_follows_upstream() {
        let m = |s| field_selector_exact_match(s, "metadata.name");
        assert_eq!(m("metadata.name=a"), Ok(Some("a".into())));
        assert_eq!(m("metadata.name==a"), Ok(Some("a".into())));
        assert_eq!(m("metadata.name!=a"), Ok(None));
        assert_eq!(m("foo=bar"), Ok(None));
        assert_eq!(m(""), Ok(None));
        assert_eq!(m("metadata.name=b,metadata.name=a"), Ok(Some("a".into())));
        assert_eq!(m("metadata.name=a\\,b"), Ok(Some("a,b".into())));
        assert!(m("metadata.name=name1,foo").is_err());
        assert!(m("metadata.name=a\\x").is_err());
        assert!(m("metadata.name=a=b").is_err());
        assert!(m("metadata.name=a\\").is_err());
        assert_eq!(m("a=1,,metadata.name=x"), Ok(Some("x".into())));
    }

    #[test]
    fn label_selectors_parse_like_upstream() {
        for ok in [
            "",
            "a=b",
            "a==b",
            "a!=b",
            "a",
            "!a",
            "a in (b,c)",
            "a notin (b)",
            "a in ()",
            "a in (,)",
            "x>1",
            "a=",
            "example.com/a=b,c",
            "  a = b  ,  c  ",
            "in=notin",
        ] {
            assert!(parse_label_selector(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "a=b=c",
            // Gt/Lt values must also be label values, so negative numbers fail.
            "x<-1",
            ",",
            "a,",
            "a=(b)",
            "x>a",
            "Ex.com/a=b",
            "a in b",
            "a in (b",
            "-a=b",
            "a=b c",
            "!a=b",
            "a=-b",
            "a/b/c",
            "===",
        ] {
            assert!(parse_label_selector(bad).is_err(), "{bad:?}");
        }
    }
}
