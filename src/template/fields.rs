//! What we know about each entity's CRM fields without asking a server: titles (as the server's
//! `fields` action returns them, `shared/fixtures/salesman-real/v3-*-fields-ok.json`), common
//! column-name synonyms, column sizes and value kinds. `template init` matches columns with it and
//! the mapper applies its implicit checks (NOTES §4, §7, §8).

use crate::crm::Entity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Sent as `YYYY-MM-DD HH:MM:SS`.
    DateTime,
    /// A TIMESTAMP column: `YYYY-MM-DD HH:MM:SS` within 1970-01-01 … 2038-01-19 (NOTES §7).
    Timestamp,
    /// Sent as `YYYY-MM-DD`.
    Date,
    /// Sent as `HH:MM`.
    Time,
    /// An integer (ids, dictionary ids such as `loyalty`: the server casts text to a wrong number).
    Int,
    Number,
    /// The CRM id of another record; normally filled by `ref = "client"`.
    Ref(Entity),
}

#[derive(Debug, Clone, Copy)]
pub struct FieldInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub kind: FieldKind,
    /// Column size in characters where we know it (person fields are varchar(250), NOTES §8).
    pub max_len: Option<usize>,
    /// Column names users give this field, compared case-insensitively.
    pub synonyms: &'static [&'static str],
}

const fn f(
    name: &'static str,
    title: &'static str,
    kind: FieldKind,
    max_len: Option<usize>,
    synonyms: &'static [&'static str],
) -> FieldInfo {
    FieldInfo {
        name,
        title,
        kind,
        max_len,
        synonyms,
    }
}

use FieldKind::*;
const L: Option<usize> = Some(250);

const CLIENT: &[FieldInfo] = &[
    f(
        "uid",
        "Уникальный идентификатор записи клиента в вашей ИС",
        Text,
        L,
        &[
            "uid",
            "Внешний ID",
            "External ID",
            "ID клиента",
            "Код клиента",
            "Код",
        ],
    ),
    f(
        "title",
        "Название",
        Text,
        L,
        &[
            "Компания",
            "Название компании",
            "Организация",
            "Клиент",
            "Company",
            "Organization",
            "Наименование",
        ],
    ),
    f("type", "Тип записи", Text, None, &["Тип клиента"]),
    f(
        "date_create",
        "Дата создания",
        DateTime,
        None,
        &["Дата создания", "Created"],
    ),
    f(
        "iduser",
        "Ответственный",
        Text,
        None,
        &["Ответственный", "Менеджер", "Owner"],
    ),
    f(
        "address",
        "Адрес",
        Text,
        None,
        &["Адрес", "Address", "Юридический адрес"],
    ),
    f(
        "phone",
        "Телефон",
        Text,
        L,
        &["Телефон", "Телефон компании", "Phone"],
    ),
    f("fax", "Факс", Text, L, &["Факс", "Fax"]),
    f(
        "site_url",
        "Сайт",
        Text,
        L,
        &["Сайт", "Website", "Site", "URL"],
    ),
    f(
        "mail_url",
        "Почта",
        Text,
        L,
        &["Почта компании", "Email компании", "E-mail компании"],
    ),
    // Requisites: the server reads `recv` as an object of these leaves (NOTES §15); a template
    // fills them one by one (`"recv.castInn" = "ИНН"`), see [`object_field`].
    f("recv.castInn", "ИНН", Text, None, &["ИНН", "INN"]),
    f("recv.castKpp", "КПП", Text, None, &["КПП", "KPP"]),
    f("recv.castOgrn", "ОГРН", Text, None, &["ОГРН", "OGRN"]),
    f("recv.castOkpo", "ОКПО", Text, None, &["ОКПО", "OKPO"]),
    f(
        "recv.castUrName",
        "Юридическое название",
        Text,
        None,
        &[
            "Юр. название",
            "Полное наименование",
            "Юридическое наименование",
        ],
    ),
    f(
        "recv.castUrNameShort",
        "Краткое юридическое название",
        Text,
        None,
        &["Краткое наименование"],
    ),
    f(
        "recv.castUrAddr",
        "Юридический адрес (реквизиты)",
        Text,
        None,
        &[],
    ),
    f("recv.castBank", "Банк", Text, None, &["Банк", "Bank"]),
    f("recv.castBankBik", "БИК", Text, None, &["БИК", "BIC"]),
    f(
        "recv.castBankRs",
        "Расчётный счёт",
        Text,
        None,
        &["Расчетный счет", "Р/с"],
    ),
    f(
        "recv.castBankKs",
        "Корреспондентский счёт",
        Text,
        None,
        &["Корр. счет", "Корреспондентский счет", "К/с"],
    ),
    f(
        "recv.castDirName",
        "ФИО руководителя",
        Text,
        None,
        &["Руководитель", "Директор"],
    ),
    f(
        "recv.castDirSignature",
        "Подпись руководителя",
        Text,
        None,
        &[],
    ),
    f(
        "recv.castDirStatus",
        "Должность руководителя",
        Text,
        None,
        &["Должность руководителя"],
    ),
    f(
        "recv.castDirStatusSig",
        "Должность руководителя для подписи",
        Text,
        None,
        &[],
    ),
    f(
        "recv.castDirOsnovanie",
        "Действует на основании",
        Text,
        None,
        &["Действует на основании"],
    ),
];

