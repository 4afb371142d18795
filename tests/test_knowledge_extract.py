"""Extraction from real files: PDFs made by LibreOffice (committed, see
tests/fixtures/knowledge/make_fixtures.py), everything else written here by the
libraries themselves."""
import codecs
import datetime
import shutil
import struct
import time
import zipfile
from pathlib import Path

import docx
import openpyxl
import pytest

from botlite.knowledge import extract
from botlite.knowledge.extract import (
    HEAD_BYTES,
    MAX_UNCOMPRESSED_BYTES,
    SUPPORTED,
    SUPPORTED_EXTENSIONS,
    TABLE_SECTION_CHARS,
    Document,
    ExtractionError,
    Section,
    UnsupportedType,
    decode_text,
    detect_kind,
    extract_file,
    extract_html,
)

FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"


def paragraphs(section):
    return section.text.split("\n\n")


def write(path, data):
    path.write_bytes(data)
    return str(path)


def kind_of(path):
    with open(path, "rb") as handle:
        return detect_kind(str(path), handle.read(HEAD_BYTES))


# --- DOCX ----------------------------------------------------------------------

def make_docx(path, title="Staff handbook"):
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading("Opening hours", level=1)
    document.add_paragraph("The office opens at   eight\tin the morning.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(table.rows, [("Day", "Hours"), ("Monday", "8-17"), ("Friday", "")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_paragraph("Closed on public holidays.")
    document.add_heading("Parking", level=2)
    document.add_heading("Visitors", level=3)
    document.add_paragraph("Visitors park behind the building.")
    document.save(path)
    return str(path)


def test_docx_headings_start_sections_and_tables_stay_in_document_order(tmp_path):
    document = extract_file(make_docx(tmp_path / "handbook.docx"), "docx")

    assert document.title == "Staff handbook"
    assert [section.heading for section in document.sections] == ["Opening hours", "Visitors"]
    assert paragraphs(document.sections[0]) == [
        "Opening hours",
        "The office opens at eight in the morning.",
        "Day: Monday; Hours: 8-17",
        "Day: Friday",
        "Closed on public holidays.",
    ]
    # A heading with no text of its own stays with the next one.
    assert paragraphs(document.sections[1]) == [
        "Parking", "Visitors", "Visitors park behind the building."]
    assert document.text.startswith("Opening hours\n\nThe office opens")


def test_docx_title_falls_back_to_first_heading(tmp_path):
    document = extract_file(make_docx(tmp_path / "untitled.docx", title=None), "docx")
    assert document.title == "Opening hours"


def test_docx_table_without_header_row_and_merged_cells(tmp_path):
    path = tmp_path / "numbers.docx"
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    for row, values in zip(table.rows, [("1", "2", "3"), ("4", "5", "6")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    merged = document.add_table(rows=2, cols=2)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "Spanning title"
    merged.cell(1, 0).text = "left"
    merged.cell(1, 1).text = "right"
    document.save(path)

    assert paragraphs(extract_file(str(path), "docx").sections[0]) == [
        "1 | 2 | 3", "4 | 5 | 6", "Spanning title", "left | right"]


W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def test_docx_reads_hyperlinks_and_tracked_insertions_but_not_deletions(tmp_path):
    from docx.oxml import parse_xml

    path = tmp_path / "tracked.docx"
    document = docx.Document()
    paragraph = document.add_paragraph("Kept")
    paragraph.add_run().add_tab()
    for xml in (
        '<w:ins w:id="1" w:author="a"><w:r><w:t xml:space="preserve">inserted </w:t></w:r></w:ins>',
        '<w:del w:id="2" w:author="a"><w:r><w:delText>deleted</w:delText></w:r></w:del>',
        '<w:hyperlink w:anchor="x"><w:r><w:t>link</w:t></w:r></w:hyperlink>',
        '<w:r><w:t>non</w:t><w:noBreakHyphen/><w:t>breaking</w:t></w:r>',
    ):
        paragraph._p.append(parse_xml('<root xmlns:w="%s">%s</root>' % (W, xml))[0])
    document.save(path)

    assert extract_file(str(path), "docx").text == "Kept inserted linknon-breaking"


def test_docx_without_text_is_refused(tmp_path):
    path = tmp_path / "blank.docx"
    document = docx.Document()
    document.add_paragraph("   ")
    document.save(path)
    with pytest.raises(ExtractionError, match="contains no text"):
        extract_file(str(path), "docx")


def test_zip_that_is_not_a_word_document_is_damaged(tmp_path):
    path = tmp_path / "fake.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/readme.txt", "not a document")
    with pytest.raises(ExtractionError, match="could not be read; it may be damaged"):
        extract_file(str(path), "docx")


def test_malformed_zip_is_damaged(tmp_path):
    path = write(tmp_path / "broken.xlsx", b"PK\x03\x04" + b"\x00garbage" * 50)
    with pytest.raises(ExtractionError, match="damaged"):
        extract_file(path, "xlsx")


# --- zip bombs -----------------------------------------------------------------

def test_docx_expanding_to_300_mb_is_refused(tmp_path):
    path = tmp_path / "bomb.docx"
    megabyte = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            for _ in range(300):
                member.write(megabyte)
    assert path.stat().st_size < 2 * 1024 * 1024
    assert 300 * len(megabyte) > MAX_UNCOMPRESSED_BYTES

    with pytest.raises(ExtractionError) as caught:
        extract_file(str(path), kind_of(path))
    assert "refused for safety" in caught.value.reason


def test_xlsx_member_compressed_too_densely_is_refused(tmp_path):
    path = tmp_path / "dense.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b" " * (5 * 1024 * 1024))
    with pytest.raises(ExtractionError, match="refused for safety"):
        extract_file(str(path), "xlsx")


def test_zip_that_lies_about_its_sizes_is_refused(tmp_path):
    """zipfile cuts a member at its declared size, but only after inflating all
    of it in memory: each member is inflated (and counted) before any parser
    reads it, and must give exactly its declared size."""
    import struct

    path = tmp_path / "liar.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", bytes(5 * 1024 * 1024))
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, 1000)  # the local header's uncompressed size
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 1000)  # the directory's
    path.write_bytes(bytes(data))

    with pytest.raises(ExtractionError, match="damaged"):
        extract_file(str(path), "docx")


