//! Which column means what: the titles of the usual Russian customer files, and the presets for
//! the exports of amoCRM and Bitrix24 (contacts, companies, deals).
//!
//! The preset layouts were written from the vendors' documented export formats (the column titles
//! of the standard "Экспорт" of each CRM's lists, Russian interface), not from a recording of a
//! real export: a customer's file may differ (custom fields, another interface language), and
//! whatever a preset does not know falls back to the generic titles below.

use crate::crm::Entity;

/// What a column is for in a linked template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A CRM field of an entity (`recv.castInn` for a leaf).
    Field(Entity, &'static str),
    /// A part of a person's name (0 surname, 1 first name, 2 patronymic) when no column holds the
    /// full name.
    NamePart(u8),
    /// The record's owner (a full name, a login or an e-mail): `user` through `[users]`.
    Owner,
    /// An id of the source system: a key candidate of that entity, not sent.
    SourceId(Entity),
    /// A plain "ID": the id of the export's main record (a deal in a deals export, else the
    /// contact, else the company).
    PlainId,
    /// When the source system created the row: history's date when nothing else dates it.
    Created,
}

use Entity::{Client, Deal, History, Person, Task};
use Role::*;

/// A preset for a known export layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Amocrm,
    Bitrix24,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        match s.to_lowercase().as_str() {
            "amocrm" => Ok(Preset::Amocrm),
            "bitrix24" => Ok(Preset::Bitrix24),
            _ => Err(format!("unknown preset '{s}' (known: amocrm, bitrix24)")),
        }
    }
}

impl Preset {
    /// The header comment of a template proposed with this preset.
    pub fn header(self) -> &'static str {
        match self {
            Preset::Amocrm => "# Preset amocrm: the standard export of amoCRM's contacts, companies and deals lists\n\
                # (Russian interface; XLSX or CSV). Written from amoCRM's documented export format:\n\
                # 'Полное имя контакта', 'Компания', 'Рабочий телефон'/'Мобильный телефон', 'Рабочий email'/\n\
                # 'Личный email' (several values in one cell, comma-separated: the first is sent),\n\
                # 'Ответственный' (a user's full name), 'Дата создания' (dd.mm.yyyy HH:MM:SS),\n\
                # 'Название сделки', 'Бюджет', 'Этап сделки', 'Примечание'.\n",
            Preset::Bitrix24 => "# Preset bitrix24: the standard export of Bitrix24's CRM contacts, companies and deals\n\
                # (Russian interface; CSV or Excel). Written from Bitrix24's documented export format:\n\
                # 'Имя'/'Отчество'/'Фамилия' (no full-name column), 'Компания', 'Должность',\n\
                # 'Рабочий телефон'/'Мобильный телефон', 'Рабочий e-mail'/'Частный e-mail' (several values in\n\
                # one cell, comma-separated: the first is sent), 'Ответственный' (a user's full name),\n\
                # 'Дата создания' (dd.mm.yyyy HH:MM:SS), 'Название сделки', 'Стадия сделки', 'Сумма',\n\
                # 'Предполагаемая дата закрытия', 'Комментарий'.\n",
        }
    }

    fn table(self) -> &'static [(&'static [&'static str], Role)] {
        match self {
            Preset::Amocrm => AMOCRM,
            Preset::Bitrix24 => BITRIX24,
        }
    }
}

const AMOCRM: &[(&[&str], Role)] = &[
    (
        &["Полное имя контакта", "Имя контакта"],
        Field(Person, "person"),
    ),
    (&["Фамилия"], NamePart(0)),
    (&["Имя"], NamePart(1)),
    (&["ID контакта"], SourceId(Person)),
    (&["ID компании"], SourceId(Client)),
    (&["ID"], PlainId),
    (&["ID сделки"], SourceId(Deal)),
    (
        &["Компания", "Название компании", "Компания контакта"],
        Field(Client, "title"),
    ),
    (&["Рабочий телефон", "Телефон"], Field(Person, "tel")),
    (&["Мобильный телефон"], Field(Person, "mob")),
    (
        &["Рабочий email", "Email", "Личный email"],
        Field(Person, "mail"),
    ),
    (&["Должность"], Field(Person, "ptitle")),
    (&["Web", "Сайт"], Field(Client, "site_url")),
    (&["Адрес"], Field(Client, "address")),
    (&["Название сделки", "Сделка"], Field(Deal, "title")),
    (&["Бюджет"], Field(Deal, "kol")),
    (&["Этап сделки", "Статус"], Field(Deal, "step")),
    (&["Примечание", "Примечания"], Field(History, "content")),
    (&["Ответственный", "Ответственный пользователь"], Owner),
    (&["Дата создания", "Дата создания контакта"], Created),
];

const BITRIX24: &[(&[&str], Role)] = &[
    (&["Фамилия"], NamePart(0)),
    (&["Имя"], NamePart(1)),
    (&["Отчество"], NamePart(2)),
    (&["ID"], PlainId),
    (&["Компания", "Название компании"], Field(Client, "title")),
    (&["Должность"], Field(Person, "ptitle")),
    (&["Рабочий телефон"], Field(Person, "tel")),
    (&["Мобильный телефон"], Field(Person, "mob")),
    (
        &["Рабочий e-mail", "Частный e-mail", "E-mail"],
        Field(Person, "mail"),
    ),
    (&["Корпоративный сайт"], Field(Client, "site_url")),
    (&["Адрес"], Field(Client, "address")),
    (&["Название сделки"], Field(Deal, "title")),
    (&["Стадия сделки"], Field(Deal, "step")),
    (&["Сумма"], Field(Deal, "kol")),
    (&["Предполагаемая дата закрытия"], Field(Deal, "datum_plan")),
    (&["Комментарий"], Field(History, "content")),
    (&["Ответственный"], Owner),
    (&["Дата создания"], Created),
];

