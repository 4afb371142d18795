"""Turn an uploaded file or a fetched web page into text with structure.

The result is a `Document`: a title, a description and `Section`s, each holding
paragraphs separated by a blank line plus the heading and the place in the file
(page, sheet, rows) it came from. Every problem with the file itself becomes an
`ExtractionError` whose ``reason`` can be shown to the person who uploaded it;
only genuine I/O errors (a missing file) escape as something else.

The parsers (pypdf, python-docx, openpyxl, lxml) are imported inside
the functions that use them: importing this module must stay cheap for the web
process, which only needs `detect_kind`.
"""
from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import logging
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Callable, Iterable

log = logging.getLogger(__name__)

SUPPORTED: dict[str, str] = {
    "pdf": "PDF",
    "docx": "Word (.docx)",
    "xlsx": "Excel (.xlsx)",
    "csv": "CSV",
    "txt": "plain text",
    "md": "Markdown",
    "html": "HTML",
}
"""Every kind of file botlite can read, with the label shown to people."""

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
}
"""File name extension (lower case, with the dot) -> kind."""

HEAD_BYTES = 8192
"""How much of the start of a file `detect_kind` should be given; it ignores the rest."""

MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
"""A .docx or .xlsx whose members really inflate to more than this in all is refused."""

MAX_COMPRESSION_RATIO = 100
"""A zip member of at least `RATIO_CHECK_MIN_BYTES` compressed more than this is refused."""

RATIO_CHECK_MIN_BYTES = 1024 * 1024
"""Members smaller than this are not held to `MAX_COMPRESSION_RATIO`."""

MAX_LOADED_XML_BYTES = 25 * 1024 * 1024
"""The zip members a parser reads whole into a tree (every XML part of a .docx; a
.xlsx's shared strings, styles and workbook, not its streamed sheets) may add up
to this; a tree takes about ten times its XML in memory."""

MAX_XLSX_CELLS = 2_000_000
"""A workbook with more cells than this (all sheets; see `_xlsx_rows`) is refused."""

MAX_HTML_ELEMENTS = 500_000
"""A page with more elements than this is refused: each costs about 300 bytes in memory."""

MAX_HTML_DEPTH = 512
"""In a page built by `_CappedTree` (one nested deeper than libxml2 builds, 2048
levels, or with many tags), deeper elements are unwrapped: their text stays, in
the element at this depth."""

TABLE_SECTION_CHARS = 4000
"""Spreadsheet and CSV rows are grouped into sections of about this many characters."""

_NOUNS = {
    "pdf": "PDF",
    "docx": "Word document",
    "xlsx": "Excel workbook",
    "csv": "CSV file",
    "txt": "text file",
    "md": "Markdown file",
    "html": "web page",
}


class ExtractionError(Exception):
    """The file itself is the problem: encrypted, damaged, empty, unsupported or
    expanding to too much data. Retrying will not help.

    ``reason`` is one sentence a non-technical person understands.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoText(ExtractionError):
    """The file was read and holds no text (a crawl skips such a page quietly)."""


class UnsupportedType(ExtractionError):
    """botlite does not read this kind of file; the reason lists what it reads."""

    def __init__(self, reason: str = "botlite can't read this kind of file.") -> None:
        labels = list(SUPPORTED.values())
        listed = ", ".join(labels[:-1]) + " and " + labels[-1]
        super().__init__("%s It reads %s files." % (reason, listed))


@dataclass
class Section:
    """A run of paragraphs under one heading at one place in the file."""

    text: str
    """The paragraphs, separated by a blank line ("\\n\\n"), whitespace collapsed."""
    heading: str | None = None
    """The nearest heading above the text, for context."""
    locator: str | None = None
    """Where in the file: "page 3", "sheet Prices", "rows 12-40", a URL with #anchor."""


@dataclass
class Document:
    """What was read from one file or page."""

    title: str | None
    """From the file's metadata, else its first heading, else None."""
    description: str | None
    """The HTML meta description, else None."""
    sections: list[Section]

    @property
    def text(self) -> str:
        """All section texts, separated by a blank line."""
        return "\n\n".join(section.text for section in self.sections)


# --- detecting the kind -------------------------------------------------------

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_UTF_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts the same way
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes that never occur in text; what is left after deleting the text bytes is "binary".
_TEXT_BYTES = bytes({7, 8, 9, 10, 12, 13, 27} | set(range(0x20, 0x100)) - {0x7F})
_HTML_TAG_START = re.compile(rb"<(?:!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE)
_BYTES_WHITESPACE = b" \t\n\r\f\v"


def detect_kind(filename: str, head: bytes) -> str:
    """Decide which `SUPPORTED` kind a file is, from its name and its first bytes.

    ``head`` should be the first `HEAD_BYTES` of the file (fewer works, less
    surely; more is ignored: this runs in the web process, on untrusted bytes,
    each looked at a bounded number of times). The extension names the kind;
    the content must not contradict it: a ``.pdf`` that is a zip, or a ``.txt``
    full of NUL bytes, raises `UnsupportedType`. A name without a known
    extension is judged by content alone (PDF, Word, Excel, HTML; plain text
    only when there is no extension).
    """
    head = head[:HEAD_BYTES]
    extension = os.path.splitext(filename)[1].lower()
    named = SUPPORTED_EXTENSIONS.get(extension)
    content = _sniff(head)
    if named is None:
        return _kind_from_content(extension, content, head)
    if content is None:
        return named  # an empty file: extraction says so in plain words
    if named == "pdf":
        if content != "pdf":
            raise _mismatch(extension, "PDF")
        return named
    if named in ("docx", "xlsx"):
        if content == "ole":
            raise UnsupportedType(
                "This is an older Office file (.doc/.xls) or a password-protected one; "
                "save it as an unprotected .docx or .xlsx and upload that.")
        if content != "zip":
            raise _mismatch(extension, SUPPORTED[named])
        office = _office_kind(head)
        if office is not None and office != named:
            raise _mismatch(extension, SUPPORTED[named])
        return named
    if content in ("pdf", "zip", "ole", "binary"):
        raise _mismatch(extension, SUPPORTED[named])
    return named


def _kind_from_content(extension: str, content: str | None, head: bytes) -> str:
    if content == "pdf":
        return "pdf"
    if content == "zip":
        office = _office_kind(head)
        if office in ("docx", "xlsx"):
            return office
    if content == "html":
        return "html"
    if content == "text" and not extension:
        return "txt"
    if extension:
        raise UnsupportedType("botlite can't read %s files." % extension)
    raise UnsupportedType()


def _mismatch(extension: str, label: str) -> UnsupportedType:
    return UnsupportedType(
        "The file is named %s but its contents are not %s; upload the original file."
        % (extension, label))


def _sniff(head: bytes) -> str | None:
    """What the first bytes look like: pdf, zip, ole, binary, html, text; None if empty."""
    if not head:
        return None
    marker = head.find(b"%PDF-", 0, 1024)
    if marker == 0 or (marker > 0 and not head[:marker].strip(b" \t\r\n\x00\xef\xbb\xbf")):
        return "pdf"
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_OLE_MAGIC):
        return "ole"
    if _looks_binary(head):
        return "binary"
    if _starts_like_html(_strip_utf8_bom(head)):
        return "html"
    return "text"