def test_zip_member_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "short.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", bytes(10000))
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, 20000)  # the directory's size
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractionError, match="damaged"):
        extract_file(str(path), "docx")


def test_zip_member_in_another_compression_is_refused(tmp_path):
    path = tmp_path / "bz2.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("xl/workbook.xml", b"<workbook/>")
    with pytest.raises(ExtractionError, match="damaged"):
        extract_file(str(path), "xlsx")


def test_docx_whose_xml_parts_are_too_big_to_parse_is_refused(tmp_path, monkeypatch):
    """Below the total limit, but python-docx would build a tree of it all."""
    path = tmp_path / "long.docx"
    document = docx.Document()
    for number in range(2000):
        document.add_paragraph("Paragraph %d of a long handbook." % number)
    document.save(path)
    with zipfile.ZipFile(path) as archive:
        xml_bytes = sum(item.file_size for item in archive.infolist()
                        if item.filename.endswith((".xml", ".rels")))
    monkeypatch.setattr(extract, "MAX_LOADED_XML_BYTES", xml_bytes - 1)
    with pytest.raises(ExtractionError) as caught:
        extract_file(str(path), "docx")
    assert caught.value.reason.startswith(
        "The Word document is too big to read: its text and formatting unpack to more than")
    monkeypatch.setattr(extract, "MAX_LOADED_XML_BYTES", xml_bytes)
    assert "Paragraph 1999" in extract_file(str(path), "docx").text


# --- XLSX ----------------------------------------------------------------------

def make_xlsx(path):
    workbook = openpyxl.Workbook()
    workbook.properties.title = "Price list"
    prices = workbook.active
    prices.title = "Prices"
    prices.append(["Product", "Price", "Since", "In stock"])
    prices.append(["Apples", 2.5, datetime.datetime(2024, 3, 1), True])
    prices.append([None, None, None, None])
    prices.append(["Pears", 3.0, None, False])
    staff = workbook.create_sheet("Staff")
    staff.append(["Name", "Role"])
    staff.append(["Ada", "Engineer"])
    staff["D5"] = "note outside the header"
    workbook.create_sheet("Empty")
    workbook.save(path)
    return str(path)


def test_xlsx_reads_every_sheet_with_header_labels(tmp_path):
    document = extract_file(make_xlsx(tmp_path / "book.xlsx"), "xlsx")

    assert document.title == "Price list"
    assert [(s.heading, s.locator) for s in document.sections] == [
        ("Prices", "sheet Prices"), ("Staff", "sheet Staff")]
    assert paragraphs(document.sections[0]) == [
        "Product: Apples; Price: 2.5; Since: 2024-03-01; In stock: TRUE",
        "Product: Pears; Price: 3; In stock: FALSE",
    ]
    assert paragraphs(document.sections[1]) == [
        "Name: Ada; Role: Engineer", "Column 4: note outside the header"]


