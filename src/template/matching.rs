//! How an import recognises a record the CRM already holds. Each template entity has an ordered
//! list of probes (`match = ["mail", "tel", "person+clid"]`): a probe is a field or fields joined
//! with `+`; the first probe that finds any CRM record decides (one record: that one; two or more:
//! ambiguous, never guessed). Source and CRM values go through the same normalisation
//! ([`probe_values`]), the one `reconcile` compares with (`values::norm_*`).

use crate::crm::Entity;
use crate::values::{norm_phone, norm_text, norm_title, strip_deal_number, CrmDateTime};

/// One way of recognising a record: all its fields must be non-empty and equal after
/// normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub fields: Vec<String>,
}

impl Probe {
    fn of(fields: &[&str]) -> Probe {
        Probe {
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// As written in a template: `person+clid`.
    pub fn label(&self) -> String {
        self.fields.join("+")
    }
}

/// Fields a probe may name besides the template's mapped ones: the import writes the record key
/// into `uid` of clients and deals when the template maps none.
fn implicit(entity: Entity, field: &str) -> bool {
    field == "uid" && matches!(entity, Entity::Client | Entity::Deal)
}

/// The probes of an entity: the template's `match` list, or the defaults for the fields it maps.
/// A probe naming a field the template does not map is refused (it could never match).
pub fn probes_for(
    entity: Entity,
    spec: Option<&[String]>,
    mapped: &[&str],
) -> Result<Vec<Probe>, String> {
    let Some(spec) = spec else {
        return Ok(default_probes(entity, mapped));
    };
    let mut out = Vec::new();
    for s in spec {
        let fields: Vec<&str> = s.split('+').map(str::trim).collect();
        if fields.iter().any(|f| f.is_empty()) {
            return Err(format!("match: \"{s}\" has an empty part"));
        }
        for f in &fields {
            if !mapped.contains(f) && !implicit(entity, f) {
                return Err(format!(
                    "match: \"{s}\" names '{f}', which this {entity} does not map (mapped: {})",
                    mapped.join(", ")
                ));
            }
        }
        out.push(Probe::of(&fields));
    }
    Ok(out)
}

/// The default probes, most specific first, keeping those whose fields the template maps:
/// client `uid`, then INN, then title; person e-mail, then phone, then mobile, then name within
/// the client; deal `uid`, then title within the client; task title + date + client; history
/// date + client + person + content.
pub fn default_probes(entity: Entity, mapped: &[&str]) -> Vec<Probe> {
    let candidates: &[&[&str]] = match entity {
        Entity::Client => &[&["uid"], &["recv.castInn"], &["title"]],
        Entity::Person => &[&["mail"], &["tel"], &["mob"], &["person", "clid"]],
        Entity::Deal => &[&["uid"], &["title", "clid"]],
        Entity::Task => &[&["title", "datum", "clid"], &["title", "datum"]],
        Entity::History => &[
            &["datum", "clid", "pid", "content"],
            &["datum", "clid", "content"],
            &["datum", "pid", "content"],
            &["datum", "content"],
        ],
        Entity::Invoice => &[&["invoice", "did"]],
        // Payments are not matched like records: `upload::payment` reads the invoice's rows.
        Entity::Payment => &[],
    };
    let has = |f: &&str| mapped.contains(f) || implicit(entity, f);
    let mut out: Vec<Probe> = Vec::new();
    for c in candidates {
        if c.iter().all(has) {
            // History and tasks: only the most specific probe the template can fill.
            if matches!(entity, Entity::History | Entity::Task) && !out.is_empty() {
                break;
            }
            out.push(Probe::of(c));
        }
    }
    out
}

/// One field's value as probes compare it; empty when it says nothing (an id of 0).
pub fn norm_part(entity: Entity, field: &str, text: &str) -> String {
    match field {
        "mail" | "mail_url" => text.trim().to_lowercase(),
        "tel" | "mob" | "phone" | "fax" => norm_phone(text),
        "title" if entity == Entity::Deal => norm_title(strip_deal_number(text)),
        "title" if entity == Entity::Client => norm_title(text),
        "clid" | "pid" | "did" | "uid" | "invoice" => {
            let t = text.trim();
            if t == "0" {
                String::new()
            } else {
                t.to_string()
            }
        }
        "recv.castInn" | "recv.castKpp" => text.chars().filter(char::is_ascii_digit).collect(),
        // task/list shows a task's day and its time apart (`datum`, `totime`): the day decides.
        "datum" if entity == Entity::Task => {
            match CrmDateTime::parse(text).and_then(|d| d.date()) {
                Some(d) => d.format("%Y-%m-%d").to_string(),
                None => text.trim().to_string(),
            }
        }
        "datum" | "datum_plan" => match CrmDateTime::parse(text) {
            Some(d) => d.to_datetime_string(),
            None => text.trim().to_string(),
        },
        _ => norm_text(text),
    }
}

/// Values that may hold several entries (the server joins phones with ","): each is a probe
/// value of its own.
fn split_many(field: &str) -> bool {
    matches!(field, "tel" | "mob" | "phone" | "fax")
}

/// The probe's values for one record (`get` reads a field as text). Several values when a part
/// holds several phones; none when any part is empty. On the CRM side, a person's phone probe
/// also looks at the other phone field (`crm_side`), since a number may sit in either.
pub fn probe_values(
    entity: Entity,
    probe: &Probe,
    crm_side: bool,
    get: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut combos: Vec<String> = vec![String::new()];
    for (i, f) in probe.fields.iter().enumerate() {
        let mut texts: Vec<String> = get(f).into_iter().collect();
        if crm_side && entity == Entity::Person && probe.fields.len() == 1 {
            let other = match f.as_str() {
                "tel" => Some("mob"),
                "mob" => Some("tel"),
                _ => None,
            };
            texts.extend(other.and_then(get));
        }
        let mut parts: Vec<String> = Vec::new();
        for t in texts {
            if split_many(f) {
                parts.extend(t.split([',', ';']).map(|p| norm_part(entity, f, p)));
            } else {
                parts.push(norm_part(entity, f, &t));
            }
        }
        parts.retain(|p| !p.is_empty());
        parts.sort();
        parts.dedup();
        if parts.is_empty() {
            return Vec::new();
        }
        let mut next = Vec::with_capacity(combos.len() * parts.len());
        for c in &combos {
            for p in &parts {
                let mut s = c.clone();
                if i > 0 {
                    s.push('\u{1f}');
                }
                s.push_str(p);
                next.push(s);
            }
        }
        combos = next;
    }
    combos
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn getter(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |f: &str| m.get(f).cloned()
    }

    #[test]
    fn defaults_follow_what_the_template_maps() {
        let labels = |e, m: &[&str]| -> Vec<String> {
            default_probes(e, m).iter().map(Probe::label).collect()
        };
        assert_eq!(
            labels(Entity::Person, &["person", "tel", "mail", "clid"]),
            ["mail", "tel", "person+clid"]
        );
        assert_eq!(labels(Entity::Client, &["title"]), ["uid", "title"]);
        assert_eq!(
            labels(Entity::History, &["datum", "content", "clid", "pid"]),
            ["datum+clid+pid+content"]
        );
        assert_eq!(
            labels(Entity::History, &["datum", "content", "clid"]),
            ["datum+clid+content"]
        );
    }

    #[test]
    fn a_probe_on_an_unmapped_field_is_refused() {
        let e = probes_for(Entity::Person, Some(&["mial".to_string()]), &["mail"]).unwrap_err();
        assert!(e.contains("'mial'"), "{e}");
        let ok = probes_for(
            Entity::Person,
            Some(&["mail".to_string(), "person + clid".to_string()]),
            &["mail", "person", "clid"],
        )
        .unwrap();
        assert_eq!(ok[1].fields, ["person", "clid"]);
    }

    #[test]
    fn values_compare_after_normalisation() {
        let p = Probe::of(&["tel"]);
        let src = probe_values(
            Entity::Person,
            &p,
            false,
            &getter(&[("tel", "8 (342) 250-50-50")]),
        );
        let crm = probe_values(
            Entity::Person,
            &p,
            true,
            &getter(&[("tel", "+7(342)111-11-11, +7(342)250-50-50")]),
        );
        assert!(crm.contains(&src[0]), "{src:?} {crm:?}");
        // A number kept as the mobile in the CRM is still found by the phone probe.
        let crm = probe_values(
            Entity::Person,
            &p,
            true,
            &getter(&[("mob", "+73422505050")]),
        );
        assert_eq!(crm, src);
        let name = Probe::of(&["person", "clid"]);
        let a = probe_values(
            Entity::Person,
            &name,
            false,
            &getter(&[("person", "Пётр  Иванов"), ("clid", "5")]),
        );
        let b = probe_values(
            Entity::Person,
            &name,
            true,
            &getter(&[("person", "петр иванов"), ("clid", "5")]),
        );
        assert_eq!(a, b);
        // An empty part (no client) matches nothing.
        let none = probe_values(Entity::Person, &name, false, &getter(&[("person", "Пётр")]));
        assert!(none.is_empty());
        let zero = probe_values(
            Entity::Person,
            &name,
            true,
            &getter(&[("person", "Пётр"), ("clid", "0")]),
        );
        assert!(zero.is_empty());
        let task = Probe::of(&["title", "datum"]);
        assert_eq!(
            probe_values(
                Entity::Task,
                &task,
                true,
                &getter(&[("title", "Позвонить"), ("datum", "2026-12-01")])
            ),
            probe_values(
                Entity::Task,
                &task,
                false,
                &getter(&[("title", "позвонить"), ("datum", "2026-12-01 10:00:00")])
            ),
        );
        let deal = Probe::of(&["title"]);
        assert_eq!(
            probe_values(
                Entity::Deal,
                &deal,
                true,
                &getter(&[("title", "СД12: Поставка")])
            ),
            probe_values(
                Entity::Deal,
                &deal,
                false,
                &getter(&[("title", "поставка")])
            )
        );
    }
}