/// The titles of customer files in general (after a preset's own).
const GENERIC: &[(&[&str], Role)] = &[
    (
        &[
            "Компания",
            "Название компании",
            "Организация",
            "Клиент",
            "Контрагент",
            "Наименование",
            "Наименование организации",
            "Company",
        ],
        Field(Client, "title"),
    ),
    (
        &["ИНН", "ИНН компании", "ИНН клиента", "INN"],
        Field(Client, "recv.castInn"),
    ),
    (&["КПП", "KPP"], Field(Client, "recv.castKpp")),
    (
        &[
            "Адрес",
            "Адрес компании",
            "Юридический адрес",
            "Фактический адрес",
            "Address",
        ],
        Field(Client, "address"),
    ),
    (&["Сайт", "Website", "Web"], Field(Client, "site_url")),
    (&["Телефон компании"], Field(Client, "phone")),
    (
        &["Почта компании", "Email компании", "E-mail компании"],
        Field(Client, "mail_url"),
    ),
    (
        &["ID компании", "Код клиента", "ID клиента"],
        SourceId(Client),
    ),
    (
        &[
            "Контактное лицо",
            "Контакт",
            "ФИО",
            "Ф.И.О.",
            "ФИО контакта",
            "Полное имя",
            "Имя контакта",
            "Full name",
            "Contact",
        ],
        Field(Person, "person"),
    ),
    (&["Фамилия"], NamePart(0)),
    (&["Имя"], NamePart(1)),
    (&["Отчество"], NamePart(2)),
    (
        &[
            "Телефон",
            "Тел",
            "Тел.",
            "Рабочий телефон",
            "Контактный телефон",
            "Phone",
        ],
        Field(Person, "tel"),
    ),
    (
        &["Мобильный", "Мобильный телефон", "Моб. телефон", "Mobile"],
        Field(Person, "mob"),
    ),
    (
        &[
            "E-mail",
            "Email",
            "Почта",
            "Эл. почта",
            "Электронная почта",
            "Рабочий email",
            "Рабочий e-mail",
            "Mail",
        ],
        Field(Person, "mail"),
    ),
    (&["Должность", "Position"], Field(Person, "ptitle")),
    (&["ID контакта", "Код контакта"], SourceId(Person)),
    (
        &[
            "Ответственный",
            "Ответственный менеджер",
            "Менеджер",
            "Куратор",
            "Owner",
        ],
        Owner,
    ),
    (&["Сделка", "Название сделки", "Deal"], Field(Deal, "title")),
    (
        &["Сумма", "Сумма сделки", "Бюджет", "Amount"],
        Field(Deal, "kol"),
    ),
    (
        &["Этап", "Этап сделки", "Стадия", "Стадия сделки"],
        Field(Deal, "step"),
    ),
    (
        &[
            "Дата план",
            "Плановая дата",
            "Дата закрытия",
            "Предполагаемая дата закрытия",
        ],
        Field(Deal, "datum_plan"),
    ),
    (&["ID сделки", "Номер сделки"], SourceId(Deal)),
    (&["Задача", "Тема задачи"], Field(Task, "title")),
    (
        &["Срок", "Срок задачи", "Дата задачи"],
        Field(Task, "datum"),
    ),
    (&["Описание задачи"], Field(Task, "des")),
    (
        &[
            "Комментарий",
            "Комментарии",
            "Примечание",
            "Заметка",
            "Результат",
            "Описание активности",
            "Comment",
            "Note",
        ],
        Field(History, "content"),
    ),
    (
        &[
            "Дата активности",
            "Дата контакта",
            "Дата звонка",
            "Дата события",
            "Дата последнего контакта",
            "Дата",
            "Activity date",
        ],
        Field(History, "datum"),
    ),
    (&["Дата создания", "Создан", "Created"], Created),
];

/// A title as compared: letters and digits only, any case, `ё` as `е`.
pub fn norm(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect()
}

/// The role a column title names: the preset's table first, then the generic one.
pub fn role_of(title: &str, preset: Option<Preset>) -> Option<Role> {
    let t = norm(title);
    if t.is_empty() {
        return None;
    }
    preset
        .map(Preset::table)
        .into_iter()
        .chain([GENERIC])
        .flat_map(|table| table.iter())
        .find(|(titles, _)| titles.iter().any(|x| norm(x) == t))
        .map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_read_their_vendors_titles_before_the_generic_ones() {
        assert_eq!(role_of("ИНН", None), Some(Field(Client, "recv.castInn")));
        assert_eq!(
            role_of("Контактное лицо", None),
            Some(Field(Person, "person"))
        );
        assert_eq!(role_of("Ответственный", None), Some(Owner));
        assert_eq!(role_of("ID", Some(Preset::Amocrm)), Some(PlainId));
        assert_eq!(
            role_of("ID", None),
            None,
            "a plain ID outside a preset is not guessed"
        );
        assert_eq!(
            role_of("Бюджет", Some(Preset::Amocrm)),
            Some(Field(Deal, "kol"))
        );
        assert_eq!(
            role_of("Частный e-mail", Some(Preset::Bitrix24)),
            Some(Field(Person, "mail"))
        );
        assert_eq!(role_of("Любимый цвет", Some(Preset::Bitrix24)), None);
    }
}
