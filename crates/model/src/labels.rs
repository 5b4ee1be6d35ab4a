//! Labels and label selectors with the Kubernetes semantics, and the API server's rules
//! for label keys, label values and object names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An object's labels.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// The label is present and its value is one of the set (`matchLabels` entries are
    /// `In` with one value).
    In(String, BTreeSet<String>),
    /// The label is absent, or present with a value outside the set.
    NotIn(String, BTreeSet<String>),
    /// The label is present, whatever its value.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    /// The label key the requirement is about.
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    /// True if `labels` meet the requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Requirement::In(k, v) if v.len() == 1 => write!(f, "{k}={}", join(v)),
            Requirement::In(k, v) => write!(f, "{k} in ({})", join(v)),
            Requirement::NotIn(k, v) => write!(f, "{k} notin ({})", join(v)),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A label selector: the conjunction of its requirements. The empty selector matches
/// every object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from requirements (sorted and deduplicated, so that equal selectors
    /// compare equal).
    pub fn new(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort();
        requirements.dedup();
        Self { requirements }
    }

    /// A selector from `matchLabels` pairs only.
    pub fn from_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(k, v)| Requirement::In(k.to_owned(), BTreeSet::from([v.to_owned()])))
                .collect(),
        )
    }

    /// The requirements, sorted.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True if the selector has no requirement and so matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True if `labels` meet every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    /// The selector in `kubectl -l` syntax; `{}` for the empty selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

const NAME_PART_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS_SUBDOMAIN_RULE: &str = "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS_LABEL_RULE: &str = "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The reasons `s` is not a DNS-1123 subdomain (empty when it is one).
pub fn dns_subdomain_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if !s.split('.').all(is_dns_label) {
        errors.push(format!(
            "a lowercase RFC 1123 subdomain {DNS_SUBDOMAIN_RULE} (e.g. 'example.com')"
        ));
    }
    errors
}

/// The reasons `s` is not a DNS-1123 label (empty when it is one).
pub fn dns_label_errors(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    let b = s.as_bytes();
    let shape = !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !shape {
        errors.push(format!(
            "a lowercase RFC 1123 label {DNS_LABEL_RULE} (e.g. 'my-name')"
        ));
    }
    errors
}

/// The reasons `key` is not a valid label key (a qualified name: an optional DNS
/// subdomain prefix and `/`, then a name part of at most 63 characters).
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_owned());
        } else {
            for e in dns_subdomain_errors(prefix) {
                errors.push(format!("prefix part {e}"));
            }
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else {
        if name.len() > 63 {
            errors.push("name part must be no more than 63 characters".to_owned());
        }
        if !is_name_part(name) {
            errors.push(format!(
                "name part {NAME_PART_RULE} (e.g. 'MyName', 'my.name' or '123-abc')"
            ));
        }
    }
    errors
}

/// The reasons `value` is not a valid label value (at most 63 characters, empty or a
/// name part).
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !is_name_part(value) {
        errors.push(format!(
            "a valid label {NAME_PART_RULE} (e.g. 'MyValue', 'my_value' or '12345')"
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn operators() {
        let l = labels(&[("app", "web"), ("tier", "")]);
        assert!(Requirement::In("app".into(), set(&["web", "db"])).matches(&l));
        assert!(!Requirement::In("role".into(), set(&["x"])).matches(&l));
        // NotIn matches objects without the key.
        assert!(Requirement::NotIn("role".into(), set(&["x"])).matches(&l));
        assert!(!Requirement::NotIn("app".into(), set(&["web"])).matches(&l));
        assert!(Requirement::Exists("tier".into()).matches(&l));
        assert!(Requirement::DoesNotExist("role".into()).matches(&l));
        assert!(!Requirement::DoesNotExist("app".into()).matches(&l));
        assert!(LabelSelector::everything().matches(&Labels::new()));
    }

    #[test]
    fn keys_and_values() {
        assert!(label_key_errors("app").is_empty());
        assert!(label_key_errors("kubernetes.io/metadata.name").is_empty());
        assert!(label_key_errors("a_b.c-D").is_empty());
        assert!(!label_key_errors("").is_empty());
        assert!(!label_key_errors("/app").is_empty());
        assert!(!label_key_errors("Example.com/app").is_empty());
        assert!(!label_key_errors("app/").is_empty());
        assert!(!label_key_errors("-app").is_empty());
        assert!(!label_key_errors(&"a".repeat(64)).is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_3-x").is_empty());
        assert!(!label_value_errors("has space").is_empty());
        assert!(!label_value_errors("_x").is_empty());
        assert!(dns_label_errors("x").is_empty());
        assert!(!dns_label_errors("X").is_empty());
        assert!(dns_subdomain_errors("a.b-c").is_empty());
        assert!(!dns_subdomain_errors("a..b").is_empty());
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[abc]", "[xyz]", 0..3)
    }

    fn arb_requirement() -> impl Strategy<Value = Requirement> {
        let values = proptest::collection::btree_set("[xyz]", 1..3);
        prop_oneof![
            ("[abc]", values.clone()).prop_map(|(k, v)| Requirement::In(k, v)),
            ("[abc]", values).prop_map(|(k, v)| Requirement::NotIn(k, v)),
            "[abc]".prop_map(Requirement::Exists),
            "[abc]".prop_map(Requirement::DoesNotExist),
        ]
    }

    proptest! {
        #[test]
        fn complements(l in arb_labels(), k in "[abc]", v in proptest::collection::btree_set("[xyz]", 1..3)) {
            prop_assert_ne!(Requirement::In(k.clone(), v.clone()).matches(&l), Requirement::NotIn(k.clone(), v).matches(&l));
            prop_assert_ne!(Requirement::Exists(k.clone()).matches(&l), Requirement::DoesNotExist(k).matches(&l));
        }

        #[test]
        fn selector_is_conjunction(l in arb_labels(), reqs in proptest::collection::vec(arb_requirement(), 0..4)) {
            let sel = LabelSelector::new(reqs.clone());
            prop_assert_eq!(sel.matches(&l), reqs.iter().all(|r| r.matches(&l)));
        }
    }
}