def _starts_like_html(head: bytes) -> bool:
    """Whether ``head`` opens with <!doctype html>, <html>, <head> or <body>, after
    whitespace, comments and an XML declaration.

    A scan, not one regex: ``(?:<!--.*?-->\\s*)*`` can end each comment at any
    later "-->", and a run of comments not followed by a tag was tried every
    way (2**n: 28 comments took 52 s). Here each comment ends at its first
    "-->", as in HTML, and every byte is looked at once.
    """
    position = 0
    while True:
        while position < len(head) and head[position] in _BYTES_WHITESPACE:
            position += 1
        if head.startswith(b"<!--", position):
            end, closer = head.find(b"-->", position + 4), 3
        elif head[position:position + 5].lower() == b"<?xml":
            end, closer = head.find(b">", position + 5), 1
        else:
            return _HTML_TAG_START.match(head, position) is not None
        if end == -1:
            return False
        position = end + closer


def _looks_binary(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return False
    if b"\x00" in head:
        return _utf16_without_bom(head) is None
    return len(head.translate(None, _TEXT_BYTES)) > len(head) // 10


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text without a BOM (mostly ASCII) has NULs at every other byte."""
    sample = data[:4096]
    half = len(sample) // 2
    if half < 2:
        return None
    zeros_even = sample[0::2].count(0)
    zeros_odd = sample[1::2].count(0)
    if zeros_odd > 0.7 * half and zeros_even < 0.05 * half:
        return "utf-16-le"
    if zeros_even > 0.7 * half and zeros_odd < 0.05 * half:
        return "utf-16-be"
    return None


def _strip_utf8_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(codecs.BOM_UTF8) else data


def _office_kind(head: bytes) -> str | None:
    """The Office format named by the zip member names visible in ``head``."""
    position = head.find(b"PK\x03\x04")
    while position != -1 and position + 30 <= len(head):
        name_length = int.from_bytes(head[position + 26:position + 28], "little")
        name = head[position + 30:position + 30 + name_length]
        if name.startswith(b"word/"):
            return "docx"
        if name.startswith(b"xl/"):
            return "xlsx"
        if name.startswith(b"ppt/"):
            return "pptx"
        if name == b"mimetype":
            return "odf"
        position = head.find(b"PK\x03\x04", position + 30)
    return None


# --- extracting ---------------------------------------------------------------

def extract_file(path: str, kind: str) -> Document:
    """Read the file at ``path`` as ``kind`` (one of `SUPPORTED`, see `detect_kind`).

    Raises `ExtractionError` (or `UnsupportedType`) when the file can't be used;
    OSError when it can't be read at all.
    """
    extractor = _EXTRACTORS.get(kind)
    if extractor is None:
        raise UnsupportedType()
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        raise ExtractionError("The file is empty; upload a file that has some text in it.")
    return _extract(kind, extractor, data)


def extract_html(html: str | bytes, url: str | None = None) -> Document:
    """Read an HTML page, uploaded or crawled.

    Bytes are decoded by BOM, then the declared charset, then by guessing. When
    ``url`` is given, sections are located by it (with ``#id`` for headings
    that have one).
    """
    return _extract("html", _extract_html, html, url)


def _extract(kind: str, extractor: Callable[..., Document], *args) -> Document:
    try:
        document = extractor(*args)
    except (ExtractionError, ImportError):  # a missing parser is not the file's fault
        raise
    except Exception as exc:  # parsers raise anything on malformed input
        log.debug("could not read a %s file", kind, exc_info=True)
        raise _damaged(kind) from exc
    if not document.sections:
        raise NoText("The %s contains no text." % _NOUNS[kind])
    return document


def _damaged(kind: str) -> ExtractionError:
    return ExtractionError(
        "The %s could not be read; it may be damaged. Try saving it again and "
        "re-uploading." % _NOUNS[kind])


_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl",
                            "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
                            "\ufb06": "st", "\u00ad": None, "\u200b": None})
"""Typographic ligatures spelled out (PDFs made with TeX are full of them: "ﬁles"
is "files" to whoever searches for it); soft hyphens and zero-width spaces dropped."""


def _clean(text: str) -> str:
    """Collapse whitespace; drop soft hyphens and zero-width spaces; spell out
    ligatures."""
    text = " ".join(text.split())
    if not text.isascii():
        text = text.translate(_LIGATURES)
    return text


CODE_FENCE = "```"
"""A paragraph that is a code block is fenced by this on lines of their own, its
lines kept as they are (the chunker keeps them; chat replies show them as code)."""
MAX_CODE_LINE = 400
"""Characters kept of one line of a code block."""


def code_paragraph(text: str) -> str | None:
    """A code block's text as a fenced paragraph, or None when it holds no text.
    Its lines are kept but for trailing spaces, tabs (4 spaces), blank lines
    (dropped: a paragraph ends at one), overlong lines (cut) and a fence inside
    (made a plain line)."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.replace("\t", "    ").rstrip()[:MAX_CODE_LINE]
        if line.lstrip().startswith(CODE_FENCE):
            line = line.replace(CODE_FENCE, "` ` `")
        if line.strip():
            lines.append(line if line.isascii() else line.translate(_LIGATURES))
    if not lines:
        return None
    return "%s\n%s\n%s" % (CODE_FENCE, "\n".join(lines), CODE_FENCE)


class _SectionBuilder:
    """Collects paragraphs into sections that start at headings.

    A heading opens a new section and is its first paragraph; headings with no
    text between them stay together, under the last one.
    """

    def __init__(self, locator: str | None = None) -> None:
        self.sections: list[Section] = []
        self.first_heading: str | None = None
        self._base_locator = locator
        self._locator = locator
        self._heading: str | None = None
        self._paragraphs: list[str] = []
        self._has_body = False

    def heading(self, text: str, locator: str | None = None) -> None:
        if self._has_body:
            self._flush()
        self._paragraphs.append(text)
        self._heading = text
        self._locator = locator or self._base_locator
        if self.first_heading is None:
            self.first_heading = text

    def paragraph(self, text: str) -> None:
        self._paragraphs.append(text)
        self._has_body = True

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        if self._paragraphs:
            self.sections.append(
                Section("\n\n".join(self._paragraphs), self._heading, self._locator))
        self._paragraphs = []
        self._has_body = False


# --- tables (DOCX, XLSX, CSV, HTML, Markdown) ------------------------------------

# Digits, separators and at least one digit; the part before the first digit
# takes no digits, so there is one way to match (not one per digit).
_NUMBER = re.compile(r"[-+(]?[$€£¥]?\s?[.,' ]*\d[\d.,' ]*%?\)?")


def _looks_like_header(cells: list[str], width: int = 0) -> bool:
    """Short, distinct, non-numeric labels over at least two of several columns."""
    filled = [cell for cell in cells if cell]
    if not filled or (max(width, len(cells)) > 1 and len(filled) < 2):
        return False
    if len(set(filled)) != len(filled):
        return False
    return all(len(cell) <= 80 and not _NUMBER.fullmatch(cell) for cell in filled)


def _labelled_row(header: list[str], cells: list[str]) -> str:
    pairs = []
    for index, value in enumerate(cells):
        if value:
            name = header[index] if index < len(header) and header[index] else (
                "Column %d" % (index + 1))
            pairs.append("%s: %s" % (name, value))
    return "; ".join(pairs)


def _plain_row(cells: list[str]) -> str:
    return " | ".join(cell for cell in cells if cell)


def _table_lines(rows: list[list[str]], has_header: bool | None = None) -> list[str]:
    """Rows as "Header: value; Header: value" lines when the first row is a header
    (``has_header`` None: guess), else as "value | value" lines."""
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    if has_header is None:
        width = max(len(row) for row in rows)
        has_header = len(rows) > 1 and _looks_like_header(rows[0], width)
    if has_header and len(rows) > 1:
        header = rows[0]
        return [line for line in (_labelled_row(header, row) for row in rows[1:]) if line]
    return [_plain_row(row) for row in rows]


def _table_sections(rows: Iterable[list[str]], heading: str | None,
                    prefix: str | None) -> list[Section]:
    """Sections of about `TABLE_SECTION_CHARS` from spreadsheet rows (numbered from 1).

    The first non-empty row is the header when it looks like one. Locators are
    ``prefix`` alone when everything fits one section, else "prefix, rows a-b".
    """
    header: list[str] | None = None
    blocks: list[tuple[int, int, list[str]]] = []
    lines: list[str] = []
    first = last = 0
    size = 0
    for number, cells in enumerate(rows, 1):
        if not any(cells):
            continue
        if header is None:
            header = cells if _looks_like_header(cells) else []
            if header:
                continue
        line = _labelled_row(header, cells) if header else _plain_row(cells)
        if not lines:
            first = number
        lines.append(line)
        last = number
        size += len(line) + 2
        if size >= TABLE_SECTION_CHARS:
            blocks.append((first, last, lines))
            lines, size = [], 0
    if lines:
        blocks.append((first, last, lines))
    if not blocks and header:
        return [Section(_plain_row(header), heading, prefix)]
    sections = []
    for first, last, block in blocks:
        if prefix and len(blocks) == 1:
            locator = prefix
        else:
            rows_label = "row %d" % first if first == last else "rows %d-%d" % (first, last)
            locator = "%s, %s" % (prefix, rows_label) if prefix else rows_label
        sections.append(Section("\n\n".join(block), heading, locator))
    return sections


# --- zip containers (DOCX, XLSX) -----------------------------------------------

_ZIP_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # as zipfile's structFileHeader
_ZIP_NAME_LENGTH, _ZIP_EXTRA_LENGTH = 10, 11
_INFLATE_PIECE = 64 * 1024
_LOADED_PARTS = {"docx": "text and formatting", "xlsx": "shared texts and styles"}


def _check_zip(data: bytes, kind: str) -> None:
    """Refuse malformed zips and zip bombs before a parser inflates anything.

    The declared sizes are checked first, which is cheap; then every member is
    inflated in pieces through a count, the output dropped, and must give
    exactly its declared size. The declared size can't be trusted: zipfile
    stops a member there, but a parser's ``read()`` inflates all of a member's
    compressed bytes in memory at once before cutting (a 1 MB member declared
    as 1 KB took 2 GB). Once this passes, each member inflates to what was
    checked, whatever reads it.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise _damaged(kind) from exc
    total = loaded = 0
    for member in members:
        total += member.file_size
        too_big = total > MAX_UNCOMPRESSED_BYTES
        too_dense = (member.file_size >= RATIO_CHECK_MIN_BYTES
                     and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1))
        if too_big or too_dense:
            raise ExtractionError(
                "The %s unpacks to far more data than a normal document; it was "
                "refused for safety." % _NOUNS[kind])
        if _loaded_whole(kind, member.filename):
            loaded += member.file_size
            if loaded > MAX_LOADED_XML_BYTES:
                raise ExtractionError(
                    "The %s is too big to read: its %s unpack to more than %d MB; it was "
                    "refused for safety. Split it into smaller files and upload those."
                    % (_NOUNS[kind], _LOADED_PARTS[kind], MAX_LOADED_XML_BYTES // (1024 * 1024)))
    for member in members:
        if _inflated_size(data, member, kind) != member.file_size:
            raise _damaged(kind)


def _loaded_whole(kind: str, name: str) -> bool:
    """Whether the parser of ``kind`` reads member ``name`` whole into a tree
    (python-docx every XML part; openpyxl in read-only mode all but the sheets)."""
    if not name.endswith((".xml", ".rels")):
        return False
    return kind == "docx" or not name.startswith("xl/worksheets/")


def _inflated_size(data: bytes, member: zipfile.ZipInfo, kind: str) -> int:
    """What ``member`` really inflates to, counted up to one byte past its
    declared size (enough to know it lies). The compressed bytes are the ones
    zipfile reads: after the local header, as many as the directory says."""
    if member.flag_bits & 0x1:  # encrypted: Office encrypts whole files, not members
        raise _damaged(kind)
    offset = member.header_offset
    header = data[offset:offset + _ZIP_LOCAL_HEADER.size] if offset >= 0 else b""
    if len(header) < _ZIP_LOCAL_HEADER.size or not header.startswith(b"PK\x03\x04"):
        raise _damaged(kind)
    fields = _ZIP_LOCAL_HEADER.unpack(header)
    start = offset + len(header) + fields[_ZIP_NAME_LENGTH] + fields[_ZIP_EXTRA_LENGTH]
    compressed = memoryview(data)[start:start + member.compress_size]
    if member.compress_type == zipfile.ZIP_STORED:
        return len(compressed)
    if member.compress_type != zipfile.ZIP_DEFLATED:  # Office writes nothing else
        raise _damaged(kind)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    limit = member.file_size + 1
    size = 0
    for position in range(0, len(compressed), _INFLATE_PIECE):
        pending = compressed[position:position + _INFLATE_PIECE]
        while True:
            try:
                output = inflater.decompress(pending, _INFLATE_PIECE)
            except zlib.error as exc:
                raise _damaged(kind) from exc
            size += len(output)
            if size >= limit:
                return size
            pending = inflater.unconsumed_tail
            # A full piece may leave output pending with all input consumed.
            if not pending and len(output) < _INFLATE_PIECE:
                break
        if inflater.eof:
            break
    return size


# --- PDF ---------------------------------------------------------------------

def _extract_pdf(data: bytes) -> Document:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ExtractionError("The PDF is password-protected; upload an unprotected copy.")
    sections = []
    first_line = None
    unreadable = 0
    for number, (text, hyphens_marked) in enumerate(_pdf_page_texts(data, reader), 1):
        if isinstance(text, DependencyError):  # AES needs the optional 'cryptography'
            raise ExtractionError(
                "The PDF is encrypted in a way botlite can't open; upload an unprotected copy."
            ) from text
        if isinstance(text, Exception):  # one broken page should not cost the others
            log.debug("unreadable PDF page %d: %r", number, text)
            unreadable += 1
            continue
        paragraphs = _pdf_paragraphs(text, hyphens_marked)
        if paragraphs:
            sections.append(Section("\n\n".join(paragraphs), None, "page %d" % number))
            if first_line is None:
                first_line = paragraphs[0]
    if not sections and unreadable:
        raise _damaged("pdf")
    if not sections:
        raise ExtractionError(
            "The PDF has no text layer (it looks like scanned images) and botlite can't "
            "read text from images; upload a PDF with selectable text.")
    return Document(_pdf_title(reader) or _first_words(first_line), None, sections)


def _pdf_page_texts(data: bytes, reader):
    """Each page's text, or the exception that kept it unread, in page order,
    with whether line-end hyphens that only split a word were marked (PDFium).

    PDFium (pypdfium2) lays the text out: it keeps the spaces that PDFs made with
    LaTeX only imply by glyph positions (pypdf gave "Thepreferredwaytodothisis..."
    for the Debian FAQ), marks a word hyphenated at a line end (U+FFFE, the two
    halves joined here) and is about 15x faster than pypdf (38 pages: 0.03 s
    against 0.53 s). pypdf, which has opened the file and checked its encryption,
    is the fallback where PDFium cannot open it."""
    try:
        import pypdfium2
        document = pypdfium2.PdfDocument(data)
    except Exception as exc:  # ImportError too: pypdf alone still reads most PDFs
        log.debug("PDFium cannot open this PDF (%r); reading it with pypdf", exc)
        document = None
    if document is None:
        for page in reader.pages:
            try:
                yield page.extract_text(), False
            except Exception as exc:
                yield exc, False
        return
    try:
        for index in range(len(document)):
            try:
                page = document[index]
                textpage = page.get_textpage()
                text = textpage.get_text_range()
                textpage.close()
                page.close()
            except Exception as exc:
                yield exc, True
                continue
            yield text.replace("\ufffe\r\n", "").replace("\ufffe", "").replace(
                "\r\n", "\n").replace("\r", "\n"), True
    finally:
        document.close()


def _pdf_title(reader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a broken /Info dictionary should not lose the text
        log.debug("unreadable PDF metadata", exc_info=True)
        return None
    if not isinstance(title, str):
        return None
    return _clean(title) or None


def _first_words(text: str | None, limit: int = 120) -> str | None:
    if not text:
        return None
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[:cut if cut > 0 else limit]


def _pdf_paragraphs(text: str, hyphens_marked: bool = False) -> list[str]:
    """Re-flow a page's lines into paragraphs.

    The text has one line per printed line. A paragraph ends at a blank line, at
    a line clearly shorter than the page's full lines (a heading, a last line),
    or at a somewhat short line ending a sentence. A word hyphenated across
    lines is joined again: with ``hyphens_marked`` (PDFium joined those already)
    a line ending in "-" is a real hyphen ("comma-" "separated" stays
    "comma-separated"); else a "-" before a lowercase line is dropped. Table of
    contents lines (a title, a dotted leader, a page number) are left out.
    """
    lines = [_clean(line) for line in text.splitlines()]
    lines = ["" if _is_contents_line(line) else line for line in lines]
    lengths = sorted(len(line) for line in lines if line)
    if not lengths:
        return []
    full = lengths[int(len(lengths) * 0.8)]
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if not line:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        previous = current[-1] if current else ""
        if (len(previous) > 2 and previous[-1] == "-" and previous[-2].isalpha()
                and line[0].islower()):
            current[-1] = (previous if hyphens_marked else previous[:-1]) + line
        else:
            current.append(line)
        if len(line) < 0.6 * full or (len(line) < 0.85 * full and line[-1] in _PDF_LINE_ENDS):
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


_PDF_LINE_ENDS = frozenset(".!?:\"\u201d)")


def _is_contents_line(line: str) -> bool:
    """Whether ``line`` is a table of contents entry: "Making a Windows DLL . . . 12"
    (a run of at least 4 leader dots, then a page number, arabic or roman). A scan
    of the line's end, not a regex over it."""
    rest = line.rstrip()
    number = rest.rstrip("0123456789ivxlcIVXLC")
    if number == rest or not number:
        return False
    return number.rstrip()[-16:].replace(" ", "").endswith("....")


# --- DOCX --------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"(?:heading [1-9]|title)", re.IGNORECASE)
_DOCX_NAMESPACES = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}
_W = "{%s}" % _DOCX_NAMESPACES["w"]
_DOCX_TEXT, _DOCX_NO_BREAK_HYPHEN = _W + "t", _W + "noBreakHyphen"
_DOCX_PARAGRAPH, _DOCX_TABLE, _DOCX_STYLE_VALUE = _W + "p", _W + "tbl", _W + "val"


