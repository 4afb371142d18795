"""Ingestion throughput: MB of text per second through extract + chunk + index for
each file format, against the bare parser on the same file in the same run, and
crawl pages per second on a generated 200-page local site. Prints one JSON line.

Files (PDF, DOCX, XLSX, CSV, TXT, MD, HTML) are generated into a fresh temp dir
from a fixed vocabulary with a fixed seed, ``--mb`` MB of text each (the PDF
``--pdf-mb``, by default as much: a generated DOCX converted by LibreOffice when ``soffice`` is
installed, else the same kind of text written as a plain Helvetica PDF by
`write_pdf`; ``pdf_source`` says which).

For each format, best of ``--runs`` (the two interleaved):

- botlite: ``sources.process_document`` on a fresh Source whose stored file is
  the generated one, in a fresh SQLite app database (migrated, FTS5): extract,
  chunk and index as the task does (a new generation written in short
  transactions, then flipped; see knowledge/replace.py), progress written to
  the Source row. Stage times come from the same calls, timed by wrapping
  ``sources.extract_file``, ``sources.iter_chunks`` (the time spent cutting
  chunks, between write transactions) and ``index.insert_chunks`` (summed):
  ``index`` is everything but extract and chunk (``index_insert_chunks`` is the
  inserts themselves; the rest is the claim, the commits, the pauses that leave
  the write lock to other writers, the flip and status updates).
- bare: what one would run to read the file's text without botlite, with the
  library botlite uses or the one people reach for:

  ======  ================================================================
  PDF     pypdf ``PdfReader`` + ``extract_text()`` per page
  DOCX    python-docx: every paragraph's ``.text`` and every table cell's
  XLSX    openpyxl ``load_workbook(read_only=True, data_only=True)``,
          ``iter_rows(values_only=True)`` over every sheet
  CSV     ``csv.Sniffer`` on the first 16 KB (as botlite), ``csv.reader``
          with that dialect over the decoded file
  TXT/MD  read, decode (UTF-8), split into paragraphs at blank lines
  HTML    ``BeautifulSoup(html, "html.parser").get_text()``
  ======  ================================================================

``text_mb`` is the UTF-8 size of botlite's extracted text (``Document.text``,
1 MB = 10**6 bytes); both MB/s figures divide it by their best time, so
``overhead_ratio`` = botlite time / bare time (the issue's goal: <= 1.2).
``bare_text_mb`` is what the bare parser produced; for XLSX and CSV botlite's
text is larger because each cell is labelled with its column header.
``insert_vs_bare_ratio`` is the FTS5 inserts alone against the bare parser:
where it passes the goal by itself (CSV, TXT, MD, whose "parser" is a split
costing milliseconds) no extraction can meet it. For HTML,
``lxml_text_content_s`` is lxml.html's own ``text_content()`` (the parser
botlite's HTML extraction now walks), for comparison; it is not the baseline.

Crawl: a generated 200-page site (2-5 KB of text per page, each page linking to
its children in a 5-ary tree, its parent, the home page and one random page;
every page within 4 links; no robots.txt, no sitemap unless ``--sitemap``)
served by ``http.server.ThreadingHTTPServer`` on 127.0.0.1 in a thread. Best of
``--runs`` each: ``crawl.crawl`` alone (max_pages=200, max_depth=4, delay=0);
``sources.scrape_website`` (crawl + index, as the task); and a bare baseline
that GETs the 200 known URLs with one requests.Session and runs
BeautifulSoup(html.parser).get_text() on each.

    python bench/ingest.py [--runs 3] [--mb 1.5] [--pdf-mb MB] [--pages 200]
                           [--sitemap] [--profile KIND] [--keep DIR]

``--profile KIND`` (pdf, docx, ...) also prints a cProfile of one
``process_document`` of that format to stderr.
"""
import os
import sys

# As a script, this folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's ``queue`` (imported by psycopg through peewee).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))  # this checkout's botlite

import argparse  # noqa: E402
import cProfile  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import http.server  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from html import escape  # noqa: E402
from pathlib import Path  # noqa: E402

