"""Knowledge ingestion: files and pages to text (`extract`), text to search chunks (`chunk`)."""
from botlite.knowledge.chunk import Chunk, chunk_document
from botlite.knowledge.extract import (
    SUPPORTED,
    SUPPORTED_EXTENSIONS,
    Document,
    ExtractionError,
    Section,
    UnsupportedType,
    detect_kind,
    extract_file,
    extract_html,
)

__all__ = [
    "SUPPORTED", "SUPPORTED_EXTENSIONS", "Chunk", "Document", "ExtractionError", "Section",
    "UnsupportedType", "chunk_document", "detect_kind", "extract_file", "extract_html",
]