def _extract_docx(data: bytes) -> Document:
    _check_zip(data, "docx")
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    body = document.element.body
    headings = _docx_heading_paragraphs(document, body)
    builder = _SectionBuilder()
    for element in body.iterchildren(_DOCX_PARAGRAPH, _DOCX_TABLE):
        if element.tag == _DOCX_TABLE:
            for line in _table_lines(_docx_table_rows(Table(element, document._body))):
                builder.paragraph(line)
            continue
        text = _docx_text(element)
        if not text:
            continue
        if element in headings:
            builder.heading(text)
        else:
            builder.paragraph(text)
    sections = builder.finish()
    title = _clean(document.core_properties.title or "") or builder.first_heading
    return Document(title, None, sections)


def _docx_text(paragraph) -> str:
    """A paragraph's visible text, whitespace collapsed.

    python-docx's Paragraph.text compiles two XPath expressions per paragraph
    and skips runs inside tracked insertions and fields; one precompiled XPath
    is several times faster and reads those runs too. Text boxes, the fallback
    copies of drawings and text moved away by tracked changes are left out.
    """
    parts = []
    for element in _docx_run_content()(paragraph):
        tag = element.tag
        if tag == _DOCX_TEXT:
            parts.append(element.text or "")
        elif tag == _DOCX_NO_BREAK_HYPHEN:
            parts.append("-")
        else:
            parts.append(" ")
    return _clean("".join(parts))


