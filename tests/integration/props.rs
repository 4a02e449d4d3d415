//! Property tests of what reads user files and user values: arbitrary bytes through encoding
//! detection, delimiter sniffing and the whole CSV reader; arbitrary text through a template that
//! uses every transform, check and a `{Col}` expression. Never a panic; round-trips where they
//! apply. (Unit-level properties of the value rules live next to them in `template::rules`.)

use proptest::prelude::*;
use smbatch::crm::Entity;
use smbatch::source::{self, detect_encoding, sniff_delimiter, Row, SourceOptions, SourcePos};
use smbatch::template::{fingerprint, Expr, Part, Template};
use std::path::Path;
use std::sync::Arc;

/// Characters that break naive text handling, plus CSV structure.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            '\u{212A}', 'İ', 'ı', 'ß', 'ǅ', 'ﬃ', '\u{301}', '\u{308}', '\u{200F}', '\u{202E}',
            '\u{200D}', '\u{200B}', '\u{FEFF}', '１', '٣', '😀', 'д', 'о', 'б', 'Я', 'ё', 'e',
            'x', 't', 'K', ' ', '.', ',', ';', '"', '\n', '\r', '\t', '|', '{', '}', '@', '-',
            '+', '(', ')', ':', '/',
        ]),
        3 => prop::char::range('0', '9'),
        2 => any::<char>(),
    ]
}

fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max).prop_map(String::from_iter)
}

/// A cell of a text file: anything but control characters other than tab and line breaks (those
/// make a file binary, which another property covers).
fn text_cell() -> impl Strategy<Value = String> {
    nasty_string(12).prop_map(|s| s.replace(|c: char| c.is_control() && !"\t\n\r".contains(c), "?"))
}

/// Bytes shaped like files: structure bytes, NULs, BOMs, Cyrillic in UTF-8 and CP1251, noise.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            b",".to_vec(), b";".to_vec(), b"\t".to_vec(), b"|".to_vec(), b"\"".to_vec(),
            b"\n".to_vec(), b"\r\n".to_vec(), b"\0".to_vec(), "Иван".as_bytes().to_vec(),
            b"\xC8\xE2\xE0\xED".to_vec(), b"\xEF\xBB\xBF".to_vec(), b"\xFF\xFE".to_vec(),
            b"\xFE\xFF".to_vec(), b"a\0".to_vec(), b"PK\x03\x04".to_vec(), b"ID".to_vec(),
            b"\xD0".to_vec(), b"\xF0\x9F".to_vec(),
        ]),
        3 => "[a-z0-9 ]{1,6}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

/// A message a user sees: no raw control characters (line breaks included).
fn assert_clean(msg: &str) {
    assert!(
        !msg.chars().any(|c| c.is_control()),
        "raw control character in {msg:?}"
    );
}

fn drain(path: &Path, opts: &SourceOptions) -> Result<(Vec<String>, Vec<Row>), String> {
    let src = source::open(path, opts).map_err(|e| e.to_string())?;
    let headers = src.headers().to_vec();
    let mut rows = Vec::new();
    for r in src {
        rows.push(r.map_err(|e| e.to_string())?);
    }
    Ok((headers, rows))
}

const TEMPLATE: &str = r#"
[[entity]]
type = "person"
key = "{ID}"
[entity.fields]
person = { column = "Имя", transform = ["trim", "collapse_spaces", "capitalize"], required = true }
ptitle = { value = "{Имя} и {Город}: текст {{скобки}}" }
tel    = { column = "Телефон", transform = ["phone"], check = "phone" }
mail   = { column = "Почта", transform = ["lower"], check = "email" }
mob    = { column = "Город", transform = ["upper", "digits"], max_length = 12 }

[[entity]]
type = "task"
key = "{ID}/{Дата}"
[entity.fields]
datum    = { column = "Дата", date = ["%d/%m/%Y", "%Y%m%d"], required = true }
totime   = { column = "Время" }
title    = { column = "Город", one_of = ["Пермь", "Москва"] }
des      = { column = "Имя", regex = "^[А-ЯЁа-яё ]+$" }
priority = { column = "Число", check = "integer" }
speed    = { column = "Время", map = { "Срочно" = 1, "Обычно" = 0 }, default = 0 }

[[entity]]
type = "deal"
key = "{ID}"
[entity.fields]
title = { column = "Имя", required = true }
kol   = { column = "Число", check = "number" }
"#;

