"""Parser bombs: small inputs that made extraction run for minutes or days, or
take gigabytes (the security issue "parsing in linear time with bounds").

Each bomb is generated into a temp dir and read in a child process, as the
web process (kind detection) or a task's child (extraction, then chunking)
would. The child is killed at the issue's goal, `TIME_LIMIT_S`; its peak
memory comes from the kernel (``os.wait4``'s rusage: for that child alone, also
when it was killed) and must stay under `RSS_LIMIT_MB`. A bomb must end with a
clear reason, or succeed with text no longer than its input.

Zip files are written byte by byte (`write_zip`) so that their headers can say
anything, and long deflate streams are made from one compressed piece repeated:
after a full flush the compressor starts afresh, so compressing the same bytes
again gives the same output.
"""
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import docx
import openpyxl

ROOT = Path(__file__).resolve().parent.parent

TIME_LIMIT_S = 10.0
"""The issue's goal: every bomb ends within this."""

RSS_LIMIT_MB = 300
"""The issue's goal: and stays under this much memory."""

ADDRESS_SPACE_LIMIT = 4 * 1024 ** 3
"""A child's address space is capped, so a bomb that does go off fails there
instead of taking the machine's memory (the limits above are what is asserted)."""

CHILD = r"""
import json, sys
from botlite.knowledge.chunk import chunk_document
from botlite.knowledge.extract import (HEAD_BYTES, ExtractionError, detect_kind,
                                       extract_file, extract_html)

mode, path, kind = sys.argv[1:4]
result = {}
try:
    if mode == "detect":
        with open(path, "rb") as handle:
            result["kind"] = detect_kind(kind, handle.read(HEAD_BYTES))
    elif mode == "crawl":  # a page served without a Content-Type
        from botlite.knowledge.crawl import _looks_like_html
        with open(path, "rb") as handle:
            result["html"] = _looks_like_html(handle.read())
    else:
        if mode == "html":  # as the crawler: a decoded page
            with open(path, encoding="utf-8") as handle:
                document = extract_html(handle.read(), url="https://example.com/page")
        else:
            document = extract_file(path, kind)
        chunks = chunk_document(document)
        result.update(text_chars=len(document.text), chunks=len(chunks),
                      start=document.text[:40])
    result["outcome"] = "ok"
except ExtractionError as error:
    result.update(outcome="failed", reason=error.reason)
print(json.dumps(result))
"""


def run_child(mode, path, kind=""):
    """Run `CHILD`; (result dict or None when killed, seconds, peak RSS in MB)."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    out_path = Path(str(path) + ".out")
    with open(out_path, "wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(path), kind], cwd=str(ROOT),
            env=environment, stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit_memory)
        killed = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > TIME_LIMIT_S:
                os.kill(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                killed = True
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    output = out_path.read_text(errors="replace")
    peak_mb = usage.ru_maxrss / 1024  # KB on Linux
    if killed:
        return None, seconds, peak_mb
    assert process.returncode == 0, "child failed (%s):\n%s" % (process.returncode, output[-3000:])
    return json.loads(output.strip().splitlines()[-1]), seconds, peak_mb


def assert_bounded(mode, path, kind=""):
    """The bomb at ``path`` ends in time and in memory; its result."""
    result, seconds, peak_mb = run_child(mode, path, kind)
    assert result is not None, "still running after %.0f s (killed)" % TIME_LIMIT_S
    assert seconds < TIME_LIMIT_S
    assert peak_mb < RSS_LIMIT_MB, "peak RSS %.0f MB" % peak_mb
    if result.get("outcome") == "ok" and "text_chars" in result:
        assert result["text_chars"] <= Path(path).stat().st_size
    return result


# --- kind detection ------------------------------------------------------------

COMMENTS_THEN_TEXT = b"<!--a-->" * 28 + b"X"  # 225 bytes: 52 s on the old regex, 2**n


def test_comment_run_upload_is_detected_at_once(tmp_path):
    path = tmp_path / "upload"
    path.write_bytes(COMMENTS_THEN_TEXT)
    assert assert_bounded("detect", path, "upload") == {"kind": "txt", "outcome": "ok"}


def test_comment_run_page_without_content_type_is_detected_at_once(tmp_path):
    path = tmp_path / "page"
    path.write_bytes(COMMENTS_THEN_TEXT)
    assert assert_bounded("crawl", path) == {"html": False, "outcome": "ok"}


# --- Markdown ------------------------------------------------------------------

def test_unclosed_emphasis_markdown_is_read(tmp_path):
    path = tmp_path / "stars.md"
    path.write_bytes(b"**x " * 51200)  # 200 KB, 203 s before
    result = assert_bounded("file", path, "md")
    assert result["outcome"] == "ok" and result["start"].startswith("**x **x")


def test_table_rule_line_markdown_is_read(tmp_path):
    """A 200 KB delimiter row under a header row, spaces and a stray character
    at its end: the old pattern had ``\\s*`` after the last cell's dashes and
    again after the optional "|", and tried every split of the spaces."""
    path = tmp_path / "table.md"
    path.write_bytes(b"a | b\n|" + b"---|" * 25000 + b"---" + b" " * 100000 + b"x\n")
    result = assert_bounded("file", path, "md")
    assert result["outcome"] == "ok"


# --- HTML ----------------------------------------------------------------------

def test_400k_nested_divs_are_read(tmp_path):
    path = tmp_path / "divs.html"
    path.write_bytes(b"<div>" * 400000 + b"deep text" + b"</div>" * 400000)  # > 9.5 min
    result = assert_bounded("html", path)
    assert result["outcome"] == "ok" and result["start"] == "deep text"


def test_1_7m_nested_bold_tags_are_read(tmp_path):
    path = tmp_path / "bold.html"
    path.write_bytes(b"<b>" * 1_700_000 + b"deep text")  # > 5 min at 1.2 GB
    result = assert_bounded("html", path)
    assert result["outcome"] == "ok" and result["start"] == "deep text"



def test_page_of_rows_nested_in_cells_is_read_once(tmp_path):
    """A 5 MB page (the crawler's limit) of tables whose rows open inside the
    cell above: every row was read again with all the rows below it."""
    table = ("<table>" + "".join("<tr><td>c%d<div>" % n for n in range(600))
             + "</div></td></tr>" * 600 + "</table>")
    path = tmp_path / "rows.html"
    path.write_text(table * (5_000_000 // len(table)))
    result = assert_bounded("html", path)
    assert result["outcome"] == "ok" and result["start"].startswith("c0 c1 c2")


# --- zip containers -------------------------------------------------------------

def deflate(data):
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def repeated_deflate(head, piece, count, tail):
    """(raw deflate stream, crc32, size) of ``head + piece * count + tail``,
    compressing ``piece`` once."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    middle = compressor.compress(piece) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(piece, crc)
    crc = zlib.crc32(tail, crc)
    return start + middle * count + end, crc, len(head) + len(piece) * count + len(tail)


def write_zip(path, members):
    """A zip of deflated ``members``: (name, raw deflate data, crc32, declared size)."""
    body, directory = bytearray(), bytearray()
    for name, data, crc, size in members:
        encoded = name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21,
                            crc, len(data), size, len(encoded), 0) + encoded + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21,
                                 crc, len(data), size, len(encoded), 0, 0, 0, 0, 0,
                                 offset) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))