@functools.lru_cache(maxsize=None)
def _docx_run_content():
    from lxml import etree

    return etree.XPath(
        ".//w:r[not(ancestor::w:txbxContent or ancestor::mc:Fallback or ancestor::w:moveFrom)]"
        "/*[self::w:t or self::w:tab or self::w:ptab or self::w:br or self::w:cr"
        " or self::w:noBreakHyphen]",
        namespaces=_DOCX_NAMESPACES)


def _docx_heading_paragraphs(document, body) -> set:
    """The body's paragraphs styled Title or Heading 1-9 (by style name, which
    stays English in localised Word, unlike the style id)."""
    from docx.enum.style import WD_STYLE_TYPE

    style_ids = {style.style_id for style in document.styles
                 if style.type == WD_STYLE_TYPE.PARAGRAPH
                 and _HEADING_STYLE.fullmatch(style.name or "")}
    return {style.getparent().getparent()
            for style in body.iterfind("w:p/w:pPr/w:pStyle", _DOCX_NAMESPACES)
            if style.get(_DOCX_STYLE_VALUE) in style_ids}


def _docx_table_rows(table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a cell merged across columns repeats
                continue
            previous = cell._tc
            cells.append(_clean(" ".join(
                _docx_text(paragraph) for paragraph in cell._tc.iterchildren(_DOCX_PARAGRAPH))))
        rows.append(cells)
    return rows


# --- XLSX --------------------------------------------------------------------

def _extract_xlsx(data: bytes) -> Document:
    _check_zip(data, "xlsx")
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sections = []
        cells = [0]
        for sheet in workbook.worksheets:
            sections.extend(_table_sections(_xlsx_rows(sheet, cells), sheet.title,
                                            "sheet %s" % sheet.title))
        title = _clean(workbook.properties.title or "") or None
    finally:
        workbook.close()
    return Document(title, None, sections)


def _xlsx_rows(sheet, cells: list[int]) -> Iterable[list[str]]:
    """A read-only sheet's rows as cell texts (openpyxl's own iteration).

    ``cells[0]`` counts the cells read so far, across sheets. openpyxl hands
    over each row padded with empty cells up to its last cell, and padding is
    what costs (20,000 rows reaching column XFD are 327 million cells), so
    those count, and a row without cells counts as one. Past `MAX_XLSX_CELLS`
    the workbook is refused rather than read in part: a bot answering from
    the first part of a sheet, with nothing to tell anyone the rest is
    missing, is worse than a clear reason to trim or split the file.
    """
    # Declared dimensions are often wrong, and padding every row to a bogus
    # width is slow: read the cells that are there.
    sheet.reset_dimensions()
    for row in sheet.iter_rows(values_only=True):
        cells[0] += len(row) or 1
        if cells[0] > MAX_XLSX_CELLS:
            raise ExtractionError(
                "The Excel workbook has more than {:,} cells (counting the empty cells "
                "before the last filled one in each row); botlite reads up to {:,}. Delete "
                "unused rows and columns or split the workbook, then upload it again."
                .format(MAX_XLSX_CELLS, MAX_XLSX_CELLS))
        yield [_cell_text(value) for value in row]


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, datetime):
        if value.time() == time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return _clean(str(value))