from botlite import db as dbmod  # noqa: E402
from botlite.knowledge import crawl as crawling  # noqa: E402
from botlite.knowledge import index, sources  # noqa: E402
from botlite.models import Chatbot, Chunk, Source  # noqa: E402

FORMATS = ("pdf", "docx", "xlsx", "csv", "txt", "md", "html")
BOT = "default"
GOAL = 1.2
SEED = 20240611
MB = 10 ** 6


def log(message, *args):
    print("ingest bench: " + (message % args if args else message), file=sys.stderr,
          flush=True)


# --- generated English-like text ---------------------------------------------------

_VOCABULARY = """
the of and to a in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when
if so no will more can out up into other time only new some could these two may first
then do any like my now over such our man me even most made after also did many before
must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old
year off come since against go came right used take three system customer order service
account invoice payment delivery warehouse product price report quarter region team
manager policy support request schedule shipment supplier contract budget project review
update process record data network server backup storage access security training meeting
office employee department client partner market sales revenue cost margin forecast plan
quality issue ticket response release version feature option setting default install
configure document guide section table figure page chapter summary result analysis growth
garden water soil plant season harvest weather spring summer autumn winter morning evening
local national annual monthly weekly daily recent current previous following available
required optional important general specific standard simple complex clear early late
""".split()
_WEIGHTS = [1.0 / (rank + 8) for rank in range(len(_VOCABULARY))]  # roughly Zipf


class TextGen:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def words(self, lo, hi):
        return self.rng.choices(_VOCABULARY, _WEIGHTS, k=self.rng.randint(lo, hi))

    def title(self, lo=2, hi=6):
        return " ".join(self.words(lo, hi)).capitalize()

    def sentence(self):
        words = self.words(6, 22)
        if len(words) > 10 and self.rng.random() < 0.4:
            words[self.rng.randint(3, len(words) - 4)] += ","
        if self.rng.random() < 0.05:
            words.insert(self.rng.randint(1, len(words) - 1), "e.g.")
        if self.rng.random() < 0.08:
            words.append(str(self.rng.randint(2, 9999)))
        end = self.rng.choices((".", "?", "!"), (20, 2, 1))[0]
        return " ".join(words).capitalize() + end

    def paragraph(self, lo=3, hi=8):
        return " ".join(self.sentence() for _ in range(self.rng.randint(lo, hi)))

    def wrap(self, text, width=78):
        lines, line = [], ""
        for word in text.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = line + " " + word if line else word
        if line:
            lines.append(line)
        return "\n".join(lines)

    def table(self, rows):
        header = ["Item", "Owner", "Status", "Amount", "Due"]
        body = [[self.title(1, 3), self.rng.choice(("Alice", "Bob", "Chen", "Dana", "Eve")),
                 self.rng.choice(("open", "closed", "pending", "late")),
                 "%.2f" % self.rng.uniform(5, 5000),
                 (datetime.date(2024, 1, 1) + datetime.timedelta(self.rng.randint(0, 365))
                  ).isoformat()] for _ in range(rows)]
        return header, body


def _blocks(gen, target_chars):
    """A document as (kind, payload) blocks until about ``target_chars`` of text:
    h1 once, then h2 every few paragraphs, with lists and tables now and then."""
    size = 0
    yield "h1", gen.title(3, 6)
    count = 0
    while size < target_chars:
        if count % 6 == 0:
            heading = gen.title()
            size += len(heading)
            yield "h2", heading
        count += 1
        roll = gen.rng.random()
        if roll < 0.08:
            items = [gen.sentence() for _ in range(gen.rng.randint(3, 6))]
            size += sum(len(item) for item in items)
            yield "list", items
        elif roll < 0.11:
            header, rows = gen.table(gen.rng.randint(4, 10))
            size += sum(len(" ".join(row)) for row in rows)
            yield "table", (header, rows)
        else:
            paragraph = gen.paragraph()
            size += len(paragraph)
            yield "p", paragraph


# --- the files -------------------------------------------------------------------