/// A field the server reads as an object of named leaves, not as text: a string there makes the
/// real server die with a PHP TypeError (HTML page, HTTP 200), and `client/add.list` then loses
/// the whole batch (NOTES §15). Its leaves are ordinary text fields named `name.leaf` in
/// [`known_fields`]; the mapper builds the object from them.
#[derive(Debug, Clone, Copy)]
pub struct ObjectField {
    pub entity: Entity,
    pub name: &'static str,
    /// What the CRM calls it, for messages.
    pub what: &'static str,
    /// Leaf names the server reads (as client/info returns them under `bankinfo`,
    /// v3-client-info-recv-object; `castName` and `castType` are derived from the title and type,
    /// `castFacAddr` came back null after an add).
    pub leaves: &'static [&'static str],
}

const OBJECT_FIELDS: &[ObjectField] = &[ObjectField {
    entity: Entity::Client,
    name: "recv",
    what: "requisites",
    leaves: &[
        "castInn",
        "castKpp",
        "castOgrn",
        "castOkpo",
        "castUrName",
        "castUrNameShort",
        "castUrAddr",
        "castBank",
        "castBankBik",
        "castBankRs",
        "castBankKs",
        "castDirName",
        "castDirSignature",
        "castDirStatus",
        "castDirStatusSig",
        "castDirOsnovanie",
    ],
}];

/// The object field `name` of `entity` (`recv` of a client), if it is one.
pub fn object_field(entity: Entity, name: &str) -> Option<&'static ObjectField> {
    OBJECT_FIELDS
        .iter()
        .find(|o| o.entity == entity && o.name == name)
}

impl ObjectField {
    /// What to write instead of a plain value: `recv.castInn = ..., recv.castKpp = ...`.
    pub fn how_to_fill(&self) -> String {
        format!(
            "{} field '{}' is an object on the server ({}); write {n}.{} = ..., {n}.{} = ... (leaves: {})",
            self.entity,
            self.name,
            self.what,
            self.leaves[0],
            self.leaves[1],
            self.leaves.join(", "),
            n = self.name,
        )
    }
}