# --- CSV ---------------------------------------------------------------------

_CSV_SAMPLE_CHARS = 16384


def _extract_csv(data: bytes) -> Document:
    text = decode_text(data)
    sample = text[:_CSV_SAMPLE_CHARS]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[:sample.rindex("\n")]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows = ([_clean(cell) for cell in row] for row in reader)
    return Document(None, None, _table_sections(rows, None, None))


# --- plain text and Markdown ---------------------------------------------------

_SNIFF_BYTES = 65536


def decode_text(data: bytes) -> str:
    """Decode text of unknown encoding.

    In order: a UTF-32/UTF-8/UTF-16 BOM, UTF-16 without a BOM, strict UTF-8,
    charset_normalizer's guess (cp1252 when that reads about as well as the
    best guess), cp1252, latin-1. NUL characters are dropped.
    """
    text = None
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            text = data[len(bom):].decode(encoding, errors="replace")
            break
    if text is None and b"\x00" in data[:4096]:
        encoding = _utf16_without_bom(data)
        if encoding:
            text = data.decode(encoding, errors="replace")
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_guessing(data)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _decode_guessing(data: bytes) -> str:
    from charset_normalizer import from_bytes

    sample = data[:_SNIFF_BYTES]
    if len(data) > len(sample) and b"\n" in sample:
        sample = sample[:sample.rindex(b"\n")]
    results = from_bytes(sample)
    best = results.best()
    if best is not None:
        # On short Western text the guesses tie (cp775, cp1250, cp1252...); the
        # common choice wins unless it reads clearly worse.
        for result in results:
            if "cp1252" in result.could_be_from_charset and result.chaos <= best.chaos + 0.1:
                return data.decode("cp1252", errors="replace")
        return data.decode(best.encoding, errors="replace")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_LIST_ITEM = re.compile(r"(?:[-*+•‣◦▪]|\d{1,3}[.)])\s+")


def _extract_txt(data: bytes) -> Document:
    paragraphs = _plain_paragraphs(decode_text(data).splitlines())
    sections = [Section("\n\n".join(paragraphs))] if paragraphs else []
    return Document(None, None, sections)


