//! A record's fields as reconcile keeps them: text only (every comparison is of text), names
//! shared between records. Reconcile keeps both sides of a migration in a scratch SQLite store
//! (as [`Fields::encode`] bytes) and decodes a batch at a time; a JSON map costs several times
//! as much per field.

use crate::values::value_text;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// A record's fields, packed: the names as one shared list (records of one entity mostly have
/// the same names in the same order, so [`Names`] hands out one copy of each list), the values
/// back to back in one text with their end offsets. Three allocations per record, whatever its
/// width — a value per allocation cost more than the values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    names: Arc<[Arc<str>]>,
    /// Where each value ends in `text`.
    ends: Box<[u32]>,
    text: Box<str>,
}

/// Hands out one shared copy of each field name, and of each list of names.
#[derive(Debug, Default)]
pub struct Names {
    names: HashSet<Arc<str>>,
    lists: HashSet<Arc<[Arc<str>]>>,
}

impl Names {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    fn list(&mut self, names: Vec<Arc<str>>) -> Arc<[Arc<str>]> {
        if let Some(l) = self.lists.get(names.as_slice()) {
            return l.clone();
        }
        let l: Arc<[Arc<str>]> = Arc::from(names);
        self.lists.insert(l.clone());
        l
    }
}

impl Fields {
    /// From a JSON object; nulls are kept as empty text, so "the CRM shows this field empty"
    /// stays distinguishable from "the CRM does not show this field".
    pub fn from_map(map: &Map<String, Value>, names: &mut Names) -> Fields {
        let list: Vec<Arc<str>> = map.keys().map(|k| names.get(k)).collect();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(map.len());
        for v in map.values() {
            match v {
                Value::String(s) => text.push_str(s),
                v => text.push_str(&value_text(v)),
            }
            ends.push(text.len() as u32);
        }
        Fields {
            names: names.list(list),
            ends: ends.into_boxed_slice(),
            text: text.into_boxed_str(),
        }
    }

    fn value(&self, i: usize) -> &str {
        let from = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[from..self.ends[i] as usize]
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.names.iter().position(|k| &**k == name)?;
        Some(self.value(i))
    }

    /// Set a field (a resolved reference), replacing its value if present.
    pub fn set(&mut self, name: &str, value: String) {
        let mut fields: Vec<(Arc<str>, String)> = self
            .names
            .iter()
            .cloned()
            .zip(self.iter().map(|(_, v)| v.to_string()))
            .collect();
        match fields.iter_mut().find(|(k, _)| &**k == name) {
            Some((_, v)) => *v = value,
            None => fields.push((Arc::from(name), value)),
        }
        let mut text = String::new();
        let mut ends = Vec::with_capacity(fields.len());
        for (_, v) in &fields {
            text.push_str(v);
            ends.push(text.len() as u32);
        }
        if fields.len() != self.names.len() {
            self.names = fields.into_iter().map(|(k, _)| k).collect();
        }
        self.ends = ends.into_boxed_slice();
        self.text = text.into_boxed_str();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, k)| (&**k, self.value(i)))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The fields as bytes for reconcile's scratch store: per field its name's and its value's
    /// length (u32, little-endian) and bytes. [`Fields::decode`] reads them back.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + self.len() * 16);
        for (name, value) in self.iter() {
            for part in [name, value] {
                out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    /// Fields [`Fields::encode`] wrote; names shared through `names`. Bytes that are not such an
    /// encoding (never written by this build) end the fields where they stop making sense.
    pub fn decode(bytes: &[u8], names: &mut Names) -> Fields {
        let mut list = Vec::new();
        let mut text = String::new();
        let mut ends = Vec::new();
        let mut rest = bytes;
        let next = |rest: &mut &[u8]| -> Option<String> {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let part = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_string();
            *rest = &rest[4 + len..];
            Some(part)
        };
        while let (Some(name), Some(value)) = (next(&mut rest), next(&mut rest)) {
            list.push(names.get(&name));
            text.push_str(&value);
            ends.push(text.len() as u32);
        }
        Fields {
            names: names.list(list),
            ends: ends.into_boxed_slice(),
            text: text.into_boxed_str(),
        }
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
        let mut g = Fields::from_map(a.as_object().unwrap(), &mut names);
        assert!(Arc::ptr_eq(&f.names, &g.names));
        // Setting a value keeps the others; a new name goes last.
        g.set("tel", "+7 3".into());
        g.set("clid", "12".into());
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            vec![("pid", "5"), ("tel", "+7 3"), ("mail", ""), ("clid", "12")]
        );
        // Through the scratch store and back: the same fields, Cyrillic and empty values too.
        let h = Fields::decode(&g.encode(), &mut names);
        assert_eq!(h, g);
        let r = json!({"person": "Иван Петров", "mail": ""});
        let r = Fields::from_map(r.as_object().unwrap(), &mut names);
        assert_eq!(Fields::decode(&r.encode(), &mut names), r);
    }
}