const PERSON: &[FieldInfo] = &[
    f(
        "person",
        "Ф.И.О.",
        Text,
        L,
        &[
            "ФИО",
            "Ф.И.О",
            "Контакт",
            "Контактное лицо",
            "Имя",
            "Name",
            "Full name",
            "Contact",
        ],
    ),
    f(
        "ptitle",
        "Должность",
        Text,
        L,
        &["Должность", "Position", "Title", "Job title"],
    ),
    f(
        "tel",
        "Тел.",
        Text,
        L,
        &["Телефон", "Тел", "Рабочий телефон", "Phone", "Tel"],
    ),
    f("fax", "Факс", Text, L, &["Факс", "Fax"]),
    f(
        "mob",
        "Моб.",
        Text,
        L,
        &["Мобильный", "Мобильный телефон", "Моб", "Mobile", "Cell"],
    ),
    f(
        "mail",
        "Почта",
        Text,
        L,
        &[
            "E-mail",
            "Email",
            "Эл. почта",
            "Электронная почта",
            "Почта",
            "Mail",
        ],
    ),
    f("clid", "Клиент", Ref(Entity::Client), None, &[]),
    f(
        "iduser",
        "Куратор",
        Text,
        None,
        &["Куратор", "Ответственный", "Owner"],
    ),
    f(
        "input7",
        "Добавочный",
        Text,
        L,
        &["Добавочный", "Доб.", "Extension"],
    ),
    f("date_create", "Дата создания", DateTime, None, &[]),
];

const HISTORY: &[FieldInfo] = &[
    f(
        "datum",
        "Дата",
        Timestamp,
        None,
        &[
            "Дата",
            "Дата активности",
            "Дата последней активности",
            "Date",
        ],
    ),
    // The `fields` action calls it `des` (its column name); add, add.list and list read and
    // answer `content`.
    f(
        "content",
        "Содержание",
        Text,
        None,
        &[
            "Содержание",
            "Текст",
            "Комментарий",
            "Описание",
            "Текст активности",
            "Notes",
            "Comment",
        ],
    ),
    f(
        "tip",
        "Тип активности",
        Text,
        None,
        &["Тип", "Тип активности", "Activity type", "Type"],
    ),
    f(
        "iduser",
        "Ответственный",
        Text,
        None,
        &["Ответственный", "Менеджер"],
    ),
    f("clid", "ID клиента", Ref(Entity::Client), None, &[]),
    f(
        "pid",
        "ID контакта (массив)",
        Ref(Entity::Person),
        None,
        &[],
    ),
    f("did", "ID сделки", Ref(Entity::Deal), None, &[]),
];

const TASK: &[FieldInfo] = &[
    f(
        "datum",
        "Дата",
        Date,
        None,
        &["Дата", "Срок", "Date", "Due date"],
    ),
    f("totime", "Время", Time, None, &["Время", "Time"]),
    f(
        "title",
        "Тема",
        Text,
        L,
        &["Тема", "Задача", "Subject", "Title"],
    ),
    f(
        "des",
        "Агенда",
        Text,
        None,
        &["Агенда", "Описание", "Комментарий", "Description"],
    ),
    f(
        "tip",
        "Тип напоминания",
        Text,
        None,
        &["Тип", "Тип задачи", "Type"],
    ),
    f(
        "priority",
        "Важность",
        Int,
        None,
        &["Важность", "Приоритет", "Priority"],
    ),
    f("speed", "Срочность", Int, None, &["Срочность", "Urgency"]),
    f(
        "iduser",
        "Ответственный",
        Text,
        None,
        &["Ответственный", "Исполнитель", "Owner"],
    ),
    f("clid", "ID клиента", Ref(Entity::Client), None, &[]),
    f("pid", "ID контакта", Ref(Entity::Person), None, &[]),
    f("did", "ID сделки", Ref(Entity::Deal), None, &[]),
    f(
        "day",
        "На весь день",
        Text,
        None,
        &["На весь день", "All day"],
    ),
];