def _plain_paragraphs(lines: Iterable[str]) -> list[str]:
    """Blank lines separate paragraphs; lines of one paragraph are re-flowed;
    each list item is a paragraph of its own."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or _LIST_ITEM.match(stripped):
            if current:
                paragraphs.append(_clean(" ".join(current)))
                current = []
            if not stripped:
                continue
        current.append(stripped)
    if current:
        paragraphs.append(_clean(" ".join(current)))
    return [paragraph for paragraph in paragraphs if paragraph]


_MD_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*$")
_MD_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_MD_RULE = re.compile(r" {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_MD_REFERENCE = re.compile(r" {0,3}\[[^\]]+\]:\s+\S")
_MD_BLOCK_PREFIX = re.compile(r"\s*(?:>\s*)+")
_MD_SYNTAX = re.compile(r"[\[<*_`~\\]")
# Markdown comes from anyone and a paragraph can be a whole file, so each
# pattern must fail fast: a bracket, parenthesis or tag body stops at the next
# opener too (else every unclosed "[" or "<" scanned to the end: quadratic), and
# emphasis ends at the next run of its own marker.
_MD_INLINE = (
    (re.compile(r"!\[([^\[\]]*)\]\((?:[^()]|\([^()]*\))*\)"), r"\1"),   # images -> alt text
    (re.compile(r"\[([^\[\]]+)\]\((?:[^()]|\([^()]*\))*\)"), r"\1"),    # [text](url)
    (re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]"), r"\1"),                # [text][ref]
    (re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>"), r"\1"),      # <autolinks>
    (re.compile(r"</?[A-Za-z][^<>]*>"), ""),                          # inline HTML tags
    (re.compile(r"(\*\*|__|~~)(?=\S)((?:(?!\1).)+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w])_(?=\S)([^_]+?)(?<=\S)_(?![\w])"), r"\1"),
    (re.compile(r"(?<!`)`+([^`]+?)`+"), r"\1"),  # from a run's start only: a run is tried once
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])"), r"\1"),
)


def _md_inline(text: str) -> str:
    """Markdown inline syntax to plain text: links keep their text, images their alt."""
    if _MD_SYNTAX.search(text):
        for pattern, replacement in _MD_INLINE:
            text = pattern.sub(replacement, text)
    return _clean(text)


def _extract_md(data: bytes) -> Document:
    text = decode_text(data)
    title = None
    front = _MD_FRONT_MATTER.match(text)
    if front:
        found = _md_front_title(front.group(1))
        if found:
            title = _clean(found.strip("\"'")) or None
        text = text[front.end():]
    builder = _SectionBuilder()
    _MarkdownReader(builder).read(text.splitlines())
    sections = builder.finish()
    return Document(title or builder.first_heading, None, sections)


def _md_front_title(front_matter: str) -> str | None:
    """The value of the first "title:" line of YAML front matter."""
    for line in front_matter.split("\n"):
        if line[:6].lower() == "title:":
            value = line[6:].strip(" \t")
            if value:
                return value
    return None


def _md_atx_heading(line: str) -> str | None:
    """The text of an ATX heading line ("## Text ##"), None if ``line`` is not one.

    String operations, not a regex: a lazy ``(.*?)`` before an optional
    ``[ \\t]+#+`` and ``[ \\t]*$`` retried the spaces at every position of a
    long run of them (a 200 KB heading: minutes).
    """
    rest = line.lstrip(" ")
    if len(line) - len(rest) > 3:
        return None
    text = rest.lstrip("#")
    if not 1 <= len(rest) - len(text) <= 6 or text[:1] not in ("", " ", "\t"):
        return None
    text = text.strip(" \t")
    unclosed = text.rstrip("#")
    if unclosed != text and (not unclosed or unclosed[-1] in " \t"):
        text = unclosed.rstrip(" \t")  # the closing sequence
    return text


def _md_table_rule(line: str) -> bool:
    """Whether ``line`` is a table's delimiter row ("| --- | :-: |").

    Split, not matched: the regex this replaces had ``\\s*`` on both sides of
    each optional "|", and retried a long run of spaces at every position of it.
    """
    cells = line.strip()
    if cells.startswith("|"):
        cells = cells[1:]
    if cells.endswith("|"):
        cells = cells[:-1]
    if not cells:
        return False
    for cell in cells.split("|"):
        cell = cell.strip()
        if cell.startswith(":"):
            cell = cell[1:]
        if cell.endswith(":"):
            cell = cell[:-1]
        if not cell or cell.strip("-"):
            return False
    return True


class _MarkdownReader:
    """Line-by-line Markdown to sections: ATX and setext headings, fenced code,
    pipe tables, list items; everything else re-flowed into paragraphs."""

    def __init__(self, builder: _SectionBuilder) -> None:
        self.builder = builder
        self.lines: list[str] = []

    def flush(self) -> None:
        if self.lines:
            text = _md_inline(" ".join(self.lines))
            if text:
                self.builder.paragraph(text)
            self.lines = []

    def read(self, lines: list[str]) -> None:
        index = 0
        while index < len(lines):
            index = self._read_block(lines, index)
        self.flush()

    def _read_block(self, lines: list[str], index: int) -> int:
        line = lines[index]
        fence = _MD_FENCE.match(line)
        if fence:
            return self._read_fence(lines, index, fence.group(1))
        heading = _md_atx_heading(line)
        if heading is not None:
            self.flush()
            text = _md_inline(heading)
            if text:
                self.builder.heading(text)
            return index + 1
        if self.lines and len(self.lines) == 1 and _MD_SETEXT.match(line):
            text = _md_inline(self.lines[0])
            self.lines = []
            if text:
                self.builder.heading(text)
            return index + 1
        if "|" in line and index + 1 < len(lines) and _md_table_rule(lines[index + 1]):
            return self._read_table(lines, index)
        stripped = _MD_BLOCK_PREFIX.sub("", line, count=1) if line.lstrip().startswith(">") \
            else line.strip()
        if not stripped or _MD_RULE.match(line) or _MD_REFERENCE.match(line):
            self.flush()
            return index + 1
        item = _LIST_ITEM.match(stripped)
        if item:
            self.flush()
            stripped = stripped[item.end():]
        self.lines.append(stripped)
        return index + 1

    def _read_fence(self, lines: list[str], index: int, marker: str) -> int:
        self.flush()
        code = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(marker):
            code.append(lines[index])
            index += 1
        text = code_paragraph("\n".join(code))
        if text:
            self.builder.paragraph(text)
        return index + 1

    def _read_table(self, lines: list[str], index: int) -> int:
        self.flush()
        rows = [self._table_cells(lines[index])]
        index += 2
        while index < len(lines) and "|" in lines[index] and lines[index].strip():
            rows.append(self._table_cells(lines[index]))
            index += 1
        for line in _table_lines(rows, has_header=True):
            self.builder.paragraph(line)
        return index

    @staticmethod
    def _table_cells(line: str) -> list[str]:
        line = line.strip()
        if line.startswith("|"):
            line = line[1:]
        if line.endswith("|") and not line.endswith("\\|"):
            line = line[:-1]
        return [_md_inline(cell) for cell in re.split(r"(?<!\\)\|", line)]


# --- HTML --------------------------------------------------------------------

# [^<>]: a <meta without ">" is not retried up to the end of the window at every "<meta".
_META_CHARSET = re.compile(rb"""<meta[^<>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)""")
# Browsers read these labels as windows-1252, a superset.
_AS_CP1252 = frozenset({"latin_1", "iso8859-1", "ascii", "cp1252"})

_HTML_DROP = frozenset(
    "script style noscript nav aside form template svg iframe object embed canvas "
    "button select textarea dialog head title meta link map audio video".split())
_HTML_BOILERPLATE = frozenset({"header", "footer"})
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCKS = frozenset(
    "address article blockquote body br caption center dd details div dl dt fieldset "
    "figcaption figure footer h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main "
    "menu ol p pre section summary table tbody td tfoot th thead tr ul".split())


def _decode_html(data: bytes) -> str:
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    declared = _XML_ENCODING.match(data, 0, 200) or _META_CHARSET.search(data, 0, 4096)
    if declared:
        try:
            name = codecs.lookup(declared.group(1).decode("ascii")).name
        except (LookupError, UnicodeDecodeError):
            name = None
        if name and not name.startswith("utf-16") and not name.startswith("utf-32"):
            if name in _AS_CP1252:
                name = "cp1252"
            return data.decode(name, errors="replace")
    return decode_text(data)


def _extract_html(html: str | bytes, url: str | None = None) -> Document:
    text = html if isinstance(html, str) else _decode_html(html)
    root = _parse_html(text)
    if root is None:
        return Document(None, None, [])
    head = root.find("head")
    title_tag = (head if head is not None else root).find(".//title")
    title = _clean(title_tag.text_content()) if title_tag is not None else ""
    description = _html_description(root)

    sections: list[Section] = []
    builder = _SectionBuilder(url)
    main = _html_main(root)
    if main is not None:
        _HtmlWalker(builder, url).walk(main)
        sections = builder.finish()
    if not sections:
        builder = _SectionBuilder(url)
        body = root.find("body")
        _HtmlWalker(builder, url).walk(body if body is not None else root)
        sections = builder.finish()
    if not title:
        first_h1 = next(root.iter("h1"), None)
        title = _clean(_html_text(first_h1, " ")) if first_h1 is not None else ""
    return Document(title or None, description, sections)


def _parse_html(text: str):
    """The page's element tree (lxml.html: libxml2's HTML parser, which repairs
    broken markup the way browsers mostly do, and costs a twentieth of
    BeautifulSoup's tree building); None for a page with no markup or text.
    Comments and processing instructions are dropped while parsing.

    libxml2 stops building at 2048 nested elements (the rest of the page is
    lost); such a page, and one that may have more than `MAX_HTML_ELEMENTS`
    elements, is built by `_CappedTree` from the same parser's events instead.
    lxml trees also get slow with depth (adding or dropping an element walks
    its ancestors), which the caps keep linear.
    """
    import lxml.etree
    import lxml.html

    data = text.encode("utf-8", "surrogatepass")
    if text.count("<") - text.count("</") > MAX_HTML_ELEMENTS:  # as many start tags possible
        return _capped_tree(data)
    # A parser per page: lxml's parsers must not be shared between threads.
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True,
                                  huge_tree=True, default_doctype=False)
    try:
        # Bytes with the encoding named: a str with an XML declaration is refused.
        root = lxml.html.document_fromstring(data, parser=parser)
    except lxml.etree.ParserError:  # "Document is empty"
        return None
    if any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.error_log):
        return _capped_tree(data)
    return root


_HTML_FEED_BYTES = 256 * 1024


def _capped_tree(data: bytes):
    """The page's tree with elements below `MAX_HTML_DEPTH` unwrapped; refused
    past `MAX_HTML_ELEMENTS`. Fed in pieces, so a refused page stops there."""
    import lxml.etree

    builder = _CappedTree()
    parser = lxml.etree.HTMLParser(target=builder, encoding="utf-8", remove_comments=True,
                                   remove_pis=True, huge_tree=True, default_doctype=False)
    for start in range(0, len(data), _HTML_FEED_BYTES):
        parser.feed(data[start:start + _HTML_FEED_BYTES])
        if builder.elements > MAX_HTML_ELEMENTS:
            raise ExtractionError(
                "The web page has more than {:,} HTML elements; botlite reads pages of up "
                "to {:,}. Split it into smaller pages.".format(MAX_HTML_ELEMENTS,
                                                              MAX_HTML_ELEMENTS))
    if not builder.elements:
        return None
    return parser.close()


_HTML_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][\w.:-]*")


class _CappedTree:
    """An lxml parser target building lxml.html elements down to `MAX_HTML_DEPTH`.

    Deeper elements are left out and their text goes to the element at that
    depth, except the text of the elements `_HtmlWalker` drops (scripts,
    styles, hidden ones...); a deeper block element still separates words.
    libxml2 sends an end for every start, so counting depth is enough.
    """

    def __init__(self) -> None:
        import lxml.etree
        import lxml.html

        self._builder = lxml.etree.TreeBuilder(parser=lxml.html.HTMLParser())
        self._open: list[str] = []
        self.elements = 0
        self._depth = 0
        self._dropping_at = 0  # the depth of the dropped element being skipped, or 0

    def start(self, tag: str, attrib) -> None:
        self._depth += 1
        if self._depth <= MAX_HTML_DEPTH:
            self.elements += 1
            if self.elements <= MAX_HTML_ELEMENTS:
                self._open.append(self._start(tag, attrib))
        elif not self._dropping_at:
            if tag in _HTML_DROP or _html_hidden_attributes(attrib):
                self._dropping_at = self._depth
            elif tag in _HTML_BLOCKS:
                self._builder.data(" ")

    def _start(self, tag: str, attrib) -> str:
        """Open an element; the names lxml refuses (libxml2 passes on 'a"b')
        are dropped, or the element becomes a span, as when lxml builds."""
        try:
            self._builder.start(tag, attrib)
            return tag
        except ValueError:
            attrib = {name: value for name, value in attrib.items()
                      if _HTML_ATTRIBUTE_NAME.fullmatch(name)}
        try:
            self._builder.start(tag, attrib)
            return tag
        except ValueError:
            self._builder.start("span", attrib)
            return "span"

    def end(self, tag: str) -> None:
        if self._depth <= MAX_HTML_DEPTH:
            if self.elements <= MAX_HTML_ELEMENTS:
                self._builder.end(self._open.pop())
        elif self._dropping_at == self._depth:
            self._dropping_at = 0
        elif not self._dropping_at and tag in _HTML_BLOCKS:
            self._builder.data(" ")
        self._depth -= 1

    def data(self, text: str) -> None:
        if not self._dropping_at and self.elements <= MAX_HTML_ELEMENTS:
            self._builder.data(text)

    def close(self):
        return self._builder.close()


def _html_text(element, separator: str = "") -> str:
    """An element's text, its descendants' joined by ``separator``."""
    return separator.join(element.itertext())


def _html_description(root) -> str | None:
    found: dict[str, str] = {}
    for meta in root.iter("meta"):
        key = (meta.get("name") or meta.get("property") or "").strip().lower()
        if key in ("description", "og:description") and key not in found:
            content = _clean(meta.get("content") or "")
            if content:
                found[key] = content
    return found.get("description") or found.get("og:description")


def _html_main(root):
    """The page's main content element, when it marks one."""
    main = next(root.iter("main"), None)
    if main is None:
        main = next((element for element in root.iter()
                     if element.get("role") == "main"), None)
    if main is not None:
        return main
    articles = list(itertools.islice(root.iter("article"), 2))
    return articles[0] if len(articles) == 1 else None