def make_txt(path, target, seed):
    gen = TextGen(seed)
    out = []
    for kind, payload in _blocks(gen, target):
        if kind in ("h1", "h2"):
            out.append(payload.upper() if kind == "h1" else payload)
        elif kind == "p":
            out.append(gen.wrap(payload))
        elif kind == "list":
            out.append("\n".join("- " + gen.wrap(item, 76).replace("\n", "\n  ")
                                 for item in payload))
        else:
            header, rows = payload
            out.append("\n".join("  ".join(row) for row in [header] + rows))
    Path(path).write_text("\n\n".join(out) + "\n", encoding="utf-8")


def make_md(path, target, seed):
    gen = TextGen(seed)
    out = ["---\ntitle: Operations handbook\n---"]
    for kind, payload in _blocks(gen, target):
        if kind == "h1":
            out.append("# " + payload)
        elif kind == "h2":
            out.append("## " + payload)
        elif kind == "p":
            words = payload.split(" ")
            if len(words) > 12:
                words[3] = "**%s**" % words[3]
                words[8] = "[%s](https://example.com/docs/%s)" % (words[8], words[8].strip(".,?!"))
                if gen.rng.random() < 0.3:
                    words[11] = "`%s`" % words[11]
            out.append(gen.wrap(" ".join(words)))
        elif kind == "list":
            out.append("\n".join("* " + item for item in payload))
        else:
            header, rows = payload
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            out.append("\n".join(lines))
        if kind == "p" and gen.rng.random() < 0.02:
            out.append("```\n%s\n```" % gen.wrap(gen.sentence(), 60))
    Path(path).write_text("\n\n".join(out) + "\n", encoding="utf-8")


def make_html(path, target, seed):
    gen = TextGen(seed)
    head = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Operations handbook</title>"
            "<meta name=\"description\" content=\"%s\">"
            "<style>body{font-family:sans-serif} .x{color:#333}</style>"
            "<script>window.dataLayer=[];</script></head><body>\n"
            "<header><a href=\"/\">Home</a><nav><ul>%s</ul></nav></header>\n<main>\n"
            % (escape(gen.sentence()), "".join(
                "<li><a href=\"/s/%d\">%s</a></li>" % (i, escape(gen.title(1, 2)))
                for i in range(8))))
    out = [head]
    section = 0
    for kind, payload in _blocks(gen, target):
        if kind == "h1":
            out.append("<h1>%s</h1>\n" % escape(payload))
        elif kind == "h2":
            section += 1
            out.append("<h2 id=\"s%d\">%s</h2>\n" % (section, escape(payload)))
        elif kind == "p":
            words = [escape(word) for word in payload.split(" ")]
            if len(words) > 10:
                words[2] = "<strong>%s</strong>" % words[2]
                words[7] = "<a href=\"/docs/%d\">%s</a>" % (section, words[7])
            out.append("<p>%s</p>\n" % " ".join(words))
        elif kind == "list":
            out.append("<ul>%s</ul>\n" % "".join("<li>%s</li>" % escape(item)
                                                for item in payload))
        else:
            header, rows = payload
            out.append("<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>\n" % (
                "".join("<th>%s</th>" % escape(cell) for cell in header),
                "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % escape(cell) for cell in row)
                        for row in rows)))
    out.append("</main>\n<footer><p>Copyright 2024 Example Ltd. All rights reserved.</p>"
               "</footer><script>console.log('x')</script></body></html>\n")
    Path(path).write_text("".join(out), encoding="utf-8")


def make_docx(path, target, seed):
    import docx

    gen = TextGen(seed)
    document = docx.Document()
    document.core_properties.title = "Operations handbook"
    for kind, payload in _blocks(gen, target):
        if kind == "h1":
            document.add_heading(payload, level=1)
        elif kind == "h2":
            document.add_heading(payload, level=2)
        elif kind == "p":
            paragraph = document.add_paragraph()
            sentences = payload.split(". ")
            for position, sentence in enumerate(sentences):  # several runs, some bold
                run = paragraph.add_run(sentence + (". " if position < len(sentences) - 1 else ""))
                run.bold = position == 1
        elif kind == "list":
            for item in payload:
                document.add_paragraph(item, style="List Bullet")
        else:
            header, rows = payload
            table = document.add_table(rows=1 + len(rows), cols=len(header))
            for r, row in enumerate([header] + rows):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    document.save(path)