const DEAL: &[FieldInfo] = &[
    f(
        "uid",
        "Уникальный идентификатор записи во внешней системе",
        Text,
        L,
        &["uid", "Внешний ID", "External ID", "ID сделки"],
    ),
    f(
        "title",
        "Название",
        Text,
        L,
        &["Сделка", "Название сделки", "Deal", "Название"],
    ),
    f(
        "datum",
        "Дата создания",
        Date,
        None,
        &["Дата создания", "Дата", "Created"],
    ),
    f("clid", "Клиент", Ref(Entity::Client), None, &[]),
    f(
        "iduser",
        "Куратор",
        Text,
        None,
        &["Куратор", "Ответственный", "Owner"],
    ),
    f(
        "datum_plan",
        "Дата план.",
        Date,
        None,
        &["Дата план", "Плановая дата", "Planned date"],
    ),
    f("step", "Этап", Text, None, &["Этап", "Стадия", "Stage"]),
    f(
        "dog_num",
        "Договор",
        Text,
        None,
        &["Договор", "Номер договора", "Contract"],
    ),
    f("tip", "Тип сделки", Text, None, &["Тип сделки", "Тип"]),
    f(
        "direction",
        "Направление",
        Text,
        None,
        &["Направление", "Direction"],
    ),
    f(
        "kol",
        "Сумма план.",
        Number,
        None,
        &["Сумма", "Сумма план", "Amount", "Бюджет"],
    ),
    f(
        "marga",
        "Прибыль",
        Number,
        None,
        &["Прибыль", "Маржа", "Margin"],
    ),
    f(
        "datum_start",
        "Период действия. Начало",
        Date,
        None,
        &["Начало", "Start"],
    ),
    f(
        "datum_end",
        "Период действия. Конец",
        Date,
        None,
        &["Конец", "End"],
    ),
    f(
        "datum_close",
        "Дата закрытия",
        Date,
        None,
        &["Дата закрытия", "Closed"],
    ),
    f(
        "kol_fact",
        "Фактическая сумма продажи",
        Number,
        None,
        &["Фактическая сумма", "Сумма факт"],
    ),
];

/// What invoice/add takes (NOTES §12). `summa` is required by the import: without it the server
/// invoices the whole deal, whatever is invoiced already. `date_plan` goes as `date.plan`.
const INVOICE: &[FieldInfo] = &[
    f("did", "ID сделки", Ref(Entity::Deal), None, &[]),
    f(
        "invoice",
        "Номер счета",
        Text,
        None,
        &["Номер счета", "Счет", "Invoice"],
    ),
    f(
        "summa",
        "Сумма",
        Number,
        None,
        &["Сумма", "Сумма счета", "Amount"],
    ),
    f("date", "Дата счета", Date, None, &["Дата счета", "Дата"]),
    f(
        "date_plan",
        "Плановая дата оплаты",
        Date,
        None,
        &["Дата оплаты план", "Срок оплаты"],
    ),
    f(
        "contract",
        "Номер договора",
        Text,
        None,
        &["Договор", "Номер договора"],
    ),
    f("nds", "НДС", Number, None, &["НДС"]),
    f("tip", "Тип счета", Text, None, &[]),
];

/// A payment: the invoice it pays (its number, the `invoice` record of the same template as
/// `crid`, or the deal and the amount), the amount and the day paid (NOTES §12: invoice/do).
const PAYMENT: &[FieldInfo] = &[
    f(
        "invoice",
        "Номер счета",
        Text,
        None,
        &["Номер счета", "Счет"],
    ),
    f("did", "ID сделки", Ref(Entity::Deal), None, &[]),
    f(
        "summa",
        "Сумма оплаты",
        Number,
        None,
        &["Сумма", "Сумма оплаты", "Amount"],
    ),
    f(
        "date",
        "Дата оплаты",
        Date,
        None,
        &["Дата оплаты", "Дата платежа"],
    ),
];

/// The built-in field table of an entity. `template init --url` will later replace titles with
/// what the server's `fields` action returns; matching code takes any `&[FieldInfo]`.
pub fn known_fields(entity: Entity) -> &'static [FieldInfo] {
    match entity {
        Entity::Client => CLIENT,
        Entity::Person => PERSON,
        Entity::History => HISTORY,
        Entity::Task => TASK,
        Entity::Deal => DEAL,
        Entity::Invoice => INVOICE,
        Entity::Payment => PAYMENT,
    }
}

