//! A structural check of an OLE2 compound file (the container of `.xls`) before calamine reads
//! it. calamine trusts the sector numbers and lengths in the file: a damaged header or FAT makes
//! it allocate terabytes (the process aborts — no `catch_unwind` helps) or follow a sector chain
//! in a circle forever. Here every number it will use is checked against the file's real size.

const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
/// Sector numbers at or above this are markers, not sectors.
const RESERVED: u32 = 0xFFFF_FFFA;
const DIFSECT: u32 = 0xFFFF_FFFC;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u32s(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4).map(|c| u32_at(c, 0))
}

struct File<'a> {
    sectors: &'a [u8],
    size: usize,
    count: usize,
}

impl File<'_> {
    fn sector(&self, id: u32, what: &str) -> Result<&[u8], String> {
        if (id as usize) >= self.count {
            return Err(format!(
                "the {what} points at sector {id}, but the file has {} sectors",
                self.count
            ));
        }
        let start = id as usize * self.size;
        Ok(&self.sectors[start..(start + self.size).min(self.sectors.len())])
    }

    /// Follow a chain through `fat` (whose entries are sectors of `self`, or mini sectors when
    /// `count` is the mini stream's): no sector outside the file, no loop. Returns its length.
    fn chain(fat: &[u32], count: usize, start: u32, what: &str) -> Result<usize, String> {
        let mut id = start;
        let mut n = 0usize;
        while id != ENDOFCHAIN {
            if (id as usize) >= count || (id as usize) >= fat.len() {
                return Err(format!("the {what} runs outside the file (sector {id})"));
            }
            n += 1;
            if n > count {
                return Err(format!("the {what} runs in a circle"));
            }
            id = fat[id as usize];
        }
        Ok(n)
    }
}