_COLUMNS = ["ID", "Product", "Category", "Region", "Unit price", "Quantity", "Order date",
            "Notes"]


def _table_rows(gen, target):
    size, number = 0, 0
    base = datetime.date(2023, 1, 1)
    while size < target:
        number += 1
        row = [number, gen.title(1, 3), gen.rng.choice(("Hardware", "Software", "Services",
                                                        "Garden", "Office")),
               gen.rng.choice(("North", "South", "East", "West")),
               round(gen.rng.uniform(1, 900), 2), gen.rng.randint(1, 500),
               base + datetime.timedelta(gen.rng.randint(0, 700)), gen.sentence()]
        size += sum(len(str(value)) for value in row)
        yield row


def make_csv(path, target, seed):
    gen = TextGen(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for row in _table_rows(gen, target):
            writer.writerow(row[:6] + [row[6].isoformat(), row[7]])


def make_xlsx(path, target, seed):
    import openpyxl

    gen = TextGen(seed)
    # Not write_only: that mode writes no <dimension>, so openpyxl's reader
    # parses each whole sheet once more just to size it; Excel and LibreOffice
    # write the dimension, as this mode does (both modes write inline strings,
    # where Excel writes shared ones).
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    workbook.properties.title = "Orders"
    rows = list(_table_rows(gen, target))
    half = len(rows) // 2
    for name, part in (("Orders 2023", rows[:half]), ("Orders 2024", rows[half:])):
        sheet = workbook.create_sheet(name)
        sheet.append(_COLUMNS)
        for row in part:
            sheet.append(row)
    workbook.save(path)


def make_pdf(path, target, seed, scratch):
    """About ``target`` characters of text as a PDF: a generated DOCX converted by
    LibreOffice when ``soffice`` is installed ("libreoffice"), else written
    directly by `write_pdf` ("generated")."""
    soffice = shutil.which("soffice")
    if soffice is not None:
        work = Path(scratch) / "pdf-work"
        work.mkdir()
        source = work / "report.docx"
        make_docx(str(source), target, seed)
        try:
            subprocess.run(
                [soffice, "-env:UserInstallation=" + (work / "profile").as_uri(), "--headless",
                 "--convert-to", "pdf", "--outdir", str(work), str(source)],
                check=True, capture_output=True, timeout=180)
            shutil.move(str(work / "report.pdf"), path)
            return "libreoffice"
        except (OSError, subprocess.SubprocessError) as exc:
            log("soffice failed (%r); writing the PDF directly", exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    gen = TextGen(seed)
    lines = []
    for kind, payload in _blocks(gen, target):
        if kind in ("h1", "h2"):
            lines += ["", payload, ""]
        elif kind == "p":
            lines += gen.wrap(payload, 95).split("\n") + [""]
        elif kind == "list":
            for item in payload:
                lines += ("- " + gen.wrap(item, 93).replace("\n", "\n  ")).split("\n")
            lines.append("")
        else:
            header, rows = payload
            lines += ["  ".join(row) for row in [header] + rows] + [""]
    write_pdf(path, lines, title="Operations handbook")
    return "generated"


def write_pdf(path, lines, title, per_page=62):
    """A plain PDF: the lines in Helvetica 9 pt on A4 pages, an /Info title."""
    def literal(text):
        text = text.encode("cp1252", "replace").decode("latin-1")
        return "(%s)" % text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    pages = [lines[start:start + per_page] for start in range(0, len(lines), per_page)]
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None,
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               "/Encoding /WinAnsiEncoding >>",
               "<< /Title %s /Producer (botlite bench) >>" % literal(title)]
    kids = []
    for page in pages:
        stream = "BT /F1 9 Tf 11 TL 50 800 Td\n%s\nET" % "\n".join(
            "%s Tj T*" % literal(line) for line in page)
        objects.append("<< /Length %d >>\nstream\n%s\nendstream" % (
            len(stream.encode("latin-1")), stream))
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       "/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                       % len(objects))
        kids.append("%d 0 R" % len(objects))
    objects[1] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += ("%d 0 obj\n%s\nendobj\n" % (number, body)).encode("latin-1")
    xref = len(out)
    out += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)).encode()
    out += "".join("%010d 00000 n \n" % offset for offset in offsets).encode()
    out += ("trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref)).encode()
    Path(path).write_bytes(bytes(out))


# --- the bare parsers ---------------------------------------------------------------

def bare_pdf(path):
    from pypdf import PdfReader

    reader = PdfReader(path)
    return "\n".join(page.extract_text() for page in reader.pages)


def bare_docx(path):
    import docx

    document = docx.Document(path)
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return "\n".join(parts)


def bare_xlsx(path):
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        parts = []
        for sheet in workbook.worksheets:
            for row in sheet.iter_rows(values_only=True):
                parts.append("\t".join("" if value is None else str(value) for value in row))
    finally:
        workbook.close()
    return "\n".join(parts)


def bare_csv(path):
    """What one would write to read a CSV of unknown dialect: the standard
    library's Sniffer on the start of the file (the sample botlite sniffs),
    then csv.reader with that dialect."""
    with open(path, newline="", encoding="utf-8") as handle:
        text = handle.read()
    sample = text[:16384]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[:sample.rindex("\n")]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return "\n".join("\t".join(row) for row in csv.reader(io.StringIO(text), dialect))


def bare_text(path):
    """Plain text or Markdown read as one would without botlite: decoded, split
    into paragraphs at blank lines."""
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")
    return "\n\n".join(paragraph.strip() for paragraph in text.split("\n\n"))


def bare_html(path):
    from bs4 import BeautifulSoup

    with open(path, encoding="utf-8") as handle:
        return BeautifulSoup(handle.read(), "html.parser").get_text()


def lxml_html(path):
    """Not a baseline: lxml.html's own text_content(), the parser botlite's
    HTML extraction is built on, for comparison."""
    import lxml.html

    with open(path, "rb") as handle:
        return lxml.html.document_fromstring(handle.read()).text_content()


BARE = {"pdf": bare_pdf, "docx": bare_docx, "xlsx": bare_xlsx, "csv": bare_csv,
        "txt": bare_text, "md": bare_text, "html": bare_html, "lxml_html": lxml_html}


# --- botlite's path -----------------------------------------------------------------

class StageClock:
    """Times the steps inside ``sources.process_document`` by wrapping the names it
    calls: ``extract_file``, ``iter_chunks`` (the time spent cutting chunks, which
    happens between the indexer's write transactions) and ``index.insert_chunks``
    (summed over its calls); the rest of its time (claiming a generation, the
    write transactions' bookkeeping and commits, the pauses that leave the write
    lock to other writers, the flip, status updates) is indexing too."""

    def __init__(self):
        self.times = {}
        self.document = None
        self._originals = (sources.extract_file, sources.iter_chunks, index.insert_chunks)

    def _timed(self, name, function, keep=False):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            value = function(*args, **kwargs)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - started
            if keep:
                self.document = value
            return value
        return timed

    def _timed_iterator(self, name, function):
        def timed(*args, **kwargs):
            iterator = function(*args, **kwargs)
            while True:
                started = time.perf_counter()
                item = next(iterator, None)
                self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - started
                if item is None:
                    return
                yield item
        return timed

    def install(self):
        extract_file, iter_chunks, insert_chunks = self._originals
        sources.extract_file = self._timed("extract", extract_file, keep=True)
        sources.iter_chunks = self._timed_iterator("chunk", iter_chunks)
        index.insert_chunks = self._timed("insert_chunks", insert_chunks)

    def uninstall(self):
        sources.extract_file, sources.iter_chunks, index.insert_chunks = self._originals


def new_file_source(data_dir, path, kind):
    relative = os.path.relpath(path, data_dir)
    name = os.path.basename(path)
    return Source.create(id=uuid.uuid4().hex, chatbot=BOT, kind="file", title=name,
                         filename=name, stored_path=relative, file_kind=kind,
                         size_bytes=os.path.getsize(path)).id


def botlite_once(data_dir, path, kind, clock):
    source_id = new_file_source(data_dir, path, kind)
    progress = functools.partial(sources.record_progress, source_id)  # as the task does
    clock.times.clear()
    started = time.perf_counter()
    result = sources.process_document(data_dir, source_id, progress)
    elapsed = time.perf_counter() - started
    stages = {"extract": clock.times["extract"], "chunk": clock.times["chunk"]}
    stages["index"] = elapsed - stages["extract"] - stages["chunk"]
    stages["index_insert_chunks"] = clock.times["insert_chunks"]
    return elapsed, stages, result["chunks"]


def bare_once(path, kind):
    started = time.perf_counter()
    text = BARE[kind](path)
    return time.perf_counter() - started, text


def measure_format(data_dir, path, kind, runs, clock):
    best_bot = best_bare = None
    bare_text = ""
    for _ in range(runs):  # interleaved, so drift hits both alike
        elapsed, text = bare_once(path, kind)
        if best_bare is None or elapsed < best_bare:
            best_bare, bare_text = elapsed, text
        elapsed, stages, chunks = botlite_once(data_dir, path, kind, clock)
        if best_bot is None or elapsed < best_bot[0]:
            best_bot = (elapsed, stages, chunks)
    botlite_s, stages, chunks = best_bot
    extra = {}
    if kind == "html":
        extra["lxml_text_content_s"] = round(min(
            bare_once(path, "lxml_html")[0] for _ in range(runs)), 4)
    text_mb = len(clock.document.text.encode("utf-8")) / MB
    ratio = botlite_s / best_bare
    log("%-4s %.2f MB text, %d chunks: botlite %.3f s (extract %.3f, chunk %.3f, index %.3f"
        " of which insert_chunks %.3f), bare %.3f s, ratio %.2f", kind, text_mb, chunks,
        botlite_s, stages["extract"], stages["chunk"], stages["index"],
        stages["index_insert_chunks"], best_bare, ratio)
    return {
        "file_mb": round(os.path.getsize(path) / MB, 3),
        "text_mb": round(text_mb, 3),
        "bare_text_mb": round(len(bare_text.encode("utf-8")) / MB, 3),
        "chunks": chunks,
        "botlite_mb_per_s": round(text_mb / botlite_s, 2),
        "bare_mb_per_s": round(text_mb / best_bare, 2),
        "overhead_ratio": round(ratio, 2),
        "botlite_s": round(botlite_s, 4),
        "bare_s": round(best_bare, 4),
        "stages_s": {name: round(value, 4) for name, value in stages.items()},
        "extract_vs_bare_ratio": round(stages["extract"] / best_bare, 2),
        "insert_vs_bare_ratio": round(stages["index_insert_chunks"] / best_bare, 2),
        **extra,
    }


def profile_format(data_dir, path, kind):
    source_id = new_file_source(data_dir, path, kind)
    profiler = cProfile.Profile()
    profiler.enable()
    sources.process_document(data_dir, source_id, lambda done, total: None)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    log("cProfile of process_document(%s):\n%s", kind, out.getvalue())


# --- the site ---------------------------------------------------------------------

def make_site(directory, pages, seed, sitemap):
    """``pages`` HTML pages in a 5-ary tree (page i's children: 5i+1..5i+5)."""
    gen = TextGen(seed)
    names = ["index.html"] + ["page-%03d.html" % i for i in range(1, pages)]
    total_text = 0
    titles = [gen.title(2, 5) for _ in range(pages)]
    for i in range(pages):
        links = [c for c in range(5 * i + 1, 5 * i + 6) if c < pages]
        if i:
            links += [(i - 1) // 5, 0]
        links.append(gen.rng.randrange(pages))
        target = gen.rng.randint(2000, 5000)
        body, size, section = [], 0, 0
        while size < target:
            if size == 0 or gen.rng.random() < 0.2:
                section += 1
                heading = gen.title()
                body.append("<h2 id=\"s%d\">%s</h2>" % (section, escape(heading)))
                size += len(heading)
            paragraph = gen.paragraph(2, 6)
            body.append("<p>%s</p>" % escape(paragraph))
            size += len(paragraph)
        total_text += size
        related = "".join("<li><a href=\"%s\">%s</a></li>" % (names[j], escape(titles[j]))
                          for j in links)
        html = (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>%s | Example Docs</title><meta name=\"description\" content=\"%s\">"
            "<link rel=\"stylesheet\" href=\"style.css\"></head><body>\n"
            "<header><a href=\"index.html\">Example Docs</a></header>\n"
            "<nav><ul><li><a href=\"index.html\">Home</a></li></ul></nav>\n"
            "<main><article><h1>%s</h1>\n%s\n<h2>Related pages</h2><ul>%s</ul></article></main>\n"
            "<footer><p>Copyright 2024 Example Ltd.</p></footer></body></html>\n"
            % (escape(titles[i]), escape(gen.sentence()), escape(titles[i]),
               "\n".join(body), related))
        Path(directory, names[i]).write_text(html, encoding="utf-8")
    Path(directory, "style.css").write_text("body{font-family:sans-serif}\n")
    if sitemap:
        Path(directory, "sitemap.xml").write_text(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">%s</urlset>\n"
            % "".join("<url><loc>{base}%s</loc></url>" % name for name in names))
    return names, total_text / pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(directory):
    handler = functools.partial(_QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bare_fetch(urls):
    import requests
    from bs4 import BeautifulSoup

    started = time.perf_counter()
    with requests.Session() as session:
        for url in urls:
            response = session.get(url, timeout=10)
            response.raise_for_status()
            BeautifulSoup(response.text, "html.parser").get_text()
    return time.perf_counter() - started


def crawl_once(start, pages, depth):
    started = time.perf_counter()
    result = crawling.crawl(start, max_pages=pages, max_depth=depth,
                            allowed_hosts={"127.0.0.1"}, delay=0)
    elapsed = time.perf_counter() - started
    if len(result.pages) != pages:
        raise RuntimeError("crawl read %d of %d pages (skipped: %s)" % (
            len(result.pages), pages, result.skipped[:5]))
    return elapsed


def scrape_once(start, pages, depth):
    bot = Chatbot.create(id=uuid.uuid4().hex, name="crawl")  # one source per URL and bot
    source_id = Source.create(id=uuid.uuid4().hex, chatbot=bot.id, kind="website",
                              title=start, url=start, max_pages=pages, max_depth=depth).id
    progress = functools.partial(sources.record_progress, source_id)  # as the task does
    started = time.perf_counter()
    result = sources.scrape_website(source_id, allow_private=True, progress=progress,
                                    crawl_options={"delay": 0})
    elapsed = time.perf_counter() - started
    if result["pages"] != pages:
        raise RuntimeError("scrape read %d of %d pages" % (result["pages"], pages))
    return elapsed, result["chunks"]


def measure_crawl(scratch, pages, runs, sitemap):
    site = os.path.join(scratch, "site")
    os.mkdir(site)
    names, text_per_page = make_site(site, pages, SEED + 99, sitemap)
    depth = 4
    server = serve(site)
    try:
        base = "http://127.0.0.1:%d/" % server.server_address[1]
        if sitemap:
            path = os.path.join(site, "sitemap.xml")
            Path(path).write_text(Path(path).read_text().replace("{base}", base))
        start = base + "index.html"
        urls = [base + name for name in names]
        crawl_s, scrape_s, bare_s, chunks = [], [], [], 0
        for _ in range(runs):
            bare_s.append(bare_fetch(urls))
            crawl_s.append(crawl_once(start, pages, depth))
            elapsed, chunks = scrape_once(start, pages, depth)
            scrape_s.append(elapsed)
    finally:
        server.shutdown()
        server.server_close()
    crawl_best, scrape_best, bare_best = min(crawl_s), min(scrape_s), min(bare_s)
    log("crawl %d pages: crawl %.2f s, crawl+index %.2f s (%d chunks), bare fetch+parse %.2f s",
        pages, crawl_best, scrape_best, chunks, bare_best)
    return {
        "pages": pages, "max_depth": depth, "sitemap": sitemap,
        "text_kb_per_page": round(text_per_page / 1000, 2),
        "pages_per_s": round(pages / crawl_best, 1),
        "with_index_pages_per_s": round(pages / scrape_best, 1),
        "bare_fetch_parse_pages_per_s": round(pages / bare_best, 1),
        "crawl_vs_bare_ratio": round(crawl_best / bare_best, 2),
        "index_s": round(max(scrape_best - crawl_best, 0.0), 3),
        "chunks": chunks,
    }


# --- main ----------------------------------------------------------------------------

MAKERS = {"docx": make_docx, "xlsx": make_xlsx, "csv": make_csv, "txt": make_txt,
          "md": make_md, "html": make_html}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="best of this many (default 3)")
    parser.add_argument("--mb", type=float, default=1.5,
                        help="MB of generated text per format (default 1.5)")
    parser.add_argument("--pdf-mb", type=float,
                        help="MB of text in the generated PDF (default: --mb; 1.5 MB is "
                             "about 420 pages)")
    parser.add_argument("--pages", type=int, default=200, help="pages of the local site")
    parser.add_argument("--sitemap", action="store_true", help="serve a sitemap.xml too")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="comma-separated subset of %s" % ",".join(FORMATS))
    parser.add_argument("--no-crawl", action="store_true")
    parser.add_argument("--profile", choices=FORMATS, action="append", default=[],
                        help="print a cProfile of process_document for this format")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the files and database in a new folder under DIR "
                             "(default: a temp dir, removed)")
    args = parser.parse_args(argv)
    formats = [kind.strip() for kind in args.formats.split(",") if kind.strip()]
    if args.pdf_mb is None:
        args.pdf_mb = args.mb
    if args.runs < 1 or args.mb <= 0 or args.pdf_mb <= 0 or args.pages < 2:
        parser.error("need --runs >= 1, --mb > 0, --pdf-mb > 0, --pages >= 2")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error("unknown format(s): %s" % ", ".join(sorted(unknown)))

    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="botlite-bench-ingest-", dir=args.keep)
    database = None
    clock = StageClock()
    try:
        files_dir = os.path.join(scratch, "files")
        os.makedirs(files_dir, exist_ok=True)
        paths, pdf_source = {}, None
        for number, kind in enumerate(formats):
            path = os.path.join(files_dir, "sample." + kind)
            started = time.perf_counter()
            if kind == "pdf":
                pdf_source = make_pdf(path, int(args.pdf_mb * MB), SEED, scratch)
            else:
                MAKERS[kind](path, int(args.mb * MB), SEED + number)
            paths[kind] = path
            log("made %s (%.2f MB file) in %.1f s", kind, os.path.getsize(path) / MB,
                time.perf_counter() - started)

        # The parsers are imported lazily by botlite and by the bare functions alike:
        # import them now so that no timed run pays for it.
        for module in ("bs4", "docx", "openpyxl", "pypdf"):
            importlib.import_module(module)

        database = dbmod.bind(dbmod.open_database(
            "sqlite:///" + os.path.join(scratch, "botlite.db")))
        dbmod.migrate(database)
        database.connect()
        Chatbot.create(id=BOT, name="Default bot")
        clock.install()
        results = {}
        for kind in formats:
            results[kind] = measure_format(scratch, paths[kind], kind, args.runs, clock)
        if "pdf" in results:
            from pypdf import PdfReader
            results["pdf"]["pdf_pages"] = len(PdfReader(paths["pdf"]).pages)
        clock.uninstall()
        for kind in args.profile:
            if kind in paths:
                profile_format(scratch, paths[kind], kind)
        crawl_result = None
        if not args.no_crawl:
            crawl_result = measure_crawl(scratch, args.pages, args.runs, args.sitemap)
        total_chunks = Chunk.select().count()
        log("%d chunks in the bench database", total_chunks)
    finally:
        clock.uninstall()
        if database is not None and not database.is_closed():
            database.close()
        if args.keep:
            log("files kept in %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    output = {"bench": "ingest", "runs": args.runs, "goal_overhead_ratio": GOAL,
              "formats": results,
              "over_goal": [kind for kind, result in results.items()
                            if result["overhead_ratio"] > GOAL]}
    if pdf_source is not None:
        output["pdf_source"] = pdf_source
    if crawl_result is not None:
        output["crawl"] = crawl_result
    print(json.dumps(output), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