const HEADERS: [&str; 8] = [
    "ID",
    "Имя",
    "Город",
    "Телефон",
    "Почта",
    "Дата",
    "Время",
    "Число",
];

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(400)
    })]

    /// Any bytes named `.csv`: a clean error or rows exactly as wide as the header.
    #[test]
    fn any_bytes_read_as_rows_of_header_width_or_a_clean_error(bytes in file_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, &bytes).unwrap();
        let _ = detect_encoding(&bytes);
        let _ = sniff_delimiter(&String::from_utf8_lossy(&bytes));
        match drain(&path, &SourceOptions::default()) {
            Ok((headers, rows)) => {
                prop_assert!(!headers.is_empty());
                for r in &rows {
                    prop_assert_eq!(r.cells.len(), headers.len(), "{:?}", r);
                }
                for h in &headers {
                    assert_clean(&source::display(h));
                }
            }
            Err(msg) => {
                assert_clean(&msg);
                prop_assert!(msg.contains("in.csv"), "{}", msg);
            }
        }
    }

    /// Cells written by a CSV writer (any delimiter, UTF-8 or UTF-16) come back as written.
    #[test]
    fn csv_cells_round_trip(
        cells in prop::collection::vec(prop::collection::vec(text_cell(), 3), 1..8),
        delim in prop::sample::select(vec![b',', b';', b'\t', b'|']),
        utf16 in any::<bool>(),
    ) {
        let mut w = csv::WriterBuilder::new().delimiter(delim).from_writer(Vec::new());
        w.write_record(["A", "B", "C"]).unwrap();
        for r in &cells {
            w.write_record(r).unwrap();
        }
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let bytes: Vec<u8> = if utf16 {
            text.encode_utf16().flat_map(u16::to_le_bytes).collect() // no BOM
        } else {
            text.into_bytes()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.txt");
        std::fs::write(&path, &bytes).unwrap();
        let opts = SourceOptions { delimiter: Some(delim), ..SourceOptions::default() };
        let (headers, rows) = drain(&path, &opts).unwrap();
        prop_assert_eq!(headers, ["A", "B", "C"]);
        let want: Vec<&Vec<String>> = cells.iter().collect();
        let got: Vec<&Vec<String>> = rows.iter().map(|r| &r.cells).collect();
        prop_assert_eq!(got, want);
    }

    /// Any text is an expression or a clean error; literal text written with `{{`/`}}` escapes
    /// and `{Column}` placeholders parses back into exactly those parts.
    #[test]
    fn expressions_parse_or_refuse_and_round_trip(
        any_text in nasty_string(30),
        parts in prop::collection::vec((nasty_string(10), nasty_string(8)), 0..5),
    ) {
        if let Err(m) = Expr::parse(&any_text) {
            prop_assert!(m.contains('{') || m.contains('}'), "{}", m);
        }
        let mut src = String::new();
        let mut want: Vec<Part> = Vec::new();
        for (lit, col) in &parts {
            let col = col.replace(['{', '}'], "");
            if !lit.is_empty() {
                src.push_str(&lit.replace('{', "{{").replace('}', "}}"));
                match want.last_mut() {
                    Some(Part::Lit(l)) => l.push_str(lit),
                    _ => want.push(Part::Lit(lit.clone())),
                }
            }
            if !col.trim().is_empty() {
                src.push('{');
                src.push_str(&col);
                src.push('}');
                want.push(Part::Column(col.trim().to_string()));
            }
        }
        let e = Expr::parse(&src).unwrap();
        prop_assert_eq!(e.parts, want);
    }

    /// Arbitrary text through every transform, check, date, map and a `{Col}` expression.
    #[test]
    fn template_rules_never_panic_and_expressions_render_trimmed_cells(
        cells in prop::collection::vec(nasty_string(24), HEADERS.len()),
    ) {
        let t = Template::parse(Path::new("props.toml"), TEMPLATE).unwrap();
        let headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
        let m = t.bind(&headers, "props.csv").unwrap();
        let row = Row {
            pos: SourcePos { file: Arc::from("props.csv"), sheet: None, row: 2 },
            cells: cells.clone(),
            issues: Vec::new(),
        };
        let mapped = m.map_row(&row);
        let (checked, prints) = m.map_row_fingerprinted(&row);
        prop_assert_eq!(mapped.records.len(), prints.len());
        prop_assert_eq!(&mapped.problems, &checked.problems);
        for (r, p) in mapped.records.iter().zip(&prints) {
            prop_assert_eq!(fingerprint(r), *p);
            // Every person has the ptitle expression: a person without it fails here, not skips.
            if r.entity == Entity::Person {
                let want = format!("{} и {}: текст {{скобки}}", cells[1].trim(), cells[2].trim());
                prop_assert_eq!(r.fields.get("ptitle").and_then(|v| v.as_str()), Some(want.as_str()));
            }
        }
        for p in &mapped.problems {
            assert_clean(&source::display(&p.value));
        }
    }
}

/// Damaged workbooks: a valid XLSX/XLS from `samples/`, cut short or with bytes overwritten.
/// calamine must not take the run down (its panics become errors) and rows stay header-wide.
fn damaged(sample: &str, name: &str, cut: f64, flips: &[(f64, u8)]) -> Result<(), TestCaseError> {
    let mut bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(sample)).unwrap();
    let keep = 8 + ((bytes.len() - 8) as f64 * cut) as usize;
    bytes.truncate(keep);
    for &(at, b) in flips {
        let i = 8 + ((bytes.len() - 8) as f64 * at) as usize;
        if i < bytes.len() {
            bytes[i] = b;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, &bytes).unwrap();
    match drain(&path, &SourceOptions::default()) {
        Ok((headers, rows)) => {
            for r in &rows {
                prop_assert_eq!(r.cells.len(), headers.len());
            }
        }
        Err(msg) => {
            assert_clean(&msg);
            prop_assert!(msg.contains(name), "{}", msg);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(300)
    })]

    #[test]
    fn damaged_xlsx_never_panics(
        cut in prop_oneof![Just(1.0), 0.0f64..1.0],
        flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
    ) {
        damaged("samples/migration.xlsx", "d.csv", cut, &flips)?;
    }

    #[test]
    fn damaged_xls_never_panics(
        cut in prop_oneof![Just(1.0), 0.0f64..1.0],
        flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
    ) {
        damaged("samples/migration.xls", "d.xls", cut, &flips)?;
    }
}

#[test]
fn an_unreadable_file_name_with_control_characters_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil\u{1b}[31m\u{202e}.csv");
    std::fs::write(&path, b"\x7FELF\x02\x01\x01\0\0\0\0\0").unwrap();
    let msg = source::open(&path, &SourceOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert_clean(&msg);
    assert!(msg.contains("evil\\u{1b}[31m\\u{202e}.csv is not a text or spreadsheet file (it looks like an executable (ELF))"), "{msg}");
}
