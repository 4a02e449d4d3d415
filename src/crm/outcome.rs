//! Reading one item's result from a write answer. The real server's per-item answers differ by
//! entity and leak fields between rows (NOTES.md §2), so each entity has its own rule.

use super::values::value_id;
use super::Entity;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored with this CRM id.
    Created(i64),
    /// Not stored because the CRM already has it (client duplicate check, answer 304 `exists`).
    Existing(i64),
    /// Rejected by the server; `text` is its own message, verbatim.
    Failed { code: Option<String>, text: String },
}

fn error_of(item: &Value) -> (Option<String>, String) {
    match item.get("error") {
        Some(Value::Object(e)) => {
            let code = e.get("code").map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let text = e
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (code, text)
        }
        Some(Value::String(s)) if !s.is_empty() => (None, s.clone()),
        _ => (None, String::new()),
    }
}

impl ItemOutcome {
    /// Judge one element of an `add.list` answer, or the whole answer of a single `add`.
    pub fn read(entity: Entity, item: &Value) -> ItemOutcome {
        let result = item.get("result").and_then(Value::as_str).unwrap_or("");
        if result == "Error" {
            if let Some(id) = value_id(item.get("exists")) {
                return ItemOutcome::Existing(id);
            }
        }
        let ok = match entity {
            // A person without a name comes back as {"result":"","data":0,"error":""}.
            Entity::Person => !result.is_empty() && result != "Error",
            // invoice/add: "Успешно;Счет добавлен в платежи" with data {id, invoice} (NOTES §12).
            Entity::Invoice => result.starts_with("Успешно"),
            // history add.list leaks the previous row's `data`/`error`: only `result` counts.
            _ => result == "Успешно",
        };
        if ok {
            let data = item.get("data");
            let data = match (entity, data) {
                (Entity::Invoice, Some(d)) if d.is_object() => d.get("id"),
                _ => data,
            };
            if let Some(id) = value_id(data) {
                return ItemOutcome::Created(id);
            }
        }
        let (code, mut text) = error_of(item);
        if ok || text.is_empty() {
            text = if result.is_empty() || result == "Error" {
                "the CRM rejected the row without giving a reason (it does so for a person without a name)".to_string()
            } else {
                format!("the CRM answered '{result}' without a record id")
            };
        }
        ItemOutcome::Failed { code, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_rows_are_judged_by_result_only() {
        // Recorded: a failed row carries the previous row's id, a good row the previous error.
        let bad = json!({"result":"Error","data":19,"error":{"code":405,"text":"Отсутствуют параметры - Заголовок"}});
        let good = json!({"result":"Успешно","data":20,"error":{"code":405,"text":"Отсутствуют параметры - Заголовок"}});
        assert_eq!(
            ItemOutcome::read(Entity::History, &bad),
            ItemOutcome::Failed {
                code: Some("405".into()),
                text: "Отсутствуют параметры - Заголовок".into()
            }
        );
        assert_eq!(
            ItemOutcome::read(Entity::History, &good),
            ItemOutcome::Created(20)
        );
    }

    #[test]
    fn person_without_name_is_a_failure_with_an_explanation() {
        let r = ItemOutcome::read(Entity::Person, &json!({"result":"","data":0,"error":""}));
        match r {
            ItemOutcome::Failed { text, .. } => assert!(text.contains("without a name")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ItemOutcome::read(
                Entity::Person,
                &json!({"result":"Контакт добавлен","data":6,"error":""})
            ),
            ItemOutcome::Created(6)
        );
    }

    #[test]
    fn client_duplicate_links_to_the_existing_record() {
        let r = ItemOutcome::read(
            Entity::Client,
            &json!({"result":"Error","exists":1,"error":{"code":304,"text":"Найден существующий клиент"}}),
        );
        assert_eq!(r, ItemOutcome::Existing(1));
    }
}
