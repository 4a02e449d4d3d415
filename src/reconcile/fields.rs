//! A record's fields as reconcile keeps them: text only (every comparison is of text), names
//! shared between records. Reconcile holds both sides of a migration in memory — 100,000s of
//! records — and a JSON map costs several times as much per field.

use crate::values::value_text;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(Arc<str>, Box<str>)>);

/// Hands out one shared copy of each field name.
#[derive(Debug, Default)]
pub struct Names(HashSet<Arc<str>>);

impl Names {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }
}

impl Fields {
    /// From a JSON object; nulls are kept as empty text, so "the CRM shows this field empty"
    /// stays distinguishable from "the CRM does not show this field".
    pub fn from_map(map: &Map<String, Value>, names: &mut Names) -> Fields {
        Fields(
            map.iter()
                .map(|(k, v)| (names.get(k), value_text(v).into_boxed_str()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }

    /// Set a field (a resolved reference), replacing its value if present.
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| &**k == name) {
            Some((_, v)) => *v = value.into_boxed_str(),
            None => self.0.push((Arc::from(name), value.into_boxed_str())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_text_and_names_are_shared() {
        let mut names = Names::default();
        let a = json!({"pid": 5, "tel": ["+7 1", "+7 2"], "mail": null});
        let f = Fields::from_map(a.as_object().unwrap(), &mut names);
        assert_eq!(f.get("pid"), Some("5"));
        assert_eq!(f.get("tel"), Some("+7 1, +7 2"));
        assert_eq!(f.get("mail"), Some(""));
        assert_eq!(f.get("person"), None);
        let g = Fields::from_map(a.as_object().unwrap(), &mut names);
        assert!(Arc::ptr_eq(&f.0[0].0, &g.0[0].0));
    }
}
