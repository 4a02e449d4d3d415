"""Regenerates the sample files (committed; rerun only to change them): python3 samples/generate.py
Needs xlwt (XLS) and openpyxl (XLSX) from PyPI."""
import csv, datetime, io, os
import openpyxl, xlwt

HERE = os.path.dirname(os.path.abspath(__file__))
HEAD = ["Компания", "ИНН", "Контактное лицо", "Должность", "Телефон", "E-mail", "Внешний ID",
        "Дата последней активности", "Тип активности", "Текст активности"]
companies = [("ООО «Ромашка»", "5902123456"), ("АО \"Пермские сети\"", "5904000017"),
             ("ИП Сидоров А.В.", "590400001234"), ("ООО Уралтехсервис", "6658012345"),
             ("ЗАО «Камский берег»", "5907654321"), ("ООО Северный ветер", "7701234567")]
people = ["Иванов Иван Иванович", "Петрова Мария Сергеевна", "Сидоров Алексей Викторович",
          "Кузнецова Ольга Петровна", "Смирнов Дмитрий", "Попова Анна Игоревна", "Волков Сергей",
          "Морозова Екатерина", "Лебедев Павел Андреевич", "Козлова Наталья"]
titles = ["Директор", "Главный бухгалтер", "Менеджер по закупкам", "Инженер", "Секретарь"]
types = ["Звонок", "Встреча", "Письмо", ""]
rows = []
for i in range(30):
    c = companies[i % len(companies)]
    p = people[i % len(people)]
    d = datetime.datetime(2024, 1 + i % 12, 1 + (i * 3) % 28, 9 + i % 9, (i * 7) % 60)
    t = types[i % 4]
    rows.append([c[0], c[1], p, titles[i % len(titles)], f"8 (342) 2{i:02d}-{i:02d}-{(i*3)%100:02d}",
                 f"user{i}@example.ru", f"EXT-{1000 + i}", d.strftime("%d.%m.%Y %H:%M") if t else "",
                 t, f"Обсудили поставку №{i}; договорились созвониться" if t else ""])
# Deliberately bad rows.
rows[4][5] = "petrova.example.ru"                    # bad e-mail
rows[9][2] = ""                                      # missing contact name
rows[13][7] = "31.02.2024 10:00"                     # impossible date
rows[17][9] = "Отличная встреча 👍"                   # emoji: the CRM rejects 4-byte characters
rows[21][7] = "15.03.1965 12:00"                     # history dates only 1970–2038
rows[25][4] = "позвонить после обеда"                # not a phone

def write_csv(path, enc, delim, data):
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delim, lineterminator="\r\n")
    w.writerow(HEAD)
    w.writerows(data)
    with open(path, "wb") as f:
        f.write(buf.getvalue().encode(enc))

write_csv(os.path.join(HERE, "migration-cp1251.csv"), "cp1251", ";",
          # cp1251 cannot hold emoji at all; Excel would write '?' — keep the row but say so.
          [[v.replace("👍", "?") for v in r] for r in rows])
write_csv(os.path.join(HERE, "migration-utf8-bom.csv"), "utf-8-sig", ",", rows)

def typed(r):
    out = list(r)
    if out[7]:
        try:
            out[7] = datetime.datetime.strptime(out[7], "%d.%m.%Y %H:%M")
        except ValueError:
            pass
    return out

wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Контакты"
ws.append(HEAD)
for r in rows:
    r = typed(r)
    ws.append(r)
    ws.cell(ws.max_row, 2).number_format = "@"
for row in ws.iter_rows(min_row=2, min_col=8, max_col=8):
    for c in row:
        if isinstance(c.value, datetime.datetime):
            c.number_format = "DD.MM.YYYY HH:MM"
ws.cell(8, 6).value = "=NA()"                        # a formula error cell (#N/A)
wb.save(os.path.join(HERE, "migration.xlsx"))

book = xlwt.Workbook(encoding="utf-8")
sh = book.add_sheet("Контакты")
datefmt = xlwt.easyxf(num_format_str="DD.MM.YYYY HH:MM")
for j, h in enumerate(HEAD):
    sh.write(0, j, h)
for i, r in enumerate(rows, start=1):
    for j, v in enumerate(typed(r)):
        if isinstance(v, datetime.datetime):
            sh.write(i, j, v, datefmt)
        elif j == 1:
            sh.write(i, j, int(v))                  # INN stored as a number: must not become 5.9e9
        else:
            sh.write(i, j, v.replace("👍", "!"))
book.save(os.path.join(HERE, "migration.xls"))