def test_large_sheet_is_split_into_row_ranges(tmp_path):
    path = tmp_path / "big.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Orders"
    sheet.append(["Order", "Customer", "Amount"])
    for number in range(1, 401):
        sheet.append([number, "Customer number %d" % number, number * 1.25])
    workbook.save(path)

    sections = extract_file(str(path), "xlsx").sections
    assert len(sections) > 2
    assert sections[0].locator.startswith("sheet Orders, rows 2-")
    assert sections[-1].locator.endswith("-401")
    assert all(len(s.text) < TABLE_SECTION_CHARS + 200 for s in sections)
    assert sum(len(paragraphs(s)) for s in sections) == 400



def test_xlsx_cells_are_counted_as_openpyxl_pads_rows(tmp_path, monkeypatch):
    """A row reaching column J is 10 cells however few are filled, and the
    count runs over all sheets; past the limit the workbook is refused, not
    read in part."""
    path = tmp_path / "sparse.xlsx"
    workbook = openpyxl.Workbook()
    first = workbook.active
    for row in range(1, 4):
        first.cell(row, 1, "left %d" % row)
        first.cell(row, 10, "right %d" % row)
    second = workbook.create_sheet("Second")
    second.append(["one", "two"])
    workbook.save(path)

    monkeypatch.setattr(extract, "MAX_XLSX_CELLS", 32)
    assert "right 3" in extract_file(str(path), "xlsx").text
    monkeypatch.setattr(extract, "MAX_XLSX_CELLS", 31)
    with pytest.raises(ExtractionError) as caught:
        extract_file(str(path), "xlsx")
    assert caught.value.reason.startswith("The Excel workbook has more than 31 cells")


# --- CSV -----------------------------------------------------------------------

def test_csv_with_semicolons_and_decimal_commas(tmp_path):
    path = write(tmp_path / "prices.csv", "Produkt;Preis\nÄpfel;2,50\nBirnen;3,10\n".encode())
    document = extract_file(path, "csv")
    assert document.sections == [
        Section("Produkt: Äpfel; Preis: 2,50\n\nProdukt: Birnen; Preis: 3,10", None, "rows 2-3")]


def test_csv_with_quoted_comma(tmp_path):
    path = write(tmp_path / "people.csv",
                 b'name,city,age\r\n"Smith, John",Leeds,41\r\nJane Doe,"York, UK",38\r\n')
    assert paragraphs(extract_file(path, "csv").sections[0]) == [
        "name: Smith, John; city: Leeds; age: 41",
        "name: Jane Doe; city: York, UK; age: 38",
    ]


def test_csv_without_header_row(tmp_path):
    path = write(tmp_path / "plain.csv", b"1,2\n3,4\n")
    assert paragraphs(extract_file(path, "csv").sections[0]) == ["1 | 2", "3 | 4"]


def test_tab_separated_file_is_csv(tmp_path):
    path = write(tmp_path / "table.tsv", b"a\tb\nx y\tz\n")
    assert detect_kind(path, b"a\tb\n") == "csv"
    assert paragraphs(extract_file(path, "csv").sections[0]) == ["a: x y; b: z"]


# --- plain text and Markdown ---------------------------------------------------

TEXT = "Café crème – naïve “quotes” cost €5.\n\nSecond paragraph\nwraps here."


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "cp1252", "utf-8-sig", "utf-8"])
def test_text_files_in_common_encodings(tmp_path, encoding):
    path = write(tmp_path / "notes.txt", TEXT.encode(encoding))
    assert kind_of(path) == "txt"
    document = extract_file(path, "txt")
    assert document.title is None
    assert paragraphs(document.sections[0]) == [
        "Café crème – naïve “quotes” cost €5.", "Second paragraph wraps here."]


def test_latin1_text_that_is_not_cp1252(tmp_path):
    path = write(tmp_path / "old.txt", "Grüße aus Köln, schöne Straße.".encode("latin-1"))
    assert extract_file(path, "txt").text == "Grüße aus Köln, schöne Straße."


def test_text_in_a_non_western_legacy_encoding():
    russian = "Привет, как дела? Это тестовый файл на русском языке."
    assert decode_text(russian.encode("cp1251")) == russian


def test_decode_text_prefers_boms():
    assert decode_text(codecs.BOM_UTF32_LE + "hé".encode("utf-32-le")) == "hé"
    assert decode_text(codecs.BOM_UTF16_BE + "hé".encode("utf-16-be")) == "hé"


def test_whitespace_only_text_contains_no_text(tmp_path):
    with pytest.raises(ExtractionError, match="The text file contains no text"):
        extract_file(write(tmp_path / "blank.txt", b" \n\t\n"), "txt")


def test_empty_file_is_refused(tmp_path):
    path = write(tmp_path / "empty.pdf", b"")
    assert kind_of(path) == "pdf"
    with pytest.raises(ExtractionError, match="The file is empty"):
        extract_file(path, "pdf")