/// The field table as a live CRM has it: only the fields its `fields` action lists (disabled
/// ones are left out, so nothing is matched to them), with the server's titles; what we know
/// about each (kind, size, synonyms) is kept. Built once per `template init`, so the few strings
/// are leaked to fit the `'static` table type. Fields the API writes but does not list
/// ([`written_but_unlisted`]) are kept.
pub fn live_fields(entity: Entity, live: &[crate::crm::FieldInfo]) -> Vec<FieldInfo> {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    // Fields the server writes without listing them (deal `title`) are matched all the same.
    let mut out: Vec<FieldInfo> = written_but_unlisted(entity)
        .iter()
        .filter(|n| !live.iter().any(|l| l.name == **n))
        .filter_map(|n| field_info(entity, n).copied())
        .collect();
    for l in live {
        // An object field (client `recv`) is filled leaf by leaf: offer its leaves instead.
        if let Some(o) = object_field(entity, &l.name) {
            out.extend(
                known_fields(entity)
                    .iter()
                    .filter(|k| {
                        k.name
                            .strip_prefix(o.name)
                            .is_some_and(|r| r.starts_with('.'))
                    })
                    .copied(),
            );
            continue;
        }
        out.push(match field_info(entity, &l.name) {
            Some(k) => FieldInfo {
                title: if l.title.is_empty() {
                    k.title
                } else {
                    leak(&l.title)
                },
                ..*k
            },
            None => FieldInfo {
                name: leak(&l.name),
                title: leak(&l.title),
                kind: Text,
                max_len: None,
                synonyms: &[],
            },
        });
    }
    out
}

/// Fields the API writes although its `fields` action does not list them: deal/add needs a
/// `title` (406 without it) and stores it, yet deal/fields has no `title`; deal/add and
/// deal/update store the contact `pid` (v3-deal-add-full, v3-deal-update-partial-datum_plan).
pub fn written_but_unlisted(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Deal => &["title", "pid"],
        _ => &[],
    }
}

pub fn field_info(entity: Entity, name: &str) -> Option<&'static FieldInfo> {
    known_fields(entity).iter().find(|f| f.name == name)
}

/// Invoices and payments move money: an invoice without `summa` would be for the whole deal
/// (the server's default, even when part is invoiced already, NOTES §12), a payment without one
/// for the whole invoice. So the template must map `summa`, and a row without one is invalid. An
/// invoice also needs its number (what it is matched by, so a second run adds nothing) and a
/// payment the invoice it pays: its number, or the deal (then the amount picks the invoice).
pub(super) fn money_rows(entity: Entity, fields: &mut [super::FieldRule]) -> Result<(), String> {
    if !matches!(entity, Entity::Invoice | Entity::Payment) {
        return Ok(());
    }
    let has = |fields: &[super::FieldRule], n: &str| fields.iter().any(|f| f.name == n);
    let Some(summa) = fields.iter_mut().find(|f| f.name == "summa") else {
        return Err(match entity {
            Entity::Invoice => "maps no `summa`: the CRM would invoice the whole deal (even what is invoiced already); map the invoice's amount, e.g. summa = \"Сумма\"".into(),
            _ => "maps no `summa`: map the amount paid, e.g. summa = { column = \"Сумма\", check = \"number\" }".into(),
        });
    };
    summa.required = true;
    match entity {
        Entity::Invoice => {
            if !has(fields, "did") {
                return Err(
                    "maps no deal: link it with did = { ref = \"deal\" } (or a column of deal ids)"
                        .into(),
                );
            }
            if !has(fields, "invoice") {
                return Err("maps no `invoice` number: invoices are matched by number and deal (so a second run adds none); map the number, e.g. invoice = \"Номер счета\"".into());
            }
        }
        _ => {
            if !has(fields, "invoice") && !has(fields, "did") {
                return Err("names no invoice: map `invoice` (the invoice number as the CRM shows it) or `did` (the deal; the amount then picks its invoice)".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_deal_fields_keep_the_title_the_server_writes_but_does_not_list() {
        let live = |n: &str, t: &str| crate::crm::FieldInfo {
            name: n.into(),
            title: t.into(),
        };
        let deal = live_fields(
            Entity::Deal,
            &[live("uid", "Внешний ID"), live("step", "Этап")],
        );
        let names: Vec<&str> = deal.iter().map(|f| f.name).collect();
        assert_eq!(names, ["title", "uid", "step"]);
        let person = live_fields(Entity::Person, &[live("mail", "Почта")]);
        assert_eq!(person.len(), 1, "nothing added where nothing is unlisted");
    }
}