def _html_hidden(element) -> bool:
    return _html_hidden_attributes(element.attrib)


_HTML_NAVIGATION_CLASSES = frozenset(
    "navheader navfooter navbar navigation breadcrumb breadcrumbs headerlink "
    "sphinxsidebar skip-link toc toctree-wrapper".split())
"""Classes of page furniture as documentation generators write it: DocBook's
"Prev / Up / Home / Next" tables (in 119 of 1,905 chunks of PostgreSQL's manual),
Sphinx's "¶" permalinks and sidebar, a page's own table of contents. Left out
like <nav>."""


def _html_hidden_attributes(attrs) -> bool:
    """Whether an element with ``attrs`` is not content: hidden, or navigation."""
    if not attrs:
        return False
    if "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    if attrs.get("role") == "navigation":
        return True
    classes = attrs.get("class")
    if classes and not _HTML_NAVIGATION_CLASSES.isdisjoint(classes.lower().split()):
        return True
    style = attrs.get("style")
    return bool(style) and "display:none" in style.replace(" ", "").lower()


class _HtmlWalker:
    """Walks an element tree (iteratively: pages can nest deeply) and feeds the
    builder: block elements end paragraphs, h1-h6 start sections, data tables
    become labelled rows. Site headers and footers are skipped unless inside an
    <article> or <main>, where they hold the article's own title and byline."""

    def __init__(self, builder: _SectionBuilder, url: str | None) -> None:
        self.builder = builder
        self.url = url.split("#", 1)[0] if url else None
        self.parts: list[str] = []

    def flush(self) -> None:
        if self.parts:
            text = _clean("".join(self.parts))
            self.parts = []
            if text:
                self.builder.paragraph(text)

    def walk(self, root) -> None:
        """In document order: an element's start, its text, its children (each
        followed by its tail, which belongs to this level), its end."""
        article_depth = 1 if root.tag in ("article", "main") else 0
        heading_depth = 0
        parts = self.parts
        if root.text:
            parts.append(root.text)
        stack = [iter(root)]
        exits = [None]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                element = exits.pop()
                if element is None:
                    continue
                name = element.tag
                if name in _HTML_HEADINGS:
                    heading_depth -= 1
                    if heading_depth == 0:
                        self._heading(element)
                elif name in _HTML_BLOCKS:
                    if heading_depth:
                        parts.append(" ")
                    else:
                        self.flush()
                        parts = self.parts
                if name == "article" or name == "main":
                    article_depth -= 1
                if element.tail:
                    parts = self.parts
                    parts.append(element.tail)
                continue
            name = node.tag
            if not isinstance(name, str) or name in _HTML_DROP or _html_hidden(node) or (
                    name in _HTML_BOILERPLATE and not article_depth):
                if node.tail:
                    parts.append(node.tail)
                continue
            if name == "pre" and not heading_depth:
                self.flush()
                parts = self.parts
                code = code_paragraph(_html_text(node))
                if code:
                    self.builder.paragraph(code)
                if node.tail:
                    parts.append(node.tail)
                continue
            if name == "table" and not heading_depth and _html_data_table(node):
                self.flush()
                parts = self.parts
                for line in _table_lines(*_html_table_rows(node)):
                    self.builder.paragraph(line)
                if node.tail:
                    parts.append(node.tail)
                continue
            if name in _HTML_HEADINGS:
                if not heading_depth:
                    self.flush()
                    parts = self.parts
                heading_depth += 1
            elif name in _HTML_BLOCKS:
                if heading_depth:
                    parts.append(" ")
                else:
                    self.flush()
                    parts = self.parts
            if name == "article" or name == "main":
                article_depth += 1
            if node.text:
                parts.append(node.text)
            stack.append(iter(node))
            exits.append(node)
        self.flush()

    def _heading(self, element) -> None:
        text = _clean("".join(self.parts))
        self.parts = []
        if not text:
            return
        locator = None
        if self.url:
            anchor = element.get("id")
            if not anchor:
                inner = next((child for child in element.iterdescendants()
                              if child.get("id")), None)
                anchor = inner.get("id") if inner is not None else None
            locator = "%s#%s" % (self.url, anchor) if anchor else self.url
        self.builder.heading(text, locator)