MARKDOWN = """---
title: "Garden guide"
layout: page
---
Intro line before any heading.

# Getting *started*

Read [the manual](https://example.com/manual_(v2)) and ![a diagram](d.png) first,
then see <https://example.com>. **Bold** and `code` and snake_case_name stay.

```bash
# a comment, not a heading
make garden
```

| Plant | Water |
|-------|------:|
| Fern  | daily |

Watering
--------
- morning
- evening

[manual]: https://example.com/manual
"""


def test_markdown_headings_links_code_and_tables(tmp_path):
    document = extract_file(write(tmp_path / "guide.md", MARKDOWN.encode()), "md")

    assert document.title == "Garden guide"
    assert [s.heading for s in document.sections] == [None, "Getting started", "Watering"]
    assert paragraphs(document.sections[0]) == ["Intro line before any heading."]
    assert paragraphs(document.sections[1]) == [
        "Getting started",
        "Read the manual and a diagram first, then see https://example.com. "
        "Bold and code and snake_case_name stay.",
        "```\n# a comment, not a heading\nmake garden\n```",
        "Plant: Fern; Water: daily",
    ]
    assert paragraphs(document.sections[2]) == ["Watering", "morning", "evening"]


def test_markdown_title_falls_back_to_first_heading(tmp_path):
    document = extract_file(write(tmp_path / "a.markdown", b"text\n\n## Second level\n"), "md")
    assert document.title == "Second level"



def test_markdown_atx_headings_and_table_rules(tmp_path):
    text = "\n\n".join([
        "## Closed heading ##   ",
        "#hashtag is text",
        "####### seven is text",
        "    # indented is text",
        "# Keeps #hash",
        "a | b\n| :--- |--:|\n| 1 | 2 |",
        "c | d\n| - - |\n| 3 | 4 |",
    ])
    document = extract_file(write(tmp_path / "forms.md", text.encode()), "md")
    assert [s.heading for s in document.sections] == ["Closed heading", "Keeps #hash"]
    assert document.text.split("\n\n") == [
        "Closed heading", "#hashtag is text", "####### seven is text", "# indented is text",
        "Keeps #hash", "a: 1; b: 2", "c | d | - - | | 3 | 4 |"]


def test_markdown_inline_syntax_that_never_closes_stays_as_text(tmp_path):
    text = "**bold** and **open, [link](u) and [open, <b>tag</b> and <open, `code` and ``open"
    document = extract_file(write(tmp_path / "open.md", text.encode()), "md")
    assert document.text == (
        "bold and **open, link and [open, tag and <open, code and ``open")


def timed(function, argument):
    start = time.perf_counter()
    function(argument)
    return time.perf_counter() - start


def assert_about_as_fast(function, adversarial, benign):
    """``function`` takes about as long on ``adversarial`` as on ``benign``, an
    input of about the same length that goes through the same code: at most ten
    times as long, plus 50 ms for a busy machine (three tries). The inputs are
    sized so that the backtracking this replaced took seconds."""
    assert 0.9 <= len(adversarial) / len(benign) <= 1.1
    baseline = min(timed(function, benign) for _ in range(3))
    bound = 10 * baseline + 0.05
    taken = []
    for _ in range(3):
        taken.append(timed(function, adversarial))
        if taken[-1] <= bound:
            return
    pytest.fail("%.3f s against %.4f s for a benign input" % (min(taken), baseline))