/// `Ok` when calamine can read the container without unbounded memory or time; otherwise
/// what is broken.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 512 {
        return Err("the file is cut short (no complete header)".into());
    }
    let size = match u16_at(bytes, 30) {
        9 => 512,
        12 => 4096,
        s => return Err(format!("the header has an invalid sector size (shift {s})")),
    };
    if bytes.len() < size {
        return Err("the file is cut short (no complete header)".into());
    }
    let sectors = &bytes[size..];
    let f = File {
        sectors,
        size,
        count: sectors.len().div_ceil(size),
    };
    let limit = bytes.len();
    let dir_len = u32_at(bytes, 40) as usize;
    let fat_len = u32_at(bytes, 44) as usize;
    let dir_start = u32_at(bytes, 48);
    let mini_fat_start = u32_at(bytes, 60);
    let mini_fat_len = u32_at(bytes, 64) as usize;
    let difat_start = u32_at(bytes, 68);
    // calamine sizes buffers from these before reading anything.
    let difat_hint = u32_at(bytes, 62) as usize;
    if fat_len > f.count
        || difat_hint > limit.max(1 << 16)
        || dir_len.saturating_mul(size) > limit
        || mini_fat_len.saturating_mul(size) > limit
    {
        return Err("the header's table sizes are larger than the file".into());
    }
    // The list of FAT sectors: 109 in the header, the rest in a chain of DIFAT sectors.
    let mut difat: Vec<u32> = u32s(&bytes[76..512]).collect();
    let mut id = difat_start;
    let mut hops = 0;
    while id < RESERVED {
        hops += 1;
        if hops > f.count {
            return Err("the DIFAT chain runs in a circle".into());
        }
        difat.extend(u32s(f.sector(id, "DIFAT chain")?));
        id = difat.pop().unwrap_or(ENDOFCHAIN);
    }
    let mut fat = Vec::new();
    for &id in difat.iter().filter(|&&id| id < DIFSECT) {
        fat.extend(u32s(f.sector(id, "sector allocation table")?));
    }
    let dirs = File::chain(&fat, f.count, dir_start, "directory chain")?;
    let dir_bytes: Vec<u8> = {
        let mut out = Vec::with_capacity(dirs * size);
        let mut id = dir_start;
        while id != ENDOFCHAIN {
            out.extend_from_slice(f.sector(id, "directory chain")?);
            id = fat[id as usize];
        }
        out
    };
    if dir_bytes.len() < 128 {
        return Err("the directory is missing".into());
    }
    let entry_len = |e: &[u8]| -> usize {
        if size == 512 {
            u32_at(e, 120) as usize
        } else {
            usize::try_from(u64::from_le_bytes(
                e[120..128].try_into().unwrap_or([0xFF; 8]),
            ))
            .unwrap_or(usize::MAX)
        }
    };
    // The mini stream (small streams live there in 64-byte mini sectors) and its table.
    let root = &dir_bytes[..128];
    let mut ministream = Vec::new();
    let (mini_fat, mini_count) = if mini_fat_len > 0 {
        let root_len = entry_len(root);
        if root_len > limit {
            return Err("the mini stream is larger than the file".into());
        }
        File::chain(&fat, f.count, u32_at(root, 116), "mini stream")?;
        let mut id = u32_at(root, 116);
        while id != ENDOFCHAIN {
            ministream.extend_from_slice(f.sector(id, "mini stream")?);
            id = fat[id as usize];
        }
        let n = File::chain(&fat, f.count, mini_fat_start, "mini sector table")?;
        let mut table = Vec::with_capacity(n * size / 4);
        let mut id = mini_fat_start;
        while id != ENDOFCHAIN {
            table.extend(u32s(f.sector(id, "mini sector table")?));
            id = fat[id as usize];
        }
        (table, root_len.div_ceil(64))
    } else {
        (Vec::new(), 0)
    };
    // Every stream: its length fits the file and its chain stays inside it.
    let mut workbook = None;
    for e in dir_bytes.chunks_exact(128).skip(1) {
        if e[66] != 2 {
            continue; // not a stream (empty slot, storage)
        }
        let len = entry_len(e);
        if len > limit {
            return Err("a stream is larger than the file".into());
        }
        let start = u32_at(e, 116);
        if len == 0 {
            continue;
        }
        if len < 4096 {
            File::chain(&mini_fat, mini_count, start, "stream")?;
        } else {
            File::chain(&fat, f.count, start, "stream")?;
        }
        let name_len = (u16_at(e, 64) as usize).min(64);
        let name: Vec<u16> = e[..name_len]
            .chunks_exact(2)
            .map(|c| u16_at(c, 0))
            .take_while(|&u| u != 0)
            .collect();
        if workbook.is_none() && (name == utf16("Workbook") || name == utf16("Book")) {
            workbook = Some((start, len));
        }
    }
    // The workbook stream's cell positions and sheet dimensions size calamine's cell grid.
    if let Some((start, len)) = workbook {
        let mut data = Vec::with_capacity(len);
        let mut id = start;
        while id != ENDOFCHAIN && data.len() < len {
            if len < 4096 {
                let at = id as usize * 64;
                data.extend_from_slice(ministream.get(at..at + 64).unwrap_or(&[]));
                id = mini_fat[id as usize];
            } else {
                data.extend_from_slice(f.sector(id, "workbook stream")?);
                id = fat[id as usize];
            }
        }
        data.truncate(len);
        check_records(&data)?;
    }
    Ok(())
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// BIFF records of the workbook stream: no cell beyond column IV (256 columns), no sheet
/// dimensions beyond 65,536 rows × 256 columns or running backwards.
fn check_records(mut data: &[u8]) -> Result<(), String> {
    const MAX_ROWS: u32 = 65_536;
    const MAX_COLS: u32 = 256;
    while data.len() >= 4 {
        let typ = u16_at(data, 0);
        let len = u16_at(data, 2) as usize;
        let Some(r) = data.get(4..4 + len) else {
            break; // a cut record: calamine reports that itself
        };
        data = &data[4 + len..];
        let bad_col = |c: u16| u32::from(c) >= MAX_COLS;
        match typ {
            // Number, Label, BoolErr, Rk, LabelSst, Formula, Blank, RString
            0x0203 | 0x0204 | 0x0205 | 0x027E | 0x00FD | 0x0006 | 0x0201 | 0x00D6
                if r.len() >= 4 && bad_col(u16_at(r, 2)) =>
            {
                return Err(format!(
                    "a cell in row {} sits in column {}, beyond the 256 an XLS sheet has",
                    u16_at(r, 0) as u32 + 1,
                    u16_at(r, 2) as u32 + 1
                ));
            }
            // MulRk, MulBlank: first and last column
            0x00BD | 0x00BE
                if r.len() >= 6
                    && (bad_col(u16_at(r, 2))
                        || bad_col(u16_at(r, r.len() - 2))
                        || u16_at(r, r.len() - 2) < u16_at(r, 2)) =>
            {
                return Err(format!(
                    "a row of cells in row {} has the columns {}..{}",
                    u16_at(r, 0) as u32 + 1,
                    u16_at(r, 2) as u32 + 1,
                    u16_at(r, r.len() - 2) as u32 + 1
                ));
            }
            // Dimensions: first row, last row + 1, first column, last column + 1
            0x0200 if r.len() == 10 || r.len() == 14 => {
                let (rf, rl, cf, cl) = if r.len() == 10 {
                    let v = |i| u32::from(u16_at(r, i));
                    (v(0), v(2), v(4), v(6))
                } else {
                    (
                        u32_at(r, 0),
                        u32_at(r, 4),
                        u32::from(u16_at(r, 8)),
                        u32::from(u16_at(r, 10)),
                    )
                };
                let cf = if cf > 0xFF || cl < cf { 0 } else { cf };
                if rl >= 1 && cl >= 1 && (rl > MAX_ROWS || cl > MAX_COLS || rf >= rl || cf >= cl) {
                    return Err(format!(
                        "a sheet claims rows {}..{} and columns {}..{}",
                        rf + 1,
                        rl,
                        cf + 1,
                        cl
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/migration.xls"
        ))
        .unwrap()
    }

    #[test]
    fn a_real_xls_passes() {
        assert_eq!(check(&sample()), Ok(()));
    }

    #[test]
    fn huge_sector_numbers_and_loops_are_refused() {
        let mut b = sample();
        // The first FAT sector number in the header's DIFAT: far outside the file.
        b[76..80].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = check(&b).unwrap_err();
        assert!(err.contains("points at sector 4294967280"), "{err}");
        let mut b = sample();
        b[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check(&b),
            Err("the header's table sizes are larger than the file".into())
        );
        let mut b = sample();
        b.truncate(600);
        assert!(check(&b).is_err());
    }

    #[test]
    fn cells_and_dimensions_beyond_an_xls_sheet_are_refused() {
        let rec = |typ: u16, body: &[u8]| {
            let mut r = typ.to_le_bytes().to_vec();
            r.extend((body.len() as u16).to_le_bytes());
            r.extend(body);
            r
        };
        // Number at row 1, column 60001.
        let far = rec(0x0203, &[0, 0, 0x60, 0xEA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(check_records(&far).unwrap_err().contains("column 60001"));
        let near = rec(0x0203, &[0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(check_records(&near), Ok(()));
        // Dimensions: rows 1..4294967295.
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend(u32::MAX.to_le_bytes());
        dims.extend([0, 0, 3, 0, 0, 0]);
        assert!(check_records(&rec(0x0200, &dims)).is_err());
    }
}
