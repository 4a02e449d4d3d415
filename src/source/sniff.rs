//! What a file is, decided by its first bytes — not by its name: users rename XLSX files to
//! `.csv`, mail clients save attachments under odd names, and a wrong path can point at a
//! program. The extension only breaks ties (XLSX vs XLSB, both ZIP).

use super::csv::{detect_encoding, Encoding};

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Xlsx,
    Xlsb,
    Ods,
    Xls,
    /// Text, read as CSV.
    Text,
    /// Neither text nor a spreadsheet; what it looks like ("a PDF document").
    Binary(&'static str),
}

/// Signatures that settle it on their own.
const STRONG: &[(&[u8], &str)] = &[
    (b"\x7FELF", "an executable (ELF)"),
    (b"\xCA\xFE\xBA\xBE", "an executable (Mach-O or Java class)"),
    (b"\xFE\xED\xFA\xCE", "an executable (Mach-O)"),
    (b"\xFE\xED\xFA\xCF", "an executable (Mach-O)"),
    (b"\xCE\xFA\xED\xFE", "an executable (Mach-O)"),
    (b"\xCF\xFA\xED\xFE", "an executable (Mach-O)"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1A\n", "a PNG image"),
    (b"\xFF\xD8\xFF", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\0", "a TIFF image"),
    (b"MM\0*", "a TIFF image"),
    (b"\x1F\x8B", "a gzip archive"),
    (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive"),
    (b"Rar!\x1A\x07", "a RAR archive"),
    (b"\xFD7zXZ\0", "an xz archive"),
    (b"\x28\xB5\x2F\xFD", "a zstd archive"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"PK\x07\x08", "a ZIP archive"),
    (b"SQLite format 3\0", "an SQLite database"),
    (b"\0asm", "a WebAssembly module"),
];

/// Signatures short or plain enough to begin a text file: they only name binary content.
const WEAK: &[(&[u8], &str)] = &[
    (b"MZ", "an executable (Windows)"),
    (b"BZh", "a bzip2 archive"),
    (b"ID3", "an MP3 file"),
    (b"RIFF", "a media file (RIFF)"),
    (b"BM", "a BMP image"),
];

const ZIP: &[u8] = b"PK\x03\x04";
const OLE2: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// Decide from the first bytes (`head`, up to 64 KiB) and the lower-case extension.
pub(crate) fn sniff(head: &[u8], ext: &str) -> Kind {
    if head.starts_with(ZIP) {
        // ODF stores an uncompressed `mimetype` entry first (name at offset 30, data after).
        if head.get(30..38) == Some(b"mimetype")
            && contains(
                &head[38..head.len().min(120)],
                b"application/vnd.oasis.opendocument.spreadsheet",
            )
        {
            return Kind::Ods;
        }
        return if ext == "xlsb" {
            Kind::Xlsb
        } else {
            Kind::Xlsx
        };
    }
    if head.starts_with(OLE2) {
        return Kind::Xls;
    }
    if let Some((_, what)) = STRONG.iter().find(|(sig, _)| head.starts_with(sig)) {
        return Kind::Binary(what);
    }
    if looks_binary(head) {
        let what = WEAK
            .iter()
            .find(|(sig, _)| head.starts_with(sig))
            .map_or("binary data", |(_, what)| what);
        return Kind::Binary(what);
    }
    Kind::Text
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Text has no NUL bytes (outside UTF-16) and next to no control characters other than tab,
/// line breaks and form feed.
fn looks_binary(head: &[u8]) -> bool {
    let (enc, bom) = detect_encoding(head);
    match enc {
        Encoding::Utf16Le | Encoding::Utf16Be => {
            let rs = if enc == Encoding::Utf16Le {
                encoding_rs::UTF_16LE
            } else {
                encoding_rs::UTF_16BE
            };
            let (text, _) = rs.decode_without_bom_handling(&head[bom..]);
            let (mut n, mut bad) = (0usize, 0usize);
            for c in text.chars() {
                n += 1;
                if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C') {
                    bad += 1;
                }
            }
            bad > 0 && bad * 100 > n
        }
        Encoding::Utf8 | Encoding::Windows1251 => {
            let mut ctrl = 0usize;
            for &b in head {
                if b == 0 {
                    return true;
                }
                if (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F {
                    ctrl += 1;
                }
            }
            ctrl > 0 && ctrl * 100 > head.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreadsheets_by_signature_whatever_the_name() {
        assert_eq!(sniff(b"PK\x03\x04rest", "csv"), Kind::Xlsx);
        assert_eq!(sniff(b"PK\x03\x04rest", "xlsb"), Kind::Xlsb);
        let mut ods = b"PK\x03\x04".to_vec();
        ods.resize(30, 0);
        ods.extend_from_slice(b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet");
        assert_eq!(sniff(&ods, "xlsx"), Kind::Ods);
        assert_eq!(sniff(OLE2, "txt"), Kind::Xls);
    }

    #[test]
    fn binary_files_are_named_by_what_they_look_like() {
        assert_eq!(
            sniff(b"\x7FELF\x02\x01\x01\0\0\0", "csv"),
            Kind::Binary("an executable (ELF)")
        );
        assert_eq!(
            sniff(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n", "csv"),
            Kind::Binary("a PDF document")
        );
        assert_eq!(
            sniff(b"MZ\x90\0\x03\0\0\0\x04\0", "csv"),
            Kind::Binary("an executable (Windows)")
        );
        assert_eq!(sniff(b"a;b\n1;\0\n", "csv"), Kind::Binary("binary data"));
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8 | 1).collect();
        assert_eq!(sniff(&noise, "csv"), Kind::Binary("binary data"));
    }

    #[test]
    fn text_stays_text() {
        assert_eq!(
            sniff("ФИО;Телефон\r\nИванов;8 342\r\n".as_bytes(), "csv"),
            Kind::Text
        );
        assert_eq!(sniff(b"\xD4\xC8\xCE;a\n", "csv"), Kind::Text); // cp1251
        assert_eq!(sniff(b"MZ;BM\n1;2\n", "csv"), Kind::Text);
        assert_eq!(sniff(b"", "csv"), Kind::Text);
        let utf16: Vec<u8> = "ID;ФИО\r\n1;Иванов\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(sniff(&utf16, "csv"), Kind::Text);
    }
}