def same_length(unit, like):
    return (unit * (len(like) // len(unit) + 1))[:len(like)]


MARKDOWN_ADVERSARIES = {
    "unclosed strong": ("**x " * 10000, "**x** "),
    "unclosed link text": ("[" * 20000, "[a] "),
    "unclosed link address": ("[a](x(" * 8000, "[a](x) "),
    "unclosed image": ("![" * 10000, "![a](b) "),
    "unclosed autolink": ("<http:" * 8000, "<http://a> "),
    "unclosed tag": ("<a" * 60000, "<a>x "),
    "backtick run": ("a" + "`" * 20000, "`a` "),
    "heading then spaces": ("# a" + " " * 20000 + "x", "# a b"),
    "title then spaces": ("---\ntitle: a" + " " * 40000 + "x\n---\nbody", "title: a b\n"),
    "spaces under a table row": ("a|b\n" + " " * 20000 + "x", "|---"),
    "spaces after a rule cell": ("a|b\n|---" + " " * 20000 + "x", "|---"),
}


@pytest.mark.parametrize("name", MARKDOWN_ADVERSARIES)
def test_markdown_patterns_take_linear_time(tmp_path, name):
    adversarial, unit = MARKDOWN_ADVERSARIES[name]
    benign = same_length(unit, adversarial)
    if name.startswith("title"):
        benign = "---\n" + same_length(unit, adversarial[4:-9]) + "---\nbody"
    elif name.startswith("spaces"):
        benign = "a|b\n" + same_length(unit, adversarial[4:])
    path = tmp_path / "doc.md"

    def read(text):
        extract_file(write(path, text.encode()), "md")

    assert_about_as_fast(read, adversarial, benign)


def test_other_patterns_take_linear_time():
    # A run of digits that fails at its end had one way to fail per digit.
    assert_about_as_fast(extract._NUMBER.fullmatch, "1" * 10000 + "x", "1" * 10001)
    # <meta without ">": the old pattern scanned to the end at every "<meta".
    assert_about_as_fast(extract._META_CHARSET.search, b"<meta" * 4000,
                         same_length(b"<meta charset=x>", b"<meta" * 4000))
    # Comments not followed by a tag: the old pattern tried all 2**24 groupings.
    assert_about_as_fast(lambda head: detect_kind("upload", head),
                         b"<!--a-->" * 24 + b"X", b"<!--a-->" * 24 + b"<html>")


def test_html_sniffing_skips_comments_and_declarations_in_the_head_only():
    assert detect_kind("page", b" <!-- a -- b --> <?xml version='1.0'?>\n<!DOCTYPE html>") \
        == "html"
    assert detect_kind("page", b"<!-- unclosed <html>") == "txt"
    assert detect_kind("page", b"<!-- one --> text <!-- two --> <html>") == "txt"
    assert detect_kind("page", b" " * HEAD_BYTES + b"<html>") == "txt"  # past the head


# --- HTML ----------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head>
<title> Opening   hours | Example </title>
<meta name="Description" content="When the  shop is open.">
<meta property="og:description" content="ignored: the plain description wins">
<style>body { color: red }</style>
<script>var tracking = "SCRIPT TEXT";</script>
</head><body>
<header><a href="/">SITE BANNER</a></header>
<nav><ul><li>Home</li><li>NAV LINK</li></ul></nav>
<main>
  <article>
    <header><h1 id="hours">Opening <em>hours</em></h1></header>
    <p>We are open
       from <b>nine</b> to five.</p>
    <p>Closed on Sundays.<br>Call ahead.</p>
    <div hidden>HIDDEN TEXT</div>
    <h2>Prices</h2>
    <table><thead><tr><th>Item</th><th>Cost</th></tr></thead>
      <tr><td>Tea</td><td>2</td></tr></table>
    <noscript>NOSCRIPT TEXT</noscript>
    <form><label>FORM TEXT</label></form>
    <footer>Posted by Ada</footer>
  </article>
  <aside>ASIDE TEXT</aside>
</main>
<footer>SITE FOOTER</footer>
<svg><text>SVG TEXT</text></svg>
</body></html>"""


def test_html_keeps_main_content_and_drops_boilerplate():
    document = extract_html(PAGE, url="https://shop.example/hours#top")

    assert document.title == "Opening hours | Example"
    assert document.description == "When the shop is open."
    assert [(s.heading, s.locator) for s in document.sections] == [
        ("Opening hours", "https://shop.example/hours#hours"),
        ("Prices", "https://shop.example/hours"),
    ]
    assert paragraphs(document.sections[0]) == [
        "Opening hours", "We are open from nine to five.", "Closed on Sundays.", "Call ahead."]
    assert paragraphs(document.sections[1]) == ["Prices", "Item: Tea; Cost: 2", "Posted by Ada"]
    for dropped in ("SCRIPT", "BANNER", "NAV", "HIDDEN", "NOSCRIPT", "FORM", "ASIDE",
                    "SITE FOOTER", "SVG", "color"):
        assert dropped not in document.text


def test_html_without_main_uses_body_and_h1_title_and_og_description(tmp_path):
    html = """<html><head><meta property="og:description" content="Social text">
    <!-- a comment --></head><body><nav>menu</nav><h1>First heading</h1>
    <div>Body <span>text</span></div></body></html>"""
    path = write(tmp_path / "page.htm", html.encode())
    document = extract_file(path, kind_of(path))
    assert document.title == "First heading"
    assert document.description == "Social text"
    assert document.text == "First heading\n\nBody text"
    assert document.sections[0].locator is None


def test_html_bytes_use_declared_charset():
    html = '<html><head><meta charset="windows-1252"></head><body><p>Café – €5</p></body></html>'
    assert extract_html(html.encode("cp1252")).text == "Café – €5"


def test_html_without_text_is_refused():
    with pytest.raises(ExtractionError, match="The web page contains no text"):
        extract_html("<html><body><script>only()</script><img src=x></body></html>")


def test_deeply_nested_html_does_not_recurse():
    html = "<div>" * 5000 + "deep text" + "</div>" * 5000
    assert extract_html(html).text == "deep text"



def test_html_nested_deeper_than_libxml2_keeps_its_text_and_the_rest_of_the_page():
    """libxml2 stops building at 2048 levels (the rest of the page was lost);
    the page is rebuilt with elements deeper than MAX_HTML_DEPTH unwrapped."""
    deep = 3000
    html = ("<html><head><title>Deep</title></head><body>" + "<div>" * deep
            + "<p>deep</p><p>text</p><script>hidden()</script><span hidden>no</span>"
            + "</div>" * deep + '<p>after</p><p q"r=1>odd<x"y>name</x"y></p></body></html>')
    document = extract_html(html)
    assert document.title == "Deep"
    assert document.text == "deep text\n\nafter\n\noddname"


def test_html_with_too_many_elements_is_refused(monkeypatch):
    monkeypatch.setattr(extract, "MAX_HTML_ELEMENTS", 100)
    assert extract_html("<p>x</p>" * 90).text
    # More "<" than elements: counted while building, not guessed from the text.
    assert extract_html("<p>" + "x < y " * 200 + "</p>" + "<p>x</p>" * 90).text
    with pytest.raises(ExtractionError, match="more than 100 HTML elements"):
        extract_html("<p>x</p>" * 150)


def test_html_rows_opened_inside_cells_are_read_once():
    """libxml2 keeps a <tr> opened in a cell's <div> inside that cell; each
    row of the chain used to be read again with all the rows below it."""
    html = ("<table>" + "".join("<tr><td>c%d<div>" % n for n in range(300))
            + "</div></td></tr>" * 300 + "</table>")
    assert extract_html(html).text == " ".join("c%d" % n for n in range(300))


# --- PDF (made by LibreOffice, see make_fixtures.py) ---------------------------

def test_pdf_text_per_page_and_title_from_metadata():
    document = extract_file(str(FIXTURES / "report.pdf"), "pdf")

    assert document.title == "Quarterly Garden Report"
    assert [s.locator for s in document.sections] == ["page 1", "page 2", "page 3"]
    assert paragraphs(document.sections[0]) == [
        "Spring planting",
        "Tomatoes went into the raised beds in the second week of April. The soil "
        "temperature was 14 degrees, which suited the seedlings well.",
        "This page is page 1 of the report.",
    ]
    assert "July heatwave" in document.sections[1].text
    assert "212 kilograms" in document.sections[2].text


def test_password_protected_pdf_is_refused():
    with pytest.raises(ExtractionError) as caught:
        extract_file(str(FIXTURES / "encrypted.pdf"), "pdf")
    assert caught.value.reason == "The PDF is password-protected; upload an unprotected copy."


def test_corrupt_pdf_is_refused():
    with pytest.raises(ExtractionError, match="could not be read; it may be damaged"):
        extract_file(str(FIXTURES / "corrupt.pdf"), "pdf")


def test_pdf_of_scanned_images_has_no_text_layer():
    with pytest.raises(ExtractionError, match="no text layer"):
        extract_file(str(FIXTURES / "scanned.pdf"), "pdf")


def test_committed_pdfs_are_small():
    for path in FIXTURES.glob("*.pdf"):
        assert path.stat().st_size < 50 * 1024, path


# --- robustness ----------------------------------------------------------------

def test_damaged_files_only_ever_raise_extraction_error(tmp_path):
    sources = {
        "pdf": (FIXTURES / "report.pdf").read_bytes(),
        "docx": Path(make_docx(tmp_path / "source.docx")).read_bytes(),
        "xlsx": Path(make_xlsx(tmp_path / "source.xlsx")).read_bytes(),
    }
    for kind, data in sources.items():
        for fraction in (0.05, 0.3, 0.6, 0.9):
            cut = data[:int(len(data) * fraction)]
            path = write(tmp_path / ("cut.%s" % kind), cut)
            try:
                extract_file(path, kind)
            except ExtractionError as error:
                assert error.reason
            path = write(tmp_path / ("flipped.%s" % kind),
                         bytes(b ^ 0x5A if i % 7 == 0 else b for i, b in enumerate(data)))
            with pytest.raises(ExtractionError):
                extract_file(path, kind)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract_file(str(tmp_path / "missing.pdf"), "pdf")


def test_unknown_kind_lists_supported_types(tmp_path):
    with pytest.raises(UnsupportedType) as caught:
        extract_file(write(tmp_path / "a.bin", b"x"), "exe")
    for label in SUPPORTED.values():
        assert label in caught.value.reason


# --- detect_kind ---------------------------------------------------------------

def test_detect_kind_for_each_supported_file(tmp_path):
    shutil.copy(FIXTURES / "report.pdf", tmp_path / "Report.PDF")
    assert kind_of(tmp_path / "Report.PDF") == "pdf"
    assert kind_of(make_docx(tmp_path / "a.docx")) == "docx"
    assert kind_of(make_xlsx(tmp_path / "a.xlsx")) == "xlsx"
    assert detect_kind("a.csv", b"a,b\n1,2\n") == "csv"
    assert detect_kind("notes.text", b"hello") == "txt"
    assert detect_kind("readme.markdown", b"# hi") == "md"
    assert detect_kind("page.htm", b"<p>hi</p>") == "html"
    assert detect_kind("page", b"\xef\xbb\xbf<!DOCTYPE html><html>") == "html"
    assert detect_kind("notes", b"just words") == "txt"
    assert detect_kind("download", (FIXTURES / "report.pdf").read_bytes()[:HEAD_BYTES]) == "pdf"
    assert set(SUPPORTED_EXTENSIONS.values()) == set(SUPPORTED)


def test_detect_kind_reads_docx_and_xlsx_without_extension(tmp_path):
    docx_head = Path(make_docx(tmp_path / "a.docx")).read_bytes()[:HEAD_BYTES]
    xlsx_head = Path(make_xlsx(tmp_path / "b.xlsx")).read_bytes()[:HEAD_BYTES]
    assert detect_kind("upload", docx_head) == "docx"
    assert detect_kind("upload.bin", xlsx_head) == "xlsx"


def test_detect_kind_refuses_contents_that_contradict_the_name(tmp_path):
    docx_head = Path(make_docx(tmp_path / "a.docx")).read_bytes()[:HEAD_BYTES]
    xlsx_head = Path(make_xlsx(tmp_path / "b.xlsx")).read_bytes()[:HEAD_BYTES]
    pdf_head = (FIXTURES / "report.pdf").read_bytes()[:HEAD_BYTES]
    exe_head = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(200)
    refused = [
        ("report.pdf", docx_head),         # a zip named .pdf
        ("report.docx", pdf_head),
        ("sheet.xlsx", docx_head),         # a Word document named .xlsx
        ("notes.txt", exe_head),           # a program named .txt
        ("data.csv", xlsx_head),
        ("page.html", pdf_head),
        ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100)),
        ("program.exe", exe_head),
        ("archive.zip", b"PK\x03\x04" + bytes(40)),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(40)),
    ]
    for filename, head in refused:
        with pytest.raises(UnsupportedType) as caught:
            detect_kind(filename, head)
        assert "It reads PDF" in caught.value.reason, filename


def test_detect_kind_accepts_utf16_text_with_nul_bytes():
    assert detect_kind("notes.txt", "hello there".encode("utf-16")) == "txt"
    assert detect_kind("notes.txt", "hello there".encode("utf-16-le")) == "txt"


def test_document_text_joins_sections():
    document = Document("t", None, [Section("a"), Section("b\n\nc")])
    assert document.text == "a\n\nb\n\nc"


def test_an_aes_encrypted_pdf_that_opens_without_a_password_is_read(tmp_path):
    """'Restricted' PDFs (AES, empty user password) are common; pypdf[crypto] reads them."""
    import pypdf
    reader = pypdf.PdfReader(str(FIXTURES / "report.pdf"))
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="AES-256")
    path = tmp_path / "restricted.pdf"
    writer.write(str(path))
    document = extract_file(str(path), "pdf")
    assert "planting" in document.text.lower()


def test_xlsx_inline_strings_and_cached_formula_values_are_read(tmp_path):
    """Files from other programs: inline strings, formulas with cached values,
    a namespace prefix, no row or cell references."""
    path = tmp_path / "other.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.title = "Data"
    workbook.save(path)
    sheet_xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<x:sheetData>'
        '<x:row><x:c t="inlineStr"><x:is><x:t>Item</x:t></x:is></x:c>'
        '<x:c t="inlineStr"><x:is><x:r><x:t>Tot</x:t></x:r><x:r><x:t>al</x:t></x:r>'
        '</x:is></x:c></x:row>'
        '<x:row><x:c t="inlineStr"><x:is><x:t>Fish &amp; chips</x:t></x:is></x:c>'
        '<x:c><x:f>2*3</x:f><x:v>6</x:v></x:c><x:c t="e"><x:v>#N/A</x:v></x:c></x:row>'
        '</x:sheetData></x:worksheet>')
    rewritten = tmp_path / "rewritten.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = sheet_xml.encode()
            target.writestr(item, data)
    document = extract_file(str(rewritten), "xlsx")
    assert paragraphs(document.sections[0]) == [
        "Item: Fish & chips; Total: 6; Column 3: #N/A"]


def test_a_pre_block_is_kept_as_code_and_ligatures_are_spelled_out():
    html = ("<html><body><h1>Stash</h1><p>Stash your changes, pull, then unstash, like "
            "this:</p><pre>$ git pull\n\n$ git stash\n\t$ git stash pop  </pre>"
            "<p>The \ufb01les are \ufb02agged.</p></body></html>").encode("utf-8")
    text = extract_html(html).sections[0].text
    assert "like this:\n\n```\n$ git pull\n$ git stash\n    $ git stash pop\n```" in text
    assert "The files are flagged." in text


def test_documentation_page_furniture_is_left_out():
    """As PostgreSQL's DocBook pages and Sphinx pages have it (shortened)."""
    docbook = (
        b'<html><body><div class="navheader"><table summary="Navigation header"><tr>'
        b'<th colspan="5">26.1. SQL Dump</th></tr><tr><td><a accesskey="p" '
        b'href="backup.html">Prev</a> </td><td><a accesskey="u" href="backup.html">Up</a>'
        b'</td><th>Chapter 26. Backup and Restore</th><td><a href="index.html">Home</a>'
        b'</td></tr></table><hr></div><div class="sect1"><div class="titlepage"><h2>26.1. '
        b'SQL Dump</h2></div><div class="toc"><dl><dt><span><a href="#a">26.1.1. Restoring '
        b'the Dump</a></span></dt></dl></div><p>The idea behind this dump method is to '
        b'generate a file with SQL commands.</p></div><div class="navfooter"><table><tr>'
        b'<td><a href="backup.html">Prev</a></td><td><a href="#">Next</a></td></tr></table>'
        b'</div></body></html>')
    text = "\n".join(s.text for s in extract_html(docbook).sections)
    assert text == "26.1. SQL Dump\n\nThe idea behind this dump method is to generate a " \
        "file with SQL commands."
    sphinx = ('<html><body><div class="body"><h1>Installing<a class="headerlink" '
              'href="#installing" title="Permalink to this heading">\u00b6</a></h1><p>Run '
              'the installer.</p></div><div class="sphinxsidebar" role="navigation"><p>'
              'Quick search</p></div></body></html>').encode("utf-8")
    sections = extract_html(sphinx).sections
    assert [(s.heading, s.text) for s in sections] == [
        ("Installing", "Installing\n\nRun the installer.")]


def test_pdf_text_is_the_same_from_pypdf_where_pdfium_cannot_open_the_file(monkeypatch):
    """PDFium reads the text (spaces LaTeX only implies, line-end hyphens joined);
    a PDF it cannot open is still read, by pypdf."""
    import pypdfium2

    laid_out = extract_file(str(FIXTURES / "report.pdf"), "pdf")

    def refuse(data):
        raise pypdfium2.PdfiumError("cannot open")
    monkeypatch.setattr(pypdfium2, "PdfDocument", refuse)
    fallback = extract_file(str(FIXTURES / "report.pdf"), "pdf")
    assert [paragraphs(s) for s in fallback.sections] == \
        [paragraphs(s) for s in laid_out.sections]
    assert fallback.title == laid_out.title == "Quarterly Garden Report"


def test_pdfium_joins_a_word_hyphenated_at_a_line_end():
    from botlite.knowledge.extract import _pdf_page_texts

    class Page:
        def get_textpage(self):
            return self

        def get_text_range(self):
            return "structures man\ufffe\r\nagement, and\r\nmore"

        def close(self):
            pass

    class Document(list):
        def close(self):
            pass

    import pypdfium2
    original = pypdfium2.PdfDocument
    try:
        pypdfium2.PdfDocument = lambda data: Document([Page()])
        assert list(_pdf_page_texts(b"", None)) == [("structures management, and\nmore", True)]
    finally:
        pypdfium2.PdfDocument = original


def test_pdf_contents_lines_are_left_out_and_real_hyphens_kept():
    from botlite.knowledge.extract import _pdf_paragraphs
    page = ("Contents\n1 Introduction . . . . . . . . . . . . . . . . 1\n"
            "3.4 Making a Windows DLL . . . . . . . . . . . . iv\n\n"
            "Values are written as a long list that is comma-\nseparated in the file, and "
            "read back the same way every time.\n")
    assert _pdf_paragraphs(page, hyphens_marked=True) == [
        "Contents", "Values are written as a long list that is comma-separated in the file, "
        "and read back the same way every time."]
    # pypdf marks nothing: a line-end hyphen before a lowercase word is a split word.
    assert "commaseparated" in _pdf_paragraphs(page)[-1]