def docx_with_document_xml(path, data, crc, size):
    """A python-docx document whose word/document.xml is the given member."""
    buffer = io.BytesIO()
    docx.Document().save(buffer)
    members = []
    with zipfile.ZipFile(buffer) as source:
        for name in source.namelist():
            if name == "word/document.xml":
                members.append((name, data, crc, size))
            else:
                content = source.read(name)
                members.append((name, deflate(content), zlib.crc32(content), len(content)))
    write_zip(path, members)


def test_docx_member_lying_about_its_size_is_refused_before_inflating(tmp_path):
    """1 MB holding 1 GB of zeros, declared as 1 KB: zipfile's read() inflated
    all of it in memory before cutting it to the declared size (2 GB RSS)."""
    data, crc, _ = repeated_deflate(b"", bytes(1024 * 1024), 1024, b"")
    path = tmp_path / "liar.docx"
    docx_with_document_xml(path, data, crc, 1024)
    assert path.stat().st_size < 2 * 1024 * 1024

    result = assert_bounded("file", path, "docx")
    assert result["outcome"] == "failed" and "may be damaged" in result["reason"]


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def test_docx_of_199_mb_xml_is_refused(tmp_path):
    """A few MB unpacking to 199 MB of real Word XML, inside the old limits of
    200 MB and ratio 100 (2.5 GB to parse)."""
    paragraphs = "".join(
        '<w:p><w:r><w:t>Paragraph %d of the staff handbook, about opening hours.</w:t>'
        '</w:r></w:p>' % number for number in range(12000)).encode()
    piece = paragraphs[:1024 * 1024]
    piece = piece[:piece.rindex(b"</w:p>") + len(b"</w:p>")]
    data, crc, size = repeated_deflate(
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document %s><w:body>'
        % W.encode(), piece, 199 * 1024 * 1024 // len(piece), b"</w:body></w:document>")
    path = tmp_path / "huge.docx"
    docx_with_document_xml(path, data, crc, size)
    assert size > 198 * 1024 * 1024 and size < 100 * path.stat().st_size

    result = assert_bounded("file", path, "docx")
    assert result["outcome"] == "failed" and "refused for safety" in result["reason"]


def test_xlsx_of_20000_rows_to_column_xfd_is_refused(tmp_path):
    """Two cells a row, in A and XFD: openpyxl pads each row to 16,384 cells
    (327 million in all; 50 s before)."""
    source = tmp_path / "source.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.title = "Data"
    workbook.save(source)
    rows = "".join(
        '<row r="%d"><c r="A%d" t="inlineStr"><is><t>row %d</t></is></c>'
        '<c r="XFD%d" t="inlineStr"><is><t>end</t></is></c></row>' % (n, n, n, n)
        for n in range(1, 20001))
    sheet = ('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns='
             '"http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             '<dimension ref="A1:XFD20000"/><sheetData>%s</sheetData></worksheet>' % rows)
    path = tmp_path / "wide.xlsx"
    with zipfile.ZipFile(source) as original, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in original.infolist():
            content = original.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = sheet.encode()
            target.writestr(item.filename, content)

    result = assert_bounded("file", path, "xlsx")
    assert result["outcome"] == "failed" and "cells" in result["reason"]
