//! `template init`: a starter template from a file's columns, matched to CRM fields by the field
//! titles and common synonyms. Titles come as a `&[FieldInfo]`, so titles fetched from a live
//! server (`fields` action) can replace the built-in table later without touching the matcher.
//!
//! Without an entity, [`linked::propose`] reads the whole file and proposes a linked template
//! (client, person, deal, task, history) with keys chosen from the data and owners mapped to the
//! CRM's users; [`presets`] knows the export layouts of amoCRM and Bitrix24.

mod keys;
pub mod linked;
pub mod owners;
pub mod presets;
pub mod profile;

use super::fields::{FieldInfo, FieldKind};
use crate::crm::Entity;

fn norm(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .replace('ё', "е")
}

/// Which field a column header means, if any: exact field name, the server title, a synonym.
pub fn match_column<'a>(header: &str, fields: &'a [FieldInfo]) -> Option<&'a FieldInfo> {
    let h = norm(header);
    if h.is_empty() {
        return None;
    }
    fields
        .iter()
        .filter(|f| !matches!(f.kind, FieldKind::Ref(_)))
        .find(|f| {
            norm(f.name) == h || norm(f.title) == h || f.synonyms.iter().any(|s| norm(s) == h)
        })
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Render the starter template for `entity` over `headers` (`file` is named in a comment).
pub fn starter_template(
    entity: Entity,
    headers: &[String],
    file: &str,
    fields: &[FieldInfo],
) -> String {
    let mut used: Vec<&str> = Vec::new();
    let mut lines = Vec::new();
    let mut unmatched = Vec::new();
    for h in headers {
        match match_column(h, fields) {
            Some(f) if !used.contains(&f.name) => {
                used.push(f.name);
                let mut spec = format!("column = {}", toml_str(h));
                if f.name == "iduser" {
                    // An owner column holds names or logins, never the CRM's numeric user id:
                    // sent as `user` (a login), checked against the CRM's users.
                    lines.push(format!(
                        "user     = {{ {spec}, transform = [\"trim\"] }}   # owner: a CRM login (for full names use `template init --from FILE` without an entity: it writes a [users] table)"
                    ));
                    continue;
                }
                let lname = f.name;
                if ["mail", "mail_url"].contains(&lname) {
                    spec.push_str(", transform = [\"trim\", \"lower\"], check = \"email\"");
                } else if ["tel", "mob", "phone", "fax"].contains(&lname) {
                    spec.push_str(", transform = [\"phone\"]");
                } else if matches!(
                    f.kind,
                    FieldKind::Date | FieldKind::DateTime | FieldKind::Timestamp
                ) {
                    spec.push_str(", date = [\"%d.%m.%Y\", \"%d.%m.%Y %H:%M\"]");
                } else {
                    spec.push_str(", transform = [\"collapse_spaces\"]");
                }
                if matches!(
                    (entity, lname),
                    (Entity::Person, "person")
                        | (Entity::Client, "title")
                        | (Entity::Task, "title")
                        | (Entity::History, "content")
                ) {
                    spec.push_str(", required = true");
                }
                // A leaf of an object field (`recv.castInn`) is one key: quoted, dot and all.
                let key = if lname.contains('.') {
                    toml_str(lname)
                } else {
                    lname.to_string()
                };
                lines.push(format!("{key:<8} = {{ {spec} }}   # {}", f.title));
            }
            _ => unmatched.push(h.as_str()),
        }
    }
    let key_col = headers
        .iter()
        .find(|h| {
            let n = norm(h);
            n.contains("id") || n.contains("код") || n == "uid"
        })
        .or_else(|| {
            let want = match entity {
                Entity::Person => "person",
                Entity::Client | Entity::Task | Entity::Deal => "title",
                Entity::Invoice | Entity::Payment => "invoice",
                Entity::History => "content",
            };
            headers
                .iter()
                .find(|h| match_column(h, fields).is_some_and(|f| f.name == want))
        })
        .or(headers.first());
    let mut out = String::new();
    out.push_str(&format!(
        "# Starter template for {entity} records, generated from {file}.\n"
    ));
    out.push_str("# Review every line: check the key, the required fields and the checks.\n");
    out.push_str(&format!(
        "name = {}\n\n",
        toml_str(&format!("{entity} from {file}"))
    ));
    out.push_str("[[entity]]\n");
    out.push_str(&format!("type = \"{entity}\"\n"));
    let key = key_col.map(|k| format!("{{{k}}}")).unwrap_or_default();
    out.push_str(&format!(
        "key = {}   # what identifies one {entity} across rows and runs\n",
        toml_str(&key)
    ));
    out.push_str("[entity.fields]\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    if !unmatched.is_empty() {
        out.push_str("\n# Columns not matched to a field (map them by hand if needed):\n");
        for u in unmatched {
            out.push_str(&format!("# ??? = {{ column = {} }}\n", toml_str(u)));
        }
    }
    let unused: Vec<String> = fields
        .iter()
        .filter(|f| !used.contains(&f.name) && !matches!(f.kind, FieldKind::Ref(_)))
        .map(|f| format!("{} ({})", f.name, f.title))
        .collect();
    if !unused.is_empty() {
        out.push_str(&format!(
            "\n# Other {entity} fields: {}\n",
            unused.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::fields::known_fields;

    #[test]
    fn matches_titles_and_synonyms() {
        let f = known_fields(Entity::Person);
        assert_eq!(match_column("Ф.И.О.", f).unwrap().name, "person");
        assert_eq!(match_column("фио", f).unwrap().name, "person");
        assert_eq!(match_column("E-mail", f).unwrap().name, "mail");
        assert_eq!(match_column("Phone", f).unwrap().name, "tel");
        assert_eq!(match_column("Должность", f).unwrap().name, "ptitle");
        assert!(match_column("Любимый цвет", f).is_none());
    }

    #[test]
    fn an_inn_column_becomes_a_requisites_leaf_the_template_accepts() {
        let headers: Vec<String> = ["Компания", "ИНН", "КПП"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let text = starter_template(
            Entity::Client,
            &headers,
            "c.csv",
            known_fields(Entity::Client),
        );
        assert!(
            text.contains("\"recv.castInn\" = { column = \"ИНН\""),
            "{text}"
        );
        assert!(
            text.contains("\"recv.castKpp\" = { column = \"КПП\""),
            "{text}"
        );
        let t = crate::template::Template::parse(std::path::Path::new("c.toml"), &text).unwrap();
        t.bind(&headers, "c.csv").unwrap();
    }

    #[test]
    fn starter_is_a_valid_template() {
        let headers: Vec<String> = ["Внешний ID", "ФИО", "Email", "Телефон", "Хобби"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let text = starter_template(
            Entity::Person,
            &headers,
            "x.csv",
            known_fields(Entity::Person),
        );
        assert!(text.contains("# ??? = { column = \"Хобби\" }"), "{text}");
        let t = crate::template::Template::parse(std::path::Path::new("x.toml"), &text).unwrap();
        t.bind(&headers, "x.csv").unwrap();
    }
}