def _html_data_table(table) -> bool:
    """Layout tables (whole pages in old sites) hold nested tables or headings."""
    if table.get("role") == "presentation":
        return False
    return next(table.iterdescendants("table", "h1", "h2", "h3", "h4", "h5", "h6"),
                None) is None


def _html_table_rows(table) -> tuple[list[list[str]], bool | None]:
    rows = []
    header = None
    for index, tr in enumerate(_html_rows(table)):
        cells = [cell for cell in tr if cell.tag in ("td", "th")]
        if index == 0:
            parent = tr.getparent()
            header = bool(cells) and (all(cell.tag == "th" for cell in cells)
                                      or parent.tag == "thead")
        rows.append([_clean(_html_text(cell, " ")) for cell in cells])
    return rows, (True if header else None)


def _html_rows(table) -> Iterable:
    """The table's rows, not the rows inside them: libxml2 keeps a <tr> opened
    in a cell's <div> inside it, and reading each row of such a chain would
    read the cells below it again (quadratic, in time and text)."""
    stack = [iter(table)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif node.tag == "tr":
            yield node
        elif isinstance(node.tag, str):
            stack.append(iter(node))


_EXTRACTORS: dict[str, Callable[[bytes], Document]] = {
    "pdf": _extract_pdf,
    "docx": _extract_docx,
    "xlsx": _extract_xlsx,
    "csv": _extract_csv,
    "txt": _extract_txt,
    "md": _extract_md,
    "html": _extract_html,
}
